"""Weight quantization of one layer: a scheme from ``WEIGHT_SCHEMES`` then bias correction.

Both schemes produce the same ``QuantizedWeight`` (``core``); adding a scheme is one entry here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .bias_correction import bias_correction, no_correction
from .core import QuantizedWeight
from .pwlq import quantize_pwlq
from .uniform import quantize_uniform


def _uniform(weight, bits, breakpoints, method, per_channel):
    return quantize_uniform(weight, bits, per_channel)


def _pwlq(weight, bits, breakpoints, method, per_channel):
    return quantize_pwlq(weight, bits, breakpoints, method, per_channel)


# scheme name -> fn(weight, bits, breakpoints, method, per_channel) -> QuantizedWeight
WEIGHT_SCHEMES: dict[str, Callable[..., QuantizedWeight]] = {"uniform": _uniform, "pwlq": _pwlq}


@dataclass(frozen=True)
class LayerWeights:
    """A layer's quantized weight, its bias correction (C_out,) float64, and the weight MSEs of
    both schemes (before bias correction, same bits) for the summary."""

    quantized: QuantizedWeight
    bc_scale: np.ndarray
    bc_shift: np.ndarray
    mse: dict[str, float]

    def corrected(self) -> np.ndarray:
        """a * w_hat + c, float64, weight shape."""
        w = self.quantized.dequantize()
        shape = (-1,) + (1,) * (w.ndim - 1)
        return self.bc_scale.reshape(shape) * w + self.bc_shift.reshape(shape)


def quantize_weight(weight: np.ndarray, scheme: str, bits: int, breakpoints: int, method: str,
                    per_channel: bool, correct_bias: bool) -> LayerWeights:
    """Quantize ``weight`` (C_out, ...) float with ``scheme``; the other scheme only for the MSE."""
    results = {name: fn(weight, bits, breakpoints, method, per_channel) for name, fn in WEIGHT_SCHEMES.items()}
    w = np.asarray(weight, np.float64)
    mse = {name: float(np.mean((q.dequantize() - w) ** 2)) for name, q in results.items()}
    chosen = results[scheme]
    a, c = bias_correction(w, chosen.dequantize()) if correct_bias else no_correction(w.shape[0])
    return LayerWeights(chosen, a, c, mse)
