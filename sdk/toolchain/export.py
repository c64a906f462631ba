"""PyTorch → ONNX export, checked: ``onnx.checker`` clean, dynamic batch, output compared."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import TensorSpec
from ..errors import InputError, PrismError


class ExportError(PrismError):
    """The model could not be exported, or the ONNX graph disagrees with PyTorch."""


@dataclass
class ExportResult:
    onnx_bytes: bytes
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int
    max_abs_diff: float           # max |onnxruntime - torch| over the checked batches
    checked_batches: tuple[int, ...]

    exporter: str = "torch.onnx (TorchScript)"

    def report(self) -> dict[str, Any]:
        out = {"exporter": self.exporter, "opset": self.opset, "max_abs_diff": self.max_abs_diff,
               "checked_batches": list(self.checked_batches)}
        if self.exporter.startswith("torch"):
            import torch

            out["torch_version"] = torch.__version__
        return out


_ONNX_DTYPES = {1: "float32", 10: "float16", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool"}


def _specs(values) -> tuple[TensorSpec, ...]:
    specs = []
    for v in values:
        t = v.type.tensor_type
        shape = tuple(d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim)
        specs.append(TensorSpec(v.name, shape, _ONNX_DTYPES.get(t.elem_type, str(t.elem_type))))
    return tuple(specs)


def to_torch_input(example_input: Any):
    import torch

    if isinstance(example_input, np.ndarray):
        example_input = torch.from_numpy(np.ascontiguousarray(example_input))
    if not isinstance(example_input, torch.Tensor):
        raise InputError(f"example_input: expected a torch.Tensor or NumPy array, "
                         f"got {type(example_input).__name__}")
    if example_input.dtype != torch.float32:
        raise InputError(f"example_input: expected dtype float32, got {example_input.dtype}")
    return example_input


def export_onnx(model, example_input, *, opset: int = 17, input_name: str = "input",
                output_names: tuple[str, ...] = ("logits",), dynamic_batch: bool = True,
                atol: float = 1e-3) -> ExportResult:
    """Export ``model`` (eval mode) to ONNX and check the result.

    The graph is exported with a symbolic ``batch`` dimension, validated by ``onnx.checker``
    (full check with shape inference), then run by ONNX Runtime on ``example_input`` and on a
    batch of a different size; the largest absolute difference to PyTorch is recorded and must
    stay below ``atol``.
    """
    import onnx
    import onnxruntime as ort
    import torch

    x = to_torch_input(example_input)
    was_training = model.training
    model.eval()
    buf = io.BytesIO()
    axes = {input_name: {0: "batch"}, **{n: {0: "batch"} for n in output_names}} if dynamic_batch else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset,
                              input_names=[input_name], output_names=list(output_names),
                              dynamic_axes=axes, do_constant_folding=True)
    except Exception as e:  # the exporter raises many types; name the model and re-raise ours
        model.train(was_training)
        raise ExportError(f"torch.onnx.export failed for {type(model).__name__}: {e}") from e
    try:
        return verify_onnx(buf.getvalue(), model, x, input_name=input_name,
                           output_names=output_names, dynamic_batch=dynamic_batch, atol=atol,
                           what=type(model).__name__, opset=opset)
    finally:
        model.train(was_training)


def verify_onnx(data: bytes, reference, x, *, input_name: str = "input",
                output_names: tuple[str, ...] = ("logits",), dynamic_batch: bool = True,
                atol: float = 1e-3, relative: bool = False, what: str = "model",
                opset: int = 17) -> ExportResult:
    """Check an ONNX graph against a PyTorch ``reference`` callable.

    ``onnx.checker`` (full check with shape inference) must pass; ONNX Runtime must run the
    graph on ``x`` and, with ``dynamic_batch``, on a batch of another size; the largest absolute
    difference to ``reference`` must stay below ``atol`` (times max |reference| if ``relative``).
    """
    import onnx
    import onnxruntime as ort
    import torch

    proto = onnx.load_from_string(data)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"exported ONNX for {what} fails onnx.checker: {e}") from e
    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
        raise ExportError(f"ONNX Runtime cannot load the exported ONNX for {what}: {e}") from e
    batches = [x]
    if dynamic_batch:
        batches.append(torch.cat([x, x[:1]], 0))  # a second batch size proves the dynamic axis
    max_diff, scale = 0.0, 0.0
    with torch.no_grad():
        for xb in batches:
            ref = reference(xb)
            ref = ref if isinstance(ref, (tuple, list)) else (ref,)
            got = session.run(None, {input_name: xb.numpy()})
            for name, r, g in zip(output_names, ref, got):
                if tuple(r.shape) != g.shape:
                    raise ExportError(f"{what}: output '{name}' has ONNX shape {g.shape}, "
                                      f"PyTorch {tuple(r.shape)}")
                max_diff = max(max_diff, float(np.max(np.abs(r.numpy() - g))))
                scale = max(scale, float(np.max(np.abs(r.numpy()))))
    bound = atol * max(scale, 1.0) if relative else atol
    if max_diff > bound:
        raise ExportError(f"{what}: ONNX output differs from PyTorch by {max_diff:.3g} (> {bound:.3g})")
    return ExportResult(data, _specs(proto.graph.input), _specs(proto.graph.output), opset,
                        max_diff, tuple(int(b.shape[0]) for b in batches))
