// AVX-512 VNNI path of the integer folded convolution. Compiled with -mavx512f -mavx512bw
// -mavx512vl -mavx512vnni (this file only) and chosen at run time when cpu_features().avx512_vnni.
//
// The fold is free here: the 4 bytes that vpdpbusd reduces into one int32 lane are the 2×2 fold
// block (bh, bw) of one input channel, gathered once per task by q_pack_rows (one 64-byte
// aligned row per tap, so no load splits a cache line), and the weight is the broadcast 4 codes
// w[n, ci·4 + bh·2 + bw, kh, kw]. A zmm covers 16 folded columns (a chunk) of one folded row.
// Dense pass: register tile 2 folded rows × 12 folded channels (3 output channels × py × px) =
// 24 accumulators, so each tap costs 2 activation loads and 12 weight broadcasts for 24
// vpdpbusd. Sparse tail pass: per channel, its list of groups with a tail code against both rows
// and two chunks at once (4 vpdpbusd per group and code). Kernel rows that lie wholly in the
// padding are skipped by both passes and added as zx times their code sums. The unfold is the
// output store: the px = 0 and px = 1 results of a channel and row are interleaved (vpermt2d)
// into 32 consecutive output pixels.
#include "prism/fold_conv.hpp"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512VNNI__)
#include <immintrin.h>

#include <cstring>

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593, see qgemm_avx512vnni

namespace prism {
namespace fold_conv_detail {
namespace {

constexpr int NB = 4 * kFoldQBlock;  // folded channels per block

inline std::int32_t load_i32(const void* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Lanes [0, n) of a 16-lane vector, n clamped to [0, 16].
inline __mmask16 first(std::int64_t n) {
  return n <= 0 ? 0 : n >= 16 ? static_cast<__mmask16>(0xFFFF)
                              : static_cast<__mmask16>((1u << n) - 1u);
}

struct Interleave {
  __m512i lo, hi;
  Interleave()
      : lo(_mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)),
        hi(_mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)) {}
};

// Output pixels 2l + px of px = 0 (a) and px = 1 (b): 2·lanes values from dst.
inline void store_pairs(std::int32_t* dst, __m512i a, __m512i b, std::int64_t lanes,
                        const Interleave& il) {
  _mm512_mask_storeu_epi32(dst, first(2 * lanes), _mm512_permutex2var_epi32(a, il.lo, b));
  _mm512_mask_storeu_epi32(dst + 16, first(2 * lanes - 16),
                           _mm512_permutex2var_epi32(a, il.hi, b));
}

inline void store_pairs(float* dst, __m512 a, __m512 b, std::int64_t lanes,
                        const Interleave& il) {
  _mm512_mask_storeu_ps(dst, first(2 * lanes), _mm512_permutex2var_ps(a, il.lo, b));
  _mm512_mask_storeu_ps(dst + 16, first(2 * lanes - 16), _mm512_permutex2var_ps(a, il.hi, b));
}

inline void store_pairs(std::uint8_t* dst, __m128i a, __m128i b, std::int64_t lanes) {
  _mm_mask_storeu_epi8(dst, first(2 * lanes), _mm_unpacklo_epi8(a, b));
  _mm_mask_storeu_epi8(dst + 16, first(2 * lanes - 16), _mm_unpackhi_epi8(a, b));
}

// The float epilogue of prism/qgemm.hpp on 16 lanes of folded channel n.
inline __m512 epilogue(const QEpilogue& q, std::int64_t n, bool tail, __m512i ac, __m512i at,
                       __m512i r) {
  auto term = [](__m512i v, std::int32_t zero, float scale) {
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v, _mm512_set1_epi32(zero))),
                         _mm512_set1_ps(scale));
  };
  __m512 y = term(ac, q.zero_c[n], q.alpha_c[n]);
  if (tail) {
    y = _mm512_add_ps(y, term(at, q.zero_t[n], q.alpha_t[n]));
  }
  y = _mm512_add_ps(y, term(r, q.row_zero, q.gamma[n]));
  return _mm512_add_ps(y, _mm512_set1_ps(q.beta[n]));
}

