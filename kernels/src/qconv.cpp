// PWLQ integer convolution: im2col straight into the GEMM's packed activation layout, then the
// GEMM driver of qgemm.cpp. Semantics in prism/qconv.hpp.
#include "prism/qconv.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

namespace prism {

std::int64_t Conv2dGeometry::out_height() const {
  return (height + 2 * pad_h - dilation_h * (kernel_h - 1) - 1) / stride_h + 1;
}

std::int64_t Conv2dGeometry::out_width() const {
  return (width + 2 * pad_w - dilation_w * (kernel_w - 1) - 1) / stride_w + 1;
}

void check_conv2d(const Conv2dGeometry& g, const PackedPwlqWeights& w) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("qconv2d: " + what); };
  const std::pair<const char*, std::int64_t> positive[] = {
      {"batch", g.batch + 1},  // 0 is allowed: nothing to do
      {"in_channels", g.in_channels}, {"height", g.height}, {"width", g.width},
      {"out_channels", g.out_channels}, {"kernel_h", g.kernel_h}, {"kernel_w", g.kernel_w},
      {"stride_h", g.stride_h}, {"stride_w", g.stride_w}, {"dilation_h", g.dilation_h},
      {"dilation_w", g.dilation_w}, {"groups", g.groups}};
  for (const auto& f : positive) {
    if (f.second <= 0) fail(std::string(f.first) + " must be positive");
  }
  if (g.pad_h < 0 || g.pad_w < 0) fail("padding must be >= 0");
  if (g.in_channels % g.groups || g.out_channels % g.groups) {
    fail("in_channels=" + std::to_string(g.in_channels) + " and out_channels=" +
         std::to_string(g.out_channels) + " must be multiples of groups=" +
         std::to_string(g.groups));
  }
  if (g.out_height() <= 0 || g.out_width() <= 0) {
    fail("the dilated kernel (" + std::to_string(g.dilation_h * (g.kernel_h - 1) + 1) + "x" +
         std::to_string(g.dilation_w * (g.kernel_w - 1) + 1) + ") is larger than the padded input");
  }
  const std::int64_t depth = g.in_channels / g.groups * g.kernel_h * g.kernel_w;
  if (w.channels != g.out_channels || w.groups != g.groups || w.depth != depth) {
    fail("weights packed for N=" + std::to_string(w.channels) + " K=" + std::to_string(w.depth) +
         " groups=" + std::to_string(w.groups) + " but the convolution needs N=" +
         std::to_string(g.out_channels) + " K=" + std::to_string(depth) +
         " groups=" + std::to_string(g.groups));
  }
}

namespace {

// The output pixels of one image and group as GEMM rows: row m = oh·W_out + ow holds the
// input window of output pixel (oh, ow), in the order k = (c·KH + kh)·KW + kw.
class Im2colRows final : public qgemm_detail::RowSource {
 public:
  Im2colRows(const std::uint8_t* image, const Conv2dGeometry& g, std::uint8_t zx)
      : image_(image), g_(g), zx_(zx), out_w_(g.out_width()),
        rows_(g.out_height() * g.out_width()),
        channels_(g.in_channels / g.groups),
        depth_(channels_ * g.kernel_h * g.kernel_w),
        k_blocks_((depth_ + kQgemmKBlock - 1) / kQgemmKBlock) {}

  std::int64_t rows() const override { return rows_; }

  void pack(std::int64_t row0, std::int64_t row_groups, std::uint8_t* out, std::int32_t* row_sums,
            const qgemm_detail::IsaKernels& isa) const override {
    const std::uint8_t flip = isa.biased_x ? 0x80 : 0;
    constexpr int kMaxRows = 64;
    const int n = static_cast<int>(row_groups * kQgemmRowGroup);
    if (n > kMaxRows) throw std::logic_error("Im2colRows: row block too large");
    std::int64_t top[kMaxRows], left[kMaxRows], offset[kMaxRows];
    bool valid[kMaxRows];
    for (int r = 0; r < n; ++r) {
      const std::int64_t m = row0 + r;
      valid[r] = m < rows_;
      top[r] = (m / out_w_) * g_.stride_h - g_.pad_h;
      left[r] = (m % out_w_) * g_.stride_w - g_.pad_w;
      row_sums[r] = 0;
    }
    // Bytes of the last k-block beyond K meet zero weights; write x = 0 for determinism.
    for (std::int64_t k = depth_; k < k_blocks_ * kQgemmKBlock; ++k)
      for (int r = 0; r < n; ++r) out[slot(r, k)] = flip;

    const std::int64_t plane = g_.height * g_.width;
    for (std::int64_t kh = 0; kh < g_.kernel_h; ++kh) {
      for (std::int64_t kw = 0; kw < g_.kernel_w; ++kw) {
        for (int r = 0; r < n; ++r) {
          const std::int64_t ih = top[r] + kh * g_.dilation_h, iw = left[r] + kw * g_.dilation_w;
          const bool inside = ih >= 0 && ih < g_.height && iw >= 0 && iw < g_.width;
          offset[r] = !valid[r] ? -2 : inside ? ih * g_.width + iw : -1;
        }
        for (std::int64_t c = 0; c < channels_; ++c) {
          const std::uint8_t* src = image_ + c * plane;
          const std::int64_t k = (c * g_.kernel_h + kh) * g_.kernel_w + kw;
          std::uint8_t* dst = out + (k / kQgemmKBlock) * 64 + k % kQgemmKBlock;
          for (int r = 0; r < n; ++r) {
            const std::int64_t o = offset[r];
            const std::uint8_t v = o >= 0 ? src[o] : o == -1 ? zx_ : 0;
            dst[(r / kQgemmRowGroup) * k_blocks_ * 64 + (r % kQgemmRowGroup) * kQgemmKBlock] =
                v ^ flip;
            row_sums[r] += v;
          }
        }
      }
    }
  }

