// AVX2 + FMA path of the FP32 folded convolution. Compiled with -mavx2 -mfma (this file only)
// and chosen at run time when cpu_features().avx2. The AVX-512 scheme (fold_conv_avx512.cpp) on
// 8-lane vectors: 8 output pixels per ymm, vmovsldup / vmovshdup for the two fold columns, a
// broadcast weight pair per phase; 6 output channels × 2 rows = 12 accumulators of 16 registers.
#include "prism/fold_conv.hpp"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

namespace prism {
namespace fold_conv_detail {
namespace {

inline __m256 pair(const float* p) {
  return _mm256_castpd_ps(_mm256_broadcast_sd(reinterpret_cast<const double*>(p)));
}

// Lane e of a load at column col is read when col + e lies in [0, width): all-ones lanes.
inline __m256i column_mask(std::int64_t col, std::int64_t width) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i c = _mm256_add_epi32(lane, _mm256_set1_epi32(static_cast<int>(col)));
  const __m256i ge0 = _mm256_cmpgt_epi32(c, _mm256_set1_epi32(-1));
  const __m256i ltw = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(width)), c);
  return _mm256_and_si256(ge0, ltw);
}

void tile(const F32Task& t, std::int64_t x0) {
  const std::int64_t hw = t.height * t.width, hf_in = t.height / 2, k = t.kernel;
  const std::int64_t ci_n = t.in_channels;
  __m256 acc[kFoldBlock][2];
#pragma GCC unroll 8
  for (int c = 0; c < kFoldBlock; ++c)
#pragma GCC unroll 2
    for (int py = 0; py < 2; ++py) acc[c][py] = pair(t.bias + (c * 2 + py) * 2);
  for (std::int64_t kh = 0; kh < k; ++kh) {
    const std::int64_t fr = t.i + kh * t.dilation - t.padding;
    if (fr < 0 || fr >= hf_in) continue;  // zero padding rows add nothing
    for (int bh = 0; bh < 2; ++bh) {
      const std::int64_t row = 2 * fr + bh;
      for (std::int64_t kw = 0; kw < k; ++kw) {
        const std::int64_t col0 = x0 + 2 * (kw * t.dilation - t.padding);
        if (col0 + 8 <= 0 || col0 >= t.width) continue;
        const __m256i m = column_mask(col0, t.width);
        const float* src = t.x + row * t.width + col0;
        const float* wp = t.w + ((kh * k + kw) * 2 + bh) * ci_n * 48;
        for (std::int64_t ci = 0; ci < ci_n; ++ci, src += hw, wp += 48) {
          const __m256 raw = _mm256_maskload_ps(src, m);
          const __m256 e0 = _mm256_moveldup_ps(raw), e1 = _mm256_movehdup_ps(raw);
#pragma GCC unroll 8
          for (int c = 0; c < kFoldBlock; ++c)
#pragma GCC unroll 2
            for (int py = 0; py < 2; ++py) {
              acc[c][py] = _mm256_fmadd_ps(e0, pair(wp + (c * 2 + py) * 2), acc[c][py]);
              acc[c][py] =
                  _mm256_fmadd_ps(e1, pair(wp + ((kFoldBlock + c) * 2 + py) * 2), acc[c][py]);
            }
        }
      }
    }
  }
  const __m256i store = column_mask(x0, t.out_width);
  const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 8
  for (int c = 0; c < kFoldBlock; ++c) {
    if (c >= t.co_count) break;
#pragma GCC unroll 2
    for (int py = 0; py < 2; ++py) {
      float* dst = t.y + ((t.co0 + c) * t.out_height + 2 * t.i + py) * t.out_width + x0;
      const __m256 r = t.relu ? _mm256_max_ps(acc[c][py], zero) : acc[c][py];
      _mm256_maskstore_ps(dst, store, r);
    }
  }
}

void f32_task(const F32Task& t) {
  for (std::int64_t x0 = 0; x0 < t.out_width; x0 += 8) tile(t, x0);
}

const FoldConvIsa kAvx2{FoldConvPath::Avx2, f32_task, nullptr, nullptr, nullptr, nullptr};

}  // namespace

const FoldConvIsa* fold_conv_avx2() { return &kAvx2; }

}  // namespace fold_conv_detail
}  // namespace prism

#else

namespace prism {
namespace fold_conv_detail {
const FoldConvIsa* fold_conv_avx2() { return nullptr; }
}  // namespace fold_conv_detail
}  // namespace prism

#endif
