"""Execution plan of a quantized model for Prism's native backend (``plan.json`` in a bundle).

The native backend runs on a device without the ``onnx`` package, so deploy writes the layer
topology as plain JSON: the float graph's nodes in execution order, quantized Conv/Gemm/MatMul
nodes replaced by ``QConv``/``QGemm``/``QMatMul`` that name their layer in ``tables.npz``, and
constants the other nodes need (reshape shapes, FP32 weights of layers left unquantized) stored
in ``tables.npz`` under ``const/<name>``. Format (version 1)::

    {"format": 1, "input": "input", "outputs": ["logits"],
     "nodes": [{"op": "QConv", "layer": "conv1", "inputs": ["input"], "outputs": ["x1"],
                "attrs": {"strides": [1, 1], "pads": [1, 1, 1, 1], ...}},
               {"op": "Relu", "inputs": ["x1"], "outputs": ["x2"], "attrs": {}},
               {"op": "Reshape", "inputs": ["x5", "const:shape_3"], ...}, ...]}

An input written ``const:NAME`` is the array ``const/NAME`` of ``tables.npz``.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ...errors import PrismError
from .onnx_graph import _constants, export_float, map_layers

PLAN_FORMAT = 1
#: float ops the native backend executes besides the quantized layers
NATIVE_OPS = ("Relu", "Clip", "Add", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten",
              "Reshape", "Identity", "Conv", "Gemm", "MatMul", "SpaceToDepth", "DepthToSpace",
              "Concat")
_QUANTIZED_OP = {"Conv": "QConv", "Gemm": "QGemm", "MatMul": "QMatMul"}


def _attr(a: onnx.AttributeProto):
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, (list, tuple)):
        return [x.decode() if isinstance(x, bytes) else x for x in v]
    if isinstance(v, onnx.TensorProto):
        raise PrismError(f"attribute '{a.name}' holds a tensor; the native plan does not take it")
    return v


def build_plan(qmodel, example_input) -> tuple[dict, dict[str, np.ndarray]]:
    """The native execution plan of a PyTorch ``QuantizedModel`` and the constants it references.

    Raises PrismError naming the first op the native backend cannot run.
    """
    model = export_float(qmodel.float_model, example_input.detach().cpu().float())
    float_weights = {name: qmodel.float_model.get_submodule(name).weight.detach().cpu().float().numpy()
                     for name in qmodel.tables}
    return plan_from_graph(model.graph, map_layers(model, qmodel.tables, float_weights))


def build_plan_onnx(qonnx) -> tuple[dict, dict[str, np.ndarray]]:
    """The native execution plan of a ``QuantizedOnnx`` (its tables are keyed by node name)."""
    graph = qonnx.folded_model.graph
    mapping = {i: n.name for i, n in enumerate(graph.node) if n.name in qonnx.tables}
    return plan_from_graph(graph, mapping)


def plan_from_graph(graph: onnx.GraphProto, mapping: dict[int, str]) -> tuple[dict, dict[str, np.ndarray]]:
    """Plan of a float graph whose nodes ``mapping`` (index -> layer name) are quantized."""
    constants = _constants(graph)
    consts: dict[str, np.ndarray] = {}
    nodes = []
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant":
            continue
        attrs = {a.name: _attr(a) for a in node.attribute if not (index in mapping and a.name == "value")}
        if index in mapping:
            # bias comes from the layer's table (Conv, Gemm) or a following Add (MatMul)
            nodes.append({"op": _QUANTIZED_OP[node.op_type], "layer": mapping[index],
                          "inputs": [node.input[0]], "outputs": list(node.output), "attrs": attrs})
            continue
        if node.op_type not in NATIVE_OPS:
            raise PrismError(f"ONNX op {node.op_type} (node '{node.name}') is not supported by the "
                             f"native backend (supported: {', '.join(NATIVE_OPS)})")
        inputs = []
        for name in node.input:
            if name in constants:
                key = name.replace("/", "_")
                consts[key] = np.asarray(constants[name])
                inputs.append(f"const:{key}")
            else:
                inputs.append(name)
        nodes.append({"op": node.op_type, "inputs": inputs, "outputs": list(node.output), "attrs": attrs})
    plan = {"format": PLAN_FORMAT, "input": graph.input[0].name,
            "outputs": [o.name for o in graph.output], "nodes": nodes}
    return plan, {f"const/{k}": v for k, v in consts.items()}
