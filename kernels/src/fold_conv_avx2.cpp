// AVX2 path of the folded convolution, FP32 and integer. Compiled with -mavx2 -mfma (this file
// only) and chosen at run time when cpu_features().avx2 (and, for the integer kernel, no AVX-512
// VNNI).
//
// FP32: the AVX-512 scheme (fold_conv_avx512.cpp) on 8-lane vectors: 8 output pixels per ymm,
// vmovsldup / vmovshdup for the two fold columns, a broadcast weight pair per phase; 6 output
// channels × 2 rows = 12 accumulators of 16 registers.
//
// Integer: the AVX-512 VNNI scheme (fold_conv_avx512vnni.cpp) with each 16-pixel vector of the
// task as two ymm halves, and vpmaddubsw + vpmaddwd in place of vpdpbusd. vpmaddubsw adds two
// u8×s8 products into int16 with saturation, so the kernel bounds them: the int16 results of
// runs of QTask::int16_groups groups (32767 / (2·255·max|code|): 9 for 4-bit codes) are summed
// before vpmaddwd widens them, and for codes beyond ±64 (where even one pair could saturate)
// the pack splits each activation into nibbles, x = 16·high + low, whose products sum in runs
// of 8 (int8 codes and 8-bit PWLQ: 2 vpmaddubsw per product pair; the split into codes clamped
// to ±64 and the rest took 2 vpmaddubsw, 2 vpmaddwd and the clamps). The same 4-byte-group
// buffer (one 64-byte aligned row per tap, input channel and vector), filled by masked loads
// from the padded planes; dense register tiles of one vector (half a vector for nibbles) × 4
// folded channels; the sparse tail per channel against all the task's halves; the unfold is an
// interleaving store. Bit-exact with the scalar path.
#include "prism/fold_conv.hpp"
#include "fold_q_common.hpp"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include <cstring>

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

// ---------------------------------------------------------------- Winograd F(2×2, 3×3) --
// The AVX-512 phases (fold_conv_avx512.cpp) on the same 16-tile vectors, each as two ymm halves
// of 8 tiles. The input transform reads the driver's pixel blocks with 16-byte loads; the output
// transform has no scatter instruction in AVX2, so its 4 results per tile are written by a
// scalar loop over precomputed indices (the output is 1/(4·C_in) of the transformed input's
// size). GEMM register tile: one
// tile vector (2 ymm) × 6 folded output channels, twice per block of 12.

constexpr int kWinoBlock = 12;  // folded output channels per weight block

inline __m256 w_add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
inline __m256 w_sub(__m256 a, __m256 b) { return _mm256_sub_ps(a, b); }
inline __m256 w_fma(__m256 c, __m256 x, float k) {
  return _mm256_fmadd_ps(_mm256_set1_ps(k), x, c);
}
inline __m256 w_fms(__m256 c, __m256 x, float k) {
  return _mm256_fnmadd_ps(_mm256_set1_ps(k), x, c);
}
inline __m256 w_load(const float* p, __m256) { return _mm256_loadu_ps(p); }
inline __m256 w_relu(__m256 a) { return _mm256_max_ps(a, _mm256_setzero_ps()); }
#include "wino_1d.inc"

