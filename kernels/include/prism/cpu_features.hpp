// CPU feature detection for run-time dispatch of SIMD kernel paths.
#pragma once
#include <string>

namespace prism {

struct CpuFeatures {
  bool avx2 = false;          // x86-64: AVX2 + FMA
  bool avx512f = false;       // x86-64: AVX-512 Foundation (+BW/VL checked together)
  bool avx512_vnni = false;   // x86-64: AVX-512 VNNI (vpdpbusd on zmm)
  bool avx_vnni = false;      // x86-64: AVX-VNNI (vpdpbusd on ymm, VEX encoded)
  bool neon = false;          // aarch64: Advanced SIMD (always on aarch64)
  bool neon_dotprod = false;  // aarch64: SDOT/UDOT (ARMv8.2 dot product; Jetson Xavier/Orin)
  std::string arch;           // "x86_64", "aarch64" or "other"
};

// Detected once (thread-safe static) and cached. Honors two environment variables:
//   PRISM_DISABLE_SIMD=1 reports no SIMD features, so that the portable path is used;
//   PRISM_MAX_ISA caps the features at one level, as oneDNN's ONEDNN_MAX_CPU_ISA: scalar, avx2
//   (no AVX-512, no AVX-VNNI: an AVX2-only host such as Zen 3), avx512 (no VNNI) or avx512_vnni
//   on x86-64; scalar, neon (no dot product) or neon_dot on aarch64. Another value throws
//   std::invalid_argument naming it (at every call, since nothing is cached then).
const CpuFeatures& cpu_features();

}  // namespace prism
