// Portable path of the line kernels: line_decode_body.inc compiled with the build's baseline ISA
// (SSE2 on x86-64, where the compiler still vectorises the loops 16 bytes wide; plain Advanced
// SIMD on aarch64). Always built; the reference the other paths are tested against.
#include "prism/line_decode.hpp"

#include <cmath>
#include <cstdint>

namespace prism {
namespace line {
namespace detail {
namespace scalar_isa {
#include "line_decode_body.inc"
}  // namespace scalar_isa

const IsaKernels* scalar_line_kernels() {
  static const IsaKernels kernels{LinePath::Scalar, scalar_isa::means_kernel,
                                  scalar_isa::features_kernel, scalar_isa::gray_kernel,
                                  scalar_isa::decode_kernel};
  return &kernels;
}

}  // namespace detail
}  // namespace line
}  // namespace prism
