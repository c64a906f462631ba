// Hand-computed cases of prism::preprocess_frames (resize, channel conversion, normalisation).
// The exhaustive comparison against the NumPy twin lives in tests/kernels/test_preprocess.py.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "prism/preprocess.hpp"

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what);
    ++failures;
  }
}

void check_near(const std::vector<float>& got, const std::vector<float>& want, float tol,
                const char* what) {
  bool ok = got.size() == want.size();
  for (size_t i = 0; ok && i < got.size(); ++i) ok = std::fabs(got[i] - want[i]) <= tol;
  if (!ok) {
    std::fprintf(stderr, "  got :");
    for (float v : got) std::fprintf(stderr, " %.7g", v);
    std::fprintf(stderr, "\n  want:");
    for (float v : want) std::fprintf(stderr, " %.7g", v);
    std::fprintf(stderr, "\n");
  }
  check(ok, what);
}

prism::PreprocessParams raw_params(prism::PixelFormat format, prism::OutputChannels channels,
                                   std::int64_t in_h, std::int64_t in_w, std::int64_t out_h,
                                   std::int64_t out_w) {
  prism::PreprocessParams p;
  p.pixel_format = format;
  p.channels = channels;
  p.in_height = in_h;
  p.in_width = in_w;
  p.out_height = out_h;
  p.out_width = out_w;
  p.scale = 1.0;  // keep pixel units so expected values are easy to read
  return p;
}

std::vector<float> run(const std::vector<std::uint8_t>& frames, const prism::PreprocessParams& p) {
  std::vector<float> out(p.batch * prism::channel_count(p.channels) * p.out_height * p.out_width,
                         -999.0f);
  prism::preprocess_frames(frames.data(), out.data(), p);
  return out;
}

void two_by_two_to_one_is_the_average() {
  auto p = raw_params(prism::PixelFormat::Mono8, prism::OutputChannels::Gray, 2, 2, 1, 1);
  check_near(run({0, 10, 20, 30}, p), {15.0f}, 0.0f, "2x2 -> 1x1 is the mean of the four pixels");
}

void same_size_is_an_exact_copy_in_nchw() {
  // 2x3 RGB8 frame, pixel (y, x) = (10y + x, 100 + 10y + x, 200 + 10y + x).
  std::vector<std::uint8_t> frame;
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x)
      for (int c = 0; c < 3; ++c) frame.push_back(static_cast<std::uint8_t>(100 * c + 10 * y + x));
  auto p = raw_params(prism::PixelFormat::RGB8, prism::OutputChannels::RGB, 2, 3, 2, 3);
  check_near(run(frame, p), {0, 1, 2, 10, 11, 12, 100, 101, 102, 110, 111, 112,
                             200, 201, 202, 210, 211, 212},
             0.0f, "same-size RGB8 -> rgb is an exact copy laid out as planes");
  p.pixel_format = prism::PixelFormat::BGR8;  // same bytes read as B, G, R: planes reversed
  check_near(run(frame, p), {200, 201, 202, 210, 211, 212, 100, 101, 102, 110, 111, 112,
                             0, 1, 2, 10, 11, 12},
             0.0f, "BGR8 -> rgb swaps the first and last planes");
}

void upscale_uses_half_pixel_centers() {
  // Source x of destination d is (d + 0.5) / 2 - 0.5: -0.25 (clamped to 0), 0.25, 0.75, 1.25
  // (clamped to 1).
  auto p = raw_params(prism::PixelFormat::Mono8, prism::OutputChannels::Gray, 1, 2, 1, 4);
  check_near(run({0, 100}, p), {0.0f, 25.0f, 75.0f, 100.0f}, 0.0f, "1x2 -> 1x4 upscale");
}