template <int A>
void wino_input_t(const WinoTask& t, std::int64_t tv, std::int64_t c0, std::int64_t c1) {
  // As the AVX-512 input transform: per lane (tile) and point (a, b) one 16-byte load of the
  // pixel block (its four fold phases), here for 8 lanes at a time, transposed by a 4×4
  // transpose in each 128-bit half (half 0: lanes 0–3, half 1: lanes 4–7 of the 8).
  constexpr int P = A * A;
  std::int64_t lane[16], point[36];
  wino_block_offsets(t, tv, lane, point);
  const std::int64_t fin = 4 * t.in_channels, plane = t.block_rows * t.block_cols * 4;
  const std::int64_t xi_stride = t.tile_vectors * fin * 16;
  alignas(32) float points[4][P][8];  // [fold phase q][point a·α + b][lane]
  for (int h = 0; h < 2; ++h) {
    const std::int64_t* ln = lane + 8 * h;
    for (std::int64_t ci = c0; ci < c1; ++ci) {
      const float* blocks = t.pixel_blocks + ci * plane;
      for (int k = 0; k < P; ++k) {
        const float* s = blocks + point[k];
        __m256 z[4];
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g) {
          z[g] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_load_ps(s + ln[g])),
                                      _mm_load_ps(s + ln[4 + g]), 1);
        }
        const __m256 t0 = _mm256_unpacklo_ps(z[0], z[1]), t1 = _mm256_unpackhi_ps(z[0], z[1]);
        const __m256 t2 = _mm256_unpacklo_ps(z[2], z[3]), t3 = _mm256_unpackhi_ps(z[2], z[3]);
        _mm256_store_ps(points[0][k], _mm256_shuffle_ps(t0, t2, 0x44));
        _mm256_store_ps(points[1][k], _mm256_shuffle_ps(t0, t2, 0xEE));
        _mm256_store_ps(points[2][k], _mm256_shuffle_ps(t1, t3, 0x44));
        _mm256_store_ps(points[3][k], _mm256_shuffle_ps(t1, t3, 0xEE));
      }
      for (int q = 0; q < 4; ++q) {  // fold phase bh·2 + bw
        __m256 e[P];
#pragma GCC unroll 36
        for (int k = 0; k < P; ++k) e[k] = _mm256_load_ps(points[q][k]);
        // Bᵀ·D·B: columns, then rows.
#pragma GCC unroll 6
        for (int b = 0; b < A; ++b) input_1d<A>(e + b, A);
#pragma GCC unroll 6
        for (int a = 0; a < A; ++a) input_1d<A>(e + a * A, 1);
        float* dst = t.v + (tv * fin + ci * 4 + q) * 16 + 8 * h;
#pragma GCC unroll 36
        for (int k = 0; k < P; ++k) _mm256_storeu_ps(dst + k * xi_stride, e[k]);
      }
    }
  }
}

// Folded output channels [r0, r0 + 6) of block b over tile vector tv.
void wino_gemm_tile(const WinoTask& t, std::int64_t xi, std::int64_t b, std::int64_t tv,
                    int r0) {
  const std::int64_t fin = 4 * t.in_channels, nf = 4 * t.out_channels;
  const float* u = t.u + (xi * t.blocks + b) * fin * kWinoBlock + r0;
  const float* v = t.v + (xi * t.tile_vectors + tv) * fin * 16;
  __m256 acc[6][2];
#pragma GCC unroll 6
  for (int r = 0; r < 6; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (std::int64_t cf = 0; cf < fin; ++cf, u += kWinoBlock, v += 16) {
    const __m256 x0 = _mm256_loadu_ps(v), x1 = _mm256_loadu_ps(v + 8);
#pragma GCC unroll 6
    for (int r = 0; r < 6; ++r) {
      const __m256 w = _mm256_broadcast_ss(u + r);
      acc[r][0] = _mm256_fmadd_ps(x0, w, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(x1, w, acc[r][1]);
    }
  }
  const std::int64_t n0 = b * kWinoBlock + r0;
  float* m = t.m + ((xi * t.tile_vectors + tv) * nf + n0) * 16;
#pragma GCC unroll 6
  for (int r = 0; r < 6; ++r) {
    if (n0 + r >= nf) break;
    _mm256_storeu_ps(m + r * 16, acc[r][0]);
    _mm256_storeu_ps(m + r * 16 + 8, acc[r][1]);
  }
}

void wino_gemm(const WinoTask& t, std::int64_t xi, std::int64_t b) {
  const std::int64_t nf = 4 * t.out_channels;
  for (std::int64_t tv = 0; tv < t.tile_vectors; ++tv) {
    wino_gemm_tile(t, xi, b, tv, 0);
    if (b * kWinoBlock + 6 < nf) wino_gemm_tile(t, xi, b, tv, 6);
  }
}

template <int M>
void wino_output_t(const WinoTask& t, std::int64_t tv, std::int64_t n0, std::int64_t n1) {
  constexpr int A = M + 2;
  std::int64_t idx[16][16];  // [result a·M + b][tile]
  wino_output_offsets(t, tv, idx);
  const std::int64_t nf = 4 * t.out_channels;
  const std::int64_t xi_stride = t.tile_vectors * nf * 16;
  for (std::int64_t n = n0; n < n1; ++n) {
    const float* m = t.m + (tv * nf + n) * 16;
    const __m256 bias = _mm256_set1_ps(t.bias[n]);
    alignas(32) float y[16][16];
    for (int h = 0; h < 2; ++h) {
      __m256 r[M * M];
      output_2d<A>(m + 8 * h, xi_stride, bias, t.relu, r);
#pragma GCC unroll 16
      for (int k = 0; k < M * M; ++k) _mm256_store_ps(y[k] + 8 * h, r[k]);
    }
    wino_store_results(t, n, idx, y);
  }
}

// ---------------------------------------------------------------------------------- integer --


#include "avx2_int.inc"

// All-ones 32-bit lanes e (0..7) of half h where lane 8h + e lies in [l0, l1).
inline __m256i lanes_mask(std::int64_t l0, std::int64_t l1, int h) {
  const __m256i lane = _mm256_setr_epi32(8 * h, 8 * h + 1, 8 * h + 2, 8 * h + 3, 8 * h + 4,
                                         8 * h + 5, 8 * h + 6, 8 * h + 7);
  return _mm256_and_si256(_mm256_cmpgt_epi32(lane, _mm256_set1_epi32(static_cast<int>(l0 - 1))),
                          _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(l1)), lane));
}

