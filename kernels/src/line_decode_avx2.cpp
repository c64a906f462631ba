// AVX2 path of the line kernels: line_decode_body.inc compiled with -mavx2 -mfma (this file
// only), chosen at run time when cpu_features().avx2 (and no AVX-512).
#include "prism/line_decode.hpp"

#if defined(__x86_64__) && defined(__AVX2__)
#include <immintrin.h>

#include <cmath>
#include <cstdint>

namespace prism {
namespace line {
namespace detail {
namespace avx2_isa {
#include "line_decode_body.inc"
}  // namespace avx2_isa

const IsaKernels* avx2_line_kernels() {
  static const IsaKernels kernels{LinePath::Avx2, avx2_isa::means_kernel,
                                  avx2_isa::features_kernel, avx2_isa::gray_kernel,
                                  avx2_isa::decode_kernel};
  return &kernels;
}

}  // namespace detail
}  // namespace line
}  // namespace prism
#else
namespace prism {
namespace line {
namespace detail {
const IsaKernels* avx2_line_kernels() { return nullptr; }
}  // namespace detail
}  // namespace line
}  // namespace prism
#endif
