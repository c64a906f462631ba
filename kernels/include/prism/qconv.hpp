// PWLQ W·A8 2-D convolution with integer accumulators: NCHW uint8 input -> NCHW float32 or
// requantized uint8 output, with the arithmetic of prism/qgemm.hpp (Eqs. 11-13 of the PWLQ
// paper): every output pixel is one GEMM row.
//
// Per image and group, the input window of each output pixel is gathered (im2col) straight
// into the packed activation layout of the GEMM, one block of up to 48 output pixels at a time,
// in a per-thread buffer reused across calls; no (K, H_out·W_out) matrix is materialised.
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

}  // namespace prism
