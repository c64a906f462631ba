// AVX-512 path of the line kernels: line_decode_body.inc compiled with -mavx512f -mavx512bw
// -mavx512vl (this file only), chosen at run time when cpu_features().avx512f.
#include "prism/line_decode.hpp"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>

#include <cmath>
#include <cstdint>

// GCC 12's AVX-512 headers start some intrinsics from _mm512_undefined_*(), which
// -Wmaybe-uninitialized (or -Wuninitialized) reports at every use (GCC bug 105593); the
// values are never read.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace prism {
namespace line {
namespace detail {
namespace avx512_isa {
#include "line_decode_body.inc"
}  // namespace avx512_isa

const IsaKernels* avx512_line_kernels() {
  static const IsaKernels kernels{LinePath::Avx512, avx512_isa::means_kernel,
                                  avx512_isa::features_kernel, avx512_isa::gray_kernel,
                                  avx512_isa::decode_kernel};
  return &kernels;
}

}  // namespace detail
}  // namespace line
}  // namespace prism
#else
namespace prism {
namespace line {
namespace detail {
const IsaKernels* avx512_line_kernels() { return nullptr; }
}  // namespace detail
}  // namespace line
}  // namespace prism
#endif
