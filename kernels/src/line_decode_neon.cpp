// NEON path of the line kernels (aarch64, e.g. Jetson): line_decode_body.inc compiled for
// Advanced SIMD, chosen at run time when cpu_features().neon. Elsewhere this file is a stub.
#include "prism/line_decode.hpp"

#if defined(__aarch64__)
#include <cmath>
#include <cstdint>

namespace prism {
namespace line {
namespace detail {
namespace neon_isa {
#include "line_decode_body.inc"
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