// Stores 32 activation bytes at dst in the task's buffer: as they are, or with wide codes their
// low nibbles there and their high nibbles at the same place in buffer_high.
inline void put(const QTask& t, std::uint8_t* dst, __m256i x) {
  if (!t.buffer_high) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst), x);
    return;
  }
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  _mm256_store_si256(reinterpret_cast<__m256i*>(dst), _mm256_and_si256(x, nibble));
  _mm256_store_si256(reinterpret_cast<__m256i*>(t.buffer_high + (dst - t.buffer)),
                     _mm256_and_si256(_mm256_srli_epi16(x, 4), nibble));
}

// Fills the buffer rows of kernel rows [kh0, kh1) as the AVX-512 pack does: per tap, input
// channel and vector, its row segments from the padded planes (two plain loads for a vector
// in one row, else masked loads blended over zx; masked lanes are not read).
void pack(const QTask& t, const QTaskSegments& segs, std::int64_t kh0, std::int64_t kh1) {
  const std::int64_t k = t.kernel, ci_n = t.in_channels, d = t.dilation;
  const std::int64_t wp = t.plane_width, plane = t.plane_height * wp * 4;
  const __m256i pad = _mm256_set1_epi8(static_cast<char>(t.zx));
  const auto base = reinterpret_cast<std::uintptr_t>(t.planes);
  for (std::int64_t kh = kh0; kh < kh1; ++kh) {
    for (std::int64_t kw = 0; kw < k; ++kw) {
      for (std::int64_t v = 0; v < t.vectors; ++v) {
        std::uint8_t* dst = t.buffer + v * 64 + (kh * k + kw) * ci_n * kRow;
        const int count = segs.count[v];
        std::int64_t off[16];
        __m256i mask[16][2];
        for (int s = 0; s < count; ++s) {
          const QSegment& g = segs.seg[v][s];
          off[s] = ((g.i + kh * d) * wp + g.j + kw * d - g.l0) * 4;
          mask[s][0] = lanes_mask(g.l0, g.l1, 0);
          mask[s][1] = lanes_mask(g.l0, g.l1, 1);
        }
        if (full(segs, v)) {
          for (std::int64_t ci = 0; ci < ci_n; ++ci, dst += kRow) {
            const auto* src = reinterpret_cast<const __m256i*>(base + ci * plane + off[0]);
            put(t, dst, _mm256_loadu_si256(src));
            put(t, dst + 32, _mm256_loadu_si256(src + 1));
          }
          continue;
        }
        for (std::int64_t ci = 0; ci < ci_n; ++ci, dst += kRow) {
          for (int h = 0; h < 2; ++h) {
            __m256i x = pad;
            for (int s = 0; s < count; ++s) {
              const auto* src = reinterpret_cast<const int*>(base + ci * plane + off[s]) + 8 * h;
              x = _mm256_blendv_epi8(x, _mm256_maskload_epi32(src, mask[s][h]), mask[s][h]);
            }
            put(t, dst + 32 * h, x);
          }
        }
      }
    }
  }
}

