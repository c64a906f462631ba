// AVX-512 VNNI path of the integer folded convolution. Compiled with -mavx512f -mavx512bw
// -mavx512vl -mavx512vnni (this file only) and chosen at run time when cpu_features().avx512_vnni.
//
// The fold is free here: the 4 bytes that vpdpbusd reduces into one int32 lane are the 2×2 fold
// block (bh, bw) of one input channel, taken from the padded planes (q_build_planes) by the
// task's pack into one 64-byte aligned row per tap, input channel and vector (so no load splits
// a cache line), and the weight is the broadcast 4 codes w[n, ci·4 + bh·2 + bw, kh, kw]. A zmm
// holds 16 folded output pixels in row-major order over the image (a vector may span rows, so no
// lane is wasted at the end of a row); a task has up to 4 vectors. Dense pass: register tiles of
// 4 (or 3) vectors × 6 folded channels, two per block of 12 (3 output channels × py × px).
// Sparse tail pass: per channel, its non-zero tail codes in quads (PwlqTailQuad) against the
// task's bytes transposed element by element (QTask::planar): a quad's 4 element rows are
// interleaved into 16 pixels × 4 elements per vector and multiplied by its 4 codes, so the pass
// does one vpdpbusd per 4 tail codes rather than one per group holding one (~10 % of the codes
// against ~34 % of the groups with random tails). Kernel rows that lie wholly in the padding are
// skipped by both passes and added as zx times their code sums. The unfold is the output store:
// the px = 0 and px = 1 results of a channel and row are interleaved (vpermt2d) into consecutive
// output pixels, one store per row a vector touches.
#include "prism/fold_conv.hpp"
#include "fold_q_common.hpp"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512VNNI__)
#include <immintrin.h>

#include <cstring>

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593, see qgemm_avx512vnni

