// prism::qconv2d: a hand-computed padded 3x3 case, and every built path against a direct
// (no im2col) reference convolution for stride, padding, dilation, groups and depthwise.
// The comparison against the NumPy twin and PyTorch lives in tests/kernels/test_qconv.py.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "prism/qconv.hpp"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
}

using prism::QgemmPath;

std::vector<QgemmPath> available_paths() {
  std::vector<QgemmPath> paths;
  for (QgemmPath p : {QgemmPath::Scalar, QgemmPath::Avx2, QgemmPath::Avx512Vnni,
                      QgemmPath::NeonDot}) {
    if (prism::qgemm_path_unavailable_reason(p).empty()) paths.push_back(p);
  }
  return paths;
}

void hand_computed_padded_3x3() {
  // One 2x2 input channel, one 3x3 all-ones center kernel, padding 1, zx = 5: each output is
  // the sum over its window of (x − 5), padding contributing (5 − 5) = 0.
  const std::vector<std::uint8_t> x = {6, 7, 8, 9};  // x − zx = 1, 2, 3, 4
  const std::vector<std::int8_t> center(9, 1);
  const auto w = prism::pack_pwlq_weights(center.data(), nullptr, 1, 9);
  prism::Conv2dGeometry g;
  g.in_channels = 1;
  g.height = g.width = 2;
  g.out_channels = 1;
  g.kernel_h = g.kernel_w = 3;
  g.pad_h = g.pad_w = 1;
  const float s1[] = {1.0f};
  prism::PwlqEpilogue e;
  e.zx = 5;
  e.s1 = s1;
  for (QgemmPath path : available_paths()) {
    std::vector<float> y(4, -1.0f);
    prism::qconv2d(x.data(), g, w, e, y.data(), {path, 1});
    // Every 3x3 window of the padded 2x2 input covers all four pixels: 1 + 2 + 3 + 4 = 10.
    check(y == std::vector<float>({10, 10, 10, 10}),
          std::string("padded 3x3 [") + prism::qgemm_path_name(path) + "]");
  }
  // Stride 2 without padding on a 3x3 input with a 1x1 kernel picks the corners.
  const std::vector<std::uint8_t> x3 = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::vector<std::int8_t> one = {2};
  const auto w1 = prism::pack_pwlq_weights(one.data(), nullptr, 1, 1);
  g.height = g.width = 3;
  g.kernel_h = g.kernel_w = 1;
  g.pad_h = g.pad_w = 0;
  g.stride_h = g.stride_w = 2;
  e.zx = 0;
  for (QgemmPath path : available_paths()) {
    std::vector<float> y(4, -1.0f);
    prism::qconv2d(x3.data(), g, w1, e, y.data(), {path, 1});
    check(y == std::vector<float>({2, 6, 14, 18}),
          std::string("strided 1x1 [") + prism::qgemm_path_name(path) + "]");
  }
}

struct Case {
  std::int64_t batch, cin, h, w, cout, kh, kw, sh, sw, ph, pw, dh, dw, groups;
};