// Scratch of dense and tail sums: [vector][folded channel NB][16 lanes].
constexpr std::int64_t slot(std::int64_t v, std::int64_t nl) { return 16 * (v * NB + nl); }

inline void store16(std::int32_t* out, __m256i lo, __m256i hi) {
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), lo);
  _mm256_store_si256(reinterpret_cast<__m256i*>(out + 8), hi);
}

// The dense pass of folded channels [c0, c0 + 4) of block b over vector v: out[v][n][lane] =
// Σ x·W0 over kernel rows [kh0, kh1), the others added as zx·row_sums. Runs of up to `run`
// groups sum their vpmaddubsw int16 pairs before vpmaddwd widens them into the int32
// accumulators (which GCC keeps in memory: they are touched once per run).
__attribute__((noinline)) void dense_tile(const QTask& t, std::int64_t b, std::int64_t v,
                                          std::int64_t c0, std::int64_t kh0, std::int64_t kh1,
                                          std::int32_t* out) {
  const std::int64_t k = t.kernel, ci_n = t.in_channels, run = t.int16_groups;
  const __m256i ones = _mm256_set1_epi16(1);
  const std::int8_t* wp = t.dense + (b * k + kh0) * k * ci_n * NB * 4 + 4 * c0;
  const std::uint8_t* xg = t.buffer + v * 64 + kh0 * k * ci_n * kRow;
  __m256i a[2][4];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) a[i / 4][i % 4] = _mm256_setzero_si256();
  for (std::int64_t g = (kh1 - kh0) * k * ci_n; g > 0;) {
    const std::int64_t r = g < run ? g : run;
    __m256i s[2][4];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) s[i / 4][i % 4] = _mm256_setzero_si256();
    for (std::int64_t i = 0; i < r; ++i) {
      const __m256i x0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(xg + i * kRow));
      const __m256i x1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(xg + i * kRow + 32));
#pragma GCC unroll 4
      for (int n = 0; n < 4; ++n) {
        const __m256i w = _mm256_set1_epi32(load_i32(wp + i * NB * 4 + 4 * n));
        PRISM_PADDW(s[0][n], _mm256_maddubs_epi16(x0, w));
        PRISM_PADDW(s[1][n], _mm256_maddubs_epi16(x1, w));
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      a[i / 4][i % 4] =
          _mm256_add_epi32(a[i / 4][i % 4], _mm256_madd_epi16(s[i / 4][i % 4], ones));
    }
    g -= r;
    xg += r * kRow;
    wp += r * NB * 4;
  }
#pragma GCC unroll 4
  for (int n = 0; n < 4; ++n) {
    const __m256i pad =
        _mm256_set1_epi32(q_row_code_sum(t, t.row_sums, b * NB + c0 + n, kh0, kh1, 0));
    store16(out + slot(v, c0 + n), _mm256_add_epi32(a[0][n], pad), _mm256_add_epi32(a[1][n], pad));
  }
}

