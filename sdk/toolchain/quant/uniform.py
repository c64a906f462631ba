"""Uniform weight scheme (paper Eq. 1, symmetric, z = 0) and the paper's reference quantizer.

``quantize_uniform`` is what the toolchain deploys: b-bit restricted symmetric codes
{-(2^(b-1)-1) .. 2^(b-1)-1} with step m / (2^(b-1)-1), per output channel or per layer, so that it
maps one-to-one onto ONNX/TensorRT symmetric int8. ``uni`` is Eq. 1 verbatim (float offset z,
N = 2^b levels); the tests use it to check PWLQ (Eq. 3) and the error analysis (Eq. 2, Lemma 2).
"""
from __future__ import annotations

import numpy as np

from .core import QuantizedWeight, channel_max, channel_rows, quantize_with_edges


def quantize_uniform(weight: np.ndarray, bits: int, per_channel: bool = True) -> QuantizedWeight:
    """b-bit symmetric uniform quantization of ``weight`` (C_out, ...); one region [0, m]."""
    m = channel_max(channel_rows(weight), per_channel)
    edges = np.stack([np.zeros_like(m), m], axis=1)
    return quantize_with_edges(weight, edges, bits)


def uni(r: np.ndarray, bits: int, rl: float, ru: float, z: float, signed: bool) -> np.ndarray:
    """Paper Eq. 1: s * clamp_Zb(round((clamp(r; rl, ru) - z) / s)) + z with s = (ru - rl)/(2^b - 1).

    ``signed`` picks Z_b = {-2^(b-1) .. 2^(b-1)-1}, else Z_b = {0 .. 2^b-1}. float64.
    """
    s = (ru - rl) / (2**bits - 1)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    rq = np.clip(np.round((np.clip(r, rl, ru) - z) / s), lo, hi)
    return s * rq + z


def error_constant(bits: int) -> float:
    """C(b) = 1 / (12 (2^b - 1)^2) of Eq. 2: E(eps^2) = C(b) * (ru - rl)^2 for uniform data."""
    return 1.0 / (12.0 * (2**bits - 1) ** 2)
