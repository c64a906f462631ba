"""ONNX Runtime side of ``quantize_onnx``: the model's input, calibration batches, and activations.

``calibrate`` adds every quantized node's input tensor as an extra graph output of a copy of the
model, runs the calibration batches through it on ONNX Runtime and feeds each tensor to the same
``Calibrator`` the PyTorch path uses, batch by batch as that path does (a single array is run in
chunks of ``api._CHUNK`` samples), so percentile averages and PWLQ subsamples match too.

A model whose batch axis is fixed (exported without dynamic axes) runs each batch in pieces of
that size; the pieces' activations are joined again before they are collected.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Union

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
from tqdm.auto import tqdm

from ...errors import InputError, PrismError
from .api import _CHUNK  # the PyTorch path's chunk size: both must collect the same batches
from .calibration import Calibrator, create_calibrator

ORT_ERRORS = (ort_state.Fail, ort_state.InvalidArgument, ort_state.RuntimeException, ort_state.InvalidGraph,
              ort_state.NotImplemented)
Dim = Union[int, str]


@dataclass(frozen=True)
class InputSpec:
    """The model's single input: name, dims (a size, or the name of a dynamic axis, "?" if
    unnamed) and element type."""

    name: str
    dims: tuple[Dim, ...]
    dtype: np.dtype

    @classmethod
    def of(cls, model: onnx.ModelProto, where: str, notes: Optional[dict[str, str]] = None) -> "InputSpec":
        """The spec of ``model``'s one input; InputError if it has several (``notes``: input name ->
        a remark for that error) or a non-tensor one."""
        graph = model.graph
        constants = {i.name for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in constants]
        if len(inputs) != 1:
            remarks = "".join(f"; '{n}': {notes[n]}" for n in (i.name for i in inputs) if n in (notes or {}))
            raise InputError(f"{where} has {len(inputs)} inputs ({', '.join(repr(i.name) for i in inputs)}); "
                             f"quantize_onnx supports models with one input{remarks}")
        value = inputs[0]
        if not value.type.HasField("tensor_type"):
            raise InputError(f"{where}: input '{value.name}' is not a tensor")
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim)
        elem_type = tensor.elem_type or onnx.TensorProto.FLOAT
        return cls(value.name, dims, np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)))

    @property
    def fixed_batch(self) -> Optional[int]:
        """The batch size when the model's first axis is static, else None."""
        return self.dims[0] if self.dims and isinstance(self.dims[0], int) else None

    @property
    def shape_text(self) -> str:
        """E.g. "(batch, 3, 32, 32)"."""
        return f"({', '.join(str(d) for d in self.dims)})"

    def describe(self) -> str:
        """E.g. "'input' (batch, 3, 32, 32) float32"."""
        return f"'{self.name}' {self.shape_text} {self.dtype}"

    def check(self, x, what: str = "calibration batch") -> np.ndarray:
        """``x`` (ndarray or tensor) as an array of the input's dtype; InputError naming the input,
        its expected shape and what was received when the rank, a static size or the dtype differ.
        Any float dtype is accepted for a float input; the batch axis may be any size (a multiple
        of the fixed batch for a static one)."""
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        if not isinstance(x, np.ndarray):
            raise InputError(f"{what} is a {type(x).__name__}; model input {self.describe()} expects an ndarray")
        floating = np.issubdtype(self.dtype, np.floating)
        dtype_ok = np.issubdtype(x.dtype, np.floating) if floating else x.dtype == self.dtype
        batch = self.fixed_batch
        shape_ok = x.ndim == len(self.dims) and x.ndim > 0 and x.shape[0] > 0 \
            and all(isinstance(d, str) or d == s for d, s in zip(self.dims[1:], x.shape[1:])) \
            and (batch is None or x.shape[0] % batch == 0)
        if not (dtype_ok and shape_ok):
            fixed = f" (batch axis fixed at {batch}: N must be a multiple of it)" if batch else ""
            dtype = f"a float dtype (cast to {self.dtype})" if floating else f"dtype {self.dtype}"
            raise InputError(f"{what} has shape {tuple(x.shape)} and dtype {x.dtype}; model input '{self.name}' "
                             f"expects shape {self.shape_text}{fixed} and {dtype}")
        return np.ascontiguousarray(x, self.dtype)


