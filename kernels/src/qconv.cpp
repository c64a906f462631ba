// PWLQ integer convolution: implicit im2col over padded phase planes straight into the GEMM's
// packed activation layout, then the GEMM driver of qgemm.cpp. Semantics in prism/qconv.hpp.
#include "prism/qconv.hpp"

#include <algorithm>
#include <cstring>
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

// Layout of the phase planes of one image and group (see prism/qconv.hpp).
struct PlaneLayout {
  std::int64_t hq, wq, plane;  // rows and bytes per row of a plane; plane = hq·wq
  std::int64_t bytes;          // all planes of one image and group, with the read slack
  std::int64_t rows;           // virtual GEMM rows: H_out·Wq

  explicit PlaneLayout(const Conv2dGeometry& g) {
    hq = (g.height + 2 * g.pad_h + g.stride_h - 1) / g.stride_h;
    wq = (g.width + 2 * g.pad_w + g.stride_w - 1) / g.stride_w;
    plane = hq * wq;
    rows = g.out_height() * wq;
    // Rows are packed 16 at a time up to a multiple of 16 (< rows + 16 <= plane + 16) from
    // offsets below (planes − 1)·plane + plane; the slack keeps every read in the buffer.
    bytes = g.in_channels / g.groups * g.stride_h * g.stride_w * plane + plane + 64;
  }
};

// Copies channels [0, C_in/groups) of one image and group into its phase planes, padding with
// zx; the read slack holds zx as well.
void build_planes(const std::uint8_t* image, const Conv2dGeometry& g, const PlaneLayout& l,
                  std::uint8_t zx, std::uint8_t* planes) {
  const std::int64_t channels = g.in_channels / g.groups, sh = g.stride_h, sw = g.stride_w;
  std::uint8_t* p = planes;
  for (std::int64_t c = 0; c < channels; ++c) {
    const std::uint8_t* src = image + c * g.height * g.width;
    for (std::int64_t ph = 0; ph < sh; ++ph) {
      for (std::int64_t pw = 0; pw < sw; ++pw, p += l.plane) {
        for (std::int64_t i = 0; i < l.hq; ++i) {
          std::uint8_t* row = p + i * l.wq;
          const std::int64_t ih = sh * i + ph - g.pad_h;
          if (ih < 0 || ih >= g.height) {
            std::memset(row, zx, static_cast<std::size_t>(l.wq));
            continue;
          }
          const std::uint8_t* in = src + ih * g.width;
          if (sw == 1) {  // [zx × pad_w][the input row][zx up to Wq]
            const std::int64_t left = std::min(g.pad_w, l.wq);
            std::memset(row, zx, static_cast<std::size_t>(left));
            const std::int64_t n = std::min(g.width, l.wq - left);
            std::memcpy(row + left, in, static_cast<std::size_t>(n));
            std::memset(row + left + n, zx, static_cast<std::size_t>(l.wq - left - n));
            continue;
          }
          // columns j with 0 <= sw·j + pw − pad_w < W read the input, the others are padding
          const std::int64_t first = std::min(l.wq, std::max<std::int64_t>(
                                                        0, (g.pad_w - pw + sw - 1) / sw));
          const std::int64_t end = std::max(first, std::min(l.wq, (g.width + g.pad_w - pw + sw - 1) / sw));
          std::memset(row, zx, static_cast<std::size_t>(first));
          const std::uint8_t* col = in + sw * first + pw - g.pad_w;
          for (std::int64_t j = first; j < end; ++j) row[j] = col[sw * (j - first)];
          std::memset(row + end, zx, static_cast<std::size_t>(l.wq - end));
        }
      }
    }
  }
  std::memset(p, zx, static_cast<std::size_t>(planes + l.bytes - p));
}

// planes offset of tap k = (c·KH + kh)·KW + kw, relative to virtual row m.
void tap_offsets(const Conv2dGeometry& g, const PlaneLayout& l, std::vector<std::int64_t>& out) {
  const std::int64_t channels = g.in_channels / g.groups;
  out.resize(static_cast<std::size_t>(channels * g.kernel_h * g.kernel_w));
  std::size_t k = 0;
  for (std::int64_t c = 0; c < channels; ++c) {
    for (std::int64_t kh = 0; kh < g.kernel_h; ++kh) {
      const std::int64_t dh = kh * g.dilation_h;
      for (std::int64_t kw = 0; kw < g.kernel_w; ++kw, ++k) {
        const std::int64_t dw = kw * g.dilation_w;
        const std::int64_t plane = (c * g.stride_h + dh % g.stride_h) * g.stride_w + dw % g.stride_w;
        out[k] = plane * l.plane + (dh / g.stride_h) * l.wq + dw / g.stride_w;
      }
    }
  }
}