// The same for wide codes, on the activations' nibbles: x·w = 16·(high·w) + low·w, each
// vpmaddubsw pair sum at most 2·15·128 in magnitude, so runs of int16_groups (≥ 8) groups add up
// exactly. One half h of vector v (8 pixels) × folded channels [c0, c0 + 4) per call: 8 int16
// sums, and each group's 2 activation loads serve 8 vpmaddubsw.
__attribute__((noinline)) void dense_tile_wide(const QTask& t, std::int64_t b, std::int64_t v,
                                               int h, std::int64_t c0, std::int64_t kh0,
                                               std::int64_t kh1, std::int32_t* out) {
  const std::int64_t k = t.kernel, ci_n = t.in_channels, run = t.int16_groups;
  const __m256i ones = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
  const std::int8_t* wp = t.dense + (b * k + kh0) * k * ci_n * NB * 4 + 4 * c0;
  const std::int64_t offset = v * 64 + 32 * h + kh0 * k * ci_n * kRow;
  const std::uint8_t* xl = t.buffer + offset;
  const std::uint8_t* xh = t.buffer_high + offset;
  __m256i a[4];
#pragma GCC unroll 4
  for (int n = 0; n < 4; ++n) a[n] = _mm256_setzero_si256();
  for (std::int64_t g = (kh1 - kh0) * k * ci_n; g > 0;) {
    const std::int64_t r = g < run ? g : run;
    __m256i sl[4], sh[4];
#pragma GCC unroll 4
    for (int n = 0; n < 4; ++n) sl[n] = sh[n] = _mm256_setzero_si256();
    for (std::int64_t i = 0; i < r; ++i) {
      const __m256i lo = _mm256_load_si256(reinterpret_cast<const __m256i*>(xl + i * kRow));
      const __m256i hi = _mm256_load_si256(reinterpret_cast<const __m256i*>(xh + i * kRow));
#pragma GCC unroll 4
      for (int n = 0; n < 4; ++n) {
        const __m256i w = _mm256_set1_epi32(load_i32(wp + i * NB * 4 + 4 * n));
        PRISM_PADDW(sl[n], _mm256_maddubs_epi16(lo, w));
        PRISM_PADDW(sh[n], _mm256_maddubs_epi16(hi, w));
      }
    }
#pragma GCC unroll 4
    for (int n = 0; n < 4; ++n) {
      a[n] = _mm256_add_epi32(a[n], _mm256_add_epi32(_mm256_madd_epi16(sl[n], ones),
                                                     _mm256_madd_epi16(sh[n], sixteen)));
    }
    g -= r;
    xl += r * kRow;
    xh += r * kRow;
    wp += r * NB * 4;
  }
#pragma GCC unroll 4
  for (int n = 0; n < 4; ++n) {
    const __m256i pad =
        _mm256_set1_epi32(q_row_code_sum(t, t.row_sums, b * NB + c0 + n, kh0, kh1, 0));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + slot(v, c0 + n) + 8 * h),
                       _mm256_add_epi32(a[n], pad));
  }
}

// The sparse tail pass of one channel block over the task's H = 2·vectors halves:
// out[vector][nl][lane] = Σ x·W1 over the groups holding a non-zero tail code, kernel rows
// [kh0, kh1) from the lists and the others as zx·tail_row_sums. Runs of up to int16_groups
// list entries in int16, as in the dense pass; with wide codes on the nibbles (Wide), 4 halves
// at a time.
template <bool Wide, int H>
__attribute__((noinline)) void tail_block(const QTask& t, std::int64_t b, std::int64_t channels,
                                          std::int64_t kh0, std::int64_t kh1,
                                          std::int32_t* out) {
  constexpr int P = Wide ? (H < 4 ? H : 4) : H;  // halves per pass over a list
  const std::int64_t k = t.kernel, run = t.int16_groups;
  const __m256i ones = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
  for (std::int64_t nl = 0; nl < channels; ++nl) {
    const std::int64_t n = b * NB + nl;
    const FoldTailGroup* first = t.tail_groups + t.tail_start[n * k + kh0];
    const FoldTailGroup* end = t.tail_groups + t.tail_start[n * k + kh1];
    const __m256i pad = _mm256_set1_epi32(q_row_code_sum(t, t.tail_row_sums, n, kh0, kh1, 0));
    for (int h0 = 0; h0 < H; h0 += P) {
      __m256i a[P];
#pragma GCC unroll 8
      for (int h = 0; h < P; ++h) a[h] = _mm256_setzero_si256();
      for (const FoldTailGroup* e = first; e < end;) {
        const FoldTailGroup* stop = end - e > run ? e + run : end;
        __m256i sl[P], sh[P];
#pragma GCC unroll 8
        for (int h = 0; h < P; ++h) sl[h] = sh[h] = _mm256_setzero_si256();
        for (; e < stop; ++e) {
          const std::int64_t at = e->group * kRow + 32 * h0;
          const __m256i w = _mm256_set1_epi32(e->codes);
#pragma GCC unroll 8
          for (int h = 0; h < P; ++h) {
            const auto* lo = reinterpret_cast<const __m256i*>(t.buffer + at + 32 * h);
            PRISM_PADDW(sl[h], _mm256_maddubs_epi16(_mm256_load_si256(lo), w));
            if (Wide) {
              const auto* hi = reinterpret_cast<const __m256i*>(t.buffer_high + at + 32 * h);
              PRISM_PADDW(sh[h], _mm256_maddubs_epi16(_mm256_load_si256(hi), w));
            }
          }
        }
#pragma GCC unroll 8
        for (int h = 0; h < P; ++h) {
          a[h] = _mm256_add_epi32(a[h], _mm256_madd_epi16(sl[h], ones));
          if (Wide) a[h] = _mm256_add_epi32(a[h], _mm256_madd_epi16(sh[h], sixteen));
        }
      }
#pragma GCC unroll 8
      for (int h = 0; h < P; ++h) {
        const int hh = h0 + h;
        _mm256_store_si256(reinterpret_cast<__m256i*>(out + slot(hh / 2, nl) + 8 * (hh % 2)),
                           _mm256_add_epi32(a[h], pad));
      }
    }
  }
}

