// Portable scalar path of the PWLQ integer GEMM: the reference every SIMD path is tested
// against, and the path of CPUs without one. Layouts and semantics in prism/qgemm.hpp.
#include <cmath>
#include <cstdint>

#include "prism/qgemm.hpp"
#include "scalar_epilogue.hpp"

namespace prism {
namespace qgemm_detail {
namespace {

constexpr int kG = kQgemmRowGroup, kP = kQgemmPanel, kB = kQgemmKBlock;

void dense(const DenseArgs& a) {
  for (std::int64_t g = 0; g < a.x.row_groups; ++g) {
    const std::uint8_t* x = a.x.data + g * a.x.k_blocks * 64;
    std::int32_t acc[kP][kG] = {};
    for (std::int64_t kb = 0; kb < a.x.k_blocks; ++kb) {
      const std::uint8_t* xv = x + kb * 64;
      const std::int8_t* wv = a.panel + kb * (kB * kP);
      for (int j = 0; j < kP; ++j) {
        for (int r = 0; r < kG; ++r) {
          std::int32_t s = 0;
          for (int i = 0; i < kB; ++i) s += xv[r * kB + i] * wv[j * kB + i];
          acc[j][r] += s;
        }
      }
    }
    for (int j = 0; j < kP; ++j)
      for (int r = 0; r < kG; ++r) a.out[j * a.ld + g * kG + r] = acc[j][r];
  }
}

std::int32_t dot4(const std::uint8_t* x, std::int32_t packed) {
  std::int32_t s = 0;
  for (int i = 0; i < kB; ++i) s += x[i] * static_cast<std::int8_t>(packed >> (8 * i));
  return s;
}

void tail(const TailArgs& a) {
  const std::int64_t rows = a.x.row_groups * kG;
  for (std::int64_t j = 0; j < a.channels; ++j) {
    std::int32_t* out_t = a.out_t + j * a.ld;
    for (std::int64_t r = 0; r < rows; ++r) out_t[r] = 0;
    for (std::int64_t e = a.start[j]; e < a.start[j + 1]; ++e) {
      const QgemmTailBlock& b = a.blocks[e];
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::uint8_t* x =
            a.x.data + (r / kG) * a.x.k_blocks * 64 + b.k_block * 64 + (r % kG) * kB;
        out_t[r] += dot4(x, b.codes);
      }
    }
  }
}

void epilogue(const EpilogueArgs& a) {
  for (std::int64_t j = 0; j < a.channels; ++j) {
    for (std::int64_t r = 0; r < a.rows; ++r) {
      const std::int64_t i = j * a.ld + r;
      const bool tail = a.acc_t != nullptr;
      const float y = scalar_epilogue::value(
          a.acc[i], a.zero_c[j], a.alpha_c[j], tail, tail ? a.acc_t[i] : 0,
          tail ? a.zero_t[j] : 0, tail ? a.alpha_t[j] : 0.0f, a.row_sums[r], a.row_zero,
          a.gamma[j], a.beta[j]);
      if (!a.q) {
        a.y[i] = y;
        continue;
      }
      a.q[i] = scalar_epilogue::requantize(y, a.out_scale, a.out_zero, a.out_low);
    }
  }
}

const IsaKernels kScalar{QgemmPath::Scalar, false, dense, tail, epilogue, nullptr, nullptr,
                         nullptr, nullptr};

}  // namespace

const IsaKernels* scalar_kernels() { return &kScalar; }

}  // namespace qgemm_detail
}  // namespace prism