// The virtual output pixels of one image and group as GEMM rows over its phase planes.
class PlaneRows final : public qgemm_detail::RowSource {
 public:
  PlaneRows(const std::uint8_t* planes, const std::vector<std::int64_t>& taps,
            const PlaneLayout& l, std::int64_t out_width)
      : planes_(planes), taps_(taps.data()), depth_(static_cast<std::int64_t>(taps.size())),
        k_blocks_((depth_ + kQgemmKBlock - 1) / kQgemmKBlock), rows_(l.rows), period_(l.wq),
        valid_(out_width) {}

  std::int64_t rows() const override { return rows_; }
  std::int64_t row_period() const override { return period_; }
  std::int64_t row_valid() const override { return valid_; }

  void pack(std::int64_t row0, std::int64_t row_groups, std::uint8_t* out, std::int32_t* row_sums,
            const qgemm_detail::IsaKernels& isa) const override {
    if (isa.pack_taps) {
      isa.pack_taps(qgemm_detail::TapPackArgs{planes_, taps_, depth_, k_blocks_, row0, row_groups,
                                              out, row_sums});
      return;
    }
    const std::uint8_t flip = isa.biased_x ? 0x80 : 0;
    for (std::int64_t g = 0; g < row_groups; ++g) {
      std::int32_t* sums = row_sums + g * kQgemmRowGroup;
      for (int r = 0; r < kQgemmRowGroup; ++r) sums[r] = 0;
      const std::uint8_t* rows = planes_ + row0 + g * kQgemmRowGroup;
      std::uint8_t* dst_group = out + g * k_blocks_ * 64;
      for (std::int64_t k = 0; k < k_blocks_ * kQgemmKBlock; ++k) {
        std::uint8_t* dst = dst_group + (k / kQgemmKBlock) * 64 + k % kQgemmKBlock;
        if (k >= depth_) {  // bytes past K meet zero weights; x = 0 for determinism
          for (int r = 0; r < kQgemmRowGroup; ++r) dst[r * kQgemmKBlock] = flip;
          continue;
        }
        const std::uint8_t* src = rows + taps_[k];
        for (int r = 0; r < kQgemmRowGroup; ++r) {
          dst[r * kQgemmKBlock] = src[r] ^ flip;
          sums[r] += src[r];
        }
      }
    }
  }

 private:
  const std::uint8_t* planes_;
  const std::int64_t* taps_;
  std::int64_t depth_, k_blocks_, rows_, period_, valid_;
};

void check_epilogue(const PwlqEpilogue& epilogue) {
  if (!epilogue.s1) throw std::invalid_argument("qconv2d: the center scale s1 is required");
  if (epilogue.zx < 0 || epilogue.zx > 255) {
    throw std::invalid_argument("qconv2d: zero point zx=" + std::to_string(epilogue.zx) +
                                " is outside 0..255");
  }
}

void check_requant(const Requantization& requant) {
  if (!(requant.scale > 0.0f) || requant.zero_point < 0 || requant.zero_point > 255) {
    throw std::invalid_argument("qconv2d: output scale must be > 0 and zero point in 0..255");
  }
}

// Planes and tap offsets of the calling thread, reused across calls (the workers only read them).
struct ConvScratch {
  std::vector<std::uint8_t> planes, input;
  std::vector<std::int64_t> taps;
};

ConvScratch& conv_scratch() {
  thread_local ConvScratch s;
  return s;
}

void run_conv(const std::uint8_t* x, const Conv2dGeometry& g, const PackedPwlqWeights& w,
              const PwlqEpilogue& epilogue, const Requantization* requant,
              qgemm_detail::OutputSpec out, const QgemmOptions& options) {
  const std::int64_t pixels = g.out_height() * g.out_width();
  const std::int64_t in_group = g.in_channels / g.groups, out_group = g.out_channels / g.groups;
  const PlaneLayout layout(g);
  ConvScratch& s = conv_scratch();
  tap_offsets(g, layout, s.taps);
  const std::int64_t count = g.batch * g.groups;
  if (s.planes.size() < static_cast<std::size_t>(count * layout.bytes))
    s.planes.resize(static_cast<std::size_t>(count * layout.bytes));
  std::vector<PlaneRows> sources;
  sources.reserve(static_cast<std::size_t>(count));
  std::vector<qgemm_detail::GemmJob> jobs;
  jobs.reserve(static_cast<std::size_t>(count));
  for (std::int64_t b = 0; b < g.batch; ++b) {
    for (std::int64_t grp = 0; grp < g.groups; ++grp) {
      std::uint8_t* planes = s.planes.data() + (b * g.groups + grp) * layout.bytes;
      build_planes(x + (b * g.in_channels + grp * in_group) * g.height * g.width, g, layout,
                   static_cast<std::uint8_t>(epilogue.zx), planes);
      sources.emplace_back(planes, s.taps, layout, g.out_width());
      qgemm_detail::OutputSpec o = out;
      o.row_stride = 1;
      o.channel_stride = pixels;
      const std::int64_t base = (b * g.out_channels + grp * out_group) * pixels;
      if (o.y) o.y += base;
      if (o.residual) o.residual += base;
      if (o.q) o.q += base;
      jobs.push_back(qgemm_detail::GemmJob{&sources.back(), grp, o});
    }
  }
  qgemm_detail::run_gemm_jobs(jobs, w, &epilogue, requant, options);
}

