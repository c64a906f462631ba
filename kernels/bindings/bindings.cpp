// pybind11 bindings: the one place where kernels meet Python. Kernels themselves are plain C++
// (kernels/include, kernels/src) and know nothing of Python; input checking and documentation
// live in the Python wrappers in sdk/ (e.g. sdk/preprocess.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "prism/cpu_features.hpp"
#include "prism/preprocess.hpp"

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

}  // namespace

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
}
