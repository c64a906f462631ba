"""ONNX nodes as quantizable layers, for ``quantize_onnx``: constant weights, handlers, BN folding.

A handler in ``NODE_HANDLERS`` (keyed by op type) reads one node into an ``OnnxLayer``: its weight
with output channels first (the layout ``quantize_weight`` and ``LayerQuantTable`` use), its bias
and its attributes, or raises ``Unsupported`` with the reason the node stays FP32. Supporting a
new op type is one new entry. Weights are constants: initializers, Constant nodes, or either seen
through Identity nodes.

``fold_batch_norms`` folds each Conv -> BatchNormalization pair of an unfolded export into the
Conv, in float64 like ``folding`` does for PyTorch models, so both paths quantize the same weights.
"""
from __future__ import annotations

import copy
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import onnx
from onnx import helper, numpy_helper

_FLOAT = onnx.TensorProto.FLOAT
# op types with weights this module has no handler for; they are reported in ``skipped``
UNHANDLED_WEIGHTED_OPS = ("ConvTranspose", "LSTM", "GRU", "RNN", "QLinearConv", "ConvInteger", "MatMulInteger")


class Unsupported(Exception):
    """A node that stays FP32; the message says why."""


@dataclass(frozen=True)
class OnnxLayer:
    """One quantizable node read from the graph.

    layer_type  the table's layer type: "Conv2d" (Conv) or "Linear" (Gemm, MatMul)
    input       name of the activation tensor the layer quantizes (the node's first input)
    weight      float32 (C_out, ...): output channels first, i.e. transposed for MatMul and
                Gemm transB=0, whose stored weight is (K, C_out)
    bias        float32 (C_out,): Conv bias, Gemm C, or the constant of the Add after a MatMul
                (that Add stays in the graph); zeros if none
    attributes  stride/padding/dilation/groups for a Conv (see ``conv_padding``), else empty
    """

    node_name: str
    op_type: str
    layer_type: str
    input: str
    weight: np.ndarray
    bias: np.ndarray
    attributes: dict[str, Any] = field(default_factory=dict)


class GraphIndex:
    """Lookups over one graph: constant values, real graph inputs, producer and consumers of each
    tensor, element types (from shape inference)."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.constants = constant_values(graph)
        self.inputs = {i.name for i in graph.input} - {i.name for i in graph.initializer}
        self.outputs = {o.name for o in graph.output}
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.elem_types = {v.name: v.type.tensor_type.elem_type
                           for v in (*graph.input, *graph.value_info, *graph.output)}

    def constant_input(self, node: onnx.NodeProto, position: int, role: str) -> np.ndarray:
        """The constant value of ``node.input[position]``; Unsupported says why it is not one."""
        name = node.input[position]
        if name in self.constants:
            return self.constants[name]
        if name in self.inputs:
            raise Unsupported(f"{node.op_type} {role} '{name}' is a graph input, not an initializer")
        source = self.producer.get(name)
        by = f"computed by {source.op_type} node '{source.name}'" if source else "not produced in the graph"
        raise Unsupported(f"{node.op_type} with dynamic {role} ('{name}' is {by})")

    def only_consumer(self, tensor: str) -> onnx.NodeProto | None:
        """The single node reading ``tensor`` when it is not also a graph output, else None."""
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in self.outputs else None


def constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs, followed through Identity nodes (graph order is
    topological, so one pass follows chains)."""
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            value = _constant_attribute(node.attribute[0])
            if value is not None:
                values[node.output[0]] = value
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def _constant_attribute(attr: onnx.AttributeProto) -> np.ndarray | None:
    if attr.name == "value":
        return numpy_helper.to_array(attr.t)
    if attr.name in ("value_float", "value_floats"):
        return np.asarray(helper.get_attribute_value(attr), np.float32)
    if attr.name in ("value_int", "value_ints"):
        return np.asarray(helper.get_attribute_value(attr), np.int64)
    return None  # sparse tensors and strings are never weights


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _float_weight(node: onnx.NodeProto, value: np.ndarray, role: str = "weight") -> np.ndarray:
    if value.dtype != np.float32:
        raise Unsupported(f"{node.op_type} {role} is {value.dtype}; supported: float32")
    return value