template <bool Wide>
void tail_pass(const QTask& t, std::int64_t b, std::int64_t channels, std::int64_t kh0,
               std::int64_t kh1, std::int32_t* out) {
  switch (t.vectors) {
    case 1: tail_block<Wide, 2>(t, b, channels, kh0, kh1, out); break;
    case 2: tail_block<Wide, 4>(t, b, channels, kh0, kh1, out); break;
    case 3: tail_block<Wide, 6>(t, b, channels, kh0, kh1, out); break;
    default: tail_block<Wide, 8>(t, b, channels, kh0, kh1, out); break;
  }
}

// Values a[0..16) and b[0..16) of output pixels 2l (px = 0) and 2l + 1 (px = 1) interleaved:
// out[0..4) holds a0 b0 a1 b1 ... a15 b15.
inline void interleave(const __m256i (&a)[2], const __m256i (&b)[2], __m256i (&out)[4]) {
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __m256i lo = _mm256_unpacklo_epi32(a[h], b[h]), hi = _mm256_unpackhi_epi32(a[h], b[h]);
    out[2 * h] = _mm256_permute2x128_si256(lo, hi, 0x20);
    out[2 * h + 1] = _mm256_permute2x128_si256(lo, hi, 0x31);
  }
}

// The interleaved 32-bit values of lanes [l0, l1) of segment g, stored from dst (its first
// output pixel): four plain stores for a whole vector, else masked stores from a copy.
inline void store_segment(std::int32_t* dst, const __m256i (&v)[4], const QSegment& g) {
  if (g.l0 == 0 && g.l1 == 16) {
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 8 * c), v[c]);
    return;
  }
  alignas(32) std::int32_t copy[64];
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) _mm256_store_si256(reinterpret_cast<__m256i*>(copy + 8 * c), v[c]);
  const std::int64_t n = 2 * (g.l1 - g.l0);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (std::int64_t c = 0; c < n; c += 8) {
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - c)), lane);
    _mm256_maskstore_epi32(
        dst + c, m, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(copy + 2 * g.l0 + c)));
  }
}

// The same for 32 interleaved bytes (int32 lanes in 0..255 packed).
inline void store_segment(std::uint8_t* dst, const __m256i (&v)[4], const QSegment& g) {
  const __m256i w01 = _mm256_packus_epi32(v[0], v[1]), w23 = _mm256_packus_epi32(v[2], v[3]);
  // Bytes in 4-byte groups v0[0..4) v1[0..4) v2[0..4) v3[0..4) | v0[4..8) ...: regroup.
  const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(w01, w23),
                                                    _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  if (g.l0 == 0 && g.l1 == 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), bytes);
    return;
  }
  alignas(32) std::uint8_t copy[32];
  _mm256_store_si256(reinterpret_cast<__m256i*>(copy), bytes);
  std::memcpy(dst, copy + 2 * g.l0, static_cast<std::size_t>(2 * (g.l1 - g.l0)));
}