def batches(data, spec: InputSpec) -> Iterator[np.ndarray]:
    """Checked arrays from ``data``: one ndarray/tensor (N, ...) in chunks of ``_CHUNK`` samples,
    or an iterable of them (an (inputs, targets) tuple as a DataLoader yields counts as inputs)."""
    if isinstance(data, (np.ndarray, torch.Tensor)):
        whole = spec.check(data, "calibration_data")
        for start in range(0, len(whole), _CHUNK):
            yield whole[start:start + _CHUNK]
        return
    if not isinstance(data, Iterable):
        raise InputError(f"calibration_data is a {type(data).__name__}; expected an array for model input "
                         f"{spec.describe()} or an iterable of them")
    for item in data:
        if isinstance(item, (tuple, list)) and item:
            item = item[0]
        yield spec.check(item)


def _count(data) -> Optional[int]:
    if isinstance(data, (np.ndarray, torch.Tensor)):
        return -(-len(data) // _CHUNK)
    try:
        return len(data)
    except TypeError:
        return None


class OrtRunner:
    """One ONNX Runtime CPU session of a model; ``run`` feeds a batch (in pieces of the fixed batch
    size if the model has one) and returns the requested outputs, joined along axis 0."""

    def __init__(self, model: onnx.ModelProto, spec: InputSpec, where: str,
                 optimization: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = optimization
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(model.SerializeToString(), options,
                                                providers=["CPUExecutionProvider"])
        except ORT_ERRORS as exc:
            raise InputError(f"{where} does not load in ONNX Runtime: {exc}") from exc
        self.spec, self.where = spec, where
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        step = self.spec.fixed_batch or len(x)
        try:
            pieces = [self.session.run(None, {self.spec.name: x[i:i + step]}) for i in range(0, len(x), step)]
        except ORT_ERRORS as exc:
            raise InputError(f"a batch of shape {tuple(x.shape)} does not run through {self.where} ({exc}); "
                             f"model input {self.spec.describe()}") from exc
        if len(pieces) == 1:
            return pieces[0]
        return [np.concatenate([np.atleast_1d(p[k]) for p in pieces]) for k in range(len(self.output_names))]


def with_outputs(model: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs ``tensors`` (element type from shape inference)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    graph = probe.graph
    known = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.value_info, *graph.output)}
    present = {o.name for o in graph.output}
    for name in tensors:
        if name not in present:
            graph.output.append(helper.make_tensor_value_info(name, known.get(name) or onnx.TensorProto.FLOAT, None))
    return probe


def calibrate(model: onnx.ModelProto, spec: InputSpec, layer_inputs: "OrderedDict[str, str]", data,
              method: str, where: str, progress: bool = True, reference: Optional[onnx.ModelProto] = None,
              folded_bns: tuple[str, ...] = ()) -> "OrderedDict[str, Calibrator]":
    """Calibrators (``method``) of every layer's input, after running all calibration batches.

    layer_inputs: layer name -> the tensor it quantizes, in graph order. reference: the model
    before batch-norm folding; on the first batch its outputs (run without graph optimizations,
    so the batch norms really run) must match ``model``'s within 1e-5 (relative to max(1, |y|)),
    else PrismError names the folded batch norms.
    """
    tensors = list(dict.fromkeys(t for t in layer_inputs.values() if t != spec.name))
    probe = OrtRunner(with_outputs(model, tensors), spec, where)
    model_outputs = [o.name for o in model.graph.output]
    checker = OrtRunner(reference, spec, where, ort.GraphOptimizationLevel.ORT_DISABLE_ALL) \
        if reference is not None else None
    calibrators = OrderedDict((name, create_calibrator(method)) for name in layer_inputs)
    count = 0
    for batch in tqdm(batches(data, spec), desc="calibrate", disable=not progress, leave=False, total=_count(data)):
        values = dict(zip(probe.output_names, probe.run(batch)))
        values[spec.name] = batch
        if checker is not None and count == 0:
            _check_folding(checker, batch, [values[n] for n in model_outputs], folded_bns)
        for name, tensor in layer_inputs.items():
            calibrators[name].collect(values[tensor])
        count += 1
    if not count:
        raise InputError(f"calibration_data holds no batch; expected an array for model input {spec.describe()} "
                         f"or an iterable of them")
    return calibrators


def _check_folding(reference: OrtRunner, batch: np.ndarray, folded: list[np.ndarray], folded_bns) -> None:
    for name, ref, y in zip(reference.output_names, reference.run(batch), folded):
        tol = 1e-5 * max(1.0, float(np.abs(ref).max(initial=0.0)))
        diff = float(np.abs(ref - y).max(initial=0.0)) if ref.shape == y.shape else float("inf")
        if diff > tol:
            raise PrismError(f"batch-norm folding of {', '.join(folded_bns)} changed output '{name}' by {diff:.3g} "
                             f"(allowed {tol:.3g}) on the first calibration batch")