class NodeHandler:
    """Reads one ONNX op type into an ``OnnxLayer``."""

    layer_type = ""

    def layer(self, node: onnx.NodeProto, g: GraphIndex) -> OnnxLayer:
        raise NotImplementedError

    def _layer(self, node, weight, bias, attrs=None) -> OnnxLayer:
        return OnnxLayer(node.name, node.op_type, self.layer_type, node.input[0],
                         np.ascontiguousarray(weight, np.float32), np.asarray(bias, np.float32), attrs or {})


class ConvNode(NodeHandler):
    """Conv with a 4-D constant weight (any stride, pads, dilation, group) and constant bias."""

    layer_type = "Conv2d"

    def layer(self, node, g):
        w = _float_weight(node, g.constant_input(node, 1, "weight"))
        if w.ndim != 4:
            raise Unsupported(f"Conv with a {w.ndim - 2}-D kernel (weight {w.shape}); supported: 2-D")
        bias = np.zeros(w.shape[0], np.float32)
        if len(node.input) > 2 and node.input[2]:
            bias = _float_weight(node, g.constant_input(node, 2, "bias"), "bias").reshape(-1)
        a = attributes(node)
        attrs = {"stride": tuple(a.get("strides", (1, 1))), "padding": conv_padding(a),
                 "dilation": tuple(a.get("dilations", (1, 1))), "groups": int(a.get("group", 1))}
        return self._layer(node, w, bias, attrs)


def conv_padding(attrs: dict) -> tuple[int, ...] | str:
    """The table's padding: (pad_h, pad_w) for symmetric pads (as PyTorch's Conv2d), the ONNX
    (top, left, bottom, right) for asymmetric ones, or "same_upper"/"same_lower" for auto_pad."""
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return auto_pad.lower()
    pads = tuple(int(p) for p in attrs.get("pads", (0, 0, 0, 0))) if auto_pad != "VALID" else (0, 0, 0, 0)
    return pads[:2] if pads[:2] == pads[2:] else pads


class GemmNode(NodeHandler):
    """Gemm Y = X W' + C with a constant weight: W' = W (transB=0, W is (K, N)) or W^T (transB=1,
    W is (N, K)); output channels are N either way. C must give one value per output channel."""

    layer_type = "Linear"

    def layer(self, node, g):
        a = attributes(node)
        trans_a, alpha, beta = a.get("transA", 0), a.get("alpha", 1.0), a.get("beta", 1.0)
        if trans_a or alpha != 1.0 or beta != 1.0:
            raise Unsupported(f"Gemm with transA={trans_a}, alpha={alpha:g}, beta={beta:g}; "
                              f"supported: transA=0, alpha=1, beta=1")
        w = _float_weight(node, g.constant_input(node, 1, "weight"))
        weight = w if a.get("transB", 0) else w.T
        n = weight.shape[0]
        bias = np.zeros(n, np.float32)
        if len(node.input) > 2 and node.input[2]:
            c = _float_weight(node, g.constant_input(node, 2, "bias"), "bias")
            if c.size not in (1, n) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
                raise Unsupported(f"Gemm bias C of shape {c.shape} is not one value per output channel; "
                                  f"supported: (N,) or (1, N) with N = {n}")
            bias = np.broadcast_to(c.reshape(-1), (n,))
        return self._layer(node, weight, bias)


