// prism::fold_conv2d and prism::fold_qconv2d: a hand-computed 1x1 case, then every built path
// against a reference that materialises the fold (pixel_unshuffle), runs a direct dilated
// convolution and unfolds (pixel_shuffle) — the three-step definition the kernels fuse. Shapes
// cover odd channel counts, a partial weight block, rows wider than one vector, batch > 1,
// K = 1 and 3, dilations 1/2/4/6, same-size and other paddings, several thread counts.
// The comparison against the NumPy twins and PyTorch lives in tests/kernels/test_fold_conv.py.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "prism/fold_conv.hpp"

namespace {

int failures = 0, checks = 0;

void check(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
}

using prism::FoldConvGeometry;
using prism::FoldConvPath;

std::vector<FoldConvPath> paths(bool integer) {
  std::vector<FoldConvPath> out;
  for (FoldConvPath p : {FoldConvPath::Scalar, FoldConvPath::Avx2, FoldConvPath::Avx512,
                         FoldConvPath::Avx512Winograd, FoldConvPath::Avx512Vnni,
                         FoldConvPath::NeonDot, FoldConvPath::Avx2Winograd,
                         FoldConvPath::Avx512Winograd4, FoldConvPath::Avx2Winograd4,
                         FoldConvPath::NeonWinograd, FoldConvPath::NeonWinograd4}) {
    if (prism::fold_conv_path_unavailable_reason(p, integer).empty()) out.push_back(p);
  }
  return out;
}

std::string describe(const FoldConvGeometry& g) {
  return "B=" + std::to_string(g.batch) + " C_in=" + std::to_string(g.in_channels) +
         " C_out=" + std::to_string(g.out_channels) + " " + std::to_string(g.height) + "x" +
         std::to_string(g.width) + " K=" + std::to_string(g.kernel) + " d=" +
         std::to_string(g.dilation) + " p=" + std::to_string(g.padding);
}

// pixel_unshuffle: (B, C, H, W) -> (B, 4C, H/2, W/2), channel c·4 + bh·2 + bw.
template <typename T>
std::vector<T> fold(const std::vector<T>& x, std::int64_t b, std::int64_t c, std::int64_t h,
                    std::int64_t w) {
  std::vector<T> f(x.size());
  for (std::int64_t n = 0; n < b; ++n)
    for (std::int64_t ch = 0; ch < c; ++ch)
      for (std::int64_t y = 0; y < h; ++y)
        for (std::int64_t xx = 0; xx < w; ++xx) {
          const std::int64_t fc = ch * 4 + (y % 2) * 2 + xx % 2;
          f[((n * 4 * c + fc) * (h / 2) + y / 2) * (w / 2) + xx / 2] =
              x[((n * c + ch) * h + y) * w + xx];
        }
  return f;
}

// pixel_shuffle: (B, 4C, h, w) -> (B, C, 2h, 2w).
template <typename T>
std::vector<T> unfold(const std::vector<T>& f, std::int64_t b, std::int64_t c, std::int64_t h,
                      std::int64_t w) {
  std::vector<T> y(f.size());
  for (std::int64_t n = 0; n < b; ++n)
    for (std::int64_t fc = 0; fc < 4 * c; ++fc)
      for (std::int64_t i = 0; i < h; ++i)
        for (std::int64_t j = 0; j < w; ++j)
          y[((n * c + fc / 4) * 2 * h + 2 * i + (fc / 2) % 2) * 2 * w + 2 * j + fc % 2] =
              f[((n * 4 * c + fc) * h + i) * w + j];
  return y;
}

// Direct dilated convolution on the folded tensor: (B, Ci, h, w) -> (B, Co, ho, wo), padding
// value `pad` (0 for FP32, zx for integer), accumulated in T.
template <typename Acc, typename X, typename W>
std::vector<Acc> conv(const std::vector<X>& x, const std::vector<W>& wt, std::int64_t b,
                      std::int64_t ci_n, std::int64_t h, std::int64_t w, std::int64_t co_n,
                      std::int64_t k, std::int64_t d, std::int64_t p, X pad) {
  const std::int64_t ho = h + 2 * p - d * (k - 1), wo = w + 2 * p - d * (k - 1);
  std::vector<Acc> y(static_cast<std::size_t>(b * co_n * ho * wo), Acc(0));
  for (std::int64_t n = 0; n < b; ++n)
    for (std::int64_t co = 0; co < co_n; ++co)
      for (std::int64_t i = 0; i < ho; ++i)
        for (std::int64_t j = 0; j < wo; ++j) {
          Acc s = 0;
          for (std::int64_t ci = 0; ci < ci_n; ++ci)
            for (std::int64_t kh = 0; kh < k; ++kh)
              for (std::int64_t kw = 0; kw < k; ++kw) {
                const std::int64_t r = i + kh * d - p, c = j + kw * d - p;
                const X v = r >= 0 && r < h && c >= 0 && c < w
                                ? x[((n * ci_n + ci) * h + r) * w + c]
                                : pad;
                const W wv = wt[((co * ci_n + ci) * k + kh) * k + kw];
                s += static_cast<Acc>(v) * static_cast<Acc>(wv);
              }
          y[((n * co_n + co) * ho + i) * wo + j] = s;
        }
  return y;
}

void hand_computed_1x1() {
  // One 2x2 input pixel block, one output channel, K = 1: output pixel (py, px) is
  // Σ_q W[py·2 + px, q]·x[q] with x in fold order (0,0), (0,1), (1,0), (1,1).
  const std::vector<float> x = {1, 2, 3, 4};
  std::vector<float> w(16);
  for (int n = 0; n < 4; ++n)
    for (int q = 0; q < 4; ++q) w[n * 4 + q] = static_cast<float>((n + 1) * (q == n ? 10 : 1));
  const float bias[4] = {0.5f, 0, 0, -0.5f};
  FoldConvGeometry g;
  g.in_channels = g.out_channels = 1;
  g.height = g.width = 2;
  g.kernel = 1;
  const prism::PackedFoldWeights packed = prism::pack_fold_weights(w.data(), bias, 1, 1, 1);
  for (FoldConvPath path : paths(false)) {
    std::vector<float> y(4, -1.0f);
    prism::FoldConvOptions o;
    o.path = path;
    prism::fold_conv2d(x.data(), g, packed, false, y.data(), o);
    const float want[4] = {1 * (10 + 2 + 3 + 4) + 0.5f, 2 * (1 + 20 + 3 + 4),
                           3 * (1 + 2 + 30 + 4), 4 * (1 + 2 + 3 + 40) - 0.5f};
    for (int i = 0; i < 4; ++i) {
      check(y[i] == want[i], std::string("hand 1x1 ") + prism::fold_conv_path_name(path) +
                                 " pixel " + std::to_string(i));
    }
  }
}

// The automatic FP32 path's choice between direct, F(2×2, 3×3) and F(4×4, 3×3)
// (fold_conv_detail::winograd_tile) on the maps its cost model was measured on: Fold-ASPP's
// 64 -> 64 channels, same padding. 0: direct.
void winograd_choice() {
  auto tile = [](std::int64_t h, std::int64_t d, bool wide, std::int64_t batch = 1,
                 std::int64_t kernel = 3) {
    FoldConvGeometry g;
    g.batch = batch;
    g.in_channels = g.out_channels = 64;
    g.height = g.width = h;
    g.kernel = kernel;
    g.dilation = d;
    g.padding = d;
    return prism::fold_conv_detail::winograd_tile(g, wide, wide ? 16 : 8);
  };
  for (bool wide : {true, false}) {
    const std::string at = wide ? " (AVX-512)" : " (AVX2)";
    check(tile(56, 2, wide) == 4 && tile(56, 4, wide) == 4, "56x56 d=2, 4 take F(4x4)" + at);
    check(tile(64, 1, wide) == 4, "64x64 d=1 (4 full vectors of 4x4 tiles) takes F(4x4)" + at);
    check(tile(56, 6, wide) == 2, "56x56 d=6 (4x4 tiles 49 % filled) takes F(2x2)" + at);
    check(tile(40, 2, wide) == 2,
          "40x40 d=2 (3 vectors of 4x4 tiles, 58 % filled) takes F(2x2)" + at);
    check(tile(16, 2, wide) == 2, "16x16 d=2 (4 tiles of 4x4) takes F(2x2)" + at);
    check(tile(8, 2, wide) == 0, "8x8 d=2 (4 tiles) stays direct" + at);
  }
  // One vector of 4x4 tiles: weight-bound on AVX-512, the better form on AVX2.
  check(tile(28, 2, true) == 2 && tile(28, 4, true) == 2, "28x28 d=2, 4: F(2x2) on AVX-512");
  check(tile(28, 2, false) == 4 && tile(28, 4, false) == 4, "28x28 d=2, 4: F(4x4) on AVX2");
  check(tile(24, 4, false) == 4 && tile(24, 4, true) == 0,
        "24x24 d=4: F(4x4) on AVX2, direct on AVX-512");
  // 28 output columns: the direct kernel computes 32 (two vectors of 16 on AVX-512, four of 8
  // on AVX2). With that counted, F(2x2) runs 28x28 d=6 on both (AVX-512, C++ harness, 1 thread:
  // 1.11–1.16 ms against 1.32–1.34 ms direct; 2 threads 0.67 against 0.69–0.71 ms).
  check(tile(28, 6, true) == 2 && tile(28, 6, false) == 2, "28x28 d=6: F(2x2)");
  check(tile(20, 2, true) == 2, "20x20 d=2 (20 columns in 32): F(2x2) on AVX-512");
  // 12x12 d=2: 16 tiles, 56 % filled; 12 columns cost AVX2's direct kernel 16 (AVX2, 1 thread:
  // F(2x2) 0.41 ms against 0.52 ms direct), AVX-512's 16 as well, where it stays direct.
  check(tile(12, 2, true) == 0 && tile(12, 2, false) == 2,
        "12x12 d=2: direct on AVX-512, F(2x2) on AVX2");
  // Batch 4: one vector of 4x4 tiles per image, 4 in a pass that shares the weight stream.
  check(tile(28, 2, true, 4) == 4, "28x28 d=2, batch 4: F(4x4) on AVX-512");
  check(tile(28, 2, true, 1, 5) == 0, "K=5 runs directly");
}

// fold_conv_fp32_algorithm: what each requested path runs. Auto on this CPU: its Winograd family
// for 3×3 (F(4×4) at 56×56 d=4, 4 full vectors of tiles on every ISA), the family's direct
// kernel for 1×1; a forced path runs itself (a Winograd path its direct kernel for 1×1).
void fp32_algorithm_choice() {
  using prism::fold_conv_fp32_algorithm;
  FoldConvGeometry g;
  g.in_channels = g.out_channels = 8;
  g.height = g.width = 56;
  g.kernel = 3;
  g.dilation = g.padding = 4;
  FoldConvGeometry g1 = g;
  g1.kernel = 1;
  g1.dilation = 1;
  g1.padding = 0;
  const FoldConvPath best = prism::fold_conv_best_path(false);
  const struct {
    FoldConvPath f2, f4, direct;
  } families[] = {
      {FoldConvPath::Avx512Winograd, FoldConvPath::Avx512Winograd4, FoldConvPath::Avx512},
      {FoldConvPath::Avx2Winograd, FoldConvPath::Avx2Winograd4, FoldConvPath::Avx2},
      {FoldConvPath::NeonWinograd, FoldConvPath::NeonWinograd4, FoldConvPath::Scalar}};
  bool found = best == FoldConvPath::Scalar;
  for (const auto& f : families) {
    if (best != f.f2) continue;
    found = true;
    check(fold_conv_fp32_algorithm(g, FoldConvPath::Auto) == f.f4, "auto: F(4x4) at 56x56 d=4");
    check(fold_conv_fp32_algorithm(g1, FoldConvPath::Auto) == f.direct, "auto: direct for 1x1");
    check(fold_conv_fp32_algorithm(g, f.f2) == f.f2 && fold_conv_fp32_algorithm(g, f.f4) == f.f4,
          "a forced Winograd path runs itself");
    check(fold_conv_fp32_algorithm(g1, f.f4) == f.direct, "a Winograd path runs 1x1 directly");
  }
  check(found, std::string("the best FP32 path is a Winograd path or scalar: ") +
                   prism::fold_conv_path_name(best));
  check(fold_conv_fp32_algorithm(g, FoldConvPath::Scalar) == FoldConvPath::Scalar,
        "scalar runs itself");
}

void geometry_errors() {
  FoldConvGeometry g;
  g.in_channels = g.out_channels = 1;
  g.height = 3;
  g.width = 4;
  bool threw = false;
  try {
    prism::check_fold_conv(g);
  } catch (const std::invalid_argument& e) {
    threw = std::string(e.what()).find("even") != std::string::npos;
  }
  check(threw, "odd height is rejected naming 'even'");
  g.height = 4;
  g.kernel = 3;
  g.dilation = 4;
  threw = false;
  try {
    prism::check_fold_conv(g);  // 9-pixel kernel on a 2x2 folded input, no padding
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "a kernel larger than the padded input is rejected");
}

// Every FP32 path (or only `only`) against a double reference.
void compare_fp32(const FoldConvGeometry& g, std::mt19937& rng,
                  FoldConvPath only = FoldConvPath::Auto) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const std::int64_t fin = 4 * g.in_channels, fout = 4 * g.out_channels;
  std::vector<float> x(static_cast<std::size_t>(g.batch * g.in_channels * g.height * g.width));
  std::vector<float> w(static_cast<std::size_t>(fout * fin * g.kernel * g.kernel));
  std::vector<float> bias(static_cast<std::size_t>(fout));
  for (float& v : x) v = normal(rng);
  const float scale = 1.0f / std::sqrt(static_cast<float>(fin * g.kernel * g.kernel));
  for (float& v : w) v = normal(rng) * scale;
  for (float& v : bias) v = normal(rng);
  // Reference in double: fold, direct convolution, bias, unfold.
  const std::int64_t hf = g.height / 2, wf = g.width / 2;
  const std::int64_t ho = g.folded_out_height(), wo = g.folded_out_width();
  std::vector<double> yf = conv<double>(fold(x, g.batch, g.in_channels, g.height, g.width), w,
                                        g.batch, fin, hf, wf, fout, g.kernel, g.dilation,
                                        g.padding, 0.0f);
  for (std::int64_t n = 0; n < g.batch; ++n)
    for (std::int64_t c = 0; c < fout; ++c)
      for (std::int64_t p = 0; p < ho * wo; ++p) yf[(n * fout + c) * ho * wo + p] += bias[c];
  const std::vector<double> want = unfold(yf, g.batch, g.out_channels, ho, wo);
  const prism::PackedFoldWeights packed =
      prism::pack_fold_weights(w.data(), bias.data(), g.in_channels, g.out_channels, g.kernel);
  for (FoldConvPath path : paths(false)) {
    if (only != FoldConvPath::Auto && path != only) continue;
    for (int threads : {1, 3}) {
      for (bool relu : {false, true}) {
        std::vector<float> y(want.size(), std::nanf(""));
        prism::FoldConvOptions o;
        o.path = path;
        o.num_threads = threads;
        prism::fold_conv2d(x.data(), g, packed, relu, y.data(), o);
        double worst = 0.0;
        for (std::size_t i = 0; i < y.size(); ++i) {
          const double ref = relu ? std::max(want[i], 0.0) : want[i];
          const double err = std::fabs(y[i] - ref);
          worst = std::isnan(err) ? 1e30 : std::max(worst, err);
        }
        check(worst < 1e-4, "fp32 " + describe(g) + " path " + prism::fold_conv_path_name(path) +
                                " threads " + std::to_string(threads) + (relu ? " relu" : "") +
                                ": max error " + std::to_string(worst));
      }
    }
  }
}

