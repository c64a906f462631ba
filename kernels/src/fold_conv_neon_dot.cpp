// NEON dot-product path of the integer folded convolution (Jetson Xavier/Orin: ARMv8.2 asimddp).
// Compiled with -march=armv8.2-a+dotprod (this file only) and chosen at run time when
// cpu_features().neon_dotprod.
//
// The AVX-512 VNNI scheme (fold_conv_avx512vnni.cpp) on 128-bit registers: a task vector of 16
// folded output pixels is four q registers of 4 pixels, each lane the 4 bytes of one 2×2 fold
// block, which one sdot lane reduces. sdot multiplies s8 by s8 (there is no u8×s8 form without
// i8mm, which Xavier lacks), so the task's buffer holds x − 128 (the byte XOR 0x80) and every
// sum is corrected exactly, as in qgemm_neon_dot.cpp: Σ (x − 128)·w = Σ x·w − 128·Σ w, so each
// channel adds 128 times its codes over the live kernel rows (and zx times those of the rows
// lying wholly in the padding, which the passes skip). Dense register tiles: one vector (4 q
// registers) × 4 folded channels, the channels' 4-byte code blocks in one register read by
// lane (vdotq_laneq_s32), 16 accumulators. Sparse tail pass: per channel, its list of groups
// against all the task's vectors. The unfold is an interleaving store (vst2q).
#include "prism/fold_conv.hpp"
#include "fold_q_common.hpp"

#if defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
#include <arm_neon.h>

#include <cstring>

