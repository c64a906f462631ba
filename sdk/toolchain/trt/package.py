"""The Jetson path of ``sdk.deploy``: the packaged ONNX made into what TensorRT accepts.

Any packager's output (FP32 model, quantized model, multi-stage model) goes through
:func:`package_jetson`:

* ``fp32``: the verified FP32 ONNX, linted;
* ``fp16`` (the Jetson default): the FP32 ONNX converted to FP16 (I/O stay float32), compared
  with the FP32 graph on ONNX Runtime (max |fp16 − fp32| recorded in the manifest);
* quantized (``pwlq4``, ``uniform8``, ``int8`` = ``uniform8``): the QDQ form made symmetric
  (``sdk.toolchain.trt.qdq``: u8 activations → int8 with zero point 0; PWLQ weights by the
  ``weights`` strategy), compared with Prism's u8 simulation on ONNX Runtime.

Then the TensorRT lint runs on every graph: a ``reject`` finding stops the deploy with the list
of nodes and reasons; plugins and warnings are recorded in the manifest's ``tensorrt`` section
with the shape profiles the engine will be built with (static inputs: one shape; a symbolic batch:
min 1, opt = the example's batch, max ``max_batch``).
"""
from __future__ import annotations

import numpy as np

from ...bundle import GraphSpec
from ...errors import InputError
from .fp16 import convert_to_fp16
from .lint import lint_model
from .qdq import to_tensorrt

DEFAULT_WEIGHTS = "int8"    # PWLQ weights on TensorRT; see qdq.py and reports/bench/pwlq_tensorrt.md
DEFAULT_MAX_BATCH = 8


def _ort_run(data: bytes, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)


def _compare(before: bytes, after: bytes, x: np.ndarray, input_name: str) -> dict:
    x = np.ascontiguousarray(np.asarray(x, np.float32))
    ref = _ort_run(before, {input_name: x})[0]
    got = _ort_run(after, {input_name: x})[0].astype(np.float32)
    out = {"max_abs_diff": float(np.max(np.abs(got - ref))), "ref_max_abs": float(np.max(np.abs(ref)))}
    if ref.ndim == 2 and ref.shape[1] > 1:
        out["top1_agreement"] = float((got.argmax(1) == ref.argmax(1)).mean())
    return out


def _profiles(graph: GraphSpec, batch: int, max_batch: int) -> dict:
    out = {}
    for t in graph.inputs:
        def fill(n):
            return [n if isinstance(d, str) else int(d) for d in t.shape]
        out[t.name] = {"min": fill(1), "opt": fill(batch), "max": fill(max(batch, max_batch))}
    return out


def package_jetson(package, model, x, target, *, precision, form, atol,
                   weights: str = DEFAULT_WEIGHTS, max_batch: int = DEFAULT_MAX_BATCH):
    """Run the model's packager for a Jetson ``target`` and make its graphs TensorRT's."""
    import onnx

    quantized = type(model).__name__ in ("QuantizedModel", "QuantizedOnnx")
    precision = precision or (None if quantized else target.default_precision)
    if not quantized and precision not in ("fp32", "fp16"):
        raise InputError(f"precision '{precision}' on target '{target.name}' needs a quantized model: "
                         f"sdk.quantize(model, calibration_data, scheme='uniform', weight_bits=8) for "
                         f"int8 (TensorRT 10 deprecated implicit INT8 calibration), or scheme='pwlq' for "
                         f"pwlq<bits>; float precisions here: fp32, fp16")
    if quantized and precision == "int8":
        own = f"{model.config.scheme}{model.config.weight_bits}"
        if own != "uniform8":
            raise InputError(f"precision 'int8' means uniform 8-bit weights; this model is {own} "
                             f"(deploy it with precision='{own}' or quantize with scheme='uniform', weight_bits=8)")
        precision = own
    if quantized and form not in (None, "qdq"):
        raise InputError(f"target '{target.name}' takes quantized models in QDQ form only (TensorRT has "
                         f"no ConvInteger/MatMulInteger), got form='{form}'")
    inner = "fp32" if precision in ("fp32", "fp16") else precision
    packaged = package(model, x, target, precision=None if quantized else inner, form=form, atol=atol)
    xb = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    entry_input = packaged.graphs[0].inputs[0].name
    section: dict = {"graphs": {}}
    for graph in packaged.graphs:
        data = packaged.files[graph.file]
        info: dict = {}
        if precision == "fp16":
            result = convert_to_fp16(onnx.load_from_string(data))
            new = result.model.SerializeToString()
            info["fp16"] = {"converted_tensors": result.converted, "clipped_values": result.clipped,
                            "underflow_values": result.underflow}
        elif quantized:
            proto, rewrite = to_tensorrt(onnx.load_from_string(data), weights)
            new = proto.SerializeToString()
            info["qdq"] = {**rewrite, "activation_quantization": "symmetric int8, zero point 0 "
                                                                 "(from Prism's u8 asymmetric)"}
        else:
            new = data
        if new is not data and [t.name for t in graph.inputs] == [entry_input]:
            info["vs_" + ("fp32" if precision == "fp16" else "prism_u8_qdq")] = _compare(data, new, xb, entry_input)
        lint = lint_model(new)
        if not lint.ok:
            raise InputError(f"target '{target.name}': TensorRT would reject graph '{graph.name}':\n"
                             + lint.format())
        info["lint"] = lint.to_dict()
        packaged.files[graph.file] = new
        info["profile"] = _profiles(graph, int(xb.shape[0]), max_batch)
        section["graphs"][graph.name] = info
    if quantized:
        section["weights"] = weights
    packaged.precision = precision if precision in ("fp32", "fp16") else packaged.precision
    packaged.sections = {**packaged.sections, "tensorrt": section}
    return packaged