class MatMulNode(NodeHandler):
    """MatMul x @ W with a constant 2-D weight W (K, N) second; a following Add of a constant (N,)
    is recorded as the table's bias (as the PyTorch path records the Linear's bias)."""

    layer_type = "Linear"

    def layer(self, node, g):
        if node.input[0] in g.constants:
            raise Unsupported("MatMul with a constant first input; supported: x @ W, the weight second")
        w = _float_weight(node, g.constant_input(node, 1, "weight"))
        if w.ndim != 2:
            raise Unsupported(f"MatMul weight of shape {w.shape}; supported: 2-D (K, N)")
        return self._layer(node, w.T, self._following_bias(node, g, w.shape[1]))

    @staticmethod
    def _following_bias(node, g, n) -> np.ndarray:
        add = g.only_consumer(node.output[0])
        if add is not None and add.op_type == "Add":
            other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
            value = g.constants.get(other)
            if value is not None and value.dtype == np.float32 and value.shape == (n,):
                return value
        return np.zeros(n, np.float32)


NODE_HANDLERS: dict[str, NodeHandler] = {"Conv": ConvNode(), "Gemm": GemmNode(), "MatMul": MatMulNode()}


def find_layers(model: onnx.ModelProto) -> tuple["OrderedDict[str, OnnxLayer]", dict[str, str]]:
    """The quantizable layers of ``model`` in graph order, keyed by node name, and the nodes with
    weights that stay FP32 (name -> reason)."""
    g = GraphIndex(model.graph)
    layers: "OrderedDict[str, OnnxLayer]" = OrderedDict()
    skipped: dict[str, str] = {}
    for node in model.graph.node:
        handler = NODE_HANDLERS.get(node.op_type)
        if handler is None:
            if node.op_type in UNHANDLED_WEIGHTED_OPS:
                skipped[node.name] = f"{node.op_type} has no quantization handler (supported: " \
                                     f"{', '.join(NODE_HANDLERS)}); runs in FP32"
            continue
        try:
            elem_type = g.elem_types.get(node.input[0], 0)
            if elem_type not in (0, _FLOAT):
                raise Unsupported(f"{node.op_type} input '{node.input[0]}' is "
                                  f"{onnx.TensorProto.DataType.Name(elem_type)}; supported: float32")
            layers[node.name] = handler.layer(node, g)
        except Unsupported as exc:
            skipped[node.name] = str(exc)
    return layers, skipped


def input_weights(graph: onnx.GraphProto) -> dict[str, str]:
    """Graph inputs (without an initializer) that a Conv/Gemm/MatMul takes as its weight or bias:
    input name -> why that node cannot be quantized."""
    inputs = {i.name for i in graph.input} - {i.name for i in graph.initializer}
    return {name: f"it is the {'weight' if k == 1 else 'bias'} of {node.op_type} '{node.name}': a weight that is "
                  f"a graph input, not an initializer, cannot be quantized"
            for node in graph.node if node.op_type in NODE_HANDLERS
            for k, name in enumerate(node.input) if k and name in inputs}


def fold_batch_norms(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str], dict[str, str]]:
    """A copy of ``model`` with every Conv -> BatchNormalization pair folded into the Conv.

    Returns the folded model, the names of the folded BatchNormalization nodes, and the ones left
    in FP32 with the reason. The Conv keeps its name and takes over the BN's output; its weight
    and bias become new initializers (the old ones go if nothing else uses them):
        f = scale / sqrt(var + eps),  W' = W f,  b' = (b - mean) f + B     (float64, stored float32)
    ``eps`` is stored as float32; its shortest decimal form (1e-05, not 9.99999974738e-06) is used:
    the value the source framework held (PyTorch's eps is a Python float), so a model folded here
    and the same model folded by ``folding`` get bit-identical weights.
    """
    folded = copy.deepcopy(model)
    g = GraphIndex(folded.graph)
    names = _all_names(folded.graph)
    done: list[str] = []
    not_folded: dict[str, str] = {}
    for bn in [n for n in folded.graph.node if n.op_type == "BatchNormalization"]:
        try:
            conv, weight, bias = _folded_conv(bn, g)
        except Unsupported as exc:
            not_folded[bn.name] = f"BatchNormalization not folded ({exc}); runs in FP32"
            continue
        w_name = _unique(f"{conv.name}.folded_weight", names)
        b_name = _unique(f"{conv.name}.folded_bias", names)
        folded.graph.initializer.extend([numpy_helper.from_array(weight, w_name),
                                         numpy_helper.from_array(bias, b_name)])
        del conv.input[1:]
        conv.input.extend([w_name, b_name])
        conv.output[0] = bn.output[0]
        folded.graph.node.remove(bn)
        done.append(bn.name)
    if done:
        prune_unused(folded)
    return folded, done, not_folded


