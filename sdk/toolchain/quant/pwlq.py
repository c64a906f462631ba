"""Piecewise linear weight scheme (paper Eq. 3) and the paper's reference form of it.

``quantize_pwlq`` cuts each channel's range [-m, m] at 1 to 3 breakpoints (``breakpoints.py``
chooses them) and quantizes every region with (b-1) magnitude bits plus the sign; the center
region [0, p_1] has offset 0 and region r has offset p_r (see ``core`` for the representation).
With one breakpoint: center codes q1 = round(|w|/s1), s1 = p/(2^(b-1)-1); tail codes
q2 = round((|w|-p)/s2), s2 = (m-p)/(2^(b-1)-1), w_hat = sign(w) (s2 q2 + p).
"""
from __future__ import annotations

import numpy as np

from .breakpoints import select_breakpoints
from .core import QuantizedWeight, channel_max, channel_rows, quantize_with_edges
from .uniform import uni


def quantize_pwlq(weight: np.ndarray, bits: int, breakpoints: int = 1, method: str = "gaussian_closed",
                  per_channel: bool = True) -> QuantizedWeight:
    """b-bit PWLQ of ``weight`` (C_out, ...) with ``breakpoints`` breakpoints per channel.

    Per layer (``per_channel=False``) one set of breakpoints is chosen for the whole tensor.
    """
    rows = channel_rows(weight)
    m = channel_max(rows, per_channel)
    if per_channel:
        p = select_breakpoints(rows, m, bits, breakpoints, method)
    else:
        p = np.repeat(select_breakpoints(rows.reshape(1, -1), m[:1], bits, breakpoints, method), len(m), axis=0)
    edges = np.concatenate([np.zeros((len(m), 1)), p, m[:, None]], axis=1)
    return quantize_with_edges(weight, edges, bits)


def pw(r: np.ndarray, bits: int, m: float, p: float) -> np.ndarray:
    """Paper Eq. 3 built from Eq. 1, float64: sign(r) uni(|r|; b-1, 0, p, 0) on [-p, p] and
    sign(r) uni(|r|; b-1, p, m, p) on the tails, with the unsigned domain Z_{b-1} = {0..2^(b-1)-1}."""
    a = np.abs(r)
    center = uni(a, bits - 1, 0.0, p, 0.0, signed=False)
    tail = uni(a, bits - 1, p, m, p, signed=False)
    return np.sign(r) * np.where(a <= p, center, tail)