namespace prism {
namespace fold_conv_detail {
namespace {


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

#include "avx512_int.inc"

// acc += Σ4 x(u8)·w(s8) in place (see qgemm_avx512vnni.cpp: GCC 12 copies intrinsic
// accumulators between registers in a loop like the tail pass's; the asm pins each to one).
#define PRISM_DPBUSD(acc, x, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))

// Scratch of dense and tail sums: [vector][folded channel NB][16 lanes].
constexpr std::int64_t slot(std::int64_t v, std::int64_t nl) { return 16 * (v * NB + nl); }

using Segment = QSegment;

inline __mmask16 lanes_mask(std::int64_t l0, std::int64_t l1) {
  return static_cast<__mmask16>(first(l1) & ~first(l0));
}

// Lanes [l0, l1) of segment g moved down to lane 0 (stores start at the segment's first pixel).
inline __m512i from_lane(const Segment& g, __m512i v) {
  return g.l0 == 0 ? v : _mm512_maskz_compress_epi32(lanes_mask(g.l0, g.l1), v);
}
inline __m512 from_lane(const Segment& g, __m512 v) {
  return g.l0 == 0 ? v : _mm512_maskz_compress_ps(lanes_mask(g.l0, g.l1), v);
}

// Fills the buffer rows of kernel rows [kh0, kh1): per tap, input channel and vector, one masked
// load per segment from the padded planes (lanes past the last pixel hold zx) and one aligned
// store. The load address is the segment's first pixel less l0 lanes; masked lanes are not read.
void pack(const QTask& t, const QTaskSegments& segs, std::int64_t kh0, std::int64_t kh1) {
  const std::int64_t k = t.kernel, ci_n = t.in_channels, d = t.dilation;
  const std::int64_t wp = t.plane_width, plane = t.plane_height * wp * 4;
  const __m512i pad = _mm512_set1_epi8(static_cast<char>(t.zx));
  const auto& seg = segs.seg;
  const auto& count = segs.count;
  const auto base = reinterpret_cast<std::uintptr_t>(t.planes);
  for (std::int64_t kh = kh0; kh < kh1; ++kh) {
    for (std::int64_t kw = 0; kw < k; ++kw) {
      for (std::int64_t v = 0; v < t.vectors; ++v) {
        std::uint8_t* dst = t.buffer + v * 64 + (kh * k + kw) * ci_n * kRow;
        std::int64_t off[16];
        __mmask16 mask[16];
        for (int s = 0; s < count[v]; ++s) {
          const Segment& g = seg[v][s];
          off[s] = ((g.i + kh * d) * wp + g.j + kw * d - g.l0) * 4;
          mask[s] = lanes_mask(g.l0, g.l1);
        }
        if (count[v] == 1) {  // the usual case: one row
          for (std::int64_t ci = 0; ci < ci_n; ++ci, dst += kRow) {
            const void* src = reinterpret_cast<const void*>(base + ci * plane + off[0]);
            _mm512_store_si512(dst, _mm512_mask_loadu_epi32(pad, mask[0], src));
          }
          continue;
        }
        for (std::int64_t ci = 0; ci < ci_n; ++ci, dst += kRow) {
          __m512i x = pad;
          for (int s = 0; s < count[v]; ++s) {
            const void* src = reinterpret_cast<const void*>(base + ci * plane + off[s]);
            x = _mm512_mask_loadu_epi32(x, mask[s], src);
          }
          _mm512_store_si512(dst, x);
        }
      }
    }
  }
}

// zx times the codes of channel n's kernel rows outside [kh0, kh1) (sums: row_sums or
// tail_row_sums): what those rows, lying wholly in the padding, add to every lane.
inline __m512i padding_rows(const QTask& t, const std::int32_t* sums, std::int64_t n,
                            std::int64_t kh0, std::int64_t kh1) {
  return _mm512_set1_epi32(q_row_code_sum(t, sums, n, kh0, kh1, 0));
}

// The dense pass of one channel block, channels [c0, c0 + C), over vectors [v, v + V):
// out[vector][n][lane] = Σ x·W0, kernel rows [kh0, kh1); the others lie in the padding for every
// pixel and are added as zx·row_sums. Register tiles V × C ≤ 24 accumulators: 4 × 6 and 3 × 6
// (each group: V activation loads and C weight broadcasts for V·C vpdpbusd), 2 × 12 and 1 × 12.
template <int V, int C>
__attribute__((noinline)) void dense_tile(const QTask& t, std::int64_t b, std::int64_t v,
                                          std::int64_t c0, std::int64_t kh0, std::int64_t kh1,
                                          std::int32_t* out) {
  static_assert(V >= 1 && V <= 4 && V * C <= 24, "at most 24 accumulators");
  const std::int64_t k = t.kernel, ci_n = t.in_channels;
  const std::int8_t* wp = t.dense + (b * k + kh0) * k * ci_n * NB * 4 + 4 * c0;
  __m512i a[V][C];
#pragma GCC unroll 24
  for (int i = 0; i < V * C; ++i) a[i / C][i % C] = _mm512_setzero_si512();
  const std::uint8_t* xg = t.buffer + v * 64 + kh0 * k * ci_n * kRow;
  for (std::int64_t g = (kh1 - kh0) * k * ci_n; g > 0; --g, xg += kRow, wp += NB * 4) {
    __m512i x[V];
#pragma GCC unroll 4
    for (int i = 0; i < V; ++i) x[i] = _mm512_load_si512(xg + i * 64);
#pragma GCC unroll 12
    for (int n = 0; n < C; ++n) {
      const __m512i w = _mm512_set1_epi32(load_i32(wp + 4 * n));
#pragma GCC unroll 4
      for (int i = 0; i < V; ++i) PRISM_DPBUSD(a[i][n], x[i], w);
    }
  }
#pragma GCC unroll 12
  for (int n = 0; n < C; ++n) {
    const __m512i pad = padding_rows(t, t.row_sums, b * NB + c0 + n, kh0, kh1);
#pragma GCC unroll 4
    for (int i = 0; i < V; ++i)
      _mm512_store_si512(out + slot(v + i, c0 + n), _mm512_add_epi32(a[i][n], pad));
  }
}

#include "vnni_quads.inc"

// QTask::planar for buffer rows [g0, g1): per row g, its 4 vectors (zeros past the task's)
// transposed to its 4 element rows (element_rows, vnni_quads.inc).
void planar_rows(const QTask& t, std::int64_t g0, std::int64_t g1) {
  for (std::int64_t g = g0; g < g1; ++g) {
    const std::uint8_t* src = t.buffer + g * kRow;
    __m512i x[4];
    for (int v = 0; v < 4; ++v)
      x[v] = v < t.vectors ? _mm512_load_si512(src + 64 * v) : _mm512_setzero_si512();
    element_rows(x, t.planar + g * 256);
  }
}

// One channel's tail over the task's G vectors (1 to 4), quad by quad (quad_steps,
// vnni_quads.inc): one vpdpbusd per 4 tail codes and vector.
template <int G>
inline void tail_tile(const std::uint8_t* planar, const PwlqTailQuad* e, const PwlqTailQuad* end,
                      __m512i p, std::int32_t* out, std::int64_t nl) {
  const __m512i z = _mm512_setzero_si512();
  __m512i a0 = z, a1 = z, a2 = z, a3 = z;
  quad_steps<G>(planar, e, end, a0, a1, a2, a3);
  _mm512_store_si512(out + slot(0, nl), _mm512_add_epi32(a0, p));
  if constexpr (G >= 2) _mm512_store_si512(out + slot(1, nl), _mm512_add_epi32(a1, p));
  if constexpr (G >= 3) _mm512_store_si512(out + slot(2, nl), _mm512_add_epi32(a2, p));
  if constexpr (G >= 4) _mm512_store_si512(out + slot(3, nl), _mm512_add_epi32(a3, p));
}

// The sparse tail pass of one channel block over all vectors of the task:
// out[vector][nl][lane] = Σ x·W1 over the channel's non-zero tail codes, kernel rows [kh0, kh1)
// from the quad lists and the others as zx·tail_row_sums.
template <int G>
__attribute__((noinline)) void tail_block(const QTask& t, std::int64_t b, std::int64_t channels,
                                          std::int64_t kh0, std::int64_t kh1, std::int32_t* out) {
  const std::int64_t k = t.kernel;
  for (std::int64_t nl = 0; nl < channels; ++nl) {
    const std::int64_t n = b * NB + nl;
    const PwlqTailQuad* e = t.tail_quads + t.quad_start[n * k + kh0];
    const PwlqTailQuad* end = t.tail_quads + t.quad_start[n * k + kh1];
    tail_tile<G>(t.planar, e, end, padding_rows(t, t.tail_row_sums, n, kh0, kh1), out, nl);
  }
}

void q_task(const QTask& t) {
  const std::int64_t k = t.kernel, ci_n = t.in_channels;
  const __m512i ones = _mm512_set1_epi32(0x01010101);
  const __m512i zero = _mm512_setzero_si512();
  const Interleave il;
  const QTaskSetup setup = q_task_setup(t);
  const auto& [kh0, kh1, live, skipped_sum, segs] = setup;
  pack(t, segs, kh0, kh1);
  if (t.has_tail) planar_rows(t, kh0 * k * ci_n, kh1 * k * ci_n);
  // Window sums over the live kernel rows; four independent chains (a single one is
  // latency-bound). Then what the skipped rows add.
  const __m512i r_pad = _mm512_set1_epi32(skipped_sum);
  __m512i r[kFoldQVectors];
  const auto& seg = segs.seg;
  const auto& count = segs.count;
  const std::int64_t pixels = t.folded_out_height * t.folded_out_width;
  for (std::int64_t v = 0; v < t.vectors; ++v) {
    __m512i part[4] = {zero, zero, zero, zero};
    const std::uint8_t* xr = t.buffer + v * 64 + kh0 * k * ci_n * kRow;
    std::int64_t g = 0;
    for (; g + 3 < live; g += 4) {
      for (int q = 0; q < 4; ++q) {
        part[q] = _mm512_dpbusd_epi32(part[q], _mm512_load_si512(xr + kRow * (g + q)), ones);
      }
    }
    for (; g < live; ++g) {
      part[0] = _mm512_dpbusd_epi32(part[0], _mm512_load_si512(xr + kRow * g), ones);
    }
    r[v] = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(part[0], part[1]),
                                             _mm512_add_epi32(part[2], part[3])),
                            r_pad);
    if (t.write_r && t.r) {
      const std::int64_t m0 = 16 * (t.v0 + v);
      _mm512_mask_storeu_epi32(t.r + m0, first(pixels - m0), r[v]);
    }
  }
  alignas(64) std::int32_t dense[kFoldQVectors * NB * 16], tails[kFoldQVectors * NB * 16];
  for (std::int64_t b = t.block0; b < t.block1; ++b) {
    const std::int64_t co_count =
        t.out_channels - b * kFoldQBlock < kFoldQBlock ? t.out_channels - b * kFoldQBlock
                                                       : kFoldQBlock;
    switch (t.vectors) {
      case 1: dense_tile<1, 12>(t, b, 0, 0, kh0, kh1, dense); break;
      case 2: dense_tile<2, 12>(t, b, 0, 0, kh0, kh1, dense); break;
      case 3:
        dense_tile<3, 6>(t, b, 0, 0, kh0, kh1, dense);
        dense_tile<3, 6>(t, b, 0, 6, kh0, kh1, dense);
        break;
      default:
        dense_tile<4, 6>(t, b, 0, 0, kh0, kh1, dense);
        dense_tile<4, 6>(t, b, 0, 6, kh0, kh1, dense);
        break;
    }
    if (t.has_tail) {
      const std::int64_t channels = 4 * co_count;
      switch (t.vectors) {
        case 1: tail_block<1>(t, b, channels, kh0, kh1, tails); break;
        case 2: tail_block<2>(t, b, channels, kh0, kh1, tails); break;
        case 3: tail_block<3>(t, b, channels, kh0, kh1, tails); break;
        default: tail_block<4>(t, b, channels, kh0, kh1, tails); break;
      }
    }
    for (std::int64_t vv = 0; vv < t.vectors; ++vv) {
      for (std::int64_t co = 0; co < co_count; ++co) {
        for (int py = 0; py < 2; ++py) {
          __m512i ac[2], at[2];
          std::int64_t n[2];
          for (int px = 0; px < 2; ++px) {
            const std::int64_t nl = co * 4 + py * 2 + px;
            n[px] = b * NB + nl;
            at[px] = t.has_tail ? _mm512_load_si512(tails + slot(vv, nl)) : zero;
            ac[px] = _mm512_load_si512(dense + slot(vv, nl));
          }
          const std::int64_t plane = (b * kFoldQBlock + co) * t.out_height + py;
          if (!t.epilogue) {
            for (int s = 0; s < count[vv]; ++s) {
              const Segment& g = seg[vv][s];
              const std::int64_t o = (plane + 2 * g.i) * t.out_width + 2 * g.j;
              store_pairs(t.a_c + o, from_lane(g, ac[0]), from_lane(g, ac[1]), g.l1 - g.l0, il);
              store_pairs(t.a_t + o, from_lane(g, at[0]), from_lane(g, at[1]), g.l1 - g.l0, il);
            }
            continue;
          }
          const QEpilogue& q = *t.epilogue;
          __m512 y[2];
          for (int px = 0; px < 2; ++px) {
            y[px] = affine16(ac[px], q.zero_c[n[px]], q.alpha_c[n[px]], t.has_tail, at[px],
                             q.zero_t[n[px]], q.alpha_t[n[px]], r[vv], q.row_zero,
                             q.gamma[n[px]], q.beta[n[px]]);
          }
          for (int s = 0; s < count[vv]; ++s) {
            const Segment& g = seg[vv][s];
            const std::int64_t o = (plane + 2 * g.i) * t.out_width + 2 * g.j;
            const __m512 z0 = from_lane(g, y[0]), z1 = from_lane(g, y[1]);
            if (t.y) {
              store_pairs(t.y + o, z0, z1, g.l1 - g.l0, il);
            } else {
              store_pairs(t.q + o, requantize16(z0, q.out_scale, q.out_zero, q.out_low),
                          requantize16(z1, q.out_scale, q.out_zero, q.out_low), g.l1 - g.l0);
            }
          }
        }
      }
    }
  }
}

const FoldConvIsa kAvx512Vnni{FoldConvPath::Avx512Vnni, nullptr, q_task, nullptr, nullptr,
                                 nullptr, false, 0, true};

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
