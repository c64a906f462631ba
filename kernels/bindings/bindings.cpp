// pybind11 bindings: the one place where kernels meet Python. Kernels themselves are plain C++
// (kernels/include, kernels/src) and know nothing of Python; input checking and documentation
// live in the Python wrappers in sdk/ (e.g. sdk/preprocess.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "prism/cpu_features.hpp"
#include "prism/fold_conv.hpp"
#include "prism/line_decode.hpp"
#include "prism/preprocess.hpp"
#include "prism/qconv.hpp"
#include "prism/qgemm.hpp"

namespace py = pybind11;

namespace {

// Arrays are taken with noconvert(): pybind11 never copies or casts them, so the kernel reads the
// caller's buffer. The shape checks here only guard memory safety; sdk/preprocess.py gives the
// documented errors.
void preprocess(py::array_t<std::uint8_t, py::array::c_style> frames,
                py::array_t<float, py::array::c_style> out, const std::string& pixel_format,
                const std::string& channels, double scale, const std::vector<double>& mean,
                const std::vector<double>& std, int num_threads) {
  prism::PreprocessParams p;
  p.pixel_format = prism::parse_pixel_format(pixel_format);
  p.channels = prism::parse_output_channels(channels);
  const int c_in = prism::channel_count(p.pixel_format), c_out = prism::channel_count(p.channels);
  if (frames.ndim() != 4 || frames.shape(3) != c_in)
    throw std::invalid_argument("frames must be (N, H, W, " + std::to_string(c_in) + ") uint8");
  if (out.ndim() != 4 || out.shape(0) != frames.shape(0) || out.shape(1) != c_out)
    throw std::invalid_argument("out must be (N, " + std::to_string(c_out) + ", h, w) float32");
  if (mean.size() != static_cast<size_t>(c_out) || std.size() != static_cast<size_t>(c_out))
    throw std::invalid_argument("mean and std need one value per output channel");
  p.batch = frames.shape(0);
  p.in_height = frames.shape(1);
  p.in_width = frames.shape(2);
  p.out_height = out.shape(2);
  p.out_width = out.shape(3);
  p.scale = scale;
  for (int c = 0; c < c_out; ++c) {
    p.mean[c] = mean[c];
    p.std[c] = std[c];
  }
  p.num_threads = num_threads;
  const std::uint8_t* src = frames.data();
  float* dst = out.mutable_data();  // throws if out is read-only
  py::gil_scoped_release release;
  prism::preprocess_frames(src, dst, p);
}

// ---- PWLQ integer GEMM and convolution (sdk/kernels_int.py documents and checks the inputs).

using I8Array = py::array_t<std::int8_t, py::array::c_style>;
using U8Array = py::array_t<std::uint8_t, py::array::c_style>;
using I32Array = py::array_t<std::int32_t, py::array::c_style>;
using F32Array = py::array_t<float, py::array::c_style>;
using Packed = std::shared_ptr<prism::PackedPwlqWeights>;

prism::TailForm parse_tail_form(const std::string& name) {
  if (name == "sparse") return prism::TailForm::Sparse;
  if (name == "dense") return prism::TailForm::Dense;
  if (name == "none") return prism::TailForm::None;
  throw std::invalid_argument("tail_form must be 'sparse', 'dense' or 'none', got '" + name + "'");
}

const char* tail_form_name(prism::TailForm form) {
  switch (form) {
    case prism::TailForm::Sparse: return "sparse";
    case prism::TailForm::Dense: return "dense";
    case prism::TailForm::None: break;
  }
  return "none";
}

Packed pack_pwlq(I8Array center, std::optional<I8Array> tail, std::int64_t channels,
                 std::int64_t depth, std::int64_t groups, const std::string& form) {
  const auto size = static_cast<py::ssize_t>(channels * depth);
  if (center.size() != size || (tail && tail->size() != size))
    throw std::invalid_argument("center and tail must hold N*K codes each");
  const std::int8_t* c = center.data();
  const std::int8_t* t = tail ? tail->data() : nullptr;
  const prism::TailForm f = parse_tail_form(form);
  py::gil_scoped_release release;
  return std::make_shared<prism::PackedPwlqWeights>(
      prism::pack_pwlq_weights(c, t, channels, depth, f, groups));
}

prism::QgemmOptions options(const std::string& path, int num_threads) {
  prism::QgemmOptions o;
  o.path = prism::parse_qgemm_path(path);
  o.num_threads = num_threads;
  return o;
}

// The per-channel vectors must each hold N float32 values.
struct EpilogueArrays {
  F32Array s1, s2, a, c, bias;
  prism::PwlqEpilogue get(float sx, int zx, std::int64_t channels) const {
    for (const F32Array* v : {&s1, &s2, &a, &c, &bias})
      if (v->ndim() != 1 || v->shape(0) != channels)
        throw std::invalid_argument("per-channel parameters must be float32 (N,) arrays");
    prism::PwlqEpilogue e;
    e.sx = sx;
    e.zx = zx;
    e.s1 = s1.data();
    e.s2 = s2.data();
    e.a = a.data();
    e.c = c.data();
    e.bias = bias.data();
    return e;
  }
};

void qgemm_accumulators(U8Array x, const Packed& w, I32Array a_c, I32Array a_t, I32Array r,
                        const std::string& path, int num_threads) {
  if (x.ndim() != 2 || x.shape(1) != w->depth) throw std::invalid_argument("x must be (M, K)");
  const std::int64_t m = x.shape(0), n = w->channels;
  for (I32Array* o : {&a_c, &a_t})
    if (o->ndim() != 2 || o->shape(0) != m || o->shape(1) != n)
      throw std::invalid_argument("accumulators must be (M, N) int32");
  if (r.ndim() != 1 || r.shape(0) != m) throw std::invalid_argument("r must be (M,) int32");
  const prism::QgemmOptions o = options(path, num_threads);
  const std::uint8_t* src = x.data();
  std::int32_t *pc = a_c.mutable_data(), *pt = a_t.mutable_data(), *pr = r.mutable_data();
  py::gil_scoped_release release;
  prism::qgemm_accumulators(src, m, *w, pc, pt, pr, o);
}

void qgemm(U8Array x, const Packed& w, float sx, int zx, const EpilogueArrays& params,
           std::optional<F32Array> y, std::optional<U8Array> q, float out_scale,
           int out_zero_point, bool relu, const std::string& path, int num_threads) {
  if (x.ndim() != 2 || x.shape(1) != w->depth) throw std::invalid_argument("x must be (M, K)");
  const std::int64_t m = x.shape(0), n = w->channels;
  if (y.has_value() == q.has_value()) throw std::invalid_argument("give exactly one of y and q");
  const py::ssize_t out_size = y ? y->size() : q->size();
  if (out_size != m * n) throw std::invalid_argument("output must hold (M, N) values");
  const prism::PwlqEpilogue e = params.get(sx, zx, n);
  const prism::QgemmOptions o = options(path, num_threads);
  const std::uint8_t* src = x.data();
  float* py_out = y ? y->mutable_data() : nullptr;
  std::uint8_t* pq = q ? q->mutable_data() : nullptr;
  const prism::Requantization rq{out_scale, out_zero_point, relu};
  py::gil_scoped_release release;
  if (py_out)
    prism::qgemm(src, m, *w, e, py_out, o);
  else
    prism::qgemm_requantized(src, m, *w, e, rq, pq, o);
}

using PackedFoldQ = std::shared_ptr<prism::PackedFoldQWeights>;

// The per-channel epilogue length of packed weights: N of a GEMM or convolution, the folded
// output channels 4·C_out of a folded convolution.
std::int64_t epilogue_channels(const Packed& w) { return w->channels; }
std::int64_t epilogue_channels(const PackedFoldQ& w) { return 4 * w->out_channels; }

// What a prepared integer layer fixes at load time: the packed weights, the checked epilogue
// and the output form. run() allocates the output (uint8 when requantized, else float32) and
// calls run_q(q) or run_f(y) with the GIL released.
template <class P>
class PreparedLayer {
 protected:
  PreparedLayer(P w, float sx, int zx, EpilogueArrays params, bool requantize,
                float out_scale, int out_zero_point, bool relu)
      : w_(std::move(w)), params_(std::move(params)), requantize_(requantize) {
    epilogue_ = params_.get(sx, zx, epilogue_channels(w_));
    requant_.scale = out_scale;
    requant_.zero_point = out_zero_point;
    requant_.relu = relu;
  }