inline __m128i requantize(const QEpilogue& q, __m512 y) {
  __m512 t = _mm512_roundscale_ps(_mm512_div_ps(y, _mm512_set1_ps(q.out_scale)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  t = _mm512_add_ps(t, _mm512_set1_ps(q.out_zero));
  t = _mm512_max_ps(t, _mm512_set1_ps(q.out_low));  // NaN -> low
  t = _mm512_min_ps(t, _mm512_set1_ps(255.0f));
  return _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(t));
}

// acc += Σ4 x(u8)·w(s8) in place (see qgemm_avx512vnni.cpp: GCC 12 copies intrinsic
// accumulators between registers in a loop like the tail pass's; the asm pins each to one).
#define PRISM_DPBUSD(acc, x, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))

// Scratch of one task step: [chunk 2][row 2][folded channel NB][16 lanes].
constexpr std::int64_t slot(std::int64_t chunk, std::int64_t row, std::int64_t nl) {
  return 16 * ((chunk * 2 + row) * NB + nl);
}

// The kernel rows [kh0, kh1) of a task that read the image for at least one of its output rows;
// the others lie wholly in the zero-point padding (an interval: the input row grows with kh).
void live_rows(const QTask& t, std::int64_t& kh0, std::int64_t& kh1) {
  const std::int64_t hf = t.height / 2;
  auto live = [&](std::int64_t kh) {
    const std::int64_t r0 = t.i + kh * t.dilation - t.padding;
    return (r0 >= 0 && r0 < hf) || (t.rows == 2 && r0 + 1 >= 0 && r0 + 1 < hf);
  };
  kh0 = 0;
  while (kh0 < t.kernel && !live(kh0)) ++kh0;
  kh1 = kh0;
  while (kh1 < t.kernel && live(kh1)) ++kh1;
}

// The dense pass of one channel block over 16 folded columns (chunk at j0) of both rows:
// out[row][n][lane] = Σ x·W0 for the 12 channels n. Kernel rows outside [kh0, kh1) are skipped
// and added as zx·row_sums instead.
__attribute__((noinline)) void dense_block(const QTask& t, std::int64_t b, std::int64_t j0, std::int64_t kh0,
                 std::int64_t kh1, std::int32_t* out) {
  const std::int64_t k = t.kernel, ci_n = t.in_channels;
  const std::int64_t lane_bytes = 4 * q_lanes(t.folded_out_width);
  const std::int64_t set = q_rows_bytes(ci_n, t.folded_out_width, k);
  const std::int8_t* wp = t.dense + (b * k + kh0) * k * ci_n * NB * 4;
  __m512i a0[NB], a1[NB];
#pragma GCC unroll 12
  for (int n = 0; n < NB; ++n) a0[n] = a1[n] = _mm512_setzero_si512();
  const std::uint8_t* xg = t.buffer + kh0 * k * ci_n * lane_bytes + 4 * j0;
  for (std::int64_t g = (kh1 - kh0) * k * ci_n; g > 0; --g, xg += lane_bytes, wp += NB * 4) {
    const __m512i x0 = _mm512_load_si512(xg), x1 = _mm512_load_si512(xg + set);
#pragma GCC unroll 12
    for (int n = 0; n < NB; ++n) {
      const __m512i w = _mm512_set1_epi32(load_i32(wp + 4 * n));
      PRISM_DPBUSD(a0[n], x0, w);
      PRISM_DPBUSD(a1[n], x1, w);
    }
  }
#pragma GCC unroll 12
  for (int n = 0; n < NB; ++n) {
    std::int32_t skipped = 0;
    for (std::int64_t kh = 0; kh < k; ++kh) {
      if (kh < kh0 || kh >= kh1) skipped += t.row_sums[(b * NB + n) * k + kh];
    }
    const __m512i pad = _mm512_set1_epi32(static_cast<std::int32_t>(t.zx) * skipped);
    _mm512_store_si512(out + slot(0, 0, n), _mm512_add_epi32(a0[n], pad));
    _mm512_store_si512(out + slot(0, 1, n), _mm512_add_epi32(a1[n], pad));
  }
}

// One channel's tail over G = 2 (one chunk, both rows) or 4 (two chunks) vectors per group.
// The pass is bound by loads (a 512-bit activation load per vpdpbusd), so, as in the GEMM's
// tail pass, the two groups of a step come from one 16-byte load: the group indices go to
// general registers and the codes are broadcast from the vector register. Lists are padded to
// an even length at packing. x: the tap rows of chunk 0, row 0; `set` bytes to row 1, 64 to
// chunk 1.
template <int G>
inline void tail_tile(const std::uint8_t* x, std::int64_t set, std::int64_t lane_bytes,
                      const FoldTailGroup* e, const FoldTailGroup* end, std::int32_t pad,
                      std::int32_t* out, std::int64_t nl) {
  static_assert(G == 2 || G == 4, "one or two chunks of both rows");
  static_assert(sizeof(FoldTailGroup) == 8, "two groups per 16-byte load");
  const std::uint8_t* x0 = x;
  const std::uint8_t* x1 = x + set;
  const std::uint8_t* x2 = x + 64;
  const std::uint8_t* x3 = x + set + 64;
  const __m512i z = _mm512_setzero_si512();
  __m512i a0 = z, a1 = z, b0 = z, b1 = z, c0 = z, c1 = z, d0 = z, d1 = z;  // <vector><set>
  for (; e < end; e += 2) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(e));
    const std::int64_t o0 = static_cast<std::int64_t>(_mm_cvtsi128_si32(v)) * lane_bytes;
    const std::int64_t o1 = static_cast<std::int64_t>(_mm_extract_epi32(v, 2)) * lane_bytes;
    const __m512i w0 = _mm512_broadcastd_epi32(_mm_srli_epi64(v, 32));
    const __m512i w1 = _mm512_broadcastd_epi32(_mm_srli_si128(v, 12));
    PRISM_DPBUSD(a0, _mm512_load_si512(x0 + o0), w0);
    PRISM_DPBUSD(b0, _mm512_load_si512(x1 + o0), w0);
    if constexpr (G == 4) PRISM_DPBUSD(c0, _mm512_load_si512(x2 + o0), w0);
    if constexpr (G == 4) PRISM_DPBUSD(d0, _mm512_load_si512(x3 + o0), w0);
    PRISM_DPBUSD(a1, _mm512_load_si512(x0 + o1), w1);
    PRISM_DPBUSD(b1, _mm512_load_si512(x1 + o1), w1);
    if constexpr (G == 4) PRISM_DPBUSD(c1, _mm512_load_si512(x2 + o1), w1);
    if constexpr (G == 4) PRISM_DPBUSD(d1, _mm512_load_si512(x3 + o1), w1);
  }
  const __m512i p = _mm512_set1_epi32(pad);
  _mm512_store_si512(out + slot(0, 0, nl), _mm512_add_epi32(_mm512_add_epi32(a0, a1), p));
  _mm512_store_si512(out + slot(0, 1, nl), _mm512_add_epi32(_mm512_add_epi32(b0, b1), p));
  if constexpr (G == 4) {
    _mm512_store_si512(out + slot(1, 0, nl), _mm512_add_epi32(_mm512_add_epi32(c0, c1), p));
    _mm512_store_si512(out + slot(1, 1, nl), _mm512_add_epi32(_mm512_add_epi32(d0, d1), p));
  }
}

