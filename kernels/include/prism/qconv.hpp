// PWLQ W·A8 2-D convolution with integer accumulators: NCHW uint8 input -> NCHW float32 or
// requantized uint8 output, with the arithmetic of prism/qgemm.hpp (Eqs. 11-13 of the PWLQ
// paper): every output pixel is one GEMM row.
//
// Implicit im2col. Per image and group, the input is copied once into padded "phase planes":
// plane (c, ph, pw)[i][j] = x_padded[c][s_h·i + ph][s_w·j + pw] (one plane per channel when the
// stride is 1), Hq = ceil(H_padded / s_h) rows of Wq = ceil(W_padded / s_w) bytes. GEMM row
// m = oh·Wq + ow ("virtual" pixels; ow ≥ W_out are padding columns, computed and dropped) then
// reads tap k = (c, kh, kw) at planes[offset(k) + m], with a fixed offset per tap, so 16
// consecutive rows of one tap are 16 consecutive bytes: packing a 4-deep k-block of 16 rows is
// four 16-byte loads and a byte interleave. The buffers are per thread and reused across calls;
// no (K, H_out·W_out) matrix is materialised.
// Padding is filled with the zero point zx, so a padded tap represents the real value 0.0 and
// adds (zx − zx)·w = 0; R (the window sum used by the bias correction) includes it likewise.
// The reduction index of output channel n in group g is k = (c·KH + kh)·KW + kw over the
// group's C_in/groups input channels c: PyTorch's (C_out, C_in/groups, KH, KW) weight layout.
// Depthwise convolution is the case groups = C_in = C_out (K = KH·KW).
#pragma once
#include <cstdint>

#include "prism/qgemm.hpp"

namespace prism {

struct Conv2dGeometry {
  std::int64_t batch = 1;
  std::int64_t in_channels = 0, height = 0, width = 0;  // C_in, H, W
  std::int64_t out_channels = 0;                         // C_out
  std::int64_t kernel_h = 1, kernel_w = 1;
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_h = 0, pad_w = 0;  // zero-point padding on both sides
  std::int64_t dilation_h = 1, dilation_w = 1;
  std::int64_t groups = 1;

  // floor((H + 2·pad − dilation·(KH − 1) − 1) / stride) + 1, as torch.nn.functional.conv2d.
  std::int64_t out_height() const;
  std::int64_t out_width() const;
};

// Throws std::invalid_argument naming the first inconsistent field (non-positive sizes,
// channels not divisible by groups, an empty output, weights packed for another shape:
// w.channels must be C_out, w.groups groups and w.depth (C_in/groups)·KH·KW).
void check_conv2d(const Conv2dGeometry& geometry, const PackedPwlqWeights& w);

// x: (batch, C_in, H, W) uint8 C-contiguous -> y: (batch, C_out, H_out, W_out) float32.
void qconv2d(const std::uint8_t* x, const Conv2dGeometry& geometry, const PackedPwlqWeights& w,
             const PwlqEpilogue& epilogue, float* y, const QgemmOptions& options = {});

// As qconv2d, requantized to uint8 (see prism/qgemm.hpp).
void qconv2d_requantized(const std::uint8_t* x, const Conv2dGeometry& geometry,
                         const PackedPwlqWeights& w, const PwlqEpilogue& epilogue,
                         const Requantization& requant, std::uint8_t* q,
                         const QgemmOptions& options = {});

// Quantization of a float32 input inside the kernel: ONNX QuantizeLinear to uint8 with this
// scale and the epilogue's zero point zx, in float32 (x / scale, a true division; round half to
// even; + zx; saturate to 0..255), after x = min(max(x, clip_low), clip_high) when `clip` (the
// Clip that the integer ONNX form puts before QuantizeLinear for activations under 8 bits).
struct InputQuantization {
  float scale = 1.0f;  // > 0
  bool clip = false;
  float clip_low = 0.0f, clip_high = 0.0f;
};

// Float32 operations fused into the store of a float output, in this order: an ONNX Add of
// `residual` (a (batch, C_out, H_out, W_out) float32 tensor, null: none), y = y + residual, then
// an ONNX Relu, y = y > 0 ? y : 0 (NumPy's maximum(y, 0)).
struct FloatOutputOps {
  const float* residual = nullptr;
  bool relu = false;
};

// As qconv2d and qconv2d_requantized with a float32 (batch, C_in, H, W) input quantized as
// `input` says: the same bits as quantizing first and calling those (then applying `ops`).
void qconv2d_from_float(const float* x, const InputQuantization& input,
                        const Conv2dGeometry& geometry, const PackedPwlqWeights& w,
                        const PwlqEpilogue& epilogue, const FloatOutputOps& ops, float* y,
                        const QgemmOptions& options = {});
void qconv2d_from_float_requantized(const float* x, const InputQuantization& input,
                                    const Conv2dGeometry& geometry, const PackedPwlqWeights& w,
                                    const PwlqEpilogue& epilogue, const Requantization& requant,
                                    std::uint8_t* q, const QgemmOptions& options = {});

}  // namespace prism
