// AVX-512F path of the FP32 folded convolution. Compiled with -mavx512f (this file only) and
// chosen at run time when cpu_features().avx512f.
//
// A zmm holds 16 consecutive output pixels of one output row: 8 folded positions × 2 phases px.
// One masked load of 16 input pixels (row 2·(i + kh·d − p) + bh, starting at the tap's column)
// gives both fold columns bw at once: vmovsldup duplicates the even pixels (bw = 0) and
// vmovshdup the odd ones (bw = 1) into both lanes of each pair, and the weight is the broadcast
// 64-bit pair (w[px = 0], w[px = 1]). Register tile: 6 output channels × 2 output rows (py) ×
// V vectors = 12·V accumulators; zero padding is the load mask.
#include "prism/fold_conv.hpp"

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>

#include <cstring>

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593, see qgemm_avx512vnni

namespace prism {
namespace fold_conv_detail {
namespace {

inline __m512 pair(const float* p) {
  double d;
  std::memcpy(&d, p, 8);
  return _mm512_castpd_ps(_mm512_set1_pd(d));
}

// Lanes e of a load at column col (e < 16) that lie inside [0, width).
inline __mmask16 column_mask(std::int64_t col, std::int64_t width) {
  const std::int64_t lo = col < 0 ? -col : 0;
  const std::int64_t hi = width - col;  // lanes e < hi are inside
  if (lo >= 16 || hi <= 0) return 0;
  const unsigned upper = hi >= 16 ? 0xFFFFu : ((1u << hi) - 1u);
  const unsigned lower = 0xFFFFu << lo;
  return static_cast<__mmask16>(upper & lower);
}

constexpr int kPrefetch = 4;  // input channels ahead

template <int V>
void tile(const F32Task& t, std::int64_t x0) {
  const std::int64_t hw = t.height * t.width, hf_in = t.height / 2, k = t.kernel;
  const std::int64_t ci_n = t.in_channels;
  __m512 acc[kFoldBlock][2][V];
#pragma GCC unroll 8
  for (int c = 0; c < kFoldBlock; ++c)
#pragma GCC unroll 2
    for (int py = 0; py < 2; ++py) {
      const __m512 b = pair(t.bias + (c * 2 + py) * 2);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[c][py][v] = b;
    }
  for (std::int64_t kh = 0; kh < k; ++kh) {
    const std::int64_t fr = t.i + kh * t.dilation - t.padding;
    if (fr < 0 || fr >= hf_in) continue;  // zero padding rows add nothing
    for (int bh = 0; bh < 2; ++bh) {
      const std::int64_t row = 2 * fr + bh;
      for (std::int64_t kw = 0; kw < k; ++kw) {
        const std::int64_t col0 = x0 + 2 * (kw * t.dilation - t.padding);
        __mmask16 m[V];
        bool any = false;
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) {
          m[v] = column_mask(col0 + 16 * v, t.width);
          any = any || m[v] != 0;
        }
        if (!any) continue;
        const float* src = t.x + row * t.width + col0;
        const float* wp = t.w + ((kh * k + kw) * 2 + bh) * ci_n * 48;
        for (std::int64_t ci = 0; ci < ci_n; ++ci, src += hw, wp += 48) {
          // The channel planes are H·W apart: the hardware prefetcher does not follow them.
          _mm_prefetch(reinterpret_cast<const char*>(src + kPrefetch * hw), _MM_HINT_T0);
          if (V == 2) _mm_prefetch(reinterpret_cast<const char*>(src + kPrefetch * hw + 16), _MM_HINT_T0);
          __m512 e0[V], e1[V];
#pragma GCC unroll 4
          for (int v = 0; v < V; ++v) {
            const __m512 raw = _mm512_maskz_loadu_ps(m[v], src + 16 * v);
            e0[v] = _mm512_moveldup_ps(raw);
            e1[v] = _mm512_movehdup_ps(raw);
          }
#pragma GCC unroll 8
          for (int c = 0; c < kFoldBlock; ++c)
#pragma GCC unroll 2
            for (int py = 0; py < 2; ++py) {
              const __m512 w0 = pair(wp + (c * 2 + py) * 2);
              const __m512 w1 = pair(wp + ((kFoldBlock + c) * 2 + py) * 2);
#pragma GCC unroll 4
              for (int v = 0; v < V; ++v) {
                acc[c][py][v] = _mm512_fmadd_ps(e0[v], w0, acc[c][py][v]);
                acc[c][py][v] = _mm512_fmadd_ps(e1[v], w1, acc[c][py][v]);
              }
            }
        }
      }
    }
  }
  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int c = 0; c < kFoldBlock; ++c) {
    if (c >= t.co_count) break;
#pragma GCC unroll 2
    for (int py = 0; py < 2; ++py) {
      float* dst = t.y + ((t.co0 + c) * t.out_height + 2 * t.i + py) * t.out_width + x0;
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) {
        const __mmask16 store = column_mask(x0 + 16 * v, t.out_width);
        const __m512 r = t.relu ? _mm512_max_ps(acc[c][py][v], zero) : acc[c][py][v];
        _mm512_mask_storeu_ps(dst + 16 * v, store, r);
      }
    }
  }
}

void f32_task(const F32Task& t) {
  std::int64_t x0 = 0;
  for (; x0 + 16 < t.out_width; x0 += 32) tile<2>(t, x0);
  if (x0 < t.out_width) tile<1>(t, x0);
}

const FoldConvIsa kAvx512{FoldConvPath::Avx512, f32_task, nullptr};

}  // namespace

const FoldConvIsa* fold_conv_avx512() { return &kAvx512; }

}  // namespace fold_conv_detail
}  // namespace prism

#else

namespace prism {
namespace fold_conv_detail {
const FoldConvIsa* fold_conv_avx512() { return nullptr; }
}  // namespace fold_conv_detail
}  // namespace prism

#endif