 private:
  std::int64_t slot(int r, std::int64_t k) const {
    return (r / kQgemmRowGroup) * k_blocks_ * 64 + (k / kQgemmKBlock) * 64 +
           (r % kQgemmRowGroup) * kQgemmKBlock + k % kQgemmKBlock;
  }

  const std::uint8_t* image_;
  Conv2dGeometry g_;
  std::uint8_t zx_;
  std::int64_t out_w_, rows_, channels_, depth_, k_blocks_;
};

void run_conv(const std::uint8_t* x, const Conv2dGeometry& g, const PackedPwlqWeights& w,
              const PwlqEpilogue& epilogue, const Requantization* requant,
              qgemm_detail::OutputSpec out, const QgemmOptions& options) {
  check_conv2d(g, w);
  if (!epilogue.s1) throw std::invalid_argument("qconv2d: the center scale s1 is required");
  if (epilogue.zx < 0 || epilogue.zx > 255) {
    throw std::invalid_argument("qconv2d: zero point zx=" + std::to_string(epilogue.zx) +
                                " is outside 0..255");
  }
  const std::int64_t pixels = g.out_height() * g.out_width();
  const std::int64_t in_group = g.in_channels / g.groups, out_group = g.out_channels / g.groups;
  std::vector<Im2colRows> sources;
  sources.reserve(static_cast<std::size_t>(g.batch * g.groups));
  std::vector<qgemm_detail::GemmJob> jobs;
  for (std::int64_t b = 0; b < g.batch; ++b) {
    for (std::int64_t grp = 0; grp < g.groups; ++grp) {
      sources.emplace_back(x + (b * g.in_channels + grp * in_group) * g.height * g.width, g,
                           static_cast<std::uint8_t>(epilogue.zx));
      qgemm_detail::OutputSpec o = out;
      o.row_stride = 1;
      o.channel_stride = pixels;
      const std::int64_t base = (b * g.out_channels + grp * out_group) * pixels;
      if (o.y) o.y += base;
      if (o.q) o.q += base;
      jobs.push_back(qgemm_detail::GemmJob{&sources.back(), grp, o});
    }
  }
  qgemm_detail::run_gemm_jobs(jobs, w, &epilogue, requant, options);
}

}  // namespace

void qconv2d(const std::uint8_t* x, const Conv2dGeometry& geometry, const PackedPwlqWeights& w,
             const PwlqEpilogue& epilogue, float* y, const QgemmOptions& options) {
  qgemm_detail::OutputSpec out;
  out.kind = qgemm_detail::OutputSpec::Kind::Float;
  out.y = y;
  run_conv(x, geometry, w, epilogue, nullptr, out, options);
}

void qconv2d_requantized(const std::uint8_t* x, const Conv2dGeometry& geometry,
                         const PackedPwlqWeights& w, const PwlqEpilogue& epilogue,
                         const Requantization& requant, std::uint8_t* q,
                         const QgemmOptions& options) {
  if (!(requant.scale > 0.0f) || requant.zero_point < 0 || requant.zero_point > 255) {
    throw std::invalid_argument("qconv2d: output scale must be > 0 and zero point in 0..255");
  }
  qgemm_detail::OutputSpec out;
  out.kind = qgemm_detail::OutputSpec::Kind::Requantized;
  out.q = q;
  run_conv(x, geometry, w, epilogue, &requant, out, options);
}

}  // namespace prism
