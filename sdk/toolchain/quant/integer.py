"""Integer form of a quantized layer: integer accumulators, then a per-channel float affine map.

For a layer with input codes X_q (uint8, zero point zp) and PWLQ weight codes (paper Eqs. 11-13):

    y = sum_r  (s_x a s_r)  <X_q - zp, folded_r>         one accumulator per region
      + (s_x c)              <X_q - zp, 1>              bias correction: activation box sum
      + bias

folded_r is region r's code tensor with Q * sign at every weight of a higher region
(``LayerQuantTable.folded_codes``): the paper's tail-offset term p_r <X_q - zp, sign_r> is folded
into the lower regions' accumulators, exactly, because the region offsets are defined as
p_r = Q * (s_0 + ... + s_{r-1}) (``sdk.formats.layer_table``). R accumulators per layer instead of
2R - 1.

Each <.,.> is a ConvInteger (Conv) or MatMulInteger (Gemm/MatMul) with int8 weights (zero point
0) that takes zp as its input zero point, so the zero-point corrections of Eqs. 11-13 happen inside
the integer op (padding is filled with zp, i.e. with a real 0). The int32 accumulators are Cast
to float, scaled per channel and summed. ``REWRITERS`` maps an ONNX op type to its rewrite.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import helper

from ...errors import PrismError
from .onnx_graph import GraphRewriter, quantize_input
from ...formats.layer_table import LayerQuantTable


def integer_terms(table: LayerQuantTable):
    """(kind, region, int8 weight-shaped tensor, float64 per-channel factor (C,)) of every
    accumulator of the layer; kind is "codes" (region r's folded codes) or "box" (the factor
    excludes s_x)."""
    a, c = table.bc_scale.astype(np.float64), table.bc_shift.astype(np.float64)
    terms = []
    for r in range(table.n_regions):
        terms.append(("codes", r, table.folded_codes(r), a * table.scales[:, r].astype(np.float64)))
    if np.any(c != 0):
        terms.append(("box", None, None, c))
    return terms


def box_kernel(table: LayerQuantTable) -> np.ndarray:
    """All-ones int8 kernel whose accumulator is the activation box sum <X_q - zp, 1>.

    One output channel broadcast to all when the layer is not grouped, else one per channel.
    """
    shape = table.codes.shape
    if table.layer_type == "Conv2d" and (table.groups or 1) > 1:
        return np.ones(shape, np.int8)
    return np.ones((1,) + shape[1:], np.int8)


def _rewrite(rw: GraphRewriter, index: int, node: onnx.NodeProto, table: LayerQuantTable,
             integer_op: Callable[[str, str, str, str], str], channel_shape: tuple[int, ...], add_bias: bool,
             layout_store: Callable[[np.ndarray], np.ndarray]) -> None:
    base = table.name.replace(".", "_") or "layer"
    q, _, zero_point = quantize_input(rw, node.input[0], table, base)
    w_zero = rw.const(f"{base}_w_zero_point", np.array(0, np.int8))
    s_x = np.float64(np.float32(table.act_scale))
    outputs = []
    for kind, r, tensor, factor in integer_terms(table):
        suffix = f"{kind}_r{r}" if r is not None else kind
        weight = rw.const(f"{base}_{suffix}", layout_store(box_kernel(table) if kind == "box" else tensor))
        acc = integer_op(q, weight, zero_point, w_zero, f"{base}_acc_{suffix}")
        acc_f = rw.op("Cast", [acc], f"{base}_accf_{suffix}", to=onnx.TensorProto.FLOAT)
        scale = rw.const(f"{base}_scale_{suffix}", (s_x * factor).astype(np.float32).reshape(channel_shape))
        outputs.append(rw.op("Mul", [acc_f, scale], f"{base}_term_{suffix}"))
    y = outputs[0] if len(outputs) == 1 else rw.op("Sum", outputs, f"{base}_sum")
    if add_bias:
        bias = rw.const(f"{base}_bias", table.bias.astype(np.float32).reshape(channel_shape))
        rw.op("Add", [y, bias], f"{base}_out", output=node.output[0])
    else:
        rw.op("Identity", [y], f"{base}_out", output=node.output[0])
    rw.replace(index)


def _conv(rw: GraphRewriter, index: int, node: onnx.NodeProto, table: LayerQuantTable) -> None:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: v for k, v in attrs.items() if k in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")}

    def conv_integer(x, w, x_zp, w_zp, base):
        return rw.op("ConvInteger", [x, w, x_zp, w_zp], base, **attrs)

    _rewrite(rw, index, node, table, conv_integer, (1, table.out_channels, 1, 1), True, lambda t: t)


def _gemm(rw: GraphRewriter, index: int, node: onnx.NodeProto, table: LayerQuantTable) -> None:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        raise PrismError(f"layer {table.name!r}: Gemm with transA/alpha/beta {attrs} has no integer form; "
                         f"supported: transA=0, alpha=1, beta=1")
    _matmul_like(rw, index, node, table, add_bias=True)


def _matmul(rw: GraphRewriter, index: int, node: onnx.NodeProto, table: LayerQuantTable) -> None:
    _matmul_like(rw, index, node, table, add_bias=False)  # the exporter adds the bias in its own Add


def _matmul_like(rw, index, node, table, add_bias):
    def matmul_integer(x, w, x_zp, w_zp, base):
        return rw.op("MatMulInteger", [x, w, x_zp, w_zp], base)

    # MatMulInteger takes B as (K, C): the transposed layout whatever the original node stored.
    _rewrite(rw, index, node, table, matmul_integer, (table.out_channels,), add_bias,
             lambda t: np.ascontiguousarray(t.T))


REWRITERS: dict[str, Callable[[GraphRewriter, int, onnx.NodeProto, LayerQuantTable], None]] = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul}


def rewrite_node(rw: GraphRewriter, index: int, node: onnx.NodeProto, table: LayerQuantTable) -> None:
    """Replace node ``index`` by its integer form."""
    try:
        rewrite = REWRITERS[node.op_type]
    except KeyError:
        raise PrismError(f"layer {table.name!r}: ONNX op {node.op_type} has no integer form; "
                         f"supported: {', '.join(REWRITERS)}") from None
    rewrite(rw, index, node, table)
