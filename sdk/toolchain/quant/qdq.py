"""QDQ form of a quantized layer: float ops on exactly dequantized tensors (ONNX QDQ format).

    x -> QuantizeLinear(s, zp; uint8) -> DequantizeLinear -> Conv/Gemm/MatMul(., W_bc, b)
    W_bc = (sum_r DQ(folded_r; scales_r, axis)) * a + c

folded_r is region r's int8 code tensor with Q * sign at every weight of a higher region
(``LayerQuantTable.folded_codes``): the offset term of Eq. 3 (p_r = Q * (s_0 + ... + s_{r-1}),
exactly) is carried by the lower regions' codes. a, c: per-channel bias correction.
"""
from __future__ import annotations

import numpy as np
import onnx

from .onnx_graph import GraphRewriter, layout_of, quantize_input
from ...formats.layer_table import LayerQuantTable


def rewrite_node(rw: GraphRewriter, index: int, node: onnx.NodeProto, table: LayerQuantTable) -> None:
    """Replace node ``index`` by its QDQ form."""
    base = table.name.replace(".", "_") or "layer"
    q, scale, zero_point = quantize_input(rw, node.input[0], table, base)
    x = rw.op("DequantizeLinear", [q, scale, zero_point], f"{base}_act_dq")
    weight = weight_subgraph(rw, node, table, base)
    inputs = [x, weight, *node.input[2:]]
    new = onnx.helper.make_node(node.op_type, inputs, list(node.output), name=node.name)
    new.attribute.extend(node.attribute)
    rw.emit(new)
    rw.replace(index)


def weight_subgraph(rw: GraphRewriter, node: onnx.NodeProto, table: LayerQuantTable, base: str) -> str:
    """Nodes computing the bias-corrected float weight in the node's layout; returns its name."""
    layout = layout_of(node)
    c = table.out_channels
    zeros = rw.const(f"{base}_w_zero_point", np.zeros(c, np.int8))
    terms = []
    for r in range(table.n_regions):
        codes = rw.const(f"{base}_w_codes_r{r}", layout.store(table.folded_codes(r)))
        scales = rw.const(f"{base}_w_scales_r{r}", table.scales[:, r].astype(np.float32))
        terms.append(rw.op("DequantizeLinear", [codes, scales, zeros], f"{base}_w_r{r}", axis=layout.axis))
    w = terms[0] if len(terms) == 1 else rw.op("Sum", terms, f"{base}_w_hat")
    if np.any(table.bc_scale != 1) or np.any(table.bc_shift != 0):
        shape = layout.per_channel_shape(table.codes.ndim, c)
        a = rw.const(f"{base}_bc_scale", table.bc_scale.astype(np.float32).reshape(shape))
        shift = rw.const(f"{base}_bc_shift", table.bc_shift.astype(np.float32).reshape(shape))
        w = rw.op("Add", [rw.op("Mul", [w, a], f"{base}_w_scaled"), shift], f"{base}_w_bc")
    return w
