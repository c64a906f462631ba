// AVX-512F paths of the FP32 folded convolution: direct (avx512) and Winograd F(2×2, 3×3)
// (avx512_winograd) or F(4×4, 3×3) (avx512_winograd4). Compiled with -mavx512f (this file only)
// and chosen at run time when cpu_features().avx512f.
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
          const char* ahead = reinterpret_cast<const char*>(src + kPrefetch * hw);
          _mm_prefetch(ahead, _MM_HINT_T0);
          if (V == 2) _mm_prefetch(ahead + 64, _MM_HINT_T0);
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

// ---------------------------------------------------------------- Winograd F(2×2, 3×3) --
// Lanes are tiles. The fold is in the driver's pixel blocks (WinoTask::pixel_blocks: folded
// input (row r, column c) of folded channel ci·4 + bh·2 + bw is x[ci][2r + bh][2c + bw], the
// four phases of a pixel side by side), which the input transform reads 16 bytes per tile and
// point and transposes into lanes (gathers cost ~25 loads' time each on Intel cores with the
// gather-data-sampling fix); the unfold is in the output's scatter indices.

constexpr int kWinoBlock = 12;  // folded output channels per weight block

inline __m512 w_add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
inline __m512 w_sub(__m512 a, __m512 b) { return _mm512_sub_ps(a, b); }
inline __m512 w_fma(__m512 c, __m512 x, float k) {
  return _mm512_fmadd_ps(_mm512_set1_ps(k), x, c);
}
inline __m512 w_fms(__m512 c, __m512 x, float k) {
  return _mm512_fnmadd_ps(_mm512_set1_ps(k), x, c);
}
inline __m512 w_load(const float* p, __m512) { return _mm512_loadu_ps(p); }
inline __m512 w_relu(__m512 a) { return _mm512_max_ps(a, _mm512_setzero_ps()); }
#include "wino_1d.inc"

template <int A>
void wino_input_t(const WinoTask& t, std::int64_t tv, std::int64_t c0, std::int64_t c1) {
  constexpr int P = A * A;
  std::int64_t lane[16], point[36];
  wino_block_offsets(t, tv, lane, point);
  // Lane l of fold phase q from the four 4-lane groups z0..z3 (lane 4g + m holds its phases at
  // 4m .. 4m + 3 of z_g): lanes 0–7 from (z0, z1), lanes 8–15 from (z2, z3).
  __m512i pick[4];
  for (int q = 0; q < 4; ++q) {
    pick[q] = _mm512_add_epi32(
        _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28),
        _mm512_set1_epi32(q));
  }
  const std::int64_t fin = 4 * t.in_channels, plane = t.block_rows * t.block_cols * 4;
  const std::int64_t xi_stride = t.tile_vectors * fin * 16;
  alignas(64) float points[4][P][16];  // [fold phase q][point a·α + b][lane]
  for (std::int64_t ci = c0; ci < c1; ++ci) {
    const float* blocks = t.pixel_blocks + ci * plane;
    for (int k = 0; k < P; ++k) {
      const float* s = blocks + point[k];
      __m512 z[4];
#pragma GCC unroll 4
      for (int g = 0; g < 4; ++g) {
        __m512 v = _mm512_castps128_ps512(_mm_load_ps(s + lane[4 * g]));
        v = _mm512_insertf32x4(v, _mm_load_ps(s + lane[4 * g + 1]), 1);
        v = _mm512_insertf32x4(v, _mm_load_ps(s + lane[4 * g + 2]), 2);
        z[g] = _mm512_insertf32x4(v, _mm_load_ps(s + lane[4 * g + 3]), 3);
      }
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        const __m512 lo = _mm512_permutex2var_ps(z[0], pick[q], z[1]);
        const __m512 hi = _mm512_permutex2var_ps(z[2], pick[q], z[3]);
        _mm512_store_ps(points[q][k], _mm512_mask_blend_ps(0xFF00, lo, hi));
      }
    }
    for (int q = 0; q < 4; ++q) {  // fold phase bh·2 + bw
      __m512 e[P];
#pragma GCC unroll 36
      for (int k = 0; k < P; ++k) e[k] = _mm512_load_ps(points[q][k]);
      // Bᵀ·D·B: columns, then rows.
#pragma GCC unroll 6
      for (int b = 0; b < A; ++b) input_1d<A>(e + b, A);
#pragma GCC unroll 6
      for (int a = 0; a < A; ++a) input_1d<A>(e + a * A, 1);
      float* dst = t.v + (tv * fin + ci * 4 + q) * 16;
#pragma GCC unroll 36
      for (int k = 0; k < P; ++k) _mm512_storeu_ps(dst + k * xi_stride, e[k]);
    }
  }
}

