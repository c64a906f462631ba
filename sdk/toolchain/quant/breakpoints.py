"""Breakpoint selection for PWLQ (paper Sect. 3.3 and 5.1), per output channel.

Methods (``METHODS``):

- ``gaussian_closed`` / ``laplacian_closed``: the paper's fitted closed forms, with the range
  normalised by the channel's std, m = max|w| / std(w), and the breakpoint p* in units of the std:
      Gaussian   p* = ln(0.86143114 m + 0.607901097)
      Laplacian  p* = 0.80304483 sqrt(m) - 0.31667855
  (The paper prints the first as "p*/m = ln(0.8614 m + 0.6079)"; that reading gives p* > m for
  every m > 1.5 and is wrong: the right side is p* itself, in std units. The tests check both
  forms against the exact minimiser of Eq. 4.) One breakpoint only.
- ``gaussian_expected`` / ``laplacian_expected``: minimise the expected error of Eq. 4 under the
  truncated fit; convex on (0, m/2) (Lemma 1), so golden-section search finds the optimum.
- ``empirical``: minimise the actual MSE of the channel's weights (grid, then golden refinement).

With 2 or 3 breakpoints the expected or empirical error is minimised in the enlarged space by
coordinate descent: each breakpoint in turn, between its neighbours, the others held fixed.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ...errors import InputError
from .core import rows_mse
from .error_model import DISTRIBUTIONS, expected_error, expected_error_1bp

METHODS = ("gaussian_closed", "laplacian_closed", "gaussian_expected", "laplacian_expected", "empirical")
CLOSED_METHODS = ("gaussian_closed", "laplacian_closed")

_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0


def gaussian_closed_form(m_norm):
    """Paper's approximation of the optimal breakpoint for a normalised Gaussian (std units)."""
    return np.log(0.86143114 * np.asarray(m_norm, np.float64) + 0.607901097)


def laplacian_closed_form(m_norm):
    """Paper's approximation of the optimal breakpoint for a normalised Laplacian (std units)."""
    return 0.80304483 * np.sqrt(np.asarray(m_norm, np.float64)) - 0.31667855


_CLOSED_FORMS = {"gaussian_closed": gaussian_closed_form, "laplacian_closed": laplacian_closed_form}


