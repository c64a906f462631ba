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

// Detected once (thread-safe static) and cached. Honors the environment variable
// PRISM_DISABLE_SIMD=1, which reports no SIMD features so that the portable path is used.
const CpuFeatures& cpu_features();

}  // namespace prism
