"""NumPy twin of the integer kernels (ONNX ConvInteger / MatMulInteger semantics), int32 results.

Used by the tests to check ONNX Runtime bit for bit, and by native-kernel authors as the
specification of a PWLQ layer (``layer_output``): int32 accumulators from im2col, then the
per-channel float affine map of ``integer.integer_terms``.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .integer import box_kernel, integer_terms
from ...formats.layer_table import LayerQuantTable


def conv_integer(x_q: np.ndarray, x_zero_point: int, w_q: np.ndarray, w_zero_point: int = 0,
                 strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group: int = 1) -> np.ndarray:
    """ConvInteger: x_q (N, C, H, W) uint8, w_q (M, C/group, kh, kw) int8 -> (N, M, Ho, Wo) int32.

    pads in ONNX order (top, left, bottom, right); padding holds x_zero_point (a real zero).
    """
    x = x_q.astype(np.int64) - int(x_zero_point)
    w = w_q.astype(np.int64) - int(w_zero_point)
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    n, c, _, _ = x.shape
    m, cg, kh, kw = w.shape
    dh, dw = dilations
    # im2col: windows (N, C, Ho', Wo', span_h, span_w), dilated taps, then strides.
    windows = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    cols = windows[:, :, ::strides[0], ::strides[1], ::dh, ::dw]  # (N, C, Ho, Wo, kh, kw)
    ho, wo = cols.shape[2:4]
    out = np.empty((n, m, ho, wo), np.int64)
    mg = m // group
    for g in range(group):
        patch = cols[:, g * cg:(g + 1) * cg].transpose(0, 2, 3, 1, 4, 5).reshape(n, ho, wo, cg * kh * kw)
        kernel = w[g * mg:(g + 1) * mg].reshape(mg, cg * kh * kw)
        out[:, g * mg:(g + 1) * mg] = np.einsum("nhwk,mk->nmhw", patch, kernel)
    return _to_int32(out)


def matmul_integer(a_q: np.ndarray, a_zero_point: int, b_q: np.ndarray, b_zero_point: int = 0) -> np.ndarray:
    """MatMulInteger: a_q (..., K) uint8, b_q (K, M) int8 -> (..., M) int32."""
    a = a_q.astype(np.int64) - int(a_zero_point)
    b = b_q.astype(np.int64) - int(b_zero_point)
    return _to_int32(a @ b)


def _to_int32(acc: np.ndarray) -> np.ndarray:
    if acc.size and (acc.max() > np.iinfo(np.int32).max or acc.min() < np.iinfo(np.int32).min):
        raise OverflowError("integer accumulator exceeds int32")
    return acc.astype(np.int32)


def onnx_pads(table: LayerQuantTable) -> tuple[int, int, int, int]:
    """The Conv2d table's padding as ONNX pads (top, left, bottom, right); "same" pads like
    PyTorch (the odd extra row/column at the bottom/right)."""
    if not isinstance(table.padding, str):
        ph, pw = table.padding
        return ph, pw, ph, pw
    if table.padding == "valid":
        return 0, 0, 0, 0
    kh, kw = table.codes.shape[2:]
    th, tw = table.dilation[0] * (kh - 1), table.dilation[1] * (kw - 1)
    return th // 2, tw // 2, th - th // 2, tw - tw // 2


def accumulators(table: LayerQuantTable, x_q: np.ndarray, pads=None) -> dict[str, np.ndarray]:
    """All int32 accumulators of a layer for input codes x_q, keyed like the ONNX export
    ("codes_r0", "codes_r1", "box"). Conv pads default to the table's padding."""
    out = {}
    for kind, r, tensor, _ in integer_terms(table):
        key = f"{kind}_r{r}" if r is not None else kind
        w = box_kernel(table) if kind == "box" else tensor
        if table.layer_type == "Conv2d":
            out[key] = conv_integer(x_q, table.act_zero_point, w, 0, table.stride,
                                    pads if pads is not None else onnx_pads(table), table.dilation, table.groups)
        else:
            out[key] = matmul_integer(x_q, table.act_zero_point, w.T)
    return out


def layer_output(table: LayerQuantTable, x_q: np.ndarray) -> np.ndarray:
    """The layer's float32 output from its input codes: sum of scaled accumulators + bias."""
    accs = accumulators(table, x_q)
    s_x = np.float64(np.float32(table.act_scale))
    y = 0.0
    for kind, r, _, factor in integer_terms(table):
        acc = accs[f"{kind}_r{r}" if r is not None else kind].astype(np.float64)
        shape = (1, -1, 1, 1) if table.layer_type == "Conv2d" else (-1,)
        y = y + acc * (s_x * factor).reshape(shape)
    shape = (1, -1, 1, 1) if table.layer_type == "Conv2d" else (-1,)
    return (y + table.bias.astype(np.float64).reshape(shape)).astype(np.float32)