void random_against_direct(std::mt19937& rng, const Case& c, double tail_fraction, int zx) {
  prism::Conv2dGeometry g;
  g.batch = c.batch;
  g.in_channels = c.cin;
  g.height = c.h;
  g.width = c.w;
  g.out_channels = c.cout;
  g.kernel_h = c.kh;
  g.kernel_w = c.kw;
  g.stride_h = c.sh;
  g.stride_w = c.sw;
  g.pad_h = c.ph;
  g.pad_w = c.pw;
  g.dilation_h = c.dh;
  g.dilation_w = c.dw;
  g.groups = c.groups;
  const std::int64_t cin_g = c.cin / c.groups, cout_g = c.cout / c.groups;
  const std::int64_t depth = cin_g * c.kh * c.kw;
  // Folded PWLQ codes (Q = 7): W0 holds the center codes and 7·sign at every tail weight.
  std::vector<std::int8_t> center(c.cout * depth), tail(c.cout * depth);
  std::uniform_int_distribution<int> code(-7, 7), byte(0, 255);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (std::int64_t i = 0; i < c.cout * depth; ++i) {
    if (u(rng) < tail_fraction) {
      const int sign = u(rng) < 0.5 ? -1 : 1;
      center[i] = static_cast<std::int8_t>(7 * sign);
      tail[i] = static_cast<std::int8_t>(sign * (std::abs(code(rng))));
    } else {
      center[i] = static_cast<std::int8_t>(code(rng));
    }
  }
  std::vector<std::uint8_t> x(c.batch * c.cin * c.h * c.w);
  for (auto& v : x) v = static_cast<std::uint8_t>(byte(rng));
  const std::vector<float> s1(c.cout, 0.01f), s2(c.cout, 0.02f),
      a(c.cout, 1.0f), cc(c.cout, 0.003f), bias(c.cout, 0.25f);
  prism::PwlqEpilogue e;
  e.sx = 0.05f;
  e.zx = zx;
  e.s1 = s1.data();
  e.s2 = s2.data();
  e.a = a.data();
  e.c = cc.data();
  e.bias = bias.data();

  // Direct convolution in int64, then the documented float epilogue.
  const std::int64_t oh = g.out_height(), ow = g.out_width();
  std::vector<float> want(c.batch * c.cout * oh * ow);
  for (std::int64_t b = 0; b < c.batch; ++b)
    for (std::int64_t n = 0; n < c.cout; ++n) {
      const std::int64_t grp = n / cout_g;
      std::int32_t sum_c = 0, sum_t = 0;
      for (std::int64_t k = 0; k < depth; ++k) {
        sum_c += center[n * depth + k];
        sum_t += tail[n * depth + k];
      }
      for (std::int64_t y = 0; y < oh; ++y)
        for (std::int64_t xo = 0; xo < ow; ++xo) {
          std::int64_t ac = 0, at = 0, r = 0;
          for (std::int64_t ci = 0; ci < cin_g; ++ci)
            for (std::int64_t i = 0; i < c.kh; ++i)
              for (std::int64_t j = 0; j < c.kw; ++j) {
                const std::int64_t iy = y * c.sh - c.ph + i * c.dh, ix = xo * c.sw - c.pw + j * c.dw;
                const bool inside = iy >= 0 && iy < c.h && ix >= 0 && ix < c.w;
                const std::int64_t v =
                    inside ? x[((b * c.cin + grp * cin_g + ci) * c.h + iy) * c.w + ix] : zx;
                const std::int64_t k = (ci * c.kh + i) * c.kw + j;
                ac += v * center[n * depth + k];
                at += v * tail[n * depth + k];
                r += v;
              }
          const double sx = e.sx;
          float out = static_cast<float>(static_cast<std::int32_t>(ac) - zx * sum_c) *
                      static_cast<float>(sx * s1[n] * a[n]);
          out = out + static_cast<float>(static_cast<std::int32_t>(at) - zx * sum_t) *
                          static_cast<float>(sx * s2[n] * a[n]);
          out = out + static_cast<float>(static_cast<std::int32_t>(r) - zx * depth) *
                          static_cast<float>(cc[n] * sx);
          want[((b * c.cout + n) * oh + y) * ow + xo] = out + bias[n];
        }
    }

  const std::string shape = "conv cin=" + std::to_string(c.cin) + " " + std::to_string(c.h) +
                            "x" + std::to_string(c.w) + " cout=" + std::to_string(c.cout) +
                            " k=" + std::to_string(c.kh) + "x" + std::to_string(c.kw) +
                            " stride=" + std::to_string(c.sh) + " pad=" + std::to_string(c.ph) +
                            " dil=" + std::to_string(c.dh) + " groups=" + std::to_string(c.groups);
  for (auto form : {prism::TailForm::Sparse, prism::TailForm::Dense}) {
    const auto w = prism::pack_pwlq_weights(center.data(), tail.data(), c.cout, depth, form,
                                            c.groups);
    for (QgemmPath path : available_paths()) {
      for (int threads : {1, 2}) {
        std::vector<float> y(want.size(), -1.0f);
        prism::qconv2d(x.data(), g, w, e, y.data(), {path, threads});
        bool same = true;
        for (std::size_t i = 0; i < y.size(); ++i) same = same && y[i] == want[i];
        check(same, shape + " [" + prism::qgemm_path_name(path) + ", " +
                        std::to_string(threads) + " threads]");
      }
      // A float input that QuantizeLinear (scale 0.25, zero point zx) maps back onto x exactly,
      // plus ties (x − zx ± 0.5)·0.25 that round half to even; relu fused on the float output.
      prism::InputQuantization iq;
      iq.scale = 0.25f;
      std::vector<float> xf(x.size());
      std::vector<std::uint8_t> xq(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) {
        const float tie = (i % 3 == 0) ? 0.5f : 0.0f;
        xf[i] = (static_cast<float>(x[i] - zx) + tie) * 0.25f;
        const float q = std::nearbyint(xf[i] / 0.25f) + static_cast<float>(zx);
        xq[i] = static_cast<std::uint8_t>(q < 0.0f ? 0.0f : q > 255.0f ? 255.0f : q);
      }
      std::vector<float> y_ref(want.size()), y(want.size(), -1.0f);
      prism::qconv2d(xq.data(), g, w, e, y_ref.data(), {path, 1});
      std::vector<float> residual(want.size());
      for (std::size_t i = 0; i < residual.size(); ++i) residual[i] = 0.125f * float(i % 17) - 1.0f;
      prism::FloatOutputOps ops;
      ops.residual = residual.data();
      ops.relu = true;
      prism::qconv2d_from_float(xf.data(), iq, g, w, e, ops, y.data(), {path, 1});
      bool same = true;
      for (std::size_t i = 0; i < y.size(); ++i) {
        const float sum = y_ref[i] + residual[i];
        const float r = sum > 0.0f ? sum : 0.0f;
        same = same && std::memcmp(&y[i], &r, sizeof(float)) == 0;
      }
      check(same, shape + " float input, residual, relu [" + prism::qgemm_path_name(path) + "]");
    }
  }
}