// The sparse tail pass of one channel block for both rows and `chunks` (1 or 2) chunks from j0:
// out[chunk][row][nl][lane] = Σ x·W1 over the groups holding a non-zero tail code, kernel rows
// [kh0, kh1) from the lists and the others as zx·tail_row_sums.
__attribute__((noinline)) void tail_block(const QTask& t, std::int64_t b, std::int64_t channels, std::int64_t j0,
                std::int64_t chunks, std::int64_t kh0, std::int64_t kh1, std::int32_t* out) {
  const std::int64_t k = t.kernel;
  const std::int64_t lane_bytes = 4 * q_lanes(t.folded_out_width);
  const std::int64_t set = q_rows_bytes(t.in_channels, t.folded_out_width, k);
  const std::uint8_t* x = t.buffer + 4 * j0;
  for (std::int64_t nl = 0; nl < channels; ++nl) {
    const std::int64_t n = b * NB + nl;
    const FoldTailGroup* e = t.tail_groups + t.tail_start[n * k + kh0];
    const FoldTailGroup* end = t.tail_groups + t.tail_start[n * k + kh1];
    std::int32_t skipped = 0;
    for (std::int64_t kh = 0; kh < k; ++kh) {
      if (kh < kh0 || kh >= kh1) skipped += t.tail_row_sums[n * k + kh];
    }
    const std::int32_t pad = static_cast<std::int32_t>(t.zx) * skipped;
    if (chunks == 2) {
      tail_tile<4>(x, set, lane_bytes, e, end, pad, out, nl);
    } else {
      tail_tile<2>(x, set, lane_bytes, e, end, pad, out, nl);
    }
  }
}

