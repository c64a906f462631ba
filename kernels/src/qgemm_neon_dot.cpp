// NEON dot-product path of the PWLQ integer GEMM (Jetson Xavier/Orin: ARMv8.2 asimddp).
// Compiled with -march=armv8.2-a+dotprod (this file only) and chosen at run time when
// cpu_features().neon_dotprod.
//
// sdot multiplies s8 by s8 (udot u8 by u8); there is no u8×s8 form without the i8mm extension
// (usdot), which Xavier lacks. So activations are packed as x − 128 (the byte XOR 0x80, read as
// int8) and the accumulator is corrected exactly: Σ (x − 128)·w = Σ x·w − 128·Σ w, hence
// A = sdot_sum + 128·Σw, with Σw the per-channel code sums precomputed at packing time.
// sdot by lane (vdotq_laneq_s32) broadcasts one channel's 4-code block from a register holding
// 4 channels. Register tile: 16 rows (4 q registers) × 4 channels = 16 accumulators.
#include "prism/qgemm.hpp"

#if defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
#include <arm_neon.h>

namespace prism {
namespace qgemm_detail {
namespace {

constexpr int kP = kQgemmPanel, kB = kQgemmKBlock;

#include "neon_int.inc"

void dense_tile(const std::uint8_t* x, std::int64_t k_blocks, const std::int8_t* panel, int half,
                const std::int32_t* code_sums, std::int32_t* out, std::int64_t ld) {
  int32x4_t acc[4][4];  // [channel][row quad]
  for (int j = 0; j < 4; ++j)
    for (int q = 0; q < 4; ++q) acc[j][q] = vdupq_n_s32(0);
  for (std::int64_t kb = 0; kb < k_blocks; ++kb) {
    const std::int8_t* xs = reinterpret_cast<const std::int8_t*>(x + kb * 64);
    const int8x16_t xv[4] = {vld1q_s8(xs), vld1q_s8(xs + 16), vld1q_s8(xs + 32),
                             vld1q_s8(xs + 48)};
    const int8x16_t w = vld1q_s8(panel + kb * (kB * kP) + half * 4 * kB);
    dot_lane<0>(acc[0], xv, w);
    dot_lane<1>(acc[1], xv, w);
    dot_lane<2>(acc[2], xv, w);
    dot_lane<3>(acc[3], xv, w);
  }
  for (int j = 0; j < 4; ++j) {
    const int32x4_t fix = vdupq_n_s32(128 * code_sums[half * 4 + j]);
    std::int32_t* o = out + (half * 4 + j) * ld;
    for (int q = 0; q < 4; ++q) vst1q_s32(o + 4 * q, vaddq_s32(acc[j][q], fix));
  }
}

void dense(const DenseArgs& a) {
  for (std::int64_t g = 0; g < a.x.row_groups; ++g) {
    const std::uint8_t* x = a.x.data + g * a.x.k_blocks * 64;
    for (int half = 0; half < 2; ++half)
      dense_tile(x, a.x.k_blocks, a.panel, half, a.code_sums, a.out + g * 16, a.ld);
  }
}

void tail(const TailArgs& a) {
  for (std::int64_t j = 0; j < a.channels; ++j) {
    const int32x4_t fix_t = vdupq_n_s32(128 * a.tail_sums[j]);
    for (std::int64_t g = 0; g < a.x.row_groups; ++g) {
      const std::uint8_t* x = a.x.data + g * a.x.k_blocks * 64;
      int32x4_t at[4];
      for (int q = 0; q < 4; ++q) at[q] = vdupq_n_s32(0);
      for (std::int64_t e = a.start[j]; e < a.start[j + 1]; ++e) {
        const QgemmTailBlock& b = a.blocks[e];
        const int8x16_t codes = vreinterpretq_s8_s32(vdupq_n_s32(b.codes));
        const std::int8_t* xs = reinterpret_cast<const std::int8_t*>(x + b.k_block * 64);
        for (int q = 0; q < 4; ++q) {
          const int8x16_t xv = vld1q_s8(xs + 16 * q);
          at[q] = vdotq_s32(at[q], xv, codes);
        }
      }
      std::int32_t* ot = a.out_t + j * a.ld + g * 16;
      for (int q = 0; q < 4; ++q) vst1q_s32(ot + 4 * q, vaddq_s32(at[q], fix_t));
    }
  }
}

// The float epilogue, 4 rows at a time (neon_int.inc).
void epilogue(const EpilogueArgs& a) {
  for (std::int64_t j = 0; j < a.channels; ++j) {
    for (std::int64_t r = 0; r < a.rows; r += 4) {
      const std::int64_t i = j * a.ld + r;
      const int32x4_t at = a.acc_t ? vld1q_s32(a.acc_t + i) : vdupq_n_s32(0);
      const float32x4_t y =
          affine4(vld1q_s32(a.acc + i), a.zero_c[j], a.alpha_c[j], a.acc_t != nullptr, at,
                  a.zero_t[j], a.alpha_t[j], vld1q_s32(a.row_sums + r), a.row_zero, a.gamma[j],
                  a.beta[j]);
      if (!a.q) {
        vst1q_f32(a.y + i, y);
        continue;
      }
      const uint16x4_t w16 = vmovn_u32(requantize4(y, a.out_scale, a.out_zero, a.out_low));
      const uint8x8_t b8 = vmovn_u16(vcombine_u16(w16, w16));
      const std::uint32_t four = vget_lane_u32(vreinterpret_u32_u8(b8), 0);
      __builtin_memcpy(a.q + i, &four, 4);
    }
  }
}

// Rows [row0, row0 + 16·row_groups) of the implicit im2col matrix (TapPackArgs), biased: per
// k-block, the 16 rows of its 4 taps from four 16-byte loads, interleaved bytewise into rows of
// 4 k-values (vzip of bytes, then of halfwords), stored as x ^ 0x80. Row sums of x by udot with
// ones before the flip.
void pack_taps(const TapPackArgs& a) {
  const uint8x16_t ones = vdupq_n_u8(1), flip = vdupq_n_u8(0x80);
  const std::int64_t full = a.depth / kB;
  auto store = [&](std::uint8_t* out, uint8x16_t t0, uint8x16_t t1, uint8x16_t t2, uint8x16_t t3,
                   uint32x4_t (&sums)[4]) {
    const uint8x16x2_t ab = vzipq_u8(t0, t1), cd = vzipq_u8(t2, t3);
    const uint16x8x2_t lo = vzipq_u16(vreinterpretq_u16_u8(ab.val[0]),
                                      vreinterpretq_u16_u8(cd.val[0]));  // rows 0..3, 4..7
    const uint16x8x2_t hi = vzipq_u16(vreinterpretq_u16_u8(ab.val[1]),
                                      vreinterpretq_u16_u8(cd.val[1]));  // rows 8..11, 12..15
    const uint8x16_t rows[4] = {vreinterpretq_u8_u16(lo.val[0]), vreinterpretq_u8_u16(lo.val[1]),
                                vreinterpretq_u8_u16(hi.val[0]), vreinterpretq_u8_u16(hi.val[1])};
    for (int q = 0; q < 4; ++q) {
      sums[q] = vdotq_u32(sums[q], rows[q], ones);
      vst1q_u8(out + 16 * q, veorq_u8(rows[q], flip));
    }
  };
  for (std::int64_t g = 0; g < a.row_groups; ++g) {
    const std::uint8_t* rows = a.planes + a.row0 + g * 16;
    std::uint8_t* out = a.out + g * a.k_blocks * 64;
    const std::int64_t* tap = a.tap_offset;
    uint32x4_t sums[4] = {vdupq_n_u32(0), vdupq_n_u32(0), vdupq_n_u32(0), vdupq_n_u32(0)};
    for (std::int64_t kb = 0; kb < full; ++kb, tap += kB) {
      store(out + kb * 64, vld1q_u8(rows + tap[0]), vld1q_u8(rows + tap[1]),
            vld1q_u8(rows + tap[2]), vld1q_u8(rows + tap[3]), sums);
    }
    if (full < a.k_blocks) {  // the last partial block: x = 0 past K
      uint8x16_t t[kB];
      for (int i = 0; i < kB; ++i) {
        t[i] = full * kB + i < a.depth ? vld1q_u8(rows + tap[i]) : vdupq_n_u8(0);
      }
      store(out + full * 64, t[0], t[1], t[2], t[3], sums);
    }
    for (int q = 0; q < 4; ++q) {
      vst1q_s32(a.row_sums + g * 16 + 4 * q, vreinterpretq_s32_u32(sums[q]));
    }
  }
}

// ONNX QuantizeLinear, 8 values at a time: requantize4 with a low end of 0, the portable loop's
// float32 operations (true division, round half to even, add, saturate); the last partial
// vector through a copy.
void quantize(const QuantizeArgs& a) {
  const float32x4_t clo = vdupq_n_f32(a.clip_low), chi = vdupq_n_f32(a.clip_high);
  auto one = [&](float32x4_t x) {
    if (a.clip) x = vminq_f32(vmaxq_f32(x, clo), chi);
    return vmovn_u32(requantize4(x, a.scale, a.zero_point, 0.0f));
  };
  for (std::int64_t i = 0; i < a.count; i += 8) {
    const std::int64_t n = a.count - i < 8 ? a.count - i : 8;
    alignas(16) float in[8] = {};
    const float* src = a.x + i;
    if (n < 8) {
      __builtin_memcpy(in, src, static_cast<std::size_t>(n) * sizeof(float));
      src = in;
    }
    const uint8x8_t b8 = vmovn_u16(vcombine_u16(one(vld1q_f32(src)), one(vld1q_f32(src + 4))));
    if (n == 8) {
      vst1_u8(a.q + i, b8);
    } else {
      alignas(8) std::uint8_t out[8];
      vst1_u8(out, b8);
      __builtin_memcpy(a.q + i, out, static_cast<std::size_t>(n));
    }
  }
}

const IsaKernels kNeonDot{QgemmPath::NeonDot, true, dense, tail, epilogue, nullptr, nullptr,
                          pack_taps, quantize};

}  // namespace

const IsaKernels* neon_dot_kernels() { return &kNeonDot; }

}  // namespace qgemm_detail
}  // namespace prism

#else  // not an aarch64 build with the dot-product flags

namespace prism {
namespace qgemm_detail {
const IsaKernels* neon_dot_kernels() { return nullptr; }
}  // namespace qgemm_detail
}  // namespace prism

#endif
