// AVX-512 VNNI path of the integer folded convolution. Compiled with -mavx512f -mavx512bw
// -mavx512vl -mavx512vnni (this file only) and chosen at run time when cpu_features().avx512_vnni.
//
// The fold is free here: the 4 bytes that vpdpbusd reduces into one int32 lane are the 2×2 fold
// block (bh, bw) of one input channel, gathered once per task by q_pack_rows, and the weight is
// the broadcast 4 codes w[n, ci·4 + bh·2 + bw, kh, kw]. A zmm covers 16 folded columns of one
// folded row; register tile: 2 folded rows × 12 folded channels (3 output channels × py × px) =
// 24 accumulators, so each tap costs 2 activation loads and 12 weight broadcasts for 24
// vpdpbusd. The unfold is the output store: the px = 0 and px = 1 results of a channel and row
// are interleaved (vpermt2d) into 32 consecutive output pixels.
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

// The dense pass of one channel block over 16 folded columns of both rows:
// out[r][n][lane] = Σ x·W0 for the 12 channels n. Kernel rows that lie in the padding
// for both output rows are skipped and added as zx·row_sums instead.
void dense_block(const QTask& t, std::int64_t b, std::int64_t j0, std::int32_t* out) {
  const std::int64_t k = t.kernel, ci_n = t.in_channels, hf = t.height / 2;
  const std::int64_t groups = q_row_groups(t.folded_out_width, k, t.dilation);
  const std::int64_t set = q_rows_bytes(ci_n, t.folded_out_width, k, t.dilation);
  const std::int8_t* wp = t.dense + b * k * k * ci_n * NB * 4;
  __m512i a0[NB], a1[NB];
#pragma GCC unroll 12
  for (int n = 0; n < NB; ++n) a0[n] = a1[n] = _mm512_setzero_si512();
  std::int32_t skipped[NB] = {};
  for (std::int64_t kh = 0; kh < k; ++kh) {
    const std::int64_t r0 = t.i + kh * t.dilation - t.padding, r1 = r0 + 1;
    if ((r0 < 0 || r0 >= hf) && (t.rows < 2 || r1 < 0 || r1 >= hf)) {
      for (int n = 0; n < NB; ++n) skipped[n] += t.row_sums[(b * NB + n) * k + kh];
      wp += k * ci_n * NB * 4;
      continue;
    }
    for (std::int64_t kw = 0; kw < k; ++kw) {
      const std::uint8_t* xg = t.buffer + ((kh * ci_n) * groups + kw * t.dilation + j0) * 4;
      for (std::int64_t ci = 0; ci < ci_n; ++ci, xg += groups * 4, wp += NB * 4) {
        const __m512i x0 = _mm512_loadu_si512(xg), x1 = _mm512_loadu_si512(xg + set);
#pragma GCC unroll 12
        for (int n = 0; n < NB; ++n) {
          const __m512i w = _mm512_set1_epi32(load_i32(wp + 4 * n));
          a0[n] = _mm512_dpbusd_epi32(a0[n], x0, w);
          a1[n] = _mm512_dpbusd_epi32(a1[n], x1, w);
        }
      }
    }
  }
#pragma GCC unroll 12
  for (int n = 0; n < NB; ++n) {
    const __m512i pad = _mm512_set1_epi32(static_cast<std::int32_t>(t.zx) * skipped[n]);
    _mm512_store_si512(out + 16 * n, _mm512_add_epi32(a0[n], pad));
    _mm512_store_si512(out + 16 * (NB + n), _mm512_add_epi32(a1[n], pad));
  }
}