template <int V>
void wino_gemm_tile(const WinoTask& t, std::int64_t xi, std::int64_t b, std::int64_t tv) {
  const std::int64_t fin = 4 * t.in_channels, nf = 4 * t.out_channels;
  const float* u = t.u + (xi * t.blocks + b) * fin * kWinoBlock;
  const float* v = t.v + (xi * t.tile_vectors + tv) * fin * 16;
  __m512 acc[kWinoBlock][V];
#pragma GCC unroll 12
  for (int r = 0; r < kWinoBlock; ++r)
#pragma GCC unroll 2
    for (int k = 0; k < V; ++k) acc[r][k] = _mm512_setzero_ps();
  for (std::int64_t cf = 0; cf < fin; ++cf, u += kWinoBlock) {
    __m512 x[V];
#pragma GCC unroll 2
    for (int k = 0; k < V; ++k) x[k] = _mm512_loadu_ps(v + (k * fin + cf) * 16);
#pragma GCC unroll 12
    for (int r = 0; r < kWinoBlock; ++r) {
      const __m512 w = _mm512_set1_ps(u[r]);
#pragma GCC unroll 2
      for (int k = 0; k < V; ++k) acc[r][k] = _mm512_fmadd_ps(x[k], w, acc[r][k]);
    }
  }
  const std::int64_t n0 = b * kWinoBlock;
  float* m = t.m + ((xi * t.tile_vectors + tv) * nf + n0) * 16;
#pragma GCC unroll 12
  for (int r = 0; r < kWinoBlock; ++r) {
    if (n0 + r >= nf) break;
#pragma GCC unroll 2
    for (int k = 0; k < V; ++k) _mm512_storeu_ps(m + (k * nf + r) * 16, acc[r][k]);
  }
}

void wino_gemm(const WinoTask& t, std::int64_t xi, std::int64_t b) {
  std::int64_t tv = 0;
  for (; tv + 1 < t.tile_vectors; tv += 2) wino_gemm_tile<2>(t, xi, b, tv);
  if (tv < t.tile_vectors) wino_gemm_tile<1>(t, xi, b, tv);
}

template <int M>
void wino_output_t(const WinoTask& t, std::int64_t tv, std::int64_t n0, std::int64_t n1) {
  constexpr int A = M + 2;
  const std::int64_t v = tv % t.image_vectors;  // the vector within its image
  float* const y_image = t.y + (tv / t.image_vectors) * t.image_out_stride;
  const __m512i ti = _mm512_loadu_si512(t.tile_i + 16 * v);
  const __m512i tj = _mm512_loadu_si512(t.tile_j + 16 * v);
  const __mmask16 lanes = _mm512_cmpge_epi32_mask(ti, _mm512_setzero_si512());
  const int d = static_cast<int>(t.dilation);
  const int out_w = static_cast<int>(2 * t.folded_out_width);
  const __m512i hf = _mm512_set1_epi32(static_cast<int>(t.folded_out_height));
  const __m512i wf = _mm512_set1_epi32(static_cast<int>(t.folded_out_width));
  __m512i idx[M * M];
  __mmask16 msk[M * M];
  for (int a = 0; a < M; ++a) {
    const __m512i row = _mm512_add_epi32(ti, _mm512_set1_epi32(a * d));
    const __mmask16 rm = lanes & _mm512_cmplt_epi32_mask(row, hf);
    for (int b = 0; b < M; ++b) {
      const __m512i col = _mm512_add_epi32(tj, _mm512_set1_epi32(b * d));
      msk[a * M + b] = rm & _mm512_cmplt_epi32_mask(col, wf);
      idx[a * M + b] = _mm512_add_epi32(_mm512_mullo_epi32(row, _mm512_set1_epi32(2 * out_w)),
                                        _mm512_add_epi32(col, col));
    }
  }
  const std::int64_t nf = 4 * t.out_channels;
  const std::int64_t xi_stride = t.tile_vectors * nf * 16;
  const std::int64_t out_plane = 4 * t.folded_out_height * t.folded_out_width;
  for (std::int64_t n = n0; n < n1; ++n) {
    __m512 y[M * M];
    output_2d<A>(t.m + (tv * nf + n) * 16, xi_stride, _mm512_set1_ps(t.bias[n]), t.relu, y);
    float* base = y_image + (n / 4) * out_plane + ((n / 2) % 2) * out_w + (n % 2);
#pragma GCC unroll 16
    for (int k = 0; k < M * M; ++k) _mm512_mask_i32scatter_ps(base, msk[k], idx[k], y[k], 4);
  }
}

const FoldConvIsa kAvx512{FoldConvPath::Avx512, f32_task, nullptr, nullptr, nullptr, nullptr};
const FoldConvIsa kAvx512Winograd{FoldConvPath::Avx512Winograd, f32_task, nullptr,
    wino_input_t<4>, wino_gemm, wino_output_t<2>, false, 2};
const FoldConvIsa kAvx512Winograd4{FoldConvPath::Avx512Winograd4, f32_task, nullptr,
    wino_input_t<6>, wino_gemm, wino_output_t<4>, false, 4};

}  // namespace

const FoldConvIsa* fold_conv_avx512() { return &kAvx512; }
const FoldConvIsa* fold_conv_avx512_winograd() { return &kAvx512Winograd; }
const FoldConvIsa* fold_conv_avx512_winograd4() { return &kAvx512Winograd4; }

}  // namespace fold_conv_detail
}  // namespace prism

#else

namespace prism {
namespace fold_conv_detail {
const FoldConvIsa* fold_conv_avx512() { return nullptr; }
const FoldConvIsa* fold_conv_avx512_winograd() { return nullptr; }
const FoldConvIsa* fold_conv_avx512_winograd4() { return nullptr; }
}  // namespace fold_conv_detail
}  // namespace prism

#endif
