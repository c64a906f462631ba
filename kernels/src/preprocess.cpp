// Camera-frame preprocessing kernel; semantics in prism/preprocess.hpp. Plain scalar loops over
// planar float rows, which GCC/Clang vectorize at -O3 where the access is contiguous.
#include "prism/preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <stdexcept>
#include <thread>
#include <vector>

namespace prism {
namespace {

// One axis of the bilinear resize: for every destination index, the two source taps (as
// element offsets) and their weights.
struct AxisTable {
  std::vector<std::int64_t> i0, i1;
  std::vector<float> w0, w1;
};

AxisTable make_axis_table(std::int64_t in, std::int64_t out, std::int64_t stride) {
  AxisTable t;
  t.i0.resize(out);
  t.i1.resize(out);
  t.w0.resize(out);
  t.w1.resize(out);
  const double ratio = static_cast<double>(in) / static_cast<double>(out);
  const double last = static_cast<double>(in - 1);
  for (std::int64_t d = 0; d < out; ++d) {
    double s = (static_cast<double>(d) + 0.5) * ratio - 0.5;
    s = std::min(std::max(s, 0.0), last);
    const std::int64_t i = static_cast<std::int64_t>(s);  // floor, s >= 0
    const double w1 = s - static_cast<double>(i);
    t.i0[d] = i * stride;
    t.i1[d] = std::min(i + 1, in - 1) * stride;
    t.w1[d] = static_cast<float>(w1);
    t.w0[d] = static_cast<float>(1.0 - w1);
  }
  return t;
}

// What the kernel reads from each input pixel and how it forms the output channels.
struct ChannelPlan {
  int in_channels = 1;     // bytes per input pixel
  int resized = 1;         // source channels that are resized (1 or 3)
  int source[3] = {0, 0, 0};  // byte offset in the pixel of each resized channel
  int out_channels = 1;
  bool luma = false;       // out = BT.601 luma of resized channels (R, G, B)
  int pick[3] = {0, 0, 0};  // otherwise out channel c = resized channel pick[c]
};

ChannelPlan make_plan(PixelFormat format, OutputChannels channels) {
  ChannelPlan p;
  p.in_channels = channel_count(format);
  p.out_channels = channel_count(channels);
  if (format == PixelFormat::Mono8) {
    p.resized = 1;  // gray -> gray copies, gray -> rgb/bgr replicates (pick stays 0, 0, 0)
    return p;
  }
  const bool bgr_order = format == PixelFormat::BGR8 || format == PixelFormat::BGRa8;
  const int r = bgr_order ? 2 : 0, g = 1, b = bgr_order ? 0 : 2;
  p.resized = 3;
  if (channels == OutputChannels::BGR) {
    p.source[0] = b; p.source[1] = g; p.source[2] = r;
  } else {
    p.source[0] = r; p.source[1] = g; p.source[2] = b;
  }
  p.luma = channels == OutputChannels::Gray;
  p.pick[0] = 0; p.pick[1] = 1; p.pick[2] = 2;
  return p;
}

struct Job {
  const std::uint8_t* frames;
  float* out;
  const PreprocessParams* params;
  ChannelPlan plan;
  AxisTable xs, ys;  // xs offsets in bytes within a row, ys offsets in rows
  float a[3], b[3];
};

// Horizontal pass of one source row into planar rows dst[k * out_w + j].
void resize_row(const Job& job, const std::uint8_t* row, float* dst) {
  const std::int64_t out_w = job.params->out_width;
  const std::int64_t* x0 = job.xs.i0.data();
  const std::int64_t* x1 = job.xs.i1.data();
  const float* w0 = job.xs.w0.data();
  const float* w1 = job.xs.w1.data();
  for (int k = 0; k < job.plan.resized; ++k) {
    const std::uint8_t* src = row + job.plan.source[k];
    float* h = dst + k * out_w;
    for (std::int64_t j = 0; j < out_w; ++j) {
      h[j] = static_cast<float>(src[x0[j]]) * w0[j] + static_cast<float>(src[x1[j]]) * w1[j];
    }
  }
}

// Output rows [first, last) of the flattened (frame, row) range.
void run_rows(const Job& job, std::int64_t first, std::int64_t last) {
  const PreprocessParams& p = *job.params;
  const ChannelPlan& plan = job.plan;
  const std::int64_t out_w = p.out_width, out_h = p.out_height;
  const std::int64_t plane = out_h * out_w;
  const std::int64_t row_bytes = p.in_width * plan.in_channels;
  const std::int64_t frame_bytes = p.in_height * row_bytes;
  const std::int64_t span = plan.resized * out_w;

  // Two horizontally resized source rows, kept across output rows: when upscaling, consecutive
  // output rows share their source rows.
  std::vector<float> buffers(2 * span + span);
  float* slot_data[2] = {buffers.data(), buffers.data() + span};
  float* vertical = buffers.data() + 2 * span;
  std::int64_t slot_frame[2] = {-1, -1}, slot_row[2] = {-1, -1};
  auto find = [&](std::int64_t n, std::int64_t y) {
    for (int s = 0; s < 2; ++s)
      if (slot_frame[s] == n && slot_row[s] == y) return s;
    return -1;
  };
  auto fill = [&](int s, std::int64_t n, std::int64_t y) {
    resize_row(job, job.frames + n * frame_bytes + y * row_bytes, slot_data[s]);
    slot_frame[s] = n;
    slot_row[s] = y;
  };

  for (std::int64_t r = first; r < last; ++r) {
    const std::int64_t n = r / out_h, i = r % out_h;
    const std::int64_t y0 = job.ys.i0[i], y1 = job.ys.i1[i];
    const float wy0 = job.ys.w0[i], wy1 = job.ys.w1[i];
    int s0 = find(n, y0);
    if (s0 < 0) {
      s0 = find(n, y1) == 0 ? 1 : 0;  // keep the slot that already holds y1
      fill(s0, n, y0);
    }
    int s1 = find(n, y1);
    if (s1 < 0) {
      s1 = 1 - s0;
      fill(s1, n, y1);
    }
    const float* h0 = slot_data[s0];
    const float* h1 = slot_data[s1];
    for (std::int64_t k = 0; k < span; ++k) vertical[k] = h0[k] * wy0 + h1[k] * wy1;

    float* dst = job.out + n * plan.out_channels * plane + i * out_w;
    if (plan.luma) {
      const float* vr = vertical;
      const float* vg = vertical + out_w;
      const float* vb = vertical + 2 * out_w;
      const float a = job.a[0], b = job.b[0];
      for (std::int64_t j = 0; j < out_w; ++j) {
        const float gray = (0.299f * vr[j] + 0.587f * vg[j]) + 0.114f * vb[j];
        dst[j] = gray * a + b;
      }
    } else {
      for (int c = 0; c < plan.out_channels; ++c) {
        const float* v = vertical + plan.pick[c] * out_w;
        float* o = dst + c * plane;
        const float a = job.a[c], b = job.b[c];
        for (std::int64_t j = 0; j < out_w; ++j) o[j] = v[j] * a + b;
      }
    }
  }
}

}  // namespace

int channel_count(PixelFormat format) {
  switch (format) {
    case PixelFormat::Mono8: return 1;
    case PixelFormat::RGB8:
    case PixelFormat::BGR8: return 3;
    case PixelFormat::RGBa8:
    case PixelFormat::BGRa8: return 4;
  }
  throw std::invalid_argument("preprocess: unknown PixelFormat value");
}

int channel_count(OutputChannels channels) {
  return channels == OutputChannels::Gray ? 1 : 3;
}

PixelFormat parse_pixel_format(const std::string& name) {
  if (name == "Mono8") return PixelFormat::Mono8;
  if (name == "RGB8") return PixelFormat::RGB8;
  if (name == "BGR8") return PixelFormat::BGR8;
  if (name == "RGBa8") return PixelFormat::RGBa8;
  if (name == "BGRa8") return PixelFormat::BGRa8;
  throw std::invalid_argument("preprocess: pixel_format must be one of Mono8, RGB8, BGR8, RGBa8, "
                              "BGRa8; got '" + name + "'");
}

OutputChannels parse_output_channels(const std::string& name) {
  if (name == "gray") return OutputChannels::Gray;
  if (name == "rgb") return OutputChannels::RGB;
  if (name == "bgr") return OutputChannels::BGR;
  throw std::invalid_argument("preprocess: channels must be one of gray, rgb, bgr; got '" + name +
                              "'");
}

void preprocess_frames(const std::uint8_t* frames, float* out, const PreprocessParams& params) {
  if (params.batch < 0 || params.in_height <= 0 || params.in_width <= 0 ||
      params.out_height <= 0 || params.out_width <= 0) {
    throw std::invalid_argument("preprocess: batch must be >= 0 and every height/width > 0");
  }
  Job job{frames, out, &params, make_plan(params.pixel_format, params.channels), {}, {}, {}, {}};
  for (int c = 0; c < job.plan.out_channels; ++c) {
    if (params.std[c] == 0.0 || !std::isfinite(params.std[c])) {
      throw std::invalid_argument("preprocess: std must be finite and non-zero");
    }
    job.a[c] = static_cast<float>(params.scale / params.std[c]);
    job.b[c] = static_cast<float>(-params.mean[c] / params.std[c]);
  }
  if (params.batch == 0) return;
  job.xs = make_axis_table(params.in_width, params.out_width, job.plan.in_channels);
  job.ys = make_axis_table(params.in_height, params.out_height, 1);

  const std::int64_t rows = params.batch * params.out_height;
  // A thread costs tens of microseconds to start; give each one at least this many outputs.
  constexpr std::int64_t kMinOutputsPerThread = std::int64_t{1} << 16;
  const std::int64_t outputs = rows * params.out_width * job.plan.out_channels;
  std::int64_t threads = params.num_threads > 0
                             ? params.num_threads
                             : std::max<std::int64_t>(1, std::thread::hardware_concurrency());
  if (params.num_threads <= 0) threads = std::min(threads, outputs / kMinOutputsPerThread);
  threads = std::max<std::int64_t>(1, std::min(threads, rows));
  if (threads == 1) {
    run_rows(job, 0, rows);
    return;
  }
  // Each thread takes a contiguous block of output rows; an exception in any of them (e.g.
  // bad_alloc) is passed to the caller after every thread has been joined.
  std::vector<std::exception_ptr> errors(threads);
  auto block = [&](std::int64_t t) {
    try {
      run_rows(job, rows * t / threads, rows * (t + 1) / threads);
    } catch (...) {
      errors[t] = std::current_exception();
    }
  };
  std::vector<std::thread> workers;
  workers.reserve(threads - 1);
  try {
    for (std::int64_t t = 1; t < threads; ++t) workers.emplace_back(block, t);
  } catch (...) {
    for (auto& w : workers) w.join();
    throw;
  }
  block(0);
  for (auto& w : workers) w.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace prism
