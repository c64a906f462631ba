"""Quantization core shared by both weight schemes: magnitude regions, codes, dequantization.

Every weight scheme here is a special case of one representation. Each output channel's magnitude
range [0, m] is cut at its region edges ``0 = e_0 < e_1 < ... < e_R = m`` into R regions; region r
is quantized uniformly with ``Q = 2^(b-1) - 1`` magnitude steps plus a sign bit:

    step_r   = (e_{r+1} - e_r) / Q
    code     = sign(w) * round((|w| - e_r) / step_r)          int8, |code| <= Q
    w_hat    = sign(code) * (step_r * |code| + e_r)

- uniform (paper Eq. 1, symmetric, z = 0): R = 1, codes in {-Q..Q} (restricted symmetric range, as
  ONNX/TensorRT symmetric int8 expects);
- PWLQ (paper Eq. 3): R = breakpoints + 1, the region offsets e_r are the breakpoints.

A tail weight whose magnitude code rounds to 0 would lose its sign (w_hat = +-e_r). Such a weight
is moved to the region below with code +-Q: that region's top level is the same value e_r, so the
dequantized weight is unchanged and every code outside the center region is non-zero.

Stored form (``quantize_with_edges``): the steps are what is stored (float32), and the region
offsets are *defined* from them, ``offset_r = Q * (step_0 + ... + step_{r-1})``, exactly. Region
edges are consecutive and every region has Q steps, so this is the paper's p_r, and it makes the
offset term vanish from the integer form: a weight of region r is

    w_hat = sign * (step_r * q + offset_r) = sum_{j<r} step_j * (Q * sign) + step_r * (sign * q)

i.e. region j's code tensor holds Q * sign at every weight of a higher region ("folded codes",
``folded_codes``; |Q * sign| <= 127 for b <= 8), and w_hat = sum_r step_r * folded_r. For this to be
exact the steps of a channel lie on one grid U = the float32 ulp of its largest step (so each is a
float32 and every Q * cumulative sum is an exact float64 integer multiple of U).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...formats.layer_table import (check_steps_on_grid, folded_codes, magnitude_levels,  # noqa: F401
                                    region_offsets, step_grid)


def channel_rows(weight: np.ndarray) -> np.ndarray:
    """View a weight (C_out, ...) as float64 rows (C_out, K): one row per output channel."""
    w = np.asarray(weight, dtype=np.float64)
    return w.reshape(w.shape[0], -1)


def channel_max(rows: np.ndarray, per_channel: bool) -> np.ndarray:
    """Range m = max|w| per channel (C,), or the layer's max|w| repeated for every channel."""
    m = np.abs(rows).max(axis=1) if rows.shape[1] else np.zeros(rows.shape[0])
    return m if per_channel else np.full(rows.shape[0], m.max(initial=0.0))


def region_steps(edges: np.ndarray, bits: int) -> np.ndarray:
    """Step of each region (C, R) from the region edges (C, R+1); zero-width regions get step 1
    (no weight can fall in them, and a positive step keeps the arithmetic finite)."""
    steps = np.diff(edges, axis=1) / magnitude_levels(bits)
    return np.where(steps > 0, steps, 1.0)


def encode(rows: np.ndarray, edges: np.ndarray, steps: np.ndarray, bits: int):
    """Codes (C, K) int8 and region indices (C, K) uint8 of ``rows`` for the given edges/steps.

    ``edges`` (C, R+1) float, ``steps`` (C, R) float. A magnitude above e_R saturates at code Q.
    """
    q_max = magnitude_levels(bits)
    mag = np.abs(rows)
    inner = edges[:, 1:-1]  # breakpoints (C, R-1)
    region = (mag[:, :, None] > inner[:, None, :]).sum(axis=2) if inner.shape[1] else np.zeros(mag.shape, np.intp)
    offset = np.take_along_axis(edges, region, axis=1)
    step = np.take_along_axis(steps, region, axis=1)
    safe = np.where(step > 0, step, 1.0)  # a zero-width region holds no weight (or only |w| = 0)
    q = np.where(step > 0, np.clip(np.round((mag - offset) / safe), 0, q_max), 0)
    # Canonical form: a zero code outside the center region moves to the top code of the highest
    # non-empty region below (same value e_r); with none below, e_r = 0 and the weight is 0.
    drop = (q == 0) & (region > 0)
    if drop.any():
        below = _nonempty_region_below(edges)
        target = np.take_along_axis(below, region, axis=1)
        region = np.where(drop, np.maximum(target, 0), region)
        q = np.where(drop, np.where(target >= 0, q_max, 0), q)
    codes = (np.sign(rows) * q).astype(np.int8)
    return codes, region.astype(np.uint8)