template <class T>
inline void store_pairs(T* base, std::int64_t plane, std::int64_t out_width,
                        const QTaskSegments& segs,
                        std::int64_t v, const __m256i (&a)[2], const __m256i (&b)[2]) {
  __m256i iv[4];
  interleave(a, b, iv);
  for (int s = 0; s < segs.count[v]; ++s) {
    const QSegment& g = segs.seg[v][s];
    // Lane l of the vector moves to lane l − l0: shift the 32 interleaved values by 2·l0.
    store_segment(base + (plane + 2 * g.i) * out_width + 2 * g.j, iv, g);
  }
}

void q_task(const QTask& t) {
  const std::int64_t k = t.kernel, ci_n = t.in_channels;
  const QTaskSetup setup = q_task_setup(t);
  const auto& [kh0, kh1, live, skipped_sum, segs] = setup;
  pack(t, segs, kh0, kh1);
  // Window sums over the live kernel rows, by vpmaddubsw with ones (no saturation: 2·255 per
  // pair; wide codes: low nibbles times 1 plus high nibbles times 16, the same bound), plus
  // what the skipped rows add.
  const __m256i r_pad = _mm256_set1_epi32(skipped_sum);
  const __m256i ones8 = _mm256_set1_epi8(1), sixteen8 = _mm256_set1_epi8(16);
  const __m256i ones16 = _mm256_set1_epi16(1);
  const std::int64_t pixels = t.folded_out_height * t.folded_out_width;
  alignas(32) std::int32_t r[kFoldQVectors * 16];
  auto pair_sums = [&](std::int64_t at) {
    __m256i s = _mm256_maddubs_epi16(
        _mm256_load_si256(reinterpret_cast<const __m256i*>(t.buffer + at)), ones8);
    if (t.buffer_high) {
      s = _mm256_add_epi16(s, _mm256_maddubs_epi16(_mm256_load_si256(
                                  reinterpret_cast<const __m256i*>(t.buffer_high + at)),
                              sixteen8));
    }
    return _mm256_madd_epi16(s, ones16);
  };
  for (std::int64_t v = 0; v < t.vectors; ++v) {
    for (int h = 0; h < 2; ++h) {
      __m256i p0 = _mm256_setzero_si256(), p1 = p0;
      const std::int64_t at = v * 64 + 32 * h + kh0 * k * ci_n * kRow;
      std::int64_t g = 0;
      for (; g + 1 < live; g += 2) {
        p0 = _mm256_add_epi32(p0, pair_sums(at + kRow * g));
        p1 = _mm256_add_epi32(p1, pair_sums(at + kRow * (g + 1)));
      }
      if (g < live) p0 = _mm256_add_epi32(p0, pair_sums(at + kRow * g));
      _mm256_store_si256(reinterpret_cast<__m256i*>(r + 16 * v + 8 * h),
                         _mm256_add_epi32(_mm256_add_epi32(p0, p1), r_pad));
    }
    if (t.write_r && t.r) {
      const std::int64_t m0 = 16 * (t.v0 + v), n = pixels - m0 < 16 ? pixels - m0 : 16;
      std::memcpy(t.r + m0, r + 16 * v, static_cast<std::size_t>(n) * 4);
    }
  }
  alignas(32) std::int32_t dense[kFoldQVectors * NB * 16], tails[kFoldQVectors * NB * 16];
  const QEpilogue* q = t.epilogue;
  for (std::int64_t b = t.block0; b < t.block1; ++b) {
    const std::int64_t co_count =
        t.out_channels - b * kFoldQBlock < kFoldQBlock ? t.out_channels - b * kFoldQBlock
                                                       : kFoldQBlock;
    for (std::int64_t v = 0; v < t.vectors; ++v) {
      if (t.buffer_high) {
        for (std::int64_t c0 = 0; c0 < 4 * co_count; c0 += 4) {
          dense_tile_wide(t, b, v, 0, c0, kh0, kh1, dense);
          dense_tile_wide(t, b, v, 1, c0, kh0, kh1, dense);
        }
      } else {
        for (std::int64_t c0 = 0; c0 < 4 * co_count; c0 += 4) {
          dense_tile(t, b, v, c0, kh0, kh1, dense);
        }
      }
    }
    if (t.has_tail) {
      if (t.buffer_high)
        tail_pass<true>(t, b, 4 * co_count, kh0, kh1, tails);
      else
        tail_pass<false>(t, b, 4 * co_count, kh0, kh1, tails);
    }
    for (std::int64_t v = 0; v < t.vectors; ++v) {
      const __m256i rv[2] = {_mm256_load_si256(reinterpret_cast<const __m256i*>(r + 16 * v)),
                             _mm256_load_si256(reinterpret_cast<const __m256i*>(r + 16 * v + 8))};
      for (std::int64_t co = 0; co < co_count; ++co) {
        const std::int64_t plane = (b * kFoldQBlock + co) * t.out_height;
        for (int py = 0; py < 2; ++py) {
          __m256i ac[2][2], at[2][2];  // [px][half]
          for (int px = 0; px < 2; ++px) {
            const std::int64_t nl = co * 4 + py * 2 + px;
            for (int h = 0; h < 2; ++h) {
              ac[px][h] = _mm256_load_si256(
                  reinterpret_cast<const __m256i*>(dense + slot(v, nl) + 8 * h));
              at[px][h] = t.has_tail ? _mm256_load_si256(reinterpret_cast<const __m256i*>(
                                           tails + slot(v, nl) + 8 * h))
                                     : _mm256_setzero_si256();
            }
          }
          if (!q) {
            store_pairs(t.a_c, plane + py, t.out_width, segs, v, ac[0], ac[1]);
            store_pairs(t.a_t, plane + py, t.out_width, segs, v, at[0], at[1]);
            continue;
          }
          __m256i out[2][2];
          for (int px = 0; px < 2; ++px) {
            const std::int64_t n = b * NB + co * 4 + py * 2 + px;
            for (int h = 0; h < 2; ++h) {
              const __m256 y = affine8(ac[px][h], q->zero_c[n], q->alpha_c[n], t.has_tail,
                                       at[px][h], q->zero_t[n], q->alpha_t[n], rv[h],
                                       q->row_zero, q->gamma[n], q->beta[n]);
              out[px][h] = t.y ? _mm256_castps_si256(y)
                               : requantize8(y, q->out_scale, q->out_zero, q->out_low);
            }
          }
          if (t.y) {
            store_pairs(reinterpret_cast<std::int32_t*>(t.y), plane + py, t.out_width, segs, v,
                        out[0], out[1]);
          } else {
            store_pairs(t.q, plane + py, t.out_width, segs, v, out[0], out[1]);
          }
        }
      }
    }
  }
}

const FoldConvIsa kAvx2{FoldConvPath::Avx2, f32_task, q_task, nullptr, nullptr, nullptr, true};
const FoldConvIsa kAvx2Winograd{FoldConvPath::Avx2Winograd, f32_task, nullptr,
    wino_input_t<4>, wino_gemm, wino_output_t<2>, false, 2};
const FoldConvIsa kAvx2Winograd4{FoldConvPath::Avx2Winograd4, f32_task, nullptr,
    wino_input_t<6>, wino_gemm, wino_output_t<4>, false, 4};

}  // namespace

const FoldConvIsa* fold_conv_avx2() { return &kAvx2; }
const FoldConvIsa* fold_conv_avx2_winograd() { return &kAvx2Winograd; }
const FoldConvIsa* fold_conv_avx2_winograd4() { return &kAvx2Winograd4; }

}  // namespace fold_conv_detail
}  // namespace prism

#else

namespace prism {
namespace fold_conv_detail {
const FoldConvIsa* fold_conv_avx2() { return nullptr; }
const FoldConvIsa* fold_conv_avx2_winograd() { return nullptr; }
const FoldConvIsa* fold_conv_avx2_winograd4() { return nullptr; }
}  // namespace fold_conv_detail
}  // namespace prism

#endif