// The sparse tail pass of one channel block for both rows: t_out[r][nl][lane] = Σ x·W1 over
// the 4-byte groups holding a non-zero tail code. Two groups per step, each on its own
// accumulators, give 4 independent vpdpbusd chains per channel.
void tail_block(const QTask& t, std::int64_t b, std::int64_t channels, std::int64_t j0,
                std::int32_t* t_out) {
  const std::int64_t set = q_rows_bytes(t.in_channels, t.folded_out_width, t.kernel, t.dilation);
  const std::uint8_t* base = t.buffer + 4 * j0;
  const __m512i zero = _mm512_setzero_si512();
  for (std::int64_t nl = 0; nl < channels; ++nl) {
    const std::int64_t n = b * NB + nl;
    __m512i ta0 = zero, ta1 = zero;  // group 2m:   rows 0, 1
    __m512i tb0 = zero, tb1 = zero;  // group 2m+1: rows 0, 1
    std::int64_t e = t.tail_start[n];
    const std::int64_t end = t.tail_start[n + 1];
    for (; e + 1 < end; e += 2) {
      const FoldTailGroup& ga = t.tail_groups[e];
      const FoldTailGroup& gb = t.tail_groups[e + 1];
      const std::uint8_t* pa = base + t.group_offset[ga.group];
      const std::uint8_t* pb = base + t.group_offset[gb.group];
      const __m512i ca = _mm512_set1_epi32(ga.codes), cb = _mm512_set1_epi32(gb.codes);
      ta0 = _mm512_dpbusd_epi32(ta0, _mm512_loadu_si512(pa), ca);
      ta1 = _mm512_dpbusd_epi32(ta1, _mm512_loadu_si512(pa + set), ca);
      tb0 = _mm512_dpbusd_epi32(tb0, _mm512_loadu_si512(pb), cb);
      tb1 = _mm512_dpbusd_epi32(tb1, _mm512_loadu_si512(pb + set), cb);
    }
    if (e < end) {
      const FoldTailGroup& ga = t.tail_groups[e];
      const std::uint8_t* pa = base + t.group_offset[ga.group];
      const __m512i ca = _mm512_set1_epi32(ga.codes);
      ta0 = _mm512_dpbusd_epi32(ta0, _mm512_loadu_si512(pa), ca);
      ta1 = _mm512_dpbusd_epi32(ta1, _mm512_loadu_si512(pa + set), ca);
    }
    _mm512_store_si512(t_out + 16 * nl, _mm512_add_epi32(ta0, tb0));
    _mm512_store_si512(t_out + 16 * (NB + nl), _mm512_add_epi32(ta1, tb1));
  }
}

void q_task(const QTask& t) {
  const std::int64_t k = t.kernel, ci_n = t.in_channels, wf = t.folded_out_width;
  const std::int64_t taps = k * k * ci_n;
  const std::int64_t set = q_rows_bytes(ci_n, wf, k, t.dilation);
  const __m512i ones = _mm512_set1_epi32(0x01010101);
  const __m512i zero = _mm512_setzero_si512();
  const Interleave il;
  alignas(64) std::int32_t dense[2 * NB * 16], tails[2 * NB * 16];
  for (std::int64_t j0 = 0; j0 < wf; j0 += 16) {
    const std::int64_t lanes = wf - j0 < 16 ? wf - j0 : 16;
    __m512i r[2];
    for (std::int64_t rr = 0; rr < 2; ++rr) {
      // Window sums; four independent chains (a single one is latency-bound).
      __m512i part[4] = {zero, zero, zero, zero};
      const std::uint8_t* xr = t.buffer + rr * set + 4 * j0;
      std::int64_t g = 0;
      for (; g + 3 < taps; g += 4) {
        for (int k = 0; k < 4; ++k) {
          part[k] = _mm512_dpbusd_epi32(
              part[k], _mm512_loadu_si512(xr + t.group_offset[g + k]), ones);
        }
      }
      for (; g < taps; ++g) {
        part[0] = _mm512_dpbusd_epi32(part[0], _mm512_loadu_si512(xr + t.group_offset[g]), ones);
      }
      r[rr] = _mm512_add_epi32(_mm512_add_epi32(part[0], part[1]),
                               _mm512_add_epi32(part[2], part[3]));
      if (t.write_r && t.r && rr < t.rows)
        _mm512_mask_storeu_epi32(t.r + (t.i + rr) * wf + j0, first(lanes), r[rr]);
    }
    for (std::int64_t b = t.block0; b < t.block1; ++b) {
      const std::int64_t co_count =
          t.out_channels - b * kFoldQBlock < kFoldQBlock ? t.out_channels - b * kFoldQBlock
                                                         : kFoldQBlock;
      dense_block(t, b, j0, dense);
      if (t.has_tail) tail_block(t, b, 4 * co_count, j0, tails);
      for (std::int64_t rr = 0; rr < t.rows; ++rr) {
        for (std::int64_t c = 0; c < co_count; ++c) {
          for (int py = 0; py < 2; ++py) {
            __m512i ac[2], at[2];
            std::int64_t n[2];
            for (int px = 0; px < 2; ++px) {
              const std::int64_t nl = c * 4 + py * 2 + px, slot = 16 * (rr * NB + nl);
              n[px] = b * NB + nl;
              at[px] = t.has_tail ? _mm512_load_si512(tails + slot) : zero;
              ac[px] = _mm512_load_si512(dense + slot);
            }
            const std::int64_t o = ((b * kFoldQBlock + c) * t.out_height + 2 * (t.i + rr) + py) *
                                       t.out_width + 2 * j0;
            if (!t.epilogue) {
              store_pairs(t.a_c + o, ac[0], ac[1], lanes, il);
              store_pairs(t.a_t + o, at[0], at[1], lanes, il);
              continue;
            }
            const QEpilogue& q = *t.epilogue;
            const __m512 y0 = epilogue(q, n[0], t.has_tail, ac[0], at[0], r[rr]);
            const __m512 y1 = epilogue(q, n[1], t.has_tail, ac[1], at[1], r[rr]);
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
