"""Multi-stage network → one ONNX graph per stage, and the ``sdk.deploy`` packager for it.

Stage ``j``'s graph: inputs ``input`` ``(batch, C, H, W)`` and the cached features it reuses
(``s<i>.<site>``, written by stage ``i < j``); outputs ``logits`` ``(batch, classes)`` and the
features later stages reuse. Every graph is checked like ``export.verify_onnx`` does for one-input
models: ``onnx.checker`` (full), ONNX Runtime on two batch sizes, all outputs within ``atol`` of
PyTorch. The manifest's ``dynamic`` section lists the stages, what each reads and writes, the
exit thresholds and the MACs of exiting at each stage; :mod:`sdk.runtime.dynamic` runs it.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ...bundle import GraphSpec, TensorSpec
from ...errors import InputError
from ..export import ExportError, to_torch_input
from .stages import MultiStageNet, feature_name

INPUT, LOGITS = "input", "logits"


class StageGraph(nn.Module):
    """Stage ``j`` as a function of tensors: ``(x, *reused) -> (logits, *exported)``."""

    def __init__(self, net: MultiStageNet, j: int):
        super().__init__()
        self.stage = net.stages[j]
        self.reuses = list(self.stage.reuses)
        self.exports = [feature_name(j, site) for site in self.stage.exports]

    def forward(self, x: torch.Tensor, *reused: torch.Tensor):
        cache = dict(zip(self.reuses, reused))
        logits = self.stage(x, cache)
        return (logits, *[cache[name] for name in self.exports])


@dataclass
class StageExport:
    onnx_bytes: bytes
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_abs_diff: float


def _spec(name: str, t: torch.Tensor) -> TensorSpec:
    return TensorSpec(name, ("batch", *t.shape[1:]), "float32")


@torch.no_grad()
def export_stage(net: MultiStageNet, j: int, x: torch.Tensor, *, opset: int = 17,
                 atol: float = 1e-3) -> StageExport:
    """Export and check stage ``j`` with example input ``x`` ``(N, C, H, W)``."""
    import onnx
    import onnxruntime as ort

    graph = StageGraph(net, j).eval()

    def features(xb):
        cache: dict[str, torch.Tensor] = {}
        for stage in net.stages[:j]:
            stage(xb, cache)
        return [cache[name] for name in graph.reuses]

    feats = features(x)
    in_names = [INPUT, *graph.reuses]
    out_names = [LOGITS, *graph.exports]
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (x, *feats), buf, dynamo=False, opset_version=opset,
                              input_names=in_names, output_names=out_names,
                              dynamic_axes={n: {0: "batch"} for n in in_names + out_names},
                              do_constant_folding=True)
    except Exception as e:  # the exporter raises many types
        raise ExportError(f"torch.onnx.export failed for stage {j}: {e}") from e
    data = buf.getvalue()
    proto = onnx.load_from_string(data)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"stage {j}: exported ONNX fails onnx.checker: {e}") from e
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    max_diff = 0.0
    for xb in (x, torch.cat([x, x[:1]], 0)):  # a second batch size proves the dynamic axis
        fb = features(xb)
        ref = graph(xb, *fb)
        got = session.run(out_names, {INPUT: xb.numpy(), **{n: f.numpy() for n, f in zip(graph.reuses, fb)}})
        for name, r, g in zip(out_names, ref, got):
            if tuple(r.shape) != g.shape:
                raise ExportError(f"stage {j}: output '{name}' has ONNX shape {g.shape}, PyTorch {tuple(r.shape)}")
            max_diff = max(max_diff, float(np.max(np.abs(r.numpy() - g))))
    if max_diff > atol:
        raise ExportError(f"stage {j}: ONNX output differs from PyTorch by {max_diff:.3g} (> {atol:.3g})")
    ref = graph(x, *feats)
    return StageExport(data, tuple(_spec(n, t) for n, t in zip(in_names, (x, *feats))),
                       tuple(_spec(n, t) for n, t in zip(out_names, ref)), max_diff)


def manifest_section(net: MultiStageNet) -> dict[str, Any]:
    """The bundle's ``dynamic`` section (without graphs): stages, thresholds, MACs."""
    stages = []
    for j, stage in enumerate(net.stages):
        own = net.stage_macs[j] - (net.stage_macs[j - 1] if j else 0)
        stages.append({"graph": f"stage{j}", "input": INPUT, "logits": LOGITS,
                       "reuses": list(stage.reuses),
                       "exports": [feature_name(j, s) for s in stage.exports],
                       "macs": int(net.stage_macs[j]), "stage_macs": int(own)})
    return {"stages": stages, "thresholds": list(net.thresholds),
            "exit_rule": "a sample exits at stage j when its top-1 softmax >= thresholds[j]; "
                         "the last stage answers for the rest",
            "static_macs": int(net.static_macs), "architecture": net.arch.to_dict(),
            "architecture_description": net.arch.describe(),
            "settings": [s.description for s in net.plan.settings]}


def is_dynamic(model) -> bool:
    return isinstance(model, MultiStageNet)


def package_dynamic(net: MultiStageNet, x, target, *, precision: str | None, form: str | None,
                    atol: float):
    """``sdk.deploy`` packager: one verified ONNX graph per stage + the ``dynamic`` section."""
    from ..deploy import Packaged

    if precision not in (None, *target.precisions):
        raise InputError(f"precision '{precision}': dynamic models deploy in float "
                         f"({', '.join(target.precisions)}); for a quantized one, quantize the network first: "
                         f"sdk.deploy(sdk.quantize(net, calibration_images))")
    if form is not None:
        raise InputError(f"form='{form}' applies to quantized models only")
    x = to_torch_input(x)
    was_training = net.training
    net.eval()
    try:
        exports = [export_stage(net, j, x, opset=target.opset, atol=atol) for j in range(net.num_stages)]
    finally:
        net.train(was_training)
    files = {f"stage{j}.onnx": e.onnx_bytes for j, e in enumerate(exports)}
    graphs = [GraphSpec(f"stage{j}", f"stage{j}.onnx", e.inputs, e.outputs,
                        {"stage": j, "macs": int(net.stage_macs[j])}) for j, e in enumerate(exports)]
    report = {"exporter": "torch.onnx (TorchScript)", "torch_version": torch.__version__,
              "opset": target.opset, "max_abs_diff": max(e.max_abs_diff for e in exports),
              "stage_max_abs_diff": [e.max_abs_diff for e in exports],
              "checked_batches": [int(x.shape[0]), int(x.shape[0]) + 1]}
    return Packaged(files, graphs, precision or target.default_precision, report,
                    {"dynamic": manifest_section(net)})
