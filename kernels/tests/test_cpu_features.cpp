// Consistency checks of the feature detection (implications that must hold on any CPU).
#include <cstdio>
#include <cstdlib>

#include "prism/cpu_features.hpp"

int main() {
  const auto& f = prism::cpu_features();
  int failures = 0;
  auto check = [&](bool ok, const char* what) {
    if (!ok) { std::fprintf(stderr, "FAIL: %s\n", what); ++failures; }
  };
  check(!f.avx512_vnni || f.avx512f, "avx512_vnni implies avx512f");
  check(!f.avx512f || f.avx2, "avx512f implies avx2 on every shipping CPU");
  check(!f.avx_vnni || f.avx2, "avx_vnni implies avx2");
  check(!f.neon_dotprod || f.neon, "dotprod implies neon");
#if defined(__aarch64__)
  check(f.arch == "aarch64", "arch is aarch64");
#elif defined(__x86_64__)
  check(f.arch == "x86_64", "arch is x86_64");
  check(!f.neon, "no neon on x86");
#endif
  std::printf("arch=%s avx2=%d avx512f=%d avx512_vnni=%d avx_vnni=%d neon=%d dotprod=%d\n",
              f.arch.c_str(), f.avx2, f.avx512f, f.avx512_vnni, f.avx_vnni, f.neon, f.neon_dotprod);
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