// Codes up to ±127 (int8: the AVX2 path's split form) or ±7 (4-bit PWLQ, with Q = 7: its
// int16 runs of vpmaddubsw sums). extreme = ±1: every activation 255 and every code (and tail
// code) ±max_code, the largest sums the int16 runs and the int32 accumulators can meet.
void compare_integer(const FoldConvGeometry& g, bool with_tail, int max_code, std::mt19937& rng,
                     int extreme = 0) {
  std::uniform_int_distribution<int> byte(0, 255), code(-max_code, max_code), coin(0, 9);
  const std::int64_t fin = 4 * g.in_channels, fout = 4 * g.out_channels;
  const std::int64_t count = fout * fin * g.kernel * g.kernel;
  std::vector<std::uint8_t> x(
      static_cast<std::size_t>(g.batch * g.in_channels * g.height * g.width));
  for (auto& v : x) v = static_cast<std::uint8_t>(extreme ? 255 : byte(rng));
  // Folded PWLQ codes (prism/qgemm.hpp): W0 holds Q·sign at every tail weight (Q = 127, the
  // widest 8-bit case), W1 the tail codes.
  std::vector<std::int8_t> center(count), tail(count, 0);
  for (std::int64_t i = 0; i < count; ++i) {
    const int v = code(rng);
    if (with_tail && coin(rng) == 0) {  // ~10 % tail weights, some with a zero tail code
      const int sign = v < 0 ? -1 : 1;
      const int magnitude = coin(rng) < 2 ? 0 : 1 + std::abs(v) / 2;
      tail[i] = static_cast<std::int8_t>(sign * magnitude);
      center[i] = static_cast<std::int8_t>(max_code * sign);
    } else {
      center[i] = static_cast<std::int8_t>(v);
    }
    if (extreme) {
      center[i] = static_cast<std::int8_t>(extreme * max_code);
      if (with_tail) tail[i] = static_cast<std::int8_t>(extreme * max_code);
    }
  }
  const std::uint8_t zx = static_cast<std::uint8_t>(byte(rng));
  const std::int64_t hf = g.height / 2, wf = g.width / 2;
  const std::int64_t ho = g.folded_out_height(), wo = g.folded_out_width();
  const std::vector<std::uint8_t> xf = fold(x, g.batch, g.in_channels, g.height, g.width);
  auto accumulate = [&](const std::vector<std::int8_t>& wt) {
    return unfold(conv<std::int64_t>(xf, wt, g.batch, fin, hf, wf, fout, g.kernel, g.dilation,
                                     g.padding, zx),
                  g.batch, g.out_channels, ho, wo);
  };
  const std::vector<std::int64_t> want_c = accumulate(center), want_t = accumulate(tail);
  const std::vector<std::int8_t> ones(static_cast<std::size_t>(fin * g.kernel * g.kernel), 1);
  const std::vector<std::int64_t> want_r =
      conv<std::int64_t>(xf, ones, g.batch, fin, hf, wf, 1, g.kernel, g.dilation, g.padding, zx);
  const prism::PackedFoldQWeights packed = prism::pack_fold_qweights(
      center.data(), with_tail ? tail.data() : nullptr, g.in_channels, g.out_channels, g.kernel);
  // Epilogue constants, to compare float and requantized outputs across paths.
  std::vector<float> s1(fout), s2(fout), a(fout), c(fout), b(fout);
  std::uniform_real_distribution<float> unit(0.5f, 1.5f);
  for (std::int64_t n = 0; n < fout; ++n) {
    s1[n] = 0.01f * unit(rng);
    s2[n] = 0.03f * unit(rng);
    a[n] = unit(rng);
    c[n] = 0.001f * unit(rng);
    b[n] = unit(rng) - 1.0f;
  }
  prism::PwlqEpilogue e;
  e.sx = 0.02f;
  e.zx = zx;
  e.s1 = s1.data();
  e.s2 = s2.data();
  e.a = a.data();
  e.c = c.data();
  e.bias = b.data();
  prism::Requantization rq;
  rq.scale = 0.05f;
  rq.zero_point = 100;
  rq.relu = true;
  std::vector<float> y_scalar;
  std::vector<std::uint8_t> q_scalar;
  const std::string what = std::string(with_tail ? "pwlq " : "int8 ") + "codes +-" +
                           std::to_string(max_code) + (extreme ? " extreme " : " ") + describe(g);
  for (FoldConvPath path : paths(true)) {
    for (int threads : {1, 4}) {
      prism::FoldConvOptions o;
      o.path = path;
      o.num_threads = threads;
      const std::string tag = what + " path " + prism::fold_conv_path_name(path) + " threads " +
                              std::to_string(threads);
      std::vector<std::int32_t> ac(want_c.size(), -7), at(want_c.size(), -7),
          r(want_r.size(), -7);
      prism::FoldQOutput acc;
      acc.a_c = ac.data();
      acc.a_t = at.data();
      acc.r = r.data();
      prism::fold_qconv2d(x.data(), g, packed, e, acc, o);
      bool same = true;
      for (std::size_t i = 0; i < ac.size(); ++i) {
        same = same && ac[i] == want_c[i] && at[i] == want_t[i];
      }
      for (std::size_t i = 0; i < r.size(); ++i) same = same && r[i] == want_r[i];
      check(same, tag + ": accumulators");
      std::vector<float> y(want_c.size());
      prism::FoldQOutput fy;
      fy.y = y.data();
      prism::fold_qconv2d(x.data(), g, packed, e, fy, o);
      std::vector<std::uint8_t> q(want_c.size());
      prism::FoldQOutput fq;
      fq.q = q.data();
      fq.requant = &rq;
      prism::fold_qconv2d(x.data(), g, packed, e, fq, o);
      if (y_scalar.empty()) {
        y_scalar = y;
        q_scalar = q;
        // The float epilogue of the scalar path against double arithmetic: close, not equal.
        double worst = 0.0, scale = 1e-6;
        for (std::size_t i = 0; i < y.size(); ++i) {
          const std::int64_t n_out = static_cast<std::int64_t>(i) / (4 * ho * wo) % g.out_channels;
          const std::int64_t rem = static_cast<std::int64_t>(i) % (4 * ho * wo);
          const std::int64_t yy = rem / (2 * wo), xx = rem % (2 * wo);
          const std::int64_t n = n_out * 4 + (yy % 2) * 2 + xx % 2;
          const std::int64_t img = static_cast<std::int64_t>(i) / (4 * ho * wo * g.out_channels);
          const double rr = static_cast<double>(want_r[(img * ho + yy / 2) * wo + xx / 2]) -
                            double(zx) * fin * g.kernel * g.kernel;
          std::int64_t sc = 0, st = 0;
          for (std::int64_t k = 0; k < fin * g.kernel * g.kernel; ++k) {
            sc += center[n * fin * g.kernel * g.kernel + k];
            st += tail[n * fin * g.kernel * g.kernel + k];
          }
          const double sx = e.sx;
          const double ac = double(want_c[i] - zx * sc), at = double(want_t[i] - zx * st);
          const double ref = sx * (s1[n] * ac + s2[n] * at) * a[n] +
                             c[n] * sx * rr + b[n];
          worst = std::max(worst, std::fabs(ref - y[i]));
          scale = std::max(scale, std::fabs(ref));
        }
        check(worst <= 1e-5 * scale + 1e-5, tag + ": float epilogue vs double, error " +
                                                std::to_string(worst));
      } else {
        check(y == y_scalar, tag + ": float output equals the scalar path bit for bit");
        check(q == q_scalar, tag + ": requantized output equals the scalar path");
      }
    }
  }
}

}  // namespace