def golden_section(f: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray,
                   iters: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``f`` elementwise on [lo, hi] (arrays of one shape); one evaluation per iteration.

    Exact for unimodal f (Lemma 1 gives convexity of Eq. 4 on (0, m/2)). Returns (x, f(x)).
    """
    a, b = np.array(lo, np.float64), np.array(hi, np.float64)
    c, d = b - _INV_PHI * (b - a), a + _INV_PHI * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        left = fc < fd  # the minimum lies in [a, d]
        a, b = np.where(left, a, c), np.where(left, d, b)
        new = np.where(left, b - _INV_PHI * (b - a), a + _INV_PHI * (b - a))
        f_new = f(new)
        c, fc, d, fd = (np.where(left, new, d), np.where(left, f_new, fd),
                        np.where(left, c, new), np.where(left, fc, f_new))
    best = fc < fd
    return np.where(best, c, d), np.where(best, fc, fd)


def check_method(method: str, count: int) -> None:
    """Raise InputError unless ``method`` can place ``count`` breakpoints."""
    if method not in METHODS:
        raise InputError(f"breakpoint_method={method!r} is not known; allowed: {', '.join(METHODS)}")
    if count > 1 and method in CLOSED_METHODS:
        allowed = ", ".join(repr(m) for m in METHODS if m not in CLOSED_METHODS)
        raise InputError(f"breakpoint_method={method!r} has a closed form for 1 breakpoint only; "
                         f"with breakpoints={count} use one of {allowed}")


def select_breakpoints(rows: np.ndarray, m: np.ndarray, bits: int, count: int, method: str) -> np.ndarray:
    """Breakpoints (C, count), ascending in (0, m), for weight rows (C, K) with ranges m (C,).

    ``m`` is the max|w| each channel is quantized over (the layer's max in per-layer mode, where
    the caller passes the whole layer as one row).
    """
    check_method(method, count)
    std = rows.std(axis=1)
    scale = np.where(std > 0, std, 1.0)
    m_norm = np.where(std > 0, m / scale, 2.0)  # a constant channel: p = m/2 (uniform-like)
    if method == "empirical":
        start = _expected_optimum(m_norm, "gaussian", bits, count) * scale[:, None]
        p = _empirical_optimum(rows, m, bits, start)
    elif method in CLOSED_METHODS:
        p = _CLOSED_FORMS[method](m_norm)[:, None] * scale[:, None]
    else:
        p = _expected_optimum(m_norm, method.split("_")[0], bits, count) * scale[:, None]
    # Keep the edges strictly increasing inside (0, m/2] for one breakpoint, (0, m) for several.
    top = m / 2 if count == 1 else m
    tiny = 1e-6 * m[:, None]
    p = np.clip(p, tiny, top[:, None] - (count > 1) * tiny)
    p = np.where(m[:, None] > 0, p, 0.0)
    return np.maximum.accumulate(p, axis=1)


def _expected_optimum(m_norm: np.ndarray, distribution: str, bits: int, count: int) -> np.ndarray:
    """Minimiser (C, count) of the expected error under the truncated fit, in std units."""
    dist = DISTRIBUTIONS[distribution]
    m = np.asarray(m_norm, np.float64)
    if count == 1:
        p, _ = golden_section(lambda p: expected_error_1bp(p, m, dist, bits), np.zeros_like(m), m / 2, iters=80)
        return p[:, None]
    p = m[:, None] * (np.arange(1, count + 1) / (count + 1)) ** 2  # denser near zero
    for _ in range(40):
        for i in range(count):
            def err(x, i=i):
                edges = _edges(np.concatenate([p[:, :i], x[:, None], p[:, i + 1:]], axis=1), m)
                return expected_error(edges, dist, bits)
            lo = p[:, i - 1] if i else np.zeros_like(m)
            hi = p[:, i + 1] if i + 1 < count else m
            p[:, i], _ = golden_section(err, lo, hi, iters=40)
    return p


def _empirical_optimum(rows: np.ndarray, m: np.ndarray, bits: int, start: np.ndarray,
                       grid: int = 48, refine: int = 30, sweeps: int = 3) -> np.ndarray:
    """Minimiser (C, count) of the channel MSE: grid then golden refinement, per coordinate."""
    count = start.shape[1]
    p = start.copy()
    for _ in range(sweeps if count > 1 else 1):
        for i in range(count):
            def err(x, i=i):
                return rows_mse(rows, _edges(np.concatenate([p[:, :i], x[:, None], p[:, i + 1:]], axis=1), m), bits)
            lo = p[:, i - 1] if i else np.zeros_like(m)
            hi = p[:, i + 1] if i + 1 < count else (m / 2 if count == 1 else m)
            p[:, i] = _grid_then_golden(err, lo, hi, grid if count == 1 else grid // 3, refine, p[:, i])
    return p


def _grid_then_golden(err, lo, hi, grid, refine, current):
    """Best of the current value, a uniform grid over (lo, hi] and a golden refinement around it."""
    best_x, best_f = current.copy(), err(current)
    width = (hi - lo) / grid
    for g in range(1, grid + 1):
        x = lo + g * width
        f = err(x)
        better = f < best_f
        best_x, best_f = np.where(better, x, best_x), np.where(better, f, best_f)
    x, f = golden_section(err, np.maximum(best_x - width, lo), np.minimum(best_x + width, hi), iters=refine)
    better = f < best_f
    return np.where(better, x, best_x)


def _edges(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Region edges (C, R+1) = [0, p_1, .., p_n, m] from breakpoints (C, n) and ranges (C,)."""
    return np.concatenate([np.zeros((p.shape[0], 1)), p, m[:, None]], axis=1)
