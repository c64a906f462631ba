"""ONNX plumbing for the exports: float export, node <-> layer mapping, and a graph rewriter.

The quantized graphs start from the folded FP32 model exported by the TorchScript exporter; the
Conv/Gemm/MatMul node of each quantized layer is then found and replaced. A node is matched to its
layer by the weight initializer: by name ("<layer>.weight") when the exporter kept it, else by
identical values (the folded weights are exported bit for bit), and among equal candidates by
execution order.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from ...errors import PrismError
from ...formats.layer_table import LayerQuantTable

OPSET = 17


def export_float(model: torch.nn.Module, example_input: torch.Tensor) -> onnx.ModelProto:
    """Export ``model`` (opset 17, input "input", output "logits", dynamic axis "batch")."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model.eval(), (example_input,), buf, dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return onnx.load_from_string(buf.getvalue())


@dataclass(frozen=True)
class WeightLayout:
    """How the ONNX node stores the weight: transposed ((K, C) for MatMul, Gemm transB=0) or not,
    and the output-channel axis of the stored tensor."""

    transposed: bool

    @property
    def axis(self) -> int:
        return 1 if self.transposed else 0

    def store(self, weight_like: np.ndarray) -> np.ndarray:
        """A weight-shaped table array (C, ...) in the node's layout."""
        return np.ascontiguousarray(weight_like.T) if self.transposed else weight_like

    def per_channel_shape(self, ndim: int, channels: int) -> tuple[int, ...]:
        """Shape that broadcasts a (C,) vector along the stored weight's channel axis."""
        shape = [1] * ndim
        shape[self.axis] = channels
        return tuple(shape)


def layout_of(node: onnx.NodeProto) -> WeightLayout:
    if node.op_type == "MatMul":
        return WeightLayout(True)
    if node.op_type == "Gemm":
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        return WeightLayout(not attrs.get("transB", 0))
    return WeightLayout(False)


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs, followed through Identity nodes."""
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def map_layers(model: onnx.ModelProto, tables: dict[str, LayerQuantTable],
               float_weights: dict[str, np.ndarray]) -> dict[int, str]:
    """Node index -> layer name for every quantized layer; PrismError names a layer not found."""
    graph = model.graph
    constants = _constants(graph)
    op_types = {"Conv2d": ("Conv",), "Linear": ("Gemm", "MatMul")}
    mapping: dict[int, str] = {}
    assigned: set[str] = set()
    for index, node in enumerate(graph.node):
        if len(node.input) < 2 or node.input[1] not in constants:
            continue
        stored = constants[node.input[1]]
        layout = layout_of(node)
        candidates = [
            name for name, table in tables.items()
            if node.op_type in op_types.get(table.layer_type, ())
            and stored.shape == layout.store(float_weights[name]).shape
            and (node.input[1] == f"{name}.weight" or np.array_equal(stored, layout.store(float_weights[name])))
        ]
        if not candidates:
            continue
        by_name = [n for n in candidates if node.input[1] == f"{n}.weight"]
        fresh = [n for n in candidates if n not in assigned]
        name = (by_name or fresh or candidates)[0]
        mapping[index] = name
        assigned.add(name)
    missing = [n for n in tables if n not in assigned]
    if missing:
        raise PrismError(f"no ONNX node found for quantized layer(s) {', '.join(missing)} "
                         f"(looked for Conv/Gemm/MatMul nodes whose weight equals the layer's folded weight)")
    return mapping


class GraphRewriter:
    """Replaces nodes of a model's graph, adding initializers with unique names."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.graph = model.graph
        self._names = {i.name for i in self.graph.initializer} | {o for n in self.graph.node for o in n.output} \
            | {i.name for i in self.graph.input}
        self._pending: list[onnx.NodeProto] = []
        self._replacements: dict[int, list[onnx.NodeProto]] = {}

    def unique(self, base: str) -> str:
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def const(self, base: str, array: np.ndarray) -> str:
        """Add an initializer; returns its name."""
        name = self.unique(base)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], base: str, output: str | None = None, **attrs) -> str:
        """Queue a node; returns its output name (``output`` if given, else a fresh one)."""
        out = output or self.unique(base)
        self._pending.append(helper.make_node(op_type, inputs, [out], name=self.unique(f"{base}_node"), **attrs))
        return out

    def emit(self, node: onnx.NodeProto) -> None:
        """Queue a ready-made node."""
        self._pending.append(node)

    def replace(self, index: int) -> None:
        """The nodes queued since the last call replace node ``index``."""
        self._replacements[index], self._pending = self._pending, []

    def finish(self) -> onnx.ModelProto:
        """Apply the replacements, drop initializers no node uses any more, check the model."""
        nodes = []
        for index, node in enumerate(self.graph.node):
            nodes.extend(self._replacements.get(index, [node]))
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        used = {i for n in self.graph.node for i in n.input} | {o.name for o in self.graph.output}
        keep = [i for i in self.graph.initializer if i.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep)
        onnx.checker.check_model(self.model)
        return self.model


def quantize_input(rw: GraphRewriter, x: str, table: LayerQuantTable, base: str) -> tuple[str, str, str]:
    """QuantizeLinear (uint8, the calibrated s/zp) of input ``x``; returns the names of
    (codes, scale, zero point).

    For act_bits < 8 a Clip first keeps the codes in [0, 2^b - 1] (QuantizeLinear saturates at 255).
    """
    if table.act_scheme != "uniform":
        raise PrismError(f"layer {table.name!r}: act_scheme={table.act_scheme!r} has no ONNX form; "
                         f"allowed for export: 'uniform'")
    scale = rw.const(f"{base}_act_scale", np.array(table.act_scale, np.float32))
    zero_point = rw.const(f"{base}_act_zero_point", np.array(table.act_zero_point, np.uint8))
    if table.act_bits < 8:
        lo = np.float32(table.act_scale) * np.float32(0 - table.act_zero_point)
        hi = np.float32(table.act_scale) * np.float32(2**table.act_bits - 1 - table.act_zero_point)
        x = rw.op("Clip", [x, rw.const(f"{base}_act_lo", np.array(lo, np.float32)),
                           rw.const(f"{base}_act_hi", np.array(hi, np.float32))], f"{base}_act_clip")
    return rw.op("QuantizeLinear", [x, scale, zero_point], f"{base}_act_q"), scale, zero_point
