// pybind11 bindings: the one place where kernels meet Python. Kernels themselves are plain C++
// (kernels/include, kernels/src) and know nothing of Python; input checking and documentation
// live in the Python wrappers in sdk/ (e.g. sdk/preprocess.py).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "prism/cpu_features.hpp"

namespace py = pybind11;

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
}