  template <class RunQ, class RunF>
  py::array run(const std::vector<py::ssize_t>& shape, RunQ run_q, RunF run_f) const {
    if (requantize_) {
      U8Array q(shape);
      std::uint8_t* pq = q.mutable_data();
      py::gil_scoped_release release;
      run_q(pq);
      return std::move(q);
    }
    F32Array y(shape);
    float* py = y.mutable_data();
    py::gil_scoped_release release;
    run_f(py);
    return std::move(y);
  }

  P w_;
  EpilogueArrays params_;  // keeps the per-channel arrays that epilogue_ points into alive
  prism::PwlqEpilogue epilogue_;
  prism::Requantization requant_;
  bool requantize_;
};

// A GEMM layer prepared once (sdk.kernels_int.PwlqGemm): a call parses two arguments besides x
// and allocates its output here. path/num_threads are per call (PwlqGemm takes them per call).
class PreparedQgemm : PreparedLayer<Packed> {
 public:
  PreparedQgemm(Packed w, float sx, int zx, EpilogueArrays params, bool requantize,
                float out_scale, int out_zero_point, bool relu)
      : PreparedLayer(std::move(w), sx, zx, std::move(params), requantize, out_scale,
                      out_zero_point, relu) {}

  // x: uint8 (M, K) C-contiguous -> float32 (M, N), or uint8 (M, N) when requantized.
  py::array operator()(U8Array x, const std::string& path, int num_threads) const {
    if (x.ndim() != 2 || x.shape(1) != w_->depth) throw std::invalid_argument("x must be (M, K)");
    const std::int64_t m = x.shape(0);
    const prism::QgemmOptions o = options(path, num_threads);
    const std::uint8_t* src = x.data();
    return run({m, w_->channels},
               [&](std::uint8_t* q) {
                 prism::qgemm_requantized(src, m, *w_, epilogue_, requant_, q, o);
               },
               [&](float* y) { prism::qgemm(src, m, *w_, epilogue_, y, o); });
  }
};

// The geometry of x (B, C_in, H, W) under w; checks x and the output's size.
prism::Conv2dGeometry conv_geometry(const py::array& x, const Packed& w, std::int64_t kernel_h,
                                    std::int64_t kernel_w, std::int64_t stride_h,
                                    std::int64_t stride_w, std::int64_t pad_h, std::int64_t pad_w,
                                    std::int64_t dilation_h, std::int64_t dilation_w,
                                    bool has_y, bool has_q, py::ssize_t out_size) {
  if (x.ndim() != 4) throw std::invalid_argument("x must be (B, C_in, H, W)");
  prism::Conv2dGeometry g;
  g.batch = x.shape(0);
  g.in_channels = x.shape(1);
  g.height = x.shape(2);
  g.width = x.shape(3);
  g.out_channels = w->channels;
  g.kernel_h = kernel_h;
  g.kernel_w = kernel_w;
  g.stride_h = stride_h;
  g.stride_w = stride_w;
  g.pad_h = pad_h;
  g.pad_w = pad_w;
  g.dilation_h = dilation_h;
  g.dilation_w = dilation_w;
  g.groups = w->groups;
  prism::check_conv2d(g, *w);
  if (has_y == has_q) throw std::invalid_argument("give exactly one of y and q");
  if (out_size != g.batch * g.out_channels * g.out_height() * g.out_width())
    throw std::invalid_argument("output must hold (B, C_out, H_out, W_out) values");
  return g;
}

void qconv2d(U8Array x, const Packed& w, std::int64_t kernel_h, std::int64_t kernel_w,
             std::int64_t stride_h, std::int64_t stride_w, std::int64_t pad_h, std::int64_t pad_w,
             std::int64_t dilation_h, std::int64_t dilation_w, float sx, int zx,
             const EpilogueArrays& params, std::optional<F32Array> y, std::optional<U8Array> q,
             float out_scale, int out_zero_point, bool relu, const std::string& path,
             int num_threads) {
  const prism::Conv2dGeometry g =
      conv_geometry(x, w, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                    dilation_w, y.has_value(), q.has_value(), y ? y->size() : q ? q->size() : 0);
  const prism::PwlqEpilogue e = params.get(sx, zx, w->channels);
  const prism::QgemmOptions o = options(path, num_threads);
  const std::uint8_t* src = x.data();
  float* py_out = y ? y->mutable_data() : nullptr;
  std::uint8_t* pq = q ? q->mutable_data() : nullptr;
  const prism::Requantization rq{out_scale, out_zero_point, relu};
  py::gil_scoped_release release;
  if (py_out)
    prism::qconv2d(src, g, *w, e, py_out, o);
  else
    prism::qconv2d_requantized(src, g, *w, e, rq, pq, o);
}

// A convolution layer prepared once for float32 inputs quantized inside the kernel
// (prism::InputQuantization): a call checks x, allocates the output and runs, with no Python
// between (the per-layer cost of a small network's convolutions is mostly call overhead).
class PreparedConv : PreparedLayer<Packed> {
 public:
  PreparedConv(Packed w, std::int64_t kernel_h, std::int64_t kernel_w, std::int64_t stride_h,
               std::int64_t stride_w, std::int64_t pad_h, std::int64_t pad_w,
               std::int64_t dilation_h, std::int64_t dilation_w, float in_scale, bool clip,
               float clip_low, float clip_high, float sx, int zx, EpilogueArrays params,
               bool requantize, float out_scale, int out_zero_point, bool relu,
               const std::string& path, int num_threads)
      : PreparedLayer(std::move(w), sx, zx, std::move(params), requantize, out_scale,
                      out_zero_point, relu),
        relu_(relu), options_(options(path, num_threads)) {
    g_.out_channels = w_->channels;
    g_.groups = w_->groups;
    g_.kernel_h = kernel_h;
    g_.kernel_w = kernel_w;
    g_.stride_h = stride_h;
    g_.stride_w = stride_w;
    g_.pad_h = pad_h;
    g_.pad_w = pad_w;
    g_.dilation_h = dilation_h;
    g_.dilation_w = dilation_w;
    input_.scale = in_scale;
    input_.clip = clip;
    input_.clip_low = clip_low;
    input_.clip_high = clip_high;
  }