// Quantizes a float32 input into the calling thread's scratch; returns it.
const std::uint8_t* quantize_input(const float* x, const InputQuantization& input,
                                   const Conv2dGeometry& g, const PwlqEpilogue& epilogue,
                                   const QgemmOptions& options) {
  if (!(input.scale > 0.0f)) {
    throw std::invalid_argument("qconv2d: input scale must be > 0, got " +
                                std::to_string(input.scale));
  }
  if (input.clip && !(input.clip_low <= input.clip_high)) {
    throw std::invalid_argument("qconv2d: input clip range [" + std::to_string(input.clip_low) +
                                ", " + std::to_string(input.clip_high) + "] is empty");
  }
  const std::int64_t n = g.batch * g.in_channels * g.height * g.width;
  ConvScratch& s = conv_scratch();
  if (s.input.size() < static_cast<std::size_t>(n)) s.input.resize(static_cast<std::size_t>(n));
  qgemm_detail::QuantizeArgs a{x, n, input.scale, static_cast<float>(epilogue.zx), input.clip,
                               input.clip_low, input.clip_high, s.input.data()};
  qgemm_detail::quantize_linear(qgemm_detail::kernels_for(options.path), a);
  return s.input.data();
}

}  // namespace

void qconv2d(const std::uint8_t* x, const Conv2dGeometry& geometry, const PackedPwlqWeights& w,
             const PwlqEpilogue& epilogue, float* y, const QgemmOptions& options) {
  check_conv2d(geometry, w);
  check_epilogue(epilogue);
  qgemm_detail::OutputSpec out;
  out.kind = qgemm_detail::OutputSpec::Kind::Float;
  out.y = y;
  run_conv(x, geometry, w, epilogue, nullptr, out, options);
}

void qconv2d_requantized(const std::uint8_t* x, const Conv2dGeometry& geometry,
                         const PackedPwlqWeights& w, const PwlqEpilogue& epilogue,
                         const Requantization& requant, std::uint8_t* q,
                         const QgemmOptions& options) {
  check_conv2d(geometry, w);
  check_epilogue(epilogue);
  check_requant(requant);
  qgemm_detail::OutputSpec out;
  out.kind = qgemm_detail::OutputSpec::Kind::Requantized;
  out.q = q;
  run_conv(x, geometry, w, epilogue, &requant, out, options);
}

void qconv2d_from_float(const float* x, const InputQuantization& input,
                        const Conv2dGeometry& geometry, const PackedPwlqWeights& w,
                        const PwlqEpilogue& epilogue, const FloatOutputOps& ops, float* y,
                        const QgemmOptions& options) {
  check_conv2d(geometry, w);
  check_epilogue(epilogue);
  const std::uint8_t* xq = quantize_input(x, input, geometry, epilogue, options);
  qgemm_detail::OutputSpec out;
  out.kind = qgemm_detail::OutputSpec::Kind::Float;
  out.y = y;
  out.residual = ops.residual;
  out.relu = ops.relu;
  run_conv(xq, geometry, w, epilogue, nullptr, out, options);
}

void qconv2d_from_float_requantized(const float* x, const InputQuantization& input,
                                    const Conv2dGeometry& geometry, const PackedPwlqWeights& w,
                                    const PwlqEpilogue& epilogue, const Requantization& requant,
                                    std::uint8_t* q, const QgemmOptions& options) {
  check_conv2d(geometry, w);
  check_epilogue(epilogue);
  check_requant(requant);
  const std::uint8_t* xq = quantize_input(x, input, geometry, epilogue, options);
  qgemm_detail::OutputSpec out;
  out.kind = qgemm_detail::OutputSpec::Kind::Requantized;
  out.q = q;
  run_conv(xq, geometry, w, epilogue, &requant, out, options);
}

}  // namespace prism
