"""Per-channel bias correction of quantized weights (paper Sect. 5.1, after Banner et al.).

    w_bc = (w_hat + mean(w) - mean(w_hat)) * std(w) / std(w_hat)

kept in the affine form w_bc = a * w_hat + c with per-channel a = std(w)/std(w_hat) and
c = a (mean(w) - mean(w_hat)), so an integer kernel still computes on the codes:
<X, w_bc> = a <X, w_hat> + c sum(X).
"""
from __future__ import annotations

import numpy as np

from .core import channel_rows


def bias_correction(weight: np.ndarray, dequantized: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (bc_scale a, bc_shift c), float64 (C_out,), for a weight and its quantized form.

    A channel whose quantized weights are all equal (std(w_hat) = 0) keeps a = 1 and only gets
    the mean shift.
    """
    w, wq = channel_rows(weight), channel_rows(dequantized)
    std_q = wq.std(axis=1)
    a = np.where(std_q > 0, w.std(axis=1) / np.where(std_q > 0, std_q, 1.0), 1.0)
    c = a * (w.mean(axis=1) - wq.mean(axis=1))
    return a, c


def no_correction(channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The identity correction (a = 1, c = 0) for ``channels`` output channels."""
    return np.ones(channels), np.zeros(channels)