  // x: float32 (B, C_in, H, W) C-contiguous -> float32 or uint8 (B, C_out, H_out, W_out);
  // residual: None or float32 of the output's shape, added to a float output before the relu.
  py::array operator()(F32Array x, std::optional<F32Array> residual) const {
    if (x.ndim() != 4) throw std::invalid_argument("x must be (B, C_in, H, W)");
    prism::Conv2dGeometry g = g_;
    g.batch = x.shape(0);
    g.in_channels = x.shape(1);
    g.height = x.shape(2);
    g.width = x.shape(3);
    prism::check_conv2d(g, *w_);
    const std::vector<py::ssize_t> shape{g.batch, g.out_channels, g.out_height(), g.out_width()};
    const float* src = x.data();
    prism::FloatOutputOps ops;
    ops.relu = relu_;
    if (residual) {
      if (requantize_) throw std::invalid_argument("residual: the layer's output is requantized");
      bool same = residual->ndim() == 4;
      for (int i = 0; same && i < 4; ++i) same = residual->shape(i) == shape[i];
      if (!same) throw std::invalid_argument("residual must have the output's shape (B, C_out, H_out, W_out)");
      ops.residual = residual->data();
    }
    return run(shape,
               [&](std::uint8_t* q) {
                 prism::qconv2d_from_float_requantized(src, input_, g, *w_, epilogue_, requant_,
                                                       q, options_);
               },
               [&](float* y) {
                 prism::qconv2d_from_float(src, input_, g, *w_, epilogue_, ops, y, options_);
               });
  }

