// NEON path of the line kernels (aarch64, e.g. Jetson): line_decode_body.inc compiled for
// Advanced SIMD, chosen at run time when cpu_features().neon. Elsewhere this file is a stub.
#include "prism/line_decode.hpp"

#if defined(__aarch64__)
#include <arm_neon.h>

#include <cmath>
#include <cstdint>

namespace prism {
namespace line {
namespace detail {
namespace neon_isa {
#define PRISM_LINE_NEON 1  // the body's NEON blocks (the scalar file on aarch64 includes it too)
#include "line_decode_body.inc"
#undef PRISM_LINE_NEON
}  // namespace neon_isa

const IsaKernels* neon_line_kernels() {
  static const IsaKernels kernels{LinePath::Neon, neon_isa::means_kernel,
                                  neon_isa::features_kernel, neon_isa::gray_kernel,
                                  neon_isa::decode_kernel};
  return &kernels;
}

}  // namespace detail
}  // namespace line
}  // namespace prism
#else
namespace prism {
namespace line {
namespace detail {
const IsaKernels* neon_line_kernels() { return nullptr; }
}  // namespace detail
}  // namespace line
}  // namespace prism
#endif