namespace prism {
namespace fold_conv_detail {
namespace {

// Fills the buffer rows of kernel rows [kh0, kh1) with x ^ 0x80: per tap, input channel and
// vector, its row segments copied from the padded planes (lanes past the last pixel: zx).
void pack(const QTask& t, const QTaskSegments& segs, std::int64_t kh0, std::int64_t kh1) {
  const std::int64_t k = t.kernel, ci_n = t.in_channels, d = t.dilation;
  const std::int64_t wp = t.plane_width, plane = t.plane_height * wp * 4;
  const uint8x16_t flip = vdupq_n_u8(0x80);
  for (std::int64_t kh = kh0; kh < kh1; ++kh) {
    for (std::int64_t kw = 0; kw < k; ++kw) {
      for (std::int64_t v = 0; v < t.vectors; ++v) {
        std::uint8_t* dst = t.buffer + v * 64 + (kh * k + kw) * ci_n * kRow;
        const int count = segs.count[v];
        std::int64_t off[16];
        for (int s = 0; s < count; ++s) {
          const QSegment& g = segs.seg[v][s];
          off[s] = ((g.i + kh * d) * wp + g.j + kw * d) * 4;
        }
        const bool whole = full(segs, v);
        for (std::int64_t ci = 0; ci < ci_n; ++ci, dst += kRow) {
          const std::uint8_t* src = t.planes + ci * plane;
          if (whole) {
            for (int q = 0; q < 4; ++q) {
              vst1q_u8(dst + 16 * q, veorq_u8(vld1q_u8(src + off[0] + 16 * q), flip));
            }
            continue;
          }
          alignas(16) std::uint8_t lanes[64];
          std::memset(lanes, t.zx, sizeof lanes);
          for (int s = 0; s < count; ++s) {
            const QSegment& g = segs.seg[v][s];
            std::memcpy(lanes + 4 * g.l0, src + off[s],
                        static_cast<std::size_t>(4 * (g.l1 - g.l0)));
          }
          for (int q = 0; q < 4; ++q) {
            vst1q_u8(dst + 16 * q, veorq_u8(vld1q_u8(lanes + 16 * q), flip));
          }
        }
      }
    }
  }
}

// Scratch of dense and tail sums: [vector][folded channel NB][16 lanes].
constexpr std::int64_t slot(std::int64_t v, std::int64_t nl) { return 16 * (v * NB + nl); }

#include "neon_int.inc"

// The dense pass of folded channels [c0, c0 + 4) of block b over vector v: out[v][n][lane] =
// Σ x·W0, kernel rows [kh0, kh1) through sdot on x − 128, corrected as described above.
void dense_tile(const QTask& t, std::int64_t b, std::int64_t v, std::int64_t c0,
                std::int64_t kh0, std::int64_t kh1, std::int32_t* out) {
  const std::int64_t k = t.kernel, ci_n = t.in_channels;
  const std::int8_t* wp = t.dense + (b * k + kh0) * k * ci_n * NB * 4 + 4 * c0;
  const std::int8_t* xg =
      reinterpret_cast<const std::int8_t*>(t.buffer + v * 64 + kh0 * k * ci_n * kRow);
  int32x4_t acc[4][4];  // [channel][pixel quad]
  for (int j = 0; j < 4; ++j)
    for (int q = 0; q < 4; ++q) acc[j][q] = vdupq_n_s32(0);
  for (std::int64_t g = (kh1 - kh0) * k * ci_n; g > 0; --g, xg += kRow, wp += NB * 4) {
    const int8x16_t x[4] = {vld1q_s8(xg), vld1q_s8(xg + 16), vld1q_s8(xg + 32),
                            vld1q_s8(xg + 48)};
    const int8x16_t w = vld1q_s8(wp);
    dot_lane<0>(acc[0], x, w);
    dot_lane<1>(acc[1], x, w);
    dot_lane<2>(acc[2], x, w);
    dot_lane<3>(acc[3], x, w);
  }
  for (int j = 0; j < 4; ++j) {
    const int32x4_t fix =
        vdupq_n_s32(q_row_code_sum(t, t.row_sums, b * NB + c0 + j, kh0, kh1, 128));
    std::int32_t* o = out + slot(v, c0 + j);
    for (int q = 0; q < 4; ++q) vst1q_s32(o + 4 * q, vaddq_s32(acc[j][q], fix));
  }
}

// The sparse tail pass of one channel block over the task's V vectors.
template <int V>
void tail_block(const QTask& t, std::int64_t b, std::int64_t channels, std::int64_t kh0,
                std::int64_t kh1, std::int32_t* out) {
  const std::int64_t k = t.kernel;
  for (std::int64_t nl = 0; nl < channels; ++nl) {
    const std::int64_t n = b * NB + nl;
    const FoldTailGroup* e = t.tail_groups + t.tail_start[n * k + kh0];
    const FoldTailGroup* end = t.tail_groups + t.tail_start[n * k + kh1];
    int32x4_t acc[V][4];
    for (int v = 0; v < V; ++v)
      for (int q = 0; q < 4; ++q) acc[v][q] = vdupq_n_s32(0);
    for (; e < end; ++e) {
      const int8x16_t w = vreinterpretq_s8_s32(vdupq_n_s32(e->codes));
      const std::int8_t* x = reinterpret_cast<const std::int8_t*>(t.buffer + e->group * kRow);
      for (int v = 0; v < V; ++v)
        for (int q = 0; q < 4; ++q) {
          acc[v][q] = vdotq_s32(acc[v][q], vld1q_s8(x + 64 * v + 16 * q), w);
        }
    }
    const int32x4_t fix = vdupq_n_s32(q_row_code_sum(t, t.tail_row_sums, n, kh0, kh1, 128));
    for (int v = 0; v < V; ++v)
      for (int q = 0; q < 4; ++q) vst1q_s32(out + slot(v, nl) + 4 * q, vaddq_s32(acc[v][q], fix));
  }
}

// Lanes [l0, l1) of a (px = 0) and b (px = 1), 16 values each, interleaved into the output
// pixels of segment g from dst (its first pixel): vst2q for a whole vector, else through a copy.
template <class T, class Store>
inline void store_pairs(T* dst, const T* a, const T* b, const QSegment& g, Store interleave) {
  alignas(16) T pairs[32];
  const bool whole = g.l0 == 0 && g.l1 == 16;
  interleave(whole ? dst : pairs, a, b);
  if (!whole) {
    std::memcpy(dst, pairs + 2 * g.l0, sizeof(T) * static_cast<std::size_t>(2 * (g.l1 - g.l0)));
  }
}

inline void store_pairs(std::int32_t* dst, const std::int32_t* a, const std::int32_t* b,
                        const QSegment& g) {
  store_pairs(dst, a, b, g, [](std::int32_t* to, const std::int32_t* x, const std::int32_t* y) {
    for (int q = 0; q < 4; ++q) {
      vst2q_s32(to + 8 * q, int32x4x2_t{{vld1q_s32(x + 4 * q), vld1q_s32(y + 4 * q)}});
    }
  });
}

inline void store_pairs(float* dst, const float* a, const float* b, const QSegment& g) {
  store_pairs(dst, a, b, g, [](float* to, const float* x, const float* y) {
    for (int q = 0; q < 4; ++q) {
      vst2q_f32(to + 8 * q, float32x4x2_t{{vld1q_f32(x + 4 * q), vld1q_f32(y + 4 * q)}});
    }
  });
}

inline void store_pairs(std::uint8_t* dst, const std::uint8_t* a, const std::uint8_t* b,
                        const QSegment& g) {
  store_pairs(dst, a, b, g, [](std::uint8_t* to, const std::uint8_t* x, const std::uint8_t* y) {
    vst2q_u8(to, uint8x16x2_t{{vld1q_u8(x), vld1q_u8(y)}});
  });
}

void q_task(const QTask& t) {
  const std::int64_t k = t.kernel, ci_n = t.in_channels;
  const QTaskSetup setup = q_task_setup(t);
  const auto& [kh0, kh1, live, skipped_sum, segs] = setup;
  pack(t, segs, kh0, kh1);
  // Window sums: Σ (x − 128) over the live rows by sdot with ones, plus 128 per live byte and
  // what the skipped rows add.
  const int32x4_t r_fix =
      vdupq_n_s32(static_cast<std::int32_t>(4 * 128 * live) + skipped_sum);
  const int8x16_t ones = vdupq_n_s8(1);
  const std::int64_t pixels = t.folded_out_height * t.folded_out_width;
  alignas(16) std::int32_t r[kFoldQVectors * 16];
  for (std::int64_t v = 0; v < t.vectors; ++v) {
    const std::int8_t* xr =
        reinterpret_cast<const std::int8_t*>(t.buffer + v * 64 + kh0 * k * ci_n * kRow);
    int32x4_t acc[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
    for (std::int64_t g = 0; g < live; ++g, xr += kRow) {
      for (int q = 0; q < 4; ++q) acc[q] = vdotq_s32(acc[q], vld1q_s8(xr + 16 * q), ones);
    }
    for (int q = 0; q < 4; ++q) vst1q_s32(r + 16 * v + 4 * q, vaddq_s32(acc[q], r_fix));
    if (t.write_r && t.r) {
      const std::int64_t m0 = 16 * (t.v0 + v), n = pixels - m0 < 16 ? pixels - m0 : 16;
      std::memcpy(t.r + m0, r + 16 * v, static_cast<std::size_t>(n) * 4);
    }
  }
  alignas(16) std::int32_t dense[kFoldQVectors * NB * 16], tails[kFoldQVectors * NB * 16];
  alignas(16) static const std::int32_t kZeros[16] = {};
  const QEpilogue* q = t.epilogue;
  for (std::int64_t b = t.block0; b < t.block1; ++b) {
    const std::int64_t co_count =
        t.out_channels - b * kFoldQBlock < kFoldQBlock ? t.out_channels - b * kFoldQBlock
                                                       : kFoldQBlock;
    for (std::int64_t v = 0; v < t.vectors; ++v) {
      for (std::int64_t c0 = 0; c0 < 4 * co_count; c0 += 4) {
        dense_tile(t, b, v, c0, kh0, kh1, dense);
      }
    }
    if (t.has_tail) {
      switch (t.vectors) {
        case 1: tail_block<1>(t, b, 4 * co_count, kh0, kh1, tails); break;
        case 2: tail_block<2>(t, b, 4 * co_count, kh0, kh1, tails); break;
        case 3: tail_block<3>(t, b, 4 * co_count, kh0, kh1, tails); break;
        default: tail_block<4>(t, b, 4 * co_count, kh0, kh1, tails); break;
      }
    }
    for (std::int64_t v = 0; v < t.vectors; ++v) {
      for (std::int64_t co = 0; co < co_count; ++co) {
        const std::int64_t plane = (b * kFoldQBlock + co) * t.out_height;
        for (int py = 0; py < 2; ++py) {
          const std::int64_t nl = co * 4 + py * 2;  // px = 0; nl + 1: px = 1
          const std::int32_t* ac[2] = {dense + slot(v, nl), dense + slot(v, nl + 1)};
          const std::int32_t* at[2] = {t.has_tail ? tails + slot(v, nl) : kZeros,
                                       t.has_tail ? tails + slot(v, nl + 1) : kZeros};
          alignas(16) float y[2][16];
          alignas(16) std::uint8_t u[2][16];
          if (q) {
            for (int px = 0; px < 2; ++px) {
              const std::int64_t n = b * NB + nl + px;
              for (int i = 0; i < 4; ++i) {
                vst1q_f32(y[px] + 4 * i,
                          affine4(vld1q_s32(ac[px] + 4 * i), q->zero_c[n], q->alpha_c[n],
                                  t.has_tail, vld1q_s32(at[px] + 4 * i), q->zero_t[n],
                                  q->alpha_t[n], vld1q_s32(r + 16 * v + 4 * i), q->row_zero,
                                  q->gamma[n], q->beta[n]));
              }
              if (t.y) continue;
              uint16x4_t w[4];
              for (int i = 0; i < 4; ++i) {
                w[i] = vmovn_u32(requantize4(vld1q_f32(y[px] + 4 * i), q->out_scale,
                                             q->out_zero, q->out_low));
              }
              vst1q_u8(u[px], vcombine_u8(vmovn_u16(vcombine_u16(w[0], w[1])),
                                          vmovn_u16(vcombine_u16(w[2], w[3]))));
            }
          }
          for (int s = 0; s < segs.count[v]; ++s) {
            const QSegment& g = segs.seg[v][s];
            const std::int64_t o = (plane + py + 2 * g.i) * t.out_width + 2 * g.j;
            if (!q) {
              store_pairs(t.a_c + o, ac[0], ac[1], g);
              store_pairs(t.a_t + o, at[0], at[1], g);
            } else if (t.y) {
              store_pairs(t.y + o, y[0], y[1], g);
            } else {
              store_pairs(t.q + o, u[0], u[1], g);
            }
          }
        }
      }
    }
  }
}

const FoldConvIsa kNeonDot{FoldConvPath::NeonDot, nullptr, q_task, nullptr, nullptr, nullptr};

}  // namespace

const FoldConvIsa* fold_conv_neon_dot() { return &kNeonDot; }

}  // namespace fold_conv_detail
}  // namespace prism

#else  // not an aarch64 build with the dot-product flags

namespace prism {
namespace fold_conv_detail {
const FoldConvIsa* fold_conv_neon_dot() { return nullptr; }
}  // namespace fold_conv_detail
}  // namespace prism

#endif