def _folded_conv(bn: onnx.NodeProto, g: GraphIndex) -> tuple[onnx.NodeProto, np.ndarray, np.ndarray]:
    """The Conv ``bn`` follows and its folded float32 weight and bias; Unsupported says why not."""
    if len([o for o in bn.output if o]) > 1 or attributes(bn).get("training_mode", 0):
        raise Unsupported("training-mode BatchNormalization")
    conv = g.producer.get(bn.input[0])
    if conv is None or conv.op_type != "Conv":
        raise Unsupported("it does not directly follow a Conv")
    if g.only_consumer(conv.output[0]) is not bn:
        raise Unsupported(f"the output of Conv '{conv.name}' has other consumers")
    w = _float_weight(conv, g.constant_input(conv, 1, "weight")).astype(np.float64)
    channels = w.shape[0]
    b = g.constant_input(conv, 2, "bias") if len(conv.input) > 2 and conv.input[2] else np.zeros(channels)
    try:
        scale, beta, mean, var = (g.constant_input(bn, i, role).astype(np.float64).reshape(-1)
                                  for i, role in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var")))
    except Unsupported as exc:
        raise Unsupported(f"its parameters are not constants: {exc}") from None
    if any(v.size != channels for v in (scale, beta, mean, var)) or np.size(b) != channels:
        raise Unsupported(f"its {scale.size} channels do not match the {channels} outputs of Conv '{conv.name}'")
    eps = float(str(np.float32(attributes(bn).get("epsilon", 1e-5))))
    factor = scale / np.sqrt(var + eps)
    weight = w * factor.reshape((-1,) + (1,) * (w.ndim - 1))
    bias = (np.asarray(b, np.float64).reshape(-1) - mean) * factor + beta
    return conv, weight.astype(np.float32), bias.astype(np.float32)


def _all_names(graph: onnx.GraphProto) -> set[str]:
    return {i.name for i in graph.initializer} | {i.name for i in graph.input} \
        | {o for n in graph.node for o in n.output}


def _unique(base: str, names: set[str]) -> str:
    name, i = base, 1
    while name in names:
        name, i = f"{base}_{i}", i + 1
    names.add(name)
    return name


def name_nodes(graph: onnx.GraphProto) -> None:
    """Give every unnamed node the stable name "<op_type>_<index>" and make duplicates unique,
    so nodes can key the tables."""
    taken = {n.name for n in graph.node if n.name}
    seen: set[str] = set()
    for index, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = _unique(node.name or f"{node.op_type}_{index}", taken)
        seen.add(node.name)


def _node_reads(node: onnx.NodeProto) -> Iterator[str]:
    """The node's inputs, and the outer-scope names its subgraphs (If/Loop/Scan) read."""
    yield from node.input
    for attr in node.attribute:
        for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
            for inner in sub.node:
                yield from _node_reads(inner)


def prune_unused(model: onnx.ModelProto) -> None:
    """Drop the nodes none of whose outputs is used (e.g. a Constant or Identity that fed a
    replaced weight) and the initializers nothing reads. In place."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(_node_reads(node))
    if len(keep) != len(graph.node):
        kept = list(reversed(keep))
        del graph.node[:]
        graph.node.extend(kept)
    inputs = {i.name for i in graph.input}
    used = [i for i in graph.initializer if i.name in needed or i.name in inputs]
    if len(used) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(used)
