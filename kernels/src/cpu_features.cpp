#include "prism/cpu_features.hpp"

#include <cstdlib>
#include <cstring>

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

CpuFeatures detect() {
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

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

}  // namespace prism