void geometry_errors() {
  const std::vector<std::int8_t> center(9, 1);
  const auto w = prism::pack_pwlq_weights(center.data(), nullptr, 1, 9);
  prism::Conv2dGeometry g;
  g.in_channels = 1;
  g.height = g.width = 2;
  g.out_channels = 1;
  g.kernel_h = g.kernel_w = 3;  // larger than the unpadded 2x2 input
  bool threw = false;
  try {
    prism::check_conv2d(g, w);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "kernel larger than the input is rejected");
  g.pad_h = g.pad_w = 1;
  g.kernel_h = 1;  // weights were packed for 3x3
  threw = false;
  try {
    prism::check_conv2d(g, w);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "weights of another kernel size are rejected");
}

}  // namespace

int main() {
  std::printf("qconv default path: %s\n", prism::qgemm_path_name(prism::qgemm_best_path()));
  hand_computed_padded_3x3();
  geometry_errors();
  std::mt19937 rng(7);
  const Case cases[] = {
      // batch cin h  w  cout kh kw sh sw ph pw dh dw groups
      {1, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1},   // ResNet-20 stage 1
      {2, 3, 9, 11, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1},      // odd sizes, stride 2, batch 2
      {1, 4, 10, 9, 6, 3, 3, 1, 1, 2, 2, 2, 2, 1},      // dilation 2
      {1, 8, 7, 7, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8},       // depthwise
      {1, 8, 6, 5, 16, 3, 3, 2, 1, 1, 0, 1, 1, 4},      // groups, channel multiplier 4
      {1, 6, 5, 5, 10, 1, 1, 1, 1, 0, 0, 1, 1, 2},      // grouped 1x1
      {1, 2, 12, 12, 3, 5, 5, 3, 3, 2, 2, 1, 1, 1},     // 5x5, stride 3
      {1, 1, 4, 6, 2, 2, 3, 1, 2, 0, 1, 1, 1, 1},       // non-square kernel, stride and pad
  };
  for (const Case& c : cases) {
    random_against_direct(rng, c, 0.1, 128);
    random_against_direct(rng, c, 0.5, 255);
  }
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("test_qconv: all checks passed\n");
  return 0;
}