void q_task(const QTask& t) {
  const std::int64_t k = t.kernel, ci_n = t.in_channels, wf = t.folded_out_width;
  const std::int64_t taps = k * k * ci_n;
  const std::int64_t set = q_rows_bytes(ci_n, wf, k);
  const __m512i ones = _mm512_set1_epi32(0x01010101);
  const __m512i zero = _mm512_setzero_si512();
  const Interleave il;
  std::int64_t kh0, kh1;
  live_rows(t, kh0, kh1);
  alignas(64) std::int32_t dense[4 * NB * 16], tails[4 * NB * 16];
  for (std::int64_t j0 = 0; j0 < wf; j0 += 32) {
    const std::int64_t chunks = wf - j0 > 16 ? 2 : 1;
    __m512i r[2][2];  // window sums [chunk][row]
    for (std::int64_t c = 0; c < chunks; ++c) {
      const std::int64_t jc = j0 + 16 * c, lanes = wf - jc < 16 ? wf - jc : 16;
      for (std::int64_t rr = 0; rr < 2; ++rr) {
        // Window sums; four independent chains (a single one is latency-bound).
        __m512i part[4] = {zero, zero, zero, zero};
        const std::uint8_t* xr = t.buffer + rr * set + 4 * jc;
        std::int64_t g = 0;
        for (; g + 3 < taps; g += 4) {
          for (int q = 0; q < 4; ++q) {
            part[q] = _mm512_dpbusd_epi32(
                part[q], _mm512_load_si512(xr + t.group_offset[g + q]), ones);
          }
        }
        for (; g < taps; ++g) {
          part[0] = _mm512_dpbusd_epi32(part[0], _mm512_load_si512(xr + t.group_offset[g]), ones);
        }
        r[c][rr] = _mm512_add_epi32(_mm512_add_epi32(part[0], part[1]),
                                    _mm512_add_epi32(part[2], part[3]));
        if (t.write_r && t.r && rr < t.rows)
          _mm512_mask_storeu_epi32(t.r + (t.i + rr) * wf + jc, first(lanes), r[c][rr]);
      }
    }
    for (std::int64_t b = t.block0; b < t.block1; ++b) {
      const std::int64_t co_count =
          t.out_channels - b * kFoldQBlock < kFoldQBlock ? t.out_channels - b * kFoldQBlock
                                                         : kFoldQBlock;
      for (std::int64_t c = 0; c < chunks; ++c) {
        dense_block(t, b, j0 + 16 * c, kh0, kh1, dense + slot(c, 0, 0));
      }
      if (t.has_tail) tail_block(t, b, 4 * co_count, j0, chunks, kh0, kh1, tails);
      for (std::int64_t c = 0; c < chunks; ++c) {
        const std::int64_t jc = j0 + 16 * c, lanes = wf - jc < 16 ? wf - jc : 16;
        for (std::int64_t rr = 0; rr < t.rows; ++rr) {
          for (std::int64_t co = 0; co < co_count; ++co) {
            for (int py = 0; py < 2; ++py) {
              __m512i ac[2], at[2];
              std::int64_t n[2];
              for (int px = 0; px < 2; ++px) {
                const std::int64_t nl = co * 4 + py * 2 + px;
                n[px] = b * NB + nl;
                at[px] = t.has_tail ? _mm512_load_si512(tails + slot(c, rr, nl)) : zero;
                ac[px] = _mm512_load_si512(dense + slot(c, rr, nl));
              }
              const std::int64_t o =
                  ((b * kFoldQBlock + co) * t.out_height + 2 * (t.i + rr) + py) * t.out_width +
                  2 * jc;
              if (!t.epilogue) {
                store_pairs(t.a_c + o, ac[0], ac[1], lanes, il);
                store_pairs(t.a_t + o, at[0], at[1], lanes, il);
                continue;
              }
              const QEpilogue& q = *t.epilogue;
              const __m512 y0 = epilogue(q, n[0], t.has_tail, ac[0], at[0], r[c][rr]);
              const __m512 y1 = epilogue(q, n[1], t.has_tail, ac[1], at[1], r[c][rr]);
              if (t.y) {
                store_pairs(t.y + o, y0, y1, lanes, il);
              } else {
                store_pairs(t.q + o, requantize(q, y0), requantize(q, y1), lanes);
              }
            }
          }
        }
      }
    }
  }
}

const FoldConvIsa kAvx512Vnni{FoldConvPath::Avx512Vnni, nullptr, q_task, nullptr, nullptr,
                                 nullptr};

}  // namespace

const FoldConvIsa* fold_conv_avx512vnni() { return &kAvx512Vnni; }

}  // namespace fold_conv_detail
}  // namespace prism

#else

namespace prism {
namespace fold_conv_detail {
const FoldConvIsa* fold_conv_avx512vnni() { return nullptr; }
}  // namespace fold_conv_detail
}  // namespace prism

#endif