void gray_is_replicated_then_normalised_per_channel() {
  auto p = raw_params(prism::PixelFormat::Mono8, prism::OutputChannels::RGB, 1, 2, 1, 2);
  p.scale = 1.0 / 255.0;
  p.mean[0] = 0.0; p.mean[1] = 0.5; p.mean[2] = 1.0;
  p.std[0] = 1.0;  p.std[1] = 0.5;  p.std[2] = 0.25;
  // y = (x / 255 - mean) / std for x = 0 and 255
  check_near(run({0, 255}, p), {0.0f, 1.0f, -1.0f, 1.0f, -4.0f, 0.0f}, 1e-6f,
             "Mono8 -> rgb replicates, then per-channel mean/std");
}

void colour_to_gray_is_bt601_luma() {
  // One BGRa8 pixel: B=10, G=20, R=30, alpha=255 (ignored).
  auto p = raw_params(prism::PixelFormat::BGRa8, prism::OutputChannels::Gray, 1, 1, 1, 1);
  check_near(run({10, 20, 30, 255}, p), {0.299f * 30 + 0.587f * 20 + 0.114f * 10}, 1e-5f,
             "BGRa8 -> gray is 0.299 R + 0.587 G + 0.114 B");
  p.pixel_format = prism::PixelFormat::RGB8;
  check_near(run({30, 20, 10}, p), {21.85f}, 1e-4f, "RGB8 -> gray");
}

void one_by_one_input_fills_the_output() {
  auto p = raw_params(prism::PixelFormat::RGB8, prism::OutputChannels::BGR, 1, 1, 2, 2);
  check_near(run({1, 2, 3}, p), {3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1}, 0.0f,
             "1x1 -> 2x2 is a constant image per channel");
}

void thread_count_does_not_change_results() {
  auto p = raw_params(prism::PixelFormat::RGBa8, prism::OutputChannels::RGB, 37, 53, 64, 48);
  p.batch = 5;
  std::vector<std::uint8_t> frames(p.batch * 37 * 53 * 4);
  std::uint32_t state = 12345;
  for (auto& v : frames) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<std::uint8_t>(state >> 24);
  }
  p.num_threads = 1;
  const auto one = run(frames, p);
  p.num_threads = 3;
  const auto three = run(frames, p);
  check(one == three, "1 and 3 threads give identical results");
  bool all_written = true;
  for (float v : one) all_written = all_written && v >= 0.0f && v <= 255.0f;
  check(all_written, "every output element is written and in [0, 255]");
}

template <typename F>
bool throws_invalid_argument(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument&) {
    return true;
  }
  return false;
}

void bad_parameters_throw() {
  auto p = raw_params(prism::PixelFormat::Mono8, prism::OutputChannels::Gray, 0, 2, 1, 1);
  std::uint8_t pixel = 0;
  float out = 0;
  check(throws_invalid_argument([&] { prism::preprocess_frames(&pixel, &out, p); }),
        "zero input height throws invalid_argument");
  p.in_height = 1;
  p.std[0] = 0.0;
  check(throws_invalid_argument([&] { prism::preprocess_frames(&pixel, &out, p); }),
        "zero std throws invalid_argument");
  check(throws_invalid_argument([] { prism::parse_pixel_format("YUV422"); }),
        "unknown pixel format name throws");
  check(prism::parse_pixel_format("RGBa8") == prism::PixelFormat::RGBa8, "parse RGBa8");
  check(prism::parse_output_channels("bgr") == prism::OutputChannels::BGR, "parse bgr");
}

}  // namespace

int main() {
  two_by_two_to_one_is_the_average();
  same_size_is_an_exact_copy_in_nchw();
  upscale_uses_half_pixel_centers();
  gray_is_replicated_then_normalised_per_channel();
  colour_to_gray_is_bt601_luma();
  one_by_one_input_fills_the_output();
  thread_count_does_not_change_results();
  bad_parameters_throw();
  if (failures) std::fprintf(stderr, "%d check(s) failed\n", failures);
  else std::printf("test_preprocess: all checks passed\n");
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