def _nonempty_region_below(edges: np.ndarray) -> np.ndarray:
    """(C, R): for each region r, the highest region j < r of positive width, or -1."""
    width = np.diff(edges, axis=1) > 0
    below = np.full(width.shape, -1, np.intp)
    for r in range(1, width.shape[1]):
        below[:, r] = np.where(width[:, r - 1], r - 1, below[:, r - 1])
    return below


def decode(codes: np.ndarray, regions: np.ndarray, steps: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Dequantized float64 rows (C, K): sign(code) * (step_r * |code| + offset_r)."""
    r = regions.astype(np.intp)
    step = np.take_along_axis(np.asarray(steps, np.float64), r, axis=1)
    offset = np.take_along_axis(np.asarray(offsets, np.float64), r, axis=1)
    c = codes.astype(np.float64)
    return np.sign(c) * (step * np.abs(c) + offset)


def rows_mse(rows: np.ndarray, edges: np.ndarray, bits: int) -> np.ndarray:
    """Mean squared quantization error per channel (C,) of ``rows`` for float64 region edges."""
    steps = region_steps(edges, bits)
    codes, regions = encode(rows, edges, steps, bits)
    err = decode(codes, regions, steps, edges[:, :-1]) - rows
    return np.mean(err * err, axis=1)


@dataclass(frozen=True)
class QuantizedWeight:
    """Integer form of one weight tensor (C_out, ...) produced by a weight scheme.

    codes    int8, weight shape: signed code sign(w) * q, |q| <= 2^(b-1) - 1
    regions  uint8, weight shape: region index of each weight (0 = center region)
    scales   float32 (C_out, R): step of each region
    offsets  float64 (C_out, R): start of each region in magnitude, Q * cumulative scales
             (offsets[:, 0] == 0; exact, see ``region_offsets``)
    bits     b, the computational bit-width (sign included)
    """

    codes: np.ndarray
    regions: np.ndarray
    scales: np.ndarray
    offsets: np.ndarray
    bits: int

    @property
    def breakpoints(self) -> np.ndarray:
        """Breakpoints (C_out, R-1) float64: the region offsets above the center region."""
        return self.offsets[:, 1:]

    def dequantize(self) -> np.ndarray:
        """Dequantized weight, float64, weight shape."""
        c = self.codes.shape[0]
        rows = decode(self.codes.reshape(c, -1), self.regions.reshape(c, -1), self.scales, self.offsets)
        return rows.reshape(self.codes.shape)


def grid_steps(edges32: np.ndarray, bits: int) -> np.ndarray:
    """Steps (C, R) float64 of float32 region edges (C, R+1), on each channel's grid U
    (``step_grid``: the float32 ulp of the channel's largest step).

    Each step is round((e_{r+1} - e_r) / Q / U) * U: an integer multiple k * U with k <= 2^24, hence
    exactly a float32 (for one region this is float32 rounding of the step), and every
    Q * (step_0 + ... + step_r) is an exact float64. A zero-width region gets step 0 (its offset
    adds nothing to the regions above).
    """
    raw = np.diff(edges32, axis=1) / magnitude_levels(bits)
    unit = step_grid(raw)
    steps = np.round(raw / unit) * unit
    steps[raw.max(axis=1, initial=0.0) == 0] = 0.0
    check_steps_on_grid(steps)
    return steps


def quantize_with_edges(weight: np.ndarray, edges: np.ndarray, bits: int) -> QuantizedWeight:
    """Quantize ``weight`` (C_out, ...) with region edges (C_out, R+1) [0, breakpoints..., m].

    The edges are rounded to float32, the steps put on the channel's float32 grid
    (``grid_steps``) and the offsets defined from the steps (``region_offsets``: Q * cumulative
    steps, exact), and the codes are computed against those values, so
    ``QuantizedWeight.dequantize`` reproduces exactly what the codes were chosen for and the
    folded integer form (no offset term) represents the same weights.
    """
    rows = channel_rows(weight)
    edges32 = np.asarray(edges, np.float32).astype(np.float64)
    # A channel whose step m / Q would fall below float32's smallest normal number cannot get an
    # exact one (a subnormal step loses bits, so dequantizing and quantizing again moves codes):
    # quantize it as an all-zero channel rather than with a bogus step.
    tiny = np.finfo(np.float32).tiny
    edges32 = np.where(edges32[:, -1:] < magnitude_levels(bits) * tiny, 0.0, edges32)
    steps = grid_steps(edges32, bits)
    offsets = region_offsets(steps, bits)
    top = offsets[:, -1:] + magnitude_levels(bits) * steps[:, -1:]
    codes, regions = encode(rows, np.concatenate([offsets, top], axis=1), steps, bits)
    return QuantizedWeight(
        codes=codes.reshape(np.shape(weight)),
        regions=regions.reshape(np.shape(weight)),
        scales=steps.astype(np.float32),
        offsets=offsets,
        bits=bits,
    )
