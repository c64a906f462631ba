#include "prism/cpu_features.hpp"

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

namespace prism {
namespace {

#if defined(__x86_64__) || defined(_M_X64)
// XCR0 tells whether the OS saves the wide registers; a CPU flag alone is not enough.
unsigned long long xgetbv0() {
  unsigned int eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

// PRISM_MAX_ISA: the widest instruction set the kernels may use, as oneDNN's ONEDNN_MAX_CPU_ISA
// (to run an AVX-512 host as an AVX2-only one, e.g. a Zen 3, or an ARMv8.2 one as plain NEON).
// Levels in order; unset or empty: no cap.
struct Cap {
  const char* name;
  const char* arch;  // null: every architecture
  int level;
};
constexpr Cap kCaps[] = {{"scalar", nullptr, 0},       {"avx2", "x86_64", 1},
                         {"avx512", "x86_64", 2},      {"avx512_vnni", "x86_64", 3},
                         {"neon", "aarch64", 1},       {"neon_dot", "aarch64", 2}};

int max_isa_level(const char* arch) {
  const char* cap = std::getenv("PRISM_MAX_ISA");
  if (!cap || cap[0] == '\0') return 99;
  std::string names;
  for (const Cap& c : kCaps) {
    if (c.arch && std::strcmp(c.arch, arch) != 0) continue;
    if (std::strcmp(cap, c.name) == 0) return c.level;
    names += (names.empty() ? "" : ", ") + std::string(c.name);
  }
  throw std::invalid_argument(std::string("PRISM_MAX_ISA=") + cap + ": expected one of " + names +
                              " on " + arch + " (or unset)");
}

void apply_cap(CpuFeatures& f) {
  const int level = max_isa_level(f.arch.c_str());
  if (f.arch == "x86_64") {
    if (level < 3) f.avx512_vnni = false;
    if (level < 2) f.avx512f = f.avx_vnni = false;
    if (level < 1) f.avx2 = false;
  } else if (f.arch == "aarch64") {
    if (level < 2) f.neon_dotprod = false;
    if (level < 1) f.neon = false;
  }
}

CpuFeatures detect_hardware() {
  CpuFeatures f;
  const char* off = std::getenv("PRISM_DISABLE_SIMD");
  const bool disabled = off && std::strcmp(off, "0") != 0 && off[0] != '\0';
#if defined(__x86_64__) || defined(_M_X64)
  f.arch = "x86_64";
  if (disabled) return f;
  unsigned int a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  const bool fma = c & (1u << 12);
  if (!osxsave) return f;
  const unsigned long long xcr0 = xgetbv0();
  const bool ymm_os = (xcr0 & 0x6) == 0x6;
  const bool zmm_os = (xcr0 & 0xE6) == 0xE6;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  f.avx2 = ymm_os && fma && (b & (1u << 5));
  const bool avx512bw = b & (1u << 30), avx512vl = b & (1u << 31);
  f.avx512f = zmm_os && (b & (1u << 16)) && avx512bw && avx512vl;
  f.avx512_vnni = f.avx512f && (c & (1u << 11));
  unsigned int a1, b1, c1, d1;
  if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) f.avx_vnni = ymm_os && f.avx2 && (a1 & (1u << 4));
#elif defined(__aarch64__)
  f.arch = "aarch64";
  f.neon = !disabled;
#if defined(__linux__)
  f.neon_dotprod = !disabled && (getauxval(AT_HWCAP) & HWCAP_ASIMDDP);
#endif
#else
  f.arch = "other";
  (void)disabled;
#endif
  return f;
}

CpuFeatures detect() {
  CpuFeatures f = detect_hardware();
  apply_cap(f);
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

}  // namespace prism
