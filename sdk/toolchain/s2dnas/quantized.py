"""A PWLQ/uniform-quantized multi-stage network → one quantized ONNX graph per stage.

    qnet = sdk.quantize(dynamic_net, calibration_images)        # every stage's layers, one pass
    bundle = sdk.deploy(qnet, out="resnet20_dyn_pwlq4.prism")    # stages quantized, exits kept

``sdk.quantize`` runs the calibration images through all stages of the (BN-folded) network, so
each stage's layers see exactly the activations they will see when deployed, cached features
included. Here each stage's float graph (inputs ``input`` plus the cached features it reuses) is
exported and its quantized layers are rewritten into the chosen form (``qdq`` or ``integer``)
exactly like a single-graph model (:mod:`..quant.export`). Cached features stay float tensors
between stages: every quantized layer quantizes its own input, so a stage needs nothing from the
previous stage's quantizers. Each stage graph is checked on ONNX Runtime against the PyTorch
simulation of the quantized arithmetic (stages before it also simulated, two batch sizes), and
gets its own native execution plan (``plan_stage<j>.json``) over one shared ``tables.npz``.
"""
from __future__ import annotations

import copy
import io
import json
from typing import Any

import numpy as np
import torch

from ...bundle import GraphSpec
from ...errors import InputError, PrismError
from ..export import ExportError, to_torch_input
from .export import StageGraph, export_stage, manifest_section as dynamic_section

__all__ = ["package_quantized_dynamic", "restructure"]


def restructure(qmodel, net):
    """``qmodel`` (quantized from the multi-stage ``net`` through a torch.fx trace, which flattens
    the stages) with its float and simulated models rebuilt as copies of ``net``: the same
    submodule names, folded Conv/Linear weights and quantized layers taken from the trace, and
    every batch norm the trace folded away replaced by ``nn.Identity``."""
    from torch import nn

    from ..quant.model import QuantizedModel

    def rebuild(traced):
        out = copy.deepcopy(net).eval()
        present = dict(traced.named_modules())
        for name, module in list(out.named_modules()):
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                replacement = present.get(name, nn.Identity())
            elif isinstance(module, (nn.Conv2d, nn.Linear)) and name in present:
                replacement = present[name]
            else:
                continue
            parent, _, leaf = name.rpartition(".")
            setattr(out.get_submodule(parent) if parent else out, leaf, replacement)
        return out

    return QuantizedModel(rebuild(qmodel.model), rebuild(qmodel.float_model), qmodel.tables,
                          qmodel.skipped, qmodel.weight_mse, qmodel.config)


@torch.no_grad()
def _features(net, j: int, x: torch.Tensor, names: list[str]) -> list[torch.Tensor]:
    cache: dict[str, torch.Tensor] = {}
    for stage in net.stages[:j]:
        stage(x, cache)
    return [cache[n] for n in names]


def _stage_tables(qmodel, j: int) -> dict:
    prefix = f"stages.{j}."
    return {n: t for n, t in qmodel.tables.items() if n.startswith(prefix)}


def _prefix_consts(plan: dict, consts: dict[str, np.ndarray], tag: str) -> tuple[dict, dict]:
    """Stage plans share one tables.npz: give each stage's constants its own key space."""
    for node in plan["nodes"]:
        node["inputs"] = [f"const:{tag}_{n[6:]}" if n.startswith("const:") else n for n in node["inputs"]]
    return plan, {f"const/{tag}_{k[len('const/'):]}": v for k, v in consts.items()}


