// Camera-frame preprocessing: uint8 frames (N, H, W, C) -> float32 model input (N, C_out, h, w).
//
// One pass does, per output pixel:
//   1. bilinear resize of each needed source channel, half-pixel centers (align_corners=False,
//      no antialias: the same as torch.nn.functional.interpolate(mode="bilinear") and OpenCV
//      INTER_LINEAR). The source coordinate of destination index d is
//      s = (d + 0.5) * in / out - 0.5, clamped to [0, in - 1]; taps floor(s) and floor(s) + 1
//      (the latter clamped to in - 1), weights w1 = s - floor(s) and w0 = 1 - w1, computed in
//      double and rounded to float32. Interpolation runs in float32, horizontal first:
//        h(y) = p[y, x0] * wx0 + p[y, x1] * wx1;   v = h(y0) * wy0 + h(y1) * wy1
//      A same-size resize is an exact copy (weights 1 and 0).
//   2. channel conversion on the resized values: colour -> gray is ITU-R BT.601 luma,
//      (0.299 R + 0.587 G) + 0.114 B in float32 in that order; gray -> rgb/bgr replicates;
//      rgb <-> bgr reorders; the alpha byte of RGBa8/BGRa8 is ignored (never read).
//   3. normalisation y = v * a[c] + b[c] with a = float32(scale / std[c]) and
//      b = float32(-mean[c] / std[c]) (quotients in double): y = (v * scale - mean[c]) / std[c].
// sdk/preprocess.py holds the NumPy twin, which performs the same float32 operations in the
// same order; the two agree bit for bit where the compiler does not fuse multiply-adds.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace prism {

// Input pixel formats, named as in GenICam PFNC. Channel counts: Mono8 1, RGB8/BGR8 3,
// RGBa8/BGRa8 4 (alpha ignored).
enum class PixelFormat { Mono8, RGB8, BGR8, RGBa8, BGRa8 };

// Output channel layouts: Gray 1 channel, RGB and BGR 3 channels (in that order).
enum class OutputChannels { Gray, RGB, BGR };

struct PreprocessParams {
  PixelFormat pixel_format = PixelFormat::Mono8;
  OutputChannels channels = OutputChannels::Gray;
  std::int64_t batch = 1;       // N (0 is allowed: nothing is written)
  std::int64_t in_height = 0;   // H of every input frame
  std::int64_t in_width = 0;    // W of every input frame
  std::int64_t out_height = 0;  // h of the output planes
  std::int64_t out_width = 0;   // w of the output planes
  double scale = 1.0 / 255.0;
  double mean[3] = {0.0, 0.0, 0.0};  // per output channel (only [0] is used for Gray)
  double std[3] = {1.0, 1.0, 1.0};   // per output channel, non-zero
  int num_threads = 0;  // 0: automatic (one thread for small work, else up to the core count)
};

int channel_count(PixelFormat format);
int channel_count(OutputChannels channels);
// Parse the names used in recipes ("Mono8", "RGB8", "BGR8", "RGBa8", "BGRa8"; "gray", "rgb",
// "bgr"). Throw std::invalid_argument naming the unknown value.
PixelFormat parse_pixel_format(const std::string& name);
OutputChannels parse_output_channels(const std::string& name);

// frames: C-contiguous uint8 (batch, in_height, in_width, channel_count(pixel_format)).
// out: C-contiguous float32 (batch, channel_count(channels), out_height, out_width), written
// whole. Throws std::invalid_argument on a negative batch, non-positive frame sizes or a
// zero std. Reentrant; may run
// on several std::threads when the batch is large (results do not depend on the thread count).
void preprocess_frames(const std::uint8_t* frames, float* out, const PreprocessParams& params);

}  // namespace prism
