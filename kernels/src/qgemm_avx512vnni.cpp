// AVX-512 VNNI path of the PWLQ integer GEMM. Compiled with -mavx512f -mavx512bw -mavx512vl
// -mavx512vnni (this file only) and chosen at run time when cpu_features().avx512_vnni.
//
// vpdpbusd zmm multiplies 64 u8 activations by 64 s8 weights and adds groups of 4 products into
// 16 int32 lanes, with no intermediate saturation, so every int8 code is exact. One zmm of packed
// activations holds 4 k-values of 16 rows; a weight k-block (4 codes of one channel) is broadcast
// from memory against it. Register tile: 3 row groups (48 rows) × 8 channels = 24 accumulators.
#include "prism/qgemm.hpp"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512VNNI__)
#include <immintrin.h>

#include <cstring>

// GCC 12's AVX-512 headers start some conversions from _mm512_undefined_*(), which
// -Wmaybe-uninitialized reports at every use (GCC bug 105593); the values are never read.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace prism {
namespace qgemm_detail {
namespace {

constexpr int kP = kQgemmPanel, kB = kQgemmKBlock;

inline std::int32_t load_i32(const void* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// acc += Σ4 x(u8)·w(s8) in place. GCC 12 models the intrinsic as a fresh result and then copies
// accumulators between registers (several vmovdqa32 per vpdpbusd in the tail loop); the asm
// form pins the accumulator to one register.
#define PRISM_DPBUSD(acc, x, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))

// The register tile is written out with named accumulators: GCC 12 keeps an array of __m512i
// accumulators in memory across the k loop (a store per vpdpbusd), named values in registers.
#define PRISM_ACC8(p) p##0 = z, p##1 = z, p##2 = z, p##3 = z, p##4 = z, p##5 = z, p##6 = z, p##7 = z

template <int G>
inline void dense_tile(const std::uint8_t* x, std::int64_t k_blocks, const std::int8_t* panel,
                       std::int32_t* out, std::int64_t ld) {
  static_assert(G >= 1 && G <= 3, "1 to 3 row groups");
  const std::int64_t stride = k_blocks * 64;
  const __m512i z = _mm512_setzero_si512();
  __m512i PRISM_ACC8(a), PRISM_ACC8(b), PRISM_ACC8(c);  // row groups 0, 1, 2 × channels 0..7
  for (std::int64_t kb = 0; kb < k_blocks; ++kb) {
    const __m512i x0 = _mm512_loadu_si512(x + kb * 64);
    __m512i x1 = x0, x2 = x0;
    if constexpr (G >= 2) x1 = _mm512_loadu_si512(x + stride + kb * 64);
    if constexpr (G >= 3) x2 = _mm512_loadu_si512(x + 2 * stride + kb * 64);
    const std::int8_t* wv = panel + kb * (kB * kP);
#define PRISM_STEP(j)                                              \
  {                                                                \
    const __m512i w = _mm512_set1_epi32(load_i32(wv + (j) * kB));  \
    PRISM_DPBUSD(a##j, x0, w);                       \
    if constexpr (G >= 2) PRISM_DPBUSD(b##j, x1, w); \
    if constexpr (G >= 3) PRISM_DPBUSD(c##j, x2, w); \
  }
    PRISM_STEP(0) PRISM_STEP(1) PRISM_STEP(2) PRISM_STEP(3)
    PRISM_STEP(4) PRISM_STEP(5) PRISM_STEP(6) PRISM_STEP(7)
#undef PRISM_STEP
  }
#define PRISM_STORE(j)                                                        \
  _mm512_storeu_si512(out + (j) * ld, a##j);                                  \
  if constexpr (G >= 2) _mm512_storeu_si512(out + (j) * ld + 16, b##j);       \
  if constexpr (G >= 3) _mm512_storeu_si512(out + (j) * ld + 32, c##j);
  PRISM_STORE(0) PRISM_STORE(1) PRISM_STORE(2) PRISM_STORE(3)
  PRISM_STORE(4) PRISM_STORE(5) PRISM_STORE(6) PRISM_STORE(7)
#undef PRISM_STORE
}

// 4 row groups (64 rows) × 4 channels, twice per panel: blocks of 4 row groups replace blocks
// of 2 (2 + 2 = 4 activation loads per 16 dot products of a k-block against 4 + 4 per 32 here;
// the weight broadcasts are the same), e.g. for layers of 49 to 64 rows.
inline void dense_tile4(const std::uint8_t* x, std::int64_t k_blocks, const std::int8_t* panel,
                        int c0, std::int32_t* out, std::int64_t ld) {
  const std::int64_t stride = k_blocks * 64;
  const __m512i z = _mm512_setzero_si512();
  __m512i a0 = z, a1 = z, a2 = z, a3 = z, b0 = z, b1 = z, b2 = z, b3 = z;
  __m512i c0v = z, c1 = z, c2 = z, c3 = z, d0 = z, d1 = z, d2 = z, d3 = z;
  for (std::int64_t kb = 0; kb < k_blocks; ++kb) {
    const __m512i x0 = _mm512_loadu_si512(x + kb * 64);
    const __m512i x1 = _mm512_loadu_si512(x + stride + kb * 64);
    const __m512i x2 = _mm512_loadu_si512(x + 2 * stride + kb * 64);
    const __m512i x3 = _mm512_loadu_si512(x + 3 * stride + kb * 64);
    const std::int8_t* wv = panel + kb * (kB * kP) + c0 * kB;
#define PRISM_STEP4(j, cj)                                        \
  {                                                               \
    const __m512i w = _mm512_set1_epi32(load_i32(wv + (j) * kB)); \
    PRISM_DPBUSD(a##j, x0, w);                                    \
    PRISM_DPBUSD(b##j, x1, w);                                    \
    PRISM_DPBUSD(cj, x2, w);                                      \
    PRISM_DPBUSD(d##j, x3, w);                                    \
  }
    PRISM_STEP4(0, c0v) PRISM_STEP4(1, c1) PRISM_STEP4(2, c2) PRISM_STEP4(3, c3)
#undef PRISM_STEP4
  }
#define PRISM_STORE4(j, cj)                                           \
  _mm512_storeu_si512(out + (c0 + (j)) * ld, a##j);                 \
  _mm512_storeu_si512(out + (c0 + (j)) * ld + 16, b##j);            \
  _mm512_storeu_si512(out + (c0 + (j)) * ld + 32, cj);              \
  _mm512_storeu_si512(out + (c0 + (j)) * ld + 48, d##j);
  PRISM_STORE4(0, c0v) PRISM_STORE4(1, c1) PRISM_STORE4(2, c2) PRISM_STORE4(3, c3)
#undef PRISM_STORE4
}

void dense(const DenseArgs& a) {
  const std::int64_t stride = a.x.k_blocks * 64;
  if (a.x.row_groups == 4) {
    dense_tile4(a.x.data, a.x.k_blocks, a.panel, 0, a.out, a.ld);
    dense_tile4(a.x.data, a.x.k_blocks, a.panel, 4, a.out, a.ld);
    return;
  }
  std::int64_t g = 0;
  for (; g + 3 <= a.x.row_groups; g += 3)
    dense_tile<3>(a.x.data + g * stride, a.x.k_blocks, a.panel, a.out + g * 16, a.ld);
  if (a.x.row_groups - g == 2)
    dense_tile<2>(a.x.data + g * stride, a.x.k_blocks, a.panel, a.out + g * 16, a.ld);
  else if (a.x.row_groups - g == 1)
    dense_tile<1>(a.x.data + g * stride, a.x.k_blocks, a.panel, a.out + g * 16, a.ld);
}

#include "vnni_quads.inc"

// IsaKernels::planar: per k-block, its (up to) 4 row-group vectors transposed to its 4 k-value
// rows (element_rows, vnni_quads.inc; zeros for row groups past x's).
void planar(const PackedRows& x, std::uint8_t* out) {
  const std::int64_t stride = x.k_blocks * 64;
  for (std::int64_t kb = 0; kb < x.k_blocks; ++kb) {
    __m512i v[4];
    for (int g = 0; g < 4; ++g) {
      v[g] = g < x.row_groups ? _mm512_loadu_si512(x.data + g * stride + kb * 64)
                              : _mm512_setzero_si512();
    }
    element_rows(v, out + kb * 256);
  }
}

// One channel's tail over G row groups (1 to 4), quad by quad (quad_steps, vnni_quads.inc): one
// vpdpbusd per 4 tail codes and row group.
template <int G>
inline void tail_tile(const std::uint8_t* planar, const PwlqTailQuad* e, const PwlqTailQuad* end,
                      std::int32_t* out_t) {
  const __m512i z = _mm512_setzero_si512();
  __m512i a0 = z, a1 = z, a2 = z, a3 = z;
  quad_steps<G>(planar, e, end, a0, a1, a2, a3);
  _mm512_storeu_si512(out_t, a0);
  if constexpr (G >= 2) _mm512_storeu_si512(out_t + 16, a1);
  if constexpr (G >= 3) _mm512_storeu_si512(out_t + 32, a2);
  if constexpr (G >= 4) _mm512_storeu_si512(out_t + 48, a3);
}

void tail(const TailArgs& a) {
  for (std::int64_t j = 0; j < a.channels; ++j) {
    const PwlqTailQuad* e = a.quads + a.quad_start[j];
    const PwlqTailQuad* end = a.quads + a.quad_start[j + 1];
    std::int32_t* out_t = a.out_t + j * a.ld;
    switch (a.x.row_groups) {
      case 1: tail_tile<1>(a.planar, e, end, out_t); break;
      case 2: tail_tile<2>(a.planar, e, end, out_t); break;
      case 3: tail_tile<3>(a.planar, e, end, out_t); break;
      default: tail_tile<4>(a.planar, e, end, out_t); break;
    }
  }
}

#include "avx512_int.inc"

// The float epilogue, 16 rows at a time (avx512_int.inc): the same float32 operations in the
// same order as the scalar path (no FMA), so every path gives the same bits.
void epilogue(const EpilogueArgs& a) {
  for (std::int64_t j = 0; j < a.channels; ++j) {
    for (std::int64_t r = 0; r < a.rows; r += 16) {
      const std::int64_t i = j * a.ld + r;
      const __m512i at = a.acc_t ? _mm512_loadu_si512(a.acc_t + i) : _mm512_setzero_si512();
      const __m512 y = affine16(_mm512_loadu_si512(a.acc + i), a.zero_c[j], a.alpha_c[j],
                                a.acc_t != nullptr, at, a.zero_t[j], a.alpha_t[j],
                                _mm512_loadu_si512(a.row_sums + r), a.row_zero, a.gamma[j],
                                a.beta[j]);
      if (!a.q) {
        _mm512_storeu_ps(a.y + i, y);
        continue;
      }
      _mm_storeu_si128(reinterpret_cast<__m128i*>(a.q + i),
                       requantize16(y, a.out_scale, a.out_zero, a.out_low));
    }
  }
}

// 16×16 transpose of 32-bit elements: v[i] holds row i on entry, column i on exit.
inline void transpose16x16(__m512i (&v)[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    v[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    v[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    v[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    v[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // Now v[4q + c] holds, in 128-bit lane L, column 4L + c of rows 4q..4q+3.
  for (int h = 0; h < 2; ++h) {
    for (int c = 0; c < 4; ++c) {
      const __m512i a = v[8 * h + c], b = v[8 * h + 4 + c];
      t[8 * h + c] = _mm512_shuffle_i32x4(a, b, 0x88);
      t[8 * h + 4 + c] = _mm512_shuffle_i32x4(a, b, 0xdd);
    }
  }
  for (int c = 0; c < 8; ++c) {
    v[c] = _mm512_shuffle_i32x4(t[c], t[8 + c], 0x88);
    v[8 + c] = _mm512_shuffle_i32x4(t[c], t[8 + c], 0xdd);
  }
}

// Row-major rows -> packed layout with one 16×16 dword transpose per 16 rows × 64 bytes; the
// byte-masked loads zero-fill K's last partial block and rows past M. Row sums come from
// vpdpbusd against ones on the transposed vectors.
void pack_matrix(const MatrixPackArgs& a) {
  const __m512i ones = _mm512_set1_epi8(1);
  for (std::int64_t g = 0; g < a.row_groups; ++g) {
    const std::int64_t r0 = a.row0 + g * 16;
    const std::int64_t valid = a.rows - r0 < 0 ? 0 : a.rows - r0 < 16 ? a.rows - r0 : 16;
    std::uint8_t* out = a.out + g * a.k_blocks * 64;
    __m512i sums = _mm512_setzero_si512();
    for (std::int64_t c = 0; c * 16 < a.k_blocks; ++c) {
      const std::int64_t bytes = a.depth - c * 64;
      const __mmask64 mask = bytes >= 64 ? ~__mmask64(0) : (__mmask64(1) << bytes) - 1;
      __m512i v[16];
      for (int r = 0; r < 16; ++r) {
        v[r] = r < valid ? _mm512_maskz_loadu_epi8(mask, a.x + (r0 + r) * a.depth + c * 64)
                         : _mm512_setzero_si512();
      }
      transpose16x16(v);
      const std::int64_t n = a.k_blocks - c * 16 < 16 ? a.k_blocks - c * 16 : 16;
      for (std::int64_t i = 0; i < n; ++i) {
        _mm512_storeu_si512(out + (c * 16 + i) * 64, v[i]);
        PRISM_DPBUSD(sums, v[i], ones);
      }
    }
    _mm512_storeu_si512(a.row_sums + g * 16, sums);
  }
}

// Implicit im2col (prism/qconv.hpp): per k-block, four taps × 16 consecutive rows are four
// 16-byte loads, interleaved bytewise into rows of 4 k-values (two unpack levels). Row sums by
// vpdpbusd against ones, as pack_matrix.
inline __m512i interleave_taps(__m128i a, __m128i b, __m128i c, __m128i d) {
  const __m128i ab_lo = _mm_unpacklo_epi8(a, b), ab_hi = _mm_unpackhi_epi8(a, b);
  const __m128i cd_lo = _mm_unpacklo_epi8(c, d), cd_hi = _mm_unpackhi_epi8(c, d);
  __m512i v = _mm512_castsi128_si512(_mm_unpacklo_epi16(ab_lo, cd_lo));  // rows 0..3
  v = _mm512_inserti32x4(v, _mm_unpackhi_epi16(ab_lo, cd_lo), 1);        // rows 4..7
  v = _mm512_inserti32x4(v, _mm_unpacklo_epi16(ab_hi, cd_hi), 2);        // rows 8..11
  return _mm512_inserti32x4(v, _mm_unpackhi_epi16(ab_hi, cd_hi), 3);     // rows 12..15
}

void pack_taps(const TapPackArgs& a) {
  const __m512i ones = _mm512_set1_epi8(1);
  const std::int64_t full = a.depth / kB;
  for (std::int64_t g = 0; g < a.row_groups; ++g) {
    const std::uint8_t* rows = a.planes + a.row0 + g * 16;
    std::uint8_t* out = a.out + g * a.k_blocks * 64;
    const std::int64_t* tap = a.tap_offset;
    __m512i sums = _mm512_setzero_si512();
    for (std::int64_t kb = 0; kb < full; ++kb, tap += kB) {
      const __m512i v = interleave_taps(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows + tap[0])),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows + tap[1])),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows + tap[2])),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows + tap[3])));
      _mm512_storeu_si512(out + kb * 64, v);
      PRISM_DPBUSD(sums, v, ones);
    }
    if (full < a.k_blocks) {  // the last partial block: zeros past K
      __m128i t[kB];
      for (int i = 0; i < kB; ++i) {
        t[i] = full * kB + i < a.depth
                   ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows + tap[i]))
                   : _mm_setzero_si128();
      }
      const __m512i v = interleave_taps(t[0], t[1], t[2], t[3]);
      _mm512_storeu_si512(out + full * 64, v);
      PRISM_DPBUSD(sums, v, ones);
    }
    _mm512_storeu_si512(a.row_sums + g * 16, sums);
  }
}

// ONNX QuantizeLinear, 16 values at a time: requantize16 with a low end of 0, the portable
// loop's float32 operations (true division, round half to even, add, saturate).
void quantize(const QuantizeArgs& a) {
  const __m512 clo = _mm512_set1_ps(a.clip_low), chi = _mm512_set1_ps(a.clip_high);
  for (std::int64_t i = 0; i < a.count; i += 16) {
    const std::int64_t left = a.count - i;
    const __mmask16 m = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
    __m512 x = _mm512_maskz_loadu_ps(m, a.x + i);
    if (a.clip) x = _mm512_min_ps(_mm512_max_ps(x, clo), chi);
    _mm_mask_storeu_epi8(a.q + i, m, requantize16(x, a.scale, a.zero_point, 0.0f));
  }
}

inline __m256 upper_half(__m512 v) {  // vextractf32x8 would need AVX-512 DQ
  return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

// 8 channel vectors of 16 rows (c[j] lane r: channel j, row r) -> rows r < n of 8 floats at
// dst + r·row_stride: 4×4 transposes inside each 128-bit lane, then two 128-bit halves per row
// paired with vpermt2ps.
inline void store_8x16(const __m512 (&c)[8], float* dst, std::int64_t row_stride,
                       std::int64_t n) {
  const __m512i lo_pair = _mm512_set_epi32(23, 22, 21, 20, 7, 6, 5, 4, 19, 18, 17, 16, 3, 2, 1, 0);
  const __m512i hi_pair =
      _mm512_set_epi32(31, 30, 29, 28, 15, 14, 13, 12, 27, 26, 25, 24, 11, 10, 9, 8);
  __m512 u[8];
  for (int h = 0; h < 2; ++h) {
    const __m512 c0 = c[4 * h], c1 = c[4 * h + 1], c2 = c[4 * h + 2], c3 = c[4 * h + 3];
    const __m512 t0 = _mm512_unpacklo_ps(c0, c1), t1 = _mm512_unpackhi_ps(c0, c1);
    const __m512 t2 = _mm512_unpacklo_ps(c2, c3), t3 = _mm512_unpackhi_ps(c2, c3);
    // u[4h + i], lane L: channels 4h..4h+3 of row 4L + i.
    u[4 * h + 0] = _mm512_shuffle_ps(t0, t2, 0x44);
    u[4 * h + 1] = _mm512_shuffle_ps(t0, t2, 0xee);
    u[4 * h + 2] = _mm512_shuffle_ps(t1, t3, 0x44);
    u[4 * h + 3] = _mm512_shuffle_ps(t1, t3, 0xee);
  }
  for (int i = 0; i < 4; ++i) {
    // lo: rows i (lane 0) and 4 + i (lane 1); hi: rows 8 + i and 12 + i.
    const __m512 lo = _mm512_permutex2var_ps(u[i], lo_pair, u[4 + i]);
    const __m512 hi = _mm512_permutex2var_ps(u[i], hi_pair, u[4 + i]);
    const __m256 rows[4] = {_mm512_castps512_ps256(lo), upper_half(lo), _mm512_castps512_ps256(hi),
                            upper_half(hi)};
    for (int q = 0; q < 4; ++q) {
      const std::int64_t r = 4 * q + i;
      if (r < n) _mm256_storeu_ps(dst + r * row_stride, rows[q]);
    }
  }
}

void store_rows(const StoreRowsArgs& a) {
  for (std::int64_t r0 = 0; r0 < a.rows; r0 += 16) {
    __m512 c[8];
    for (int j = 0; j < 8; ++j) c[j] = _mm512_loadu_ps(a.tile + j * a.ld + r0);
    store_8x16(c, a.dst + r0 * a.row_stride, a.row_stride, a.rows - r0);
  }
}

// The epilogue (affine16, as `epilogue`) of 16 rows at a time, transposed into the output by
// store_8x16; masked loads past the run's last row (a run may start anywhere in the tile).
void epilogue_store(const EpilogueStoreArgs& a) {
  const EpilogueArgs& e = a.e;
  for (std::int64_t r0 = 0; r0 < a.n; r0 += 16) {
    const std::int64_t left = a.n - r0;
    const __mmask16 m = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
    const std::int64_t r = a.t0 + r0;
    const __m512i sums = _mm512_maskz_loadu_epi32(m, e.row_sums + r);
    __m512 c[8];
    for (int j = 0; j < 8; ++j) {
      const std::int64_t i = j * e.ld + r;
      const __m512i at =
          e.acc_t ? _mm512_maskz_loadu_epi32(m, e.acc_t + i) : _mm512_setzero_si512();
      c[j] = affine16(_mm512_maskz_loadu_epi32(m, e.acc + i), e.zero_c[j], e.alpha_c[j],
                      e.acc_t != nullptr, at, e.zero_t[j], e.alpha_t[j], sums, e.row_zero,
                      e.gamma[j], e.beta[j]);
    }
    store_8x16(c, a.dst + r0 * a.row_stride, a.row_stride, left);
  }
}

// 12 independent accumulators: more than latency × throughput, so the loop runs at the
// instruction's throughput limit.
__attribute__((noinline)) __m512i vpdpbusd_loop(std::int64_t iterations) {
  const __m512i x = _mm512_set1_epi8(3), w = _mm512_set1_epi8(2);
  __m512i a0 = _mm512_set1_epi32(0), a1 = _mm512_set1_epi32(1), a2 = _mm512_set1_epi32(2),
          a3 = _mm512_set1_epi32(3), a4 = _mm512_set1_epi32(4), a5 = _mm512_set1_epi32(5),
          a6 = _mm512_set1_epi32(6), a7 = _mm512_set1_epi32(7), a8 = _mm512_set1_epi32(8),
          a9 = _mm512_set1_epi32(9), a10 = _mm512_set1_epi32(10), a11 = _mm512_set1_epi32(11);
  // volatile: identical asm statements must neither be merged nor moved out of the loop.
#define PRISM_PROBE(acc) __asm__ volatile("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))
  for (std::int64_t i = 0; i < iterations; ++i) {
    PRISM_PROBE(a0); PRISM_PROBE(a1); PRISM_PROBE(a2); PRISM_PROBE(a3);
    PRISM_PROBE(a4); PRISM_PROBE(a5); PRISM_PROBE(a6); PRISM_PROBE(a7);
    PRISM_PROBE(a8); PRISM_PROBE(a9); PRISM_PROBE(a10); PRISM_PROBE(a11);
  }
#undef PRISM_PROBE
  const __m512i s0 = _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3));
  const __m512i s1 = _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7));
  const __m512i s2 = _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11));
  return _mm512_add_epi32(s0, _mm512_add_epi32(s1, s2));
}

const IsaKernels kAvx512Vnni{QgemmPath::Avx512Vnni, false,      dense,     tail,
                             epilogue,              pack_matrix, store_rows, pack_taps,
                             quantize,              4,           epilogue_store, planar};

}  // namespace

const IsaKernels* avx512vnni_kernels() { return &kAvx512Vnni; }

std::int64_t avx512vnni_probe_loop(std::int64_t iterations) {
  alignas(64) std::int32_t lanes[16];
  _mm512_store_si512(lanes, vpdpbusd_loop(iterations));
  return lanes[0];
}

}  // namespace qgemm_detail
}  // namespace prism

#else  // not an x86-64 build with the AVX-512 VNNI flags

namespace prism {
namespace qgemm_detail {
const IsaKernels* avx512vnni_kernels() { return nullptr; }
std::int64_t avx512vnni_probe_loop(std::int64_t) { return 0; }
}  // namespace qgemm_detail
}  // namespace prism

#endif
