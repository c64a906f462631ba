// NEON path of the FP32 folded convolution (aarch64: Jetson Xavier/Orin): Winograd F(2×2, 3×3)
// (neon_winograd) and F(4×4, 3×3) (neon_winograd4) for K = 3, the portable direct kernel
// otherwise. NEON is part of the aarch64 base ISA, so this file needs no extra flags.
//
// The AVX2 scheme (fold_conv_avx2.cpp) on 4-lane vectors: a tile vector of 16 tiles is four q
// registers. The input transform reads the driver's pixel blocks (the four fold phases of one
// 2×2 block, 16 bytes) for 4 tiles at a time and transposes them into lanes (trn1/trn2); the
// GEMM's register tile is one tile vector (4 q registers) × 6 folded output channels (24
// accumulators), the 6 weights of a folded input channel in two registers read by lane
// (fmla by element); the output transform writes its results by a scalar loop over precomputed
// indices, as AVX2 does. The transforms are those of the x86 paths (the same points; fmla where
// they fuse a multiply-add), so results differ from them by float rounding only.
#include "prism/fold_conv.hpp"

#if defined(__aarch64__)
#include <arm_neon.h>

namespace prism {
namespace fold_conv_detail {
namespace {

constexpr int kWinoBlock = 12;  // folded output channels per weight block

inline float32x4_t w_add(float32x4_t a, float32x4_t b) { return vaddq_f32(a, b); }
inline float32x4_t w_sub(float32x4_t a, float32x4_t b) { return vsubq_f32(a, b); }
inline float32x4_t w_fma(float32x4_t c, float32x4_t x, float k) { return vfmaq_n_f32(c, x, k); }
inline float32x4_t w_fms(float32x4_t c, float32x4_t x, float k) { return vfmsq_n_f32(c, x, k); }
inline float32x4_t w_load(const float* p, float32x4_t) { return vld1q_f32(p); }
inline float32x4_t w_relu(float32x4_t a) { return vmaxq_f32(a, vdupq_n_f32(0.0f)); }
#include "wino_1d.inc"

// Lanes [a_q, b_q, c_q, d_q] for q = 0..3 from four 4-float vectors a, b, c, d.
inline void transpose4(float32x4_t& a, float32x4_t& b, float32x4_t& c, float32x4_t& d) {
  const float32x4_t t0 = vtrn1q_f32(a, b), t1 = vtrn2q_f32(a, b);
  const float32x4_t t2 = vtrn1q_f32(c, d), t3 = vtrn2q_f32(c, d);
  a = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
  b = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
  c = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
  d = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
}

template <int A>
void wino_input_t(const WinoTask& t, std::int64_t tv, std::int64_t c0, std::int64_t c1) {
  constexpr int P = A * A;
  std::int64_t lane[16], point[36];
  wino_block_offsets(t, tv, lane, point);
  const std::int64_t fin = 4 * t.in_channels, plane = t.block_rows * t.block_cols * 4;
  const std::int64_t xi_stride = t.tile_vectors * fin * 16;
  float points[4][P][4];  // [fold phase q][point a·α + b][lane]
  for (int h = 0; h < 4; ++h) {  // lanes 4h .. 4h + 3
    const std::int64_t* ln = lane + 4 * h;
    for (std::int64_t ci = c0; ci < c1; ++ci) {
      const float* blocks = t.pixel_blocks + ci * plane;
      for (int k = 0; k < P; ++k) {
        const float* s = blocks + point[k];
        float32x4_t z0 = vld1q_f32(s + ln[0]), z1 = vld1q_f32(s + ln[1]);
        float32x4_t z2 = vld1q_f32(s + ln[2]), z3 = vld1q_f32(s + ln[3]);
        transpose4(z0, z1, z2, z3);
        vst1q_f32(points[0][k], z0);
        vst1q_f32(points[1][k], z1);
        vst1q_f32(points[2][k], z2);
        vst1q_f32(points[3][k], z3);
      }
      for (int q = 0; q < 4; ++q) {  // fold phase bh·2 + bw
        float32x4_t e[P];
        for (int k = 0; k < P; ++k) e[k] = vld1q_f32(points[q][k]);
        // Bᵀ·D·B: columns, then rows.
        for (int b = 0; b < A; ++b) input_1d<A>(e + b, A);
        for (int a = 0; a < A; ++a) input_1d<A>(e + a * A, 1);
        float* dst = t.v + (tv * fin + ci * 4 + q) * 16 + 4 * h;
        for (int k = 0; k < P; ++k) vst1q_f32(dst + k * xi_stride, e[k]);
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
  float32x4_t acc[6][4];
  for (int r = 0; r < 6; ++r)
    for (int l = 0; l < 4; ++l) acc[r][l] = vdupq_n_f32(0.0f);
  for (std::int64_t cf = 0; cf < fin; ++cf, u += kWinoBlock, v += 16) {
    const float32x4_t x0 = vld1q_f32(v), x1 = vld1q_f32(v + 4);
    const float32x4_t x2 = vld1q_f32(v + 8), x3 = vld1q_f32(v + 12);
    const float32x4_t w03 = vld1q_f32(u);  // channels r0 .. r0 + 3
    const float32x2_t w45 = vld1_f32(u + 4);
#define PRISM_ROW_Q(r)                                  \
  acc[r][0] = vfmaq_laneq_f32(acc[r][0], x0, w03, r);   \
  acc[r][1] = vfmaq_laneq_f32(acc[r][1], x1, w03, r);   \
  acc[r][2] = vfmaq_laneq_f32(acc[r][2], x2, w03, r);   \
  acc[r][3] = vfmaq_laneq_f32(acc[r][3], x3, w03, r);
#define PRISM_ROW_D(r)                                       \
  acc[r][0] = vfmaq_lane_f32(acc[r][0], x0, w45, (r) - 4);   \
  acc[r][1] = vfmaq_lane_f32(acc[r][1], x1, w45, (r) - 4);   \
  acc[r][2] = vfmaq_lane_f32(acc[r][2], x2, w45, (r) - 4);   \
  acc[r][3] = vfmaq_lane_f32(acc[r][3], x3, w45, (r) - 4);
    PRISM_ROW_Q(0) PRISM_ROW_Q(1) PRISM_ROW_Q(2) PRISM_ROW_Q(3) PRISM_ROW_D(4) PRISM_ROW_D(5)
#undef PRISM_ROW_Q
#undef PRISM_ROW_D
  }
  const std::int64_t n0 = b * kWinoBlock + r0;
  float* m = t.m + ((xi * t.tile_vectors + tv) * nf + n0) * 16;
  for (int r = 0; r < 6; ++r) {
    if (n0 + r >= nf) break;
    for (int l = 0; l < 4; ++l) vst1q_f32(m + r * 16 + 4 * l, acc[r][l]);
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
    const float32x4_t bias = vdupq_n_f32(t.bias[n]);
    float y[16][16];
    for (int h = 0; h < 4; ++h) {
      float32x4_t r[M * M];
      output_2d<A>(m + 4 * h, xi_stride, bias, t.relu, r);
      for (int k = 0; k < M * M; ++k) vst1q_f32(y[k] + 4 * h, r[k]);
    }
    wino_store_results(t, n, idx, y);
  }
}

// Other kernel sizes: the portable direct kernel.
void f32_task(const F32Task& t) { fold_conv_scalar()->f32_task(t); }

const FoldConvIsa kNeonWinograd{FoldConvPath::NeonWinograd, f32_task, nullptr,
    wino_input_t<4>, wino_gemm, wino_output_t<2>, false, 2};
const FoldConvIsa kNeonWinograd4{FoldConvPath::NeonWinograd4, f32_task, nullptr,
    wino_input_t<6>, wino_gemm, wino_output_t<4>, false, 4};

}  // namespace

const FoldConvIsa* fold_conv_neon_winograd() { return &kNeonWinograd; }
const FoldConvIsa* fold_conv_neon_winograd4() { return &kNeonWinograd4; }

}  // namespace fold_conv_detail
}  // namespace prism

#else  // not an aarch64 build

namespace prism {
namespace fold_conv_detail {
const FoldConvIsa* fold_conv_neon_winograd() { return nullptr; }
const FoldConvIsa* fold_conv_neon_winograd4() { return nullptr; }
}  // namespace fold_conv_detail
}  // namespace prism

#endif