 private:
  prism::Conv2dGeometry g_;
  prism::InputQuantization input_;
  bool relu_;
  prism::QgemmOptions options_;
};

// ---- Folded convolution, FP32 and integer (sdk/fold_conv.py documents and checks the inputs).

using PackedFold = std::shared_ptr<prism::PackedFoldWeights>;

// The geometry of sizes given one by one (unchecked: its users check it once).
prism::FoldConvGeometry fold_geometry_of(std::int64_t batch, std::int64_t in_channels,
                                         std::int64_t height, std::int64_t width,
                                         std::int64_t out_channels, std::int64_t kernel,
                                         std::int64_t dilation, std::int64_t padding) {
  prism::FoldConvGeometry g;
  g.batch = batch;
  g.in_channels = in_channels;
  g.height = height;
  g.width = width;
  g.out_channels = out_channels;
  g.kernel = kernel;
  g.dilation = dilation;
  g.padding = padding;
  return g;
}

prism::FoldConvGeometry fold_geometry(const py::array& x, std::int64_t in_channels,
                                      std::int64_t out_channels, std::int64_t kernel,
                                      std::int64_t dilation, std::int64_t padding) {
  if (x.ndim() != 4 || x.shape(1) != in_channels)
    throw std::invalid_argument("x must be (B, C_in, H, W) with the packed C_in");
  const prism::FoldConvGeometry g = fold_geometry_of(x.shape(0), in_channels, x.shape(2),
                                                     x.shape(3), out_channels, kernel, dilation,
                                                     padding);
  prism::check_fold_conv(g);
  return g;
}

void check_fold_output(const py::array& out, const prism::FoldConvGeometry& g) {
  if (out.ndim() != 4 || out.shape(0) != g.batch || out.shape(1) != g.out_channels ||
      out.shape(2) != g.out_height() || out.shape(3) != g.out_width())
    throw std::invalid_argument("output must be (B, C_out, 2*Hf, 2*Wf)");
}

prism::FoldConvOptions fold_options(const std::string& path, int num_threads) {
  prism::FoldConvOptions o;
  o.path = prism::parse_fold_conv_path(path);
  o.num_threads = num_threads;
  return o;
}

PackedFold pack_fold(F32Array w, std::optional<F32Array> bias) {
  if (w.ndim() != 4 || w.shape(0) % 4 || w.shape(1) % 4 || w.shape(2) != w.shape(3))
    throw std::invalid_argument("w must be (4*C_out, 4*C_in, K, K) float32");
  if (bias && (bias->ndim() != 1 || bias->shape(0) != w.shape(0)))
    throw std::invalid_argument("bias must be (4*C_out,) float32");
  const float* pw = w.data();
  const float* pb = bias ? bias->data() : nullptr;
  const std::int64_t co = w.shape(0) / 4, ci = w.shape(1) / 4, k = w.shape(2);
  py::gil_scoped_release release;
  return std::make_shared<prism::PackedFoldWeights>(prism::pack_fold_weights(pw, pb, ci, co, k));
}

void fold_conv2d(F32Array x, const PackedFold& w, std::int64_t dilation, std::int64_t padding,
                 bool relu, F32Array y, const std::string& path, int num_threads) {
  const prism::FoldConvGeometry g =
      fold_geometry(x, w->in_channels, w->out_channels, w->kernel, dilation, padding);
  check_fold_output(y, g);
  const prism::FoldConvOptions o = fold_options(path, num_threads);
  const float* src = x.data();
  float* dst = y.mutable_data();
  py::gil_scoped_release release;
  prism::fold_conv2d(src, g, *w, relu, dst, o);
}

PackedFoldQ pack_fold_q(I8Array center, std::optional<I8Array> tail) {
  if (center.ndim() != 4 || center.shape(0) % 4 || center.shape(1) % 4 ||
      center.shape(2) != center.shape(3))
    throw std::invalid_argument("center must be (4*C_out, 4*C_in, K, K) int8");
  if (tail && tail->size() != center.size())
    throw std::invalid_argument("tail must have the shape of center");
  const std::int8_t* c = center.data();
  const std::int8_t* t = tail ? tail->data() : nullptr;
  const std::int64_t co = center.shape(0) / 4, ci = center.shape(1) / 4, k = center.shape(2);
  py::gil_scoped_release release;
  return std::make_shared<prism::PackedFoldQWeights>(
      prism::pack_fold_qweights(c, t, ci, co, k));
}

void fold_qconv2d(U8Array x, const PackedFoldQ& w, std::int64_t dilation, std::int64_t padding,
                  float sx, int zx, std::optional<EpilogueArrays> params,
                  std::optional<I32Array> a_c, std::optional<I32Array> a_t,
                  std::optional<I32Array> r,
                  std::optional<F32Array> y, std::optional<U8Array> q, float out_scale,
                  int out_zero_point, bool relu, const std::string& path, int num_threads) {
  const prism::FoldConvGeometry g =
      fold_geometry(x, w->in_channels, w->out_channels, w->kernel, dilation, padding);
  prism::FoldQOutput out;
  if (a_c && a_t && r) {
    for (I32Array* a : {&*a_c, &*a_t}) check_fold_output(*a, g);
    if (r->ndim() != 3 || r->shape(0) != g.batch || r->shape(1) != g.folded_out_height() ||
        r->shape(2) != g.folded_out_width())
      throw std::invalid_argument("r must be (B, Hf, Wf) int32");
    out.a_c = a_c->mutable_data();
    out.a_t = a_t->mutable_data();
    out.r = r->mutable_data();
  } else if (y) {
    check_fold_output(*y, g);
    out.y = y->mutable_data();
  } else if (q) {
    check_fold_output(*q, g);
    out.q = q->mutable_data();
  } else {
    throw std::invalid_argument("give a_c, a_t and r, or y, or q");
  }
  prism::PwlqEpilogue e;
  e.zx = zx;
  if (out.y || out.q) {
    if (!params) throw std::invalid_argument("the float and requantized outputs need params");
    e = params->get(sx, zx, 4 * w->out_channels);
  }
  const prism::Requantization rq{out_scale, out_zero_point, relu};
  out.requant = &rq;
  const prism::FoldConvOptions o = fold_options(path, num_threads);
  const std::uint8_t* src = x.data();
  py::gil_scoped_release release;
  prism::fold_qconv2d(src, g, *w, e, out, o);
}

// A folded integer convolution prepared once (sdk.fold_conv.FoldQConvLayer): a call checks x,
// allocates the output and runs, with no Python between.
class PreparedFoldQConv : PreparedLayer<PackedFoldQ> {
 public:
  PreparedFoldQConv(PackedFoldQ w, std::int64_t dilation, std::int64_t padding, float sx, int zx,
                    EpilogueArrays params, bool requantize, float out_scale, int out_zero_point,
                    bool relu)
      : PreparedLayer(std::move(w), sx, zx, std::move(params), requantize, out_scale,
                      out_zero_point, relu),
        dilation_(dilation), padding_(padding) {}

  // x: uint8 (B, C_in, H, W) C-contiguous -> float32 or uint8 (B, C_out, 2·Hf, 2·Wf).
  py::array operator()(U8Array x, const std::string& path, int num_threads) const {
    const prism::FoldConvGeometry g =
        fold_geometry(x, w_->in_channels, w_->out_channels, w_->kernel, dilation_, padding_);
    const prism::FoldConvOptions o = fold_options(path, num_threads);
    const std::uint8_t* src = x.data();
    return run({g.batch, g.out_channels, g.out_height(), g.out_width()},
               [&](std::uint8_t* q) {
                 prism::FoldQOutput out;
                 out.q = q;
                 out.requant = &requant_;
                 if (g.batch) prism::fold_qconv2d(src, g, *w_, epilogue_, out, o);
               },
               [&](float* y) {
                 prism::FoldQOutput out;
                 out.y = y;
                 if (g.batch) prism::fold_qconv2d(src, g, *w_, epilogue_, out, o);
               });
  }