@torch.no_grad()
def _verify(data: bytes, simulated, j: int, x: torch.Tensor, in_names, out_names, own: str,
            form: str) -> float:
    """Max |ORT - simulation| over the stage outputs, two batch sizes; ExportError past 1 %."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    graph = StageGraph(simulated, j).eval()
    worst = 0.0
    for xb in (x, torch.cat([x, x[:1]], 0)):
        feats = _features(simulated, j, xb, graph.reuses)
        ref = graph(xb, *feats)
        got = session.run(out_names, {n: t.numpy() for n, t in zip(in_names, (xb, *feats))})
        for name, r, g in zip(out_names, ref, got):
            diff = float(np.max(np.abs(r.numpy() - g))) if g.size else 0.0
            if diff > 1e-2 * max(1.0, float(np.max(np.abs(r.numpy()))) if g.size else 1.0):
                raise ExportError(f"stage {j}: output '{name}' of the {own} ({form} form) graph differs "
                                  f"from the PyTorch simulation by {diff:.3g}")
            worst = max(worst, diff)
    return worst


def package_quantized_dynamic(qmodel, x, target, *, precision: str | None, form: str | None,
                              atol: float):
    """``sdk.deploy`` packager for ``sdk.quantize(MultiStageNet)``: quantized stage graphs, the
    ``dynamic`` section, packed tables and one native plan per stage."""
    from ..deploy import Packaged, _quant_precision_form
    from ..quant import manifest_section, pack_tables
    from ..quant.export import FORMS
    from ..quant.onnx_graph import GraphRewriter, map_layers
    from ..quant.plan import plan_from_graph
    import onnx

    own, form = _quant_precision_form(qmodel.config, target, precision, form)
    x = to_torch_input(x)
    fnet, snet = qmodel.float_model.eval(), qmodel.model.eval()
    missing = [f"stages.{j}" for j in range(fnet.num_stages) if not _stage_tables(qmodel, j)]
    if missing:
        raise InputError(f"quantized dynamic model: no quantized layer in {', '.join(missing)}")
    files: dict[str, bytes] = {}
    graphs, plans, diffs = [], {}, []
    arrays = dict(pack_tables(qmodel))
    native_error = None
    for j in range(fnet.num_stages):
        exported = export_stage(fnet, j, x, opset=target.opset)  # float graph, checked on ORT
        proto = onnx.load_from_string(exported.onnx_bytes)
        in_names, out_names = [t.name for t in exported.inputs], [t.name for t in exported.outputs]
        tables = _stage_tables(qmodel, j)
        weights = {n: fnet.get_submodule(n).weight.detach().cpu().float().numpy() for n in tables}
        mapping = map_layers(proto, tables, weights)
        float_graph = copy.deepcopy(proto.graph)
        rw = GraphRewriter(proto)
        nodes = list(proto.graph.node)
        for index, name in mapping.items():
            FORMS[form](rw, index, nodes[index], tables[name])
        proto = rw.finish()
        proto.producer_name = "prism-quant"
        data = proto.SerializeToString()
        diffs.append(_verify(data, snet, j, x, in_names, out_names, own, form))
        files[f"stage{j}.onnx"] = data
        graphs.append(GraphSpec(f"stage{j}", f"stage{j}.onnx", exported.inputs, exported.outputs,
                                {"stage": j, "macs": int(fnet.stage_macs[j]), "form": form}))
        if native_error is None:
            try:
                plan, consts = plan_from_graph(float_graph, mapping)
                plan["inputs"] = list(in_names)
                plan, consts = _prefix_consts(plan, consts, f"stage{j}")
                arrays.update(consts)
                plans[f"stage{j}"] = f"plan_stage{j}.json"
                files[f"plan_stage{j}.json"] = json.dumps(plan, indent=1).encode()
            except PrismError as e:
                native_error = f"stage {j}: {e}"
    sections: dict[str, Any] = {"dynamic": dynamic_section(fnet)}
    if native_error is None:
        sections["native"] = {"plans": plans, "tables": "tables.npz"}
    else:
        for j in range(fnet.num_stages):
            files.pop(f"plan_stage{j}.json", None)
        sections["native"] = {"unsupported": native_error}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    files["tables.npz"] = buf.getvalue()
    fp32 = sum(4 * t.codes.size for t in qmodel.tables.values())
    packed = sum(arrays[f"{n}/{k}"].nbytes for n in qmodel.tables for k in ("codes", "regions"))
    sections["quantization"] = {
        **manifest_section(qmodel), "form": form, "tables": "tables.npz",
        "tables_format": int(arrays["__format__"]),
        "sizes": {"onnx_bytes": sum(len(files[f"stage{j}.onnx"]) for j in range(fnet.num_stages)),
                  "tables_bytes": len(files["tables.npz"]), "fp32_weight_bytes": fp32,
                  "packed_weight_bytes": packed, "packed_weight_ratio": packed / max(fp32, 1)}}
    report = {"exporter": "torch.onnx (TorchScript) + prism-quant", "torch_version": torch.__version__,
              "opset": target.opset, "max_abs_diff": max(diffs), "stage_max_abs_diff": diffs,
              "checked_batches": [int(x.shape[0]), int(x.shape[0]) + 1],
              "reference": "PyTorch simulation of the quantized arithmetic, stage by stage"}
    return Packaged(files, graphs, own, report, sections)