// Winograd runs a batch in groups of images, each with its zero-bordered pixel blocks in the
// calling thread's scratch, whose border is written only for images not yet written with the
// current layout. A larger geometry leaves other data there; then one image of a small
// geometry, then three: images 2 and 3 must get their border written.
void winograd_border_across_batches(std::mt19937& rng) {
  FoldConvGeometry a;
  a.batch = 3;
  a.in_channels = 2;
  a.out_channels = 3;
  a.height = a.width = 40;
  a.kernel = 3;
  a.dilation = a.padding = 1;
  FoldConvGeometry b = a;
  b.batch = 1;
  b.height = b.width = 12;
  b.dilation = b.padding = 2;
  for (FoldConvPath path : paths(false)) {
    if (std::string(prism::fold_conv_path_name(path)).find("winograd") == std::string::npos) {
      continue;
    }
    compare_fp32(a, rng, path);
    compare_fp32(b, rng, path);
    b.batch = 3;
    compare_fp32(b, rng, path);
    b.batch = 1;
  }
}

int main() {
  hand_computed_1x1();
  geometry_errors();
  winograd_choice();
  fp32_algorithm_choice();
  std::mt19937 rng(42);
  winograd_border_across_batches(rng);
  struct Case {
    std::int64_t b, ci, co, h, w, k, d, p;
  };
  const Case cases[] = {
      {1, 1, 1, 2, 2, 1, 1, 0},    {1, 3, 7, 6, 10, 3, 1, 1},  {2, 5, 6, 8, 8, 3, 2, 2},
      {1, 2, 13, 12, 36, 3, 4, 4}, {1, 3, 5, 14, 70, 3, 6, 6}, {2, 4, 3, 10, 34, 1, 1, 0},
      {1, 2, 2, 12, 12, 3, 2, 0},  {1, 1, 4, 4, 6, 3, 1, 3},   {3, 2, 1, 4, 4, 3, 6, 6},
  };
  for (const Case& c : cases) {
    FoldConvGeometry g;
    g.batch = c.b;
    g.in_channels = c.ci;
    g.out_channels = c.co;
    g.height = c.h;
    g.width = c.w;
    g.kernel = c.k;
    g.dilation = c.d;
    g.padding = c.p;
    compare_fp32(g, rng);
    for (int max_code : {127, 7}) {
      compare_integer(g, false, max_code, rng);
      compare_integer(g, true, max_code, rng);
    }
  }
  // Extreme values on a deep window (4·C_in·K·K = 576): each bound of the int16 runs (codes ±7,
  // ±9, ±64) and the split form (±65, ±127), both signs.
  FoldConvGeometry deep;
  deep.in_channels = 16;
  deep.out_channels = 2;
  deep.height = 12;
  deep.width = 20;
  deep.kernel = 3;
  deep.dilation = 2;
  deep.padding = 2;
  for (int max_code : {7, 9, 64, 65, 127}) {
    for (int sign : {1, -1}) compare_integer(deep, max_code != 65, max_code, rng, sign);
  }
  if (failures) {
    std::fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  std::printf("test_fold_conv: %d checks passed (fp32 paths:", checks);
  for (FoldConvPath p : paths(false)) std::printf(" %s", prism::fold_conv_path_name(p));
  std::printf("; integer paths:");
  for (FoldConvPath p : paths(true)) std::printf(" %s", prism::fold_conv_path_name(p));
  std::printf(")\n");
  return 0;
}