 private:
  std::int64_t dilation_, padding_;
};

}  // namespace

// Line-sensor kernels: defined in their section at the end of this file.
void register_line_kernels(py::module_& m);

PYBIND11_MODULE(_kernels, m) {
  m.doc() = "Prism native kernels (C++). Use the documented wrappers in sdk.*, not this module.";
  m.def("cpu_features", []() {
    const auto& f = prism::cpu_features();
    py::dict d;
    d["arch"] = f.arch;
    d["avx2"] = f.avx2;
    d["avx512f"] = f.avx512f;
    d["avx512_vnni"] = f.avx512_vnni;
    d["avx_vnni"] = f.avx_vnni;
    d["neon"] = f.neon;
    d["neon_dotprod"] = f.neon_dotprod;
    return d;
  }, "SIMD features of this CPU, as detected for run-time kernel dispatch.");
  m.def("preprocess", &preprocess, py::arg("frames").noconvert(), py::arg("out").noconvert(),
        py::arg("pixel_format"), py::arg("channels"), py::arg("scale"), py::arg("mean"),
        py::arg("std"), py::arg("num_threads") = 0,
        "frames (N, H, W, C) uint8 -> out (N, C_out, h, w) float32 in place; see "
        "sdk.preprocess.preprocess.");
  py::class_<prism::PackedPwlqWeights, std::shared_ptr<prism::PackedPwlqWeights>>(
      m, "PackedPwlqWeights", "PWLQ weights packed for the integer kernels (see sdk.kernels_int).")
      .def_readonly("channels", &prism::PackedPwlqWeights::channels)
      .def_readonly("depth", &prism::PackedPwlqWeights::depth)
      .def_readonly("groups", &prism::PackedPwlqWeights::groups)
      .def_readonly("max_abs_code", &prism::PackedPwlqWeights::max_abs_code)
      .def_property_readonly("tail_form",
                             [](const prism::PackedPwlqWeights& w) { return tail_form_name(w.tail_form); })
      .def_property_readonly("tail_block_density", &prism::PackedPwlqWeights::tail_block_density)
      .def_property_readonly("tail_quad_density", &prism::PackedPwlqWeights::tail_quad_density)
      .def_property_readonly("nbytes", [](const prism::PackedPwlqWeights& w) {
        return w.dense.size() + w.dense_tail.size() +
               w.tail_blocks.size() * sizeof(prism::QgemmTailBlock) +
               w.tail_quads.size() * sizeof(prism::PwlqTailQuad) +
               (w.tail_start.size() + w.quad_start.size()) * sizeof(std::int64_t);
      });
  py::class_<EpilogueArrays>(m, "PwlqEpilogueArrays")
      .def(py::init([](F32Array s1, F32Array s2, F32Array a, F32Array c, F32Array bias) {
             return EpilogueArrays{s1, s2, a, c, bias};
           }),
           py::arg("s1").noconvert(), py::arg("s2").noconvert(), py::arg("a").noconvert(), py::arg("c").noconvert(), py::arg("bias").noconvert());
  m.def("qgemm_paths", []() {
    py::dict d;
    for (auto p : {prism::QgemmPath::Scalar, prism::QgemmPath::Avx2, prism::QgemmPath::Avx512Vnni,
                   prism::QgemmPath::NeonDot})
      d[prism::qgemm_path_name(p)] = prism::qgemm_path_unavailable_reason(p);
    return d;
  }, "{path: '' if it runs here, else why not}");
  m.def("vpdpbusd_per_second", [](double seconds) {
    py::gil_scoped_release release;
    return prism::qgemm_detail::vpdpbusd_per_second(seconds);
  }, py::arg("seconds") = 0.2, "Measured vpdpbusd zmm throughput per CPU-second of one thread (0 without VNNI).");
  m.def("vpmaddubsw_per_second", [](double seconds) {
    py::gil_scoped_release release;
    return prism::qgemm_detail::vpmaddubsw_per_second(seconds);
  }, py::arg("seconds") = 0.2,
     "Measured vpmaddubsw ymm throughput per CPU-second of one thread (0 without the AVX2 path).");
  m.def("qgemm_best_path", []() { return std::string(prism::qgemm_path_name(prism::qgemm_best_path())); });
  m.def("pack_pwlq_weights", &pack_pwlq, py::arg("center").noconvert(),
        py::arg("tail").noconvert() = py::none(), py::arg("channels"), py::arg("depth"), py::arg("groups") = 1,
        py::arg("tail_form") = "sparse", "See sdk.kernels_int.pack_pwlq_weights.");
  m.def("qgemm_accumulators", &qgemm_accumulators, py::arg("x").noconvert(), py::arg("packed"),
        py::arg("a_c").noconvert(), py::arg("a_t").noconvert(),
        py::arg("r").noconvert(), py::arg("path") = "auto", py::arg("num_threads") = 0,
        "See sdk.kernels_int.qgemm_accumulators.");
  m.def("qgemm", &qgemm, py::arg("x").noconvert(), py::arg("packed"), py::arg("sx"),
        py::arg("zx"), py::arg("params"), py::arg("y").noconvert() = py::none(),
        py::arg("q").noconvert() = py::none(), py::arg("out_scale") = 1.0f,
        py::arg("out_zero_point") = 0, py::arg("relu") = false, py::arg("path") = "auto",
        py::arg("num_threads") = 0, "See sdk.kernels_int.qgemm.");
  m.def("qconv2d", &qconv2d, py::arg("x").noconvert(), py::arg("packed"), py::arg("kernel_h"),
        py::arg("kernel_w"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_h"),
        py::arg("pad_w"), py::arg("dilation_h"), py::arg("dilation_w"), py::arg("sx"),
        py::arg("zx"), py::arg("params"), py::arg("y").noconvert() = py::none(),
        py::arg("q").noconvert() = py::none(), py::arg("out_scale") = 1.0f,
        py::arg("out_zero_point") = 0, py::arg("relu") = false, py::arg("path") = "auto",
        py::arg("num_threads") = 0, "See sdk.kernels_int.qconv2d.");
  py::class_<PreparedQgemm>(m, "PreparedQgemm", "See sdk.kernels_int.PwlqGemm.")
      .def(py::init<Packed, float, int, EpilogueArrays, bool, float, int, bool>(),
           py::arg("packed"), py::arg("sx"), py::arg("zx"), py::arg("params"),
           py::arg("requantize"), py::arg("out_scale"), py::arg("out_zero_point"),
           py::arg("relu"))
      .def("__call__", &PreparedQgemm::operator(), py::arg("x").noconvert(), py::arg("path"),
           py::arg("num_threads"));
  py::class_<PreparedConv>(m, "PreparedQConv2d",
                           "See sdk.kernels_int.PwlqConv2d.prepare_float.")
      .def(py::init<Packed, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                    std::int64_t, std::int64_t, std::int64_t, float, bool, float, float, float,
                    int, EpilogueArrays, bool, float, int, bool, const std::string&, int>(),
           py::arg("packed"), py::arg("kernel_h"), py::arg("kernel_w"), py::arg("stride_h"),
           py::arg("stride_w"), py::arg("pad_h"), py::arg("pad_w"), py::arg("dilation_h"),
           py::arg("dilation_w"), py::arg("in_scale"), py::arg("clip"), py::arg("clip_low"),
           py::arg("clip_high"), py::arg("sx"), py::arg("zx"), py::arg("params"),
           py::arg("requantize"), py::arg("out_scale"), py::arg("out_zero_point"),
           py::arg("relu"), py::arg("path"), py::arg("num_threads"))
      .def("__call__", &PreparedConv::operator(), py::arg("x").noconvert(),
           py::arg("residual").noconvert() = py::none());
  py::class_<prism::PackedFoldWeights, PackedFold>(
      m, "PackedFoldWeights", "FP32 folded-convolution weights packed once (see sdk.fold_conv).")
      .def_readonly("in_channels", &prism::PackedFoldWeights::in_channels)
      .def_readonly("out_channels", &prism::PackedFoldWeights::out_channels)
      .def_readonly("kernel", &prism::PackedFoldWeights::kernel)
      .def_property_readonly("nbytes", [](const prism::PackedFoldWeights& w) {
        return (w.data.size() + w.bias.size() + w.winograd.size() + w.winograd4.size() +
                w.folded_bias.size()) * sizeof(float);
      });
  py::class_<prism::PackedFoldQWeights, PackedFoldQ>(
      m, "PackedFoldQWeights", "Integer folded-convolution weights packed once (see sdk.fold_conv).")
      .def_readonly("in_channels", &prism::PackedFoldQWeights::in_channels)
      .def_readonly("out_channels", &prism::PackedFoldQWeights::out_channels)
      .def_readonly("kernel", &prism::PackedFoldQWeights::kernel)
      .def_readonly("has_tail", &prism::PackedFoldQWeights::has_tail)
      .def_readonly("max_abs_code", &prism::PackedFoldQWeights::max_abs_code)
      .def_property_readonly("tail_group_density", &prism::PackedFoldQWeights::tail_group_density)
      .def_property_readonly("tail_code_density", &prism::PackedFoldQWeights::tail_code_density)
      .def_property_readonly("tail_quad_density", &prism::PackedFoldQWeights::tail_quad_density)
      .def_property_readonly("nbytes", [](const prism::PackedFoldQWeights& w) {
        return w.dense.size() + w.tail_groups.size() * sizeof(prism::FoldTailGroup) +
               w.tail_quads.size() * sizeof(prism::PwlqTailQuad) +
               (w.tail_start.size() + w.quad_start.size()) * sizeof(std::int64_t);
      });
  m.def("fold_conv_paths", [](bool integer) {
    py::dict d;
    for (auto p : {prism::FoldConvPath::Scalar, prism::FoldConvPath::Avx2,
                   prism::FoldConvPath::Avx512, prism::FoldConvPath::Avx512Winograd,
                   prism::FoldConvPath::Avx512Vnni, prism::FoldConvPath::NeonDot,
                   prism::FoldConvPath::Avx2Winograd, prism::FoldConvPath::Avx512Winograd4,
                   prism::FoldConvPath::Avx2Winograd4, prism::FoldConvPath::NeonWinograd,
                   prism::FoldConvPath::NeonWinograd4})
      d[prism::fold_conv_path_name(p)] = prism::fold_conv_path_unavailable_reason(p, integer);
    return d;
  }, py::arg("integer"), "{path: '' if the FP32 / integer kernel runs on it here, else why not}");
  m.def("fold_conv_fp32_algorithm", [](std::int64_t batch, std::int64_t in_channels,
                                       std::int64_t height, std::int64_t width,
                                       std::int64_t out_channels, std::int64_t kernel,
                                       std::int64_t dilation, std::int64_t padding,
                                       const std::string& path) {
    // fold_conv_fp32_algorithm checks the geometry.
    const prism::FoldConvGeometry g = fold_geometry_of(batch, in_channels, height, width,
                                                       out_channels, kernel, dilation, padding);
    return std::string(prism::fold_conv_path_name(
        prism::fold_conv_fp32_algorithm(g, prism::parse_fold_conv_path(path))));
  }, py::arg("batch"), py::arg("in_channels"), py::arg("height"), py::arg("width"),
     py::arg("out_channels"), py::arg("kernel"), py::arg("dilation"), py::arg("padding"),
     py::arg("path"), "The FP32 path fold_conv2d runs for this geometry (see sdk.fold_conv).");
  m.def("fold_conv_best_path", [](bool integer) {
    return std::string(prism::fold_conv_path_name(prism::fold_conv_best_path(integer)));
  }, py::arg("integer"));
  m.def("pack_fold_weights", &pack_fold, py::arg("w").noconvert(),
        py::arg("bias").noconvert() = py::none(), "See sdk.fold_conv.pack_fold_weights.");
  m.def("fold_conv2d", &fold_conv2d, py::arg("x").noconvert(), py::arg("packed"),
        py::arg("dilation"), py::arg("padding"), py::arg("relu"), py::arg("y").noconvert(),
        py::arg("path") = "auto", py::arg("num_threads") = 0, "See sdk.fold_conv.fold_conv2d.");
  m.def("pack_fold_qweights", &pack_fold_q, py::arg("center").noconvert(),
        py::arg("tail").noconvert() = py::none(), "See sdk.fold_conv.pack_fold_qweights.");
  m.def("fold_qconv2d", &fold_qconv2d, py::arg("x").noconvert(), py::arg("packed"),
        py::arg("dilation"), py::arg("padding"), py::arg("sx"), py::arg("zx"),
        py::arg("params") = py::none(), py::arg("a_c").noconvert() = py::none(),
        py::arg("a_t").noconvert() = py::none(), py::arg("r").noconvert() = py::none(),
        py::arg("y").noconvert() = py::none(), py::arg("q").noconvert() = py::none(),
        py::arg("out_scale") = 1.0f,
        py::arg("out_zero_point") = 0, py::arg("relu") = false, py::arg("path") = "auto",
        py::arg("num_threads") = 0, "See sdk.fold_conv.fold_qconv2d.");
  py::class_<PreparedFoldQConv>(m, "PreparedFoldQConv2d", "See sdk.fold_conv.FoldQConvLayer.")
      .def(py::init<PackedFoldQ, std::int64_t, std::int64_t, float, int, EpilogueArrays, bool,
                    float, int, bool>(),
           py::arg("packed"), py::arg("dilation"), py::arg("padding"), py::arg("sx"),
           py::arg("zx"), py::arg("params"), py::arg("requantize"), py::arg("out_scale"),
           py::arg("out_zero_point"), py::arg("relu"))
      .def("__call__", &PreparedFoldQConv::operator(), py::arg("x").noconvert(),
           py::arg("path"), py::arg("num_threads"));
  register_line_kernels(m);
}

// ===================================================================================== lines ==
// Line-sensor kernels of diffraction line imaging (prism/line_decode.hpp). sdk/lines/preprocess.py
// and sdk/lines/lut.py check and document the inputs; the checks here only guard memory safety.
namespace {

using LU8 = py::array_t<std::uint8_t, py::array::c_style>;
using LF32 = py::array_t<float, py::array::c_style>;

prism::line::ScanShape line_scan_shape(const LU8& scans) {
  if (scans.ndim() != 5 || scans.shape(4) != 3)
    throw std::invalid_argument("scans must be (N, R, h, Q, 3) uint8");
  return prism::line::ScanShape{scans.shape(0), scans.shape(1), scans.shape(2), scans.shape(3)};
}

void line_expect(const py::array& a, std::vector<py::ssize_t> shape, const char* name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
  if (!ok) throw std::invalid_argument(std::string(name) + " has the wrong shape");
  if (!a.writeable()) throw std::invalid_argument(std::string(name) + " is read-only");
}

prism::line::LineThresholds line_thresholds(double t, double floor, int saturation) {
  prism::line::LineThresholds th;
  th.intensity_threshold = static_cast<float>(t);
  th.channel_floor = static_cast<float>(floor);
  th.saturation_level = saturation;
  return th;
}

prism::line::LineOptions line_options(const std::string& path, int num_threads) {
  return prism::line::LineOptions{prism::line::parse_line_path(path), num_threads};
}

}  // namespace

void register_line_kernels(py::module_& m) {
  using namespace prism::line;
  m.def("line_paths", []() {
    py::dict d;
    for (auto p : {LinePath::Scalar, LinePath::Avx2, LinePath::Avx512, LinePath::Neon})
      d[line_path_name(p)] = line_path_unavailable_reason(p);
    return d;
  }, "{path: '' if the line kernels run on it here, else why not}");
  m.def("line_best_path", []() { return std::string(line_path_name(line_best_path())); });
  m.def("read_checksum", [](py::array_t<std::uint8_t, py::array::c_style> bytes) {
    const std::uint8_t* p = bytes.data();
    const std::int64_t n = bytes.size();
    py::gil_scoped_release release;
    return read_checksum(p, n);
  }, py::arg("bytes").noconvert(),
  "Sum of every byte (uint64): the memory floor of a decoder that reads its input once.");
  m.def("line_roi_means", [](LU8 scans, LF32 out, const std::string& path, int threads) {
    const ScanShape s = line_scan_shape(scans);
    line_expect(out, {s.batch, s.rois, s.pixels, 3}, "out");
    const LineOptions o = line_options(path, threads);
    const std::uint8_t* src = scans.data();
    float* dst = out.mutable_data();
    py::gil_scoped_release release;
    roi_means(src, s, dst, o);
  }, py::arg("scans").noconvert(), py::arg("out").noconvert(), py::arg("path") = "auto",
     py::arg("num_threads") = 1, "See sdk.lines.preprocess.roi_means.");
  m.def("line_validity", [](LF32 means, LU8 valid, LU8 flags, double t, double floor) {
    if (means.ndim() != 4 || means.shape(3) != 3)
      throw std::invalid_argument("means must be (N, R, Q, 3) float32");
    const py::ssize_t n = means.shape(0), r = means.shape(1), q = means.shape(2);
    line_expect(valid, {n, r, q}, "valid");
    line_expect(flags, {n, q}, "flags");
    const LineThresholds th = line_thresholds(t, floor, 255);
    const float* src = means.data();
    std::uint8_t* v = valid.mutable_data();
    std::uint8_t* f = flags.mutable_data();
    py::gil_scoped_release release;
    validity(src, n, r, q, th, v, f);
  }, py::arg("means").noconvert(), py::arg("valid").noconvert(), py::arg("flags").noconvert(),
     py::arg("intensity_threshold"), py::arg("channel_floor"),
     "See sdk.lines.preprocess.validity.");
  m.def("line_features", [](LU8 scans, LF32 features, LU8 valid, LU8 flags, double t,
                            double floor, int saturation, const std::string& path, int threads) {
    const ScanShape s = line_scan_shape(scans);
    line_expect(features, {s.batch, s.pixels, 3 * s.rois + 1}, "features");
    line_expect(valid, {s.batch, s.pixels}, "valid");
    line_expect(flags, {s.batch, s.pixels}, "flags");
    const LineThresholds th = line_thresholds(t, floor, saturation);
    const LineOptions o = line_options(path, threads);
    const std::uint8_t* src = scans.data();
    float* fe = features.mutable_data();
    std::uint8_t* v = valid.mutable_data();
    std::uint8_t* f = flags.mutable_data();
    py::gil_scoped_release release;
    line_features(src, s, th, fe, v, f, o);
  }, py::arg("scans").noconvert(), py::arg("features").noconvert(), py::arg("valid").noconvert(),
     py::arg("flags").noconvert(), py::arg("intensity_threshold"), py::arg("channel_floor"),
     py::arg("saturation_level"), py::arg("path") = "auto", py::arg("num_threads") = 1,
     "See sdk.lines.preprocess.line_features.");
  m.def("line_gray_profile", [](LU8 scans, LF32 out, const std::string& path, int threads) {
    const ScanShape s = line_scan_shape(scans);
    line_expect(out, {s.batch, s.pixels}, "out");
    const LineOptions o = line_options(path, threads);
    const std::uint8_t* src = scans.data();
    float* dst = out.mutable_data();
    py::gil_scoped_release release;
    gray_profile(src, s, dst, o);
  }, py::arg("scans").noconvert(), py::arg("out").noconvert(), py::arg("path") = "auto",
     py::arg("num_threads") = 1, "See sdk.lines.preprocess.gray_profile.");
  m.def("line_find_peaks", [](LF32 profile, double threshold, std::int64_t min_distance) {
    if (profile.ndim() != 1) throw std::invalid_argument("profile must be (Q,) float32");
    std::vector<Peak> peaks;
    {
      const float* p = profile.data();
      const std::int64_t q = profile.shape(0);
      py::gil_scoped_release release;
      peaks = find_peaks(p, q, static_cast<float>(threshold), min_distance);
    }
    py::array_t<std::int64_t> y(static_cast<py::ssize_t>(peaks.size()));
    py::array_t<float> sub(static_cast<py::ssize_t>(peaks.size()));
    for (size_t i = 0; i < peaks.size(); ++i) {
      y.mutable_at(i) = peaks[i].y;
      sub.mutable_at(i) = peaks[i].y_sub;
    }
    return py::make_tuple(y, sub);
  }, py::arg("profile").noconvert(), py::arg("threshold"), py::arg("min_distance"),
     "See sdk.lines.preprocess.find_peaks.");
  m.def("line_extract_patches", [](LU8 scan, py::array_t<std::int64_t, py::array::c_style> y,
                                   LF32 patches, LU8 in_bounds, std::int64_t width) {
    if (scan.ndim() != 4 || scan.shape(3) != 3)
      throw std::invalid_argument("scan must be (R, h, Q, 3) uint8");
    if (y.ndim() != 1) throw std::invalid_argument("y_int must be (K,) int64");
    const py::ssize_t r = scan.shape(0), h = scan.shape(1), k = y.shape(0);
    line_expect(patches, {k, 3, h, width * r}, "patches");
    line_expect(in_bounds, {k}, "in_bounds");
    const std::uint8_t* src = scan.data();
    const std::int64_t* ys = y.data();
    float* out = patches.mutable_data();
    std::uint8_t* ib = in_bounds.mutable_data();
    const std::int64_t q = scan.shape(2);
    py::gil_scoped_release release;
    extract_patches(src, r, h, q, ys, k, width, out, ib);
  }, py::arg("scan").noconvert(), py::arg("y_int").noconvert(), py::arg("patches").noconvert(),
     py::arg("in_bounds").noconvert(), py::arg("width"),
     "See sdk.lines.preprocess.extract_patches.");
  m.def("line_lut_decode", [](LU8 scans, LF32 table, double y0, double dy, bool weighted,
                              double t, double floor, int saturation, LF32 xv,
                              py::array_t<std::int8_t, py::array::c_style> roi, LU8 flags,
                              const std::string& path, int threads) {
    const ScanShape s = line_scan_shape(scans);
    if (table.ndim() != 4 || table.shape(0) != s.rois || table.shape(2) != table.shape(3))
      throw std::invalid_argument("table must be (R, ny, nc, nc) float32 with the scans' R");
    line_expect(xv, {s.batch, s.pixels}, "xv");
    line_expect(roi, {s.batch, s.pixels}, "roi");
    line_expect(flags, {s.batch, s.pixels}, "flags");
    LineLut lut;
    lut.table = table.data();
    lut.ny = table.shape(1);
    lut.nc = table.shape(2);
    lut.y0 = static_cast<float>(y0);
    lut.dy = static_cast<float>(dy);
    lut.weighted = weighted;
    const LineThresholds th = line_thresholds(t, floor, saturation);
    const LineOptions o = line_options(path, threads);
    const std::uint8_t* src = scans.data();
    float* x = xv.mutable_data();
    std::int8_t* ro = roi.mutable_data();
    std::uint8_t* f = flags.mutable_data();
    LineCounts c;
    {
      py::gil_scoped_release release;
      lut_decode(src, s, th, lut, x, ro, f, o, &c);
    }
    return py::make_tuple(c.decoded, c.dark, c.single_channel, c.saturated, c.no_lut);
  }, py::arg("scans").noconvert(), py::arg("table").noconvert(), py::arg("y0"), py::arg("dy"),
     py::arg("weighted"), py::arg("intensity_threshold"), py::arg("channel_floor"),
     py::arg("saturation_level"), py::arg("xv").noconvert(), py::arg("roi").noconvert(),
     py::arg("flags").noconvert(), py::arg("path") = "auto", py::arg("num_threads") = 1,
     "See sdk.lines.lut.LineLUT.decode.");
}
// ================================================================================= end lines ==
