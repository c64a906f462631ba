"""Export of a ``QuantizedModel``: ONNX (QDQ or integer form), packed tables, manifest section.

    onnx_model = export_onnx(qmodel, example_input, form="qdq")      # or form="integer"
    np.savez("tables.npz", **pack_tables(qmodel))
    manifest["quantization"] = manifest_section(qmodel)

Both ONNX forms start from the folded FP32 model (opset 17, input "input", output "logits",
dynamic batch axis "batch") and replace the node of every quantized layer: ``qdq`` by activation
Quantize/DequantizeLinear and an exactly dequantized weight, ``integer`` by ConvInteger/
MatMulInteger accumulators combined in float (Eqs. 11-13). Layers in ``qmodel.skipped`` stay FP32.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import torch

from ...errors import InputError
from . import integer, qdq
from .model import QuantizedModel
from .onnx_graph import GraphRewriter, export_float, map_layers
from ...formats.packed_tables import pack_tables, unpack_tables

FORMS: dict[str, Callable] = {"qdq": qdq.rewrite_node, "integer": integer.rewrite_node}

__all__ = ["export_onnx", "manifest_section", "pack_tables", "unpack_tables", "FORMS"]


def export_onnx(qmodel: QuantizedModel, example_input: torch.Tensor, form: str = "qdq") -> onnx.ModelProto:
    """The ONNX model (opset 17) of ``qmodel`` in ``form`` "qdq" or "integer".

    example_input: a float tensor the model accepts, e.g. (1, 3, H, W); the batch axis is dynamic.
    """
    if form not in FORMS:
        raise InputError(f"form={form!r}; allowed: {', '.join(repr(f) for f in FORMS)}")
    if not isinstance(example_input, torch.Tensor) or not example_input.is_floating_point():
        raise InputError(f"example_input is {type(example_input).__name__}; expected a float torch.Tensor "
                         f"of the model's input shape, e.g. (1, C, H, W)")
    model = export_float(qmodel.float_model, example_input.detach().cpu().float())
    float_weights = {name: qmodel.float_model.get_submodule(name).weight.detach().cpu().float().numpy()
                     for name in qmodel.tables}
    mapping = map_layers(model, qmodel.tables, float_weights)
    rw = GraphRewriter(model)
    nodes = list(model.graph.node)
    for index, name in mapping.items():
        FORMS[form](rw, index, nodes[index], qmodel.tables[name])
    model.producer_name = "prism-quant"
    return rw.finish()


def manifest_section(qmodel: QuantizedModel) -> dict:
    """JSON-serialisable summary of the quantization for the bundle manifest."""
    cfg = qmodel.config
    layers = []
    for name, t in qmodel.tables.items():
        mse = qmodel.weight_mse[name]
        layers.append({
            "name": name, "type": t.layer_type, "scheme": t.scheme, "method": t.breakpoint_method,
            "weight_bits": t.weight_bits, "breakpoints": t.n_regions - 1,
            "center_share": round(t.center_share, 6),
            "act_scheme": t.act_scheme, "act_bits": t.act_bits,
            "act_scale": None if t.act_scheme != "uniform" else float(t.act_scale),
            "act_zero_point": None if t.act_scheme != "uniform" else int(t.act_zero_point),
            "weight_mse": {k: float(v) for k, v in mse.items()},
        })
    return {
        "scheme": cfg.scheme, "weight_bits": cfg.weight_bits,
        "breakpoints": cfg.breakpoints if cfg.scheme == "pwlq" else 0,
        "breakpoint_method": cfg.breakpoint_method if cfg.scheme == "pwlq" else None,
        "per_channel": cfg.per_channel, "bias_correction": cfg.bias_correction,
        "act_bits": cfg.act_bits, "act_calibration": cfg.act_calibration, "act_scheme": cfg.act_scheme,
        "layers": layers, "skipped": dict(qmodel.skipped),
    }
