"""Activation quantizers built from a calibrated range: ``ACTIVATION_SCHEMES``.

Uniform (the default, paper Sect. 5.1: 8-bit, per layer, asymmetric) is written in the form ONNX
QuantizeLinear/DequantizeLinear and ConvInteger compute, which deviates from Eq. 1 in two ways:

- the range is widened to include 0, and the offset is an integer zero point instead of the
  float offset z = rl of Eq. 1, so that 0 (zero padding, ReLU zeros) is exactly representable:
      s  = (ru - rl) / (2^b - 1),   zp = clamp(round(-rl / s), 0, 2^b - 1)
      q  = clamp(round(x / s) + zp, 0, 2^b - 1)          (round half to even, as ONNX)
      x_hat = s (q - zp)
- s is rounded to float32 first and every step is computed in float32, so the PyTorch
  simulation and ONNX Runtime produce the same codes.

PWLQ on activations (the paper's 4/4 case) applies Eq. 3 to [-m, m], m = max(|rl|, |ru|), with
one breakpoint; it exists in the simulation only (there is no ONNX form for it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .breakpoints import select_breakpoints
from .calibration import Calibrator
from .core import magnitude_levels


@dataclass(frozen=True)
class UniformActivation:
    """Per-tensor asymmetric quantizer: scale s (float32 value), integer zero point, bits."""

    scale: float
    zero_point: int
    bits: int
    scheme = "uniform"

    @classmethod
    def from_range(cls, rl: float, ru: float, bits: int) -> "UniformActivation":
        rl, ru = min(rl, 0.0), max(ru, 0.0)
        q_max = 2**bits - 1
        scale = float(np.float32((ru - rl) / q_max)) if ru > rl else 1.0
        zero_point = int(np.clip(np.round(-rl / scale), 0, q_max))
        return cls(scale, zero_point, bits)

    @property
    def q_max(self) -> int:
        return 2**self.bits - 1

    def fake_quantize(self, x: torch.Tensor) -> torch.Tensor:
        """x_hat = s (clamp(round(x / s) + zp, 0, 2^b - 1) - zp), float32."""
        s = torch.tensor(self.scale, dtype=torch.float32, device=x.device)
        q = torch.clamp(torch.round(x.float() / s) + self.zero_point, 0, self.q_max)
        return (q - self.zero_point) * s

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """The codes q, uint8, computed in float32 like ONNX QuantizeLinear."""
        q = np.round(np.asarray(x, np.float32) / np.float32(self.scale)) + np.float32(self.zero_point)
        return np.clip(q, 0, self.q_max).astype(np.uint8)

    @property
    def clip_range(self) -> tuple[float, float]:
        """[s (0 - zp), s (2^b - 1 - zp)]: what a float Clip must keep for b < 8 bits in ONNX,
        where QuantizeLinear (uint8) saturates at 255 rather than at 2^b - 1."""
        return self.scale * (0 - self.zero_point), self.scale * (self.q_max - self.zero_point)


@dataclass(frozen=True)
class PwlqActivation:
    """Eq. 3 on activations: range m, breakpoint p (0 < p <= m/2), bits (sign included)."""

    range_max: float
    breakpoint: float
    bits: int
    scheme = "pwlq"

    @classmethod
    def from_calibrator(cls, calibrator: Calibrator, bits: int, method: str) -> "PwlqActivation":
        rl, ru = calibrator.compute_range()
        m = max(abs(rl), abs(ru))
        if method == "empirical":
            rows = np.clip(calibrator.samples, -m, m)[None, :]
        else:  # the closed and expected forms need only the std: a stand-in row with that std
            rows = np.array([[-calibrator.std, calibrator.std]])
        p = select_breakpoints(rows, np.array([m]), bits, 1, method)[0, 0]
        return cls(float(np.float32(m)), float(np.float32(p)), bits)

    @property
    def scales(self) -> tuple[float, float]:
        """Steps of the center and tail regions."""
        q = magnitude_levels(self.bits)
        return self.breakpoint / q, (self.range_max - self.breakpoint) / q

    def fake_quantize(self, x: torch.Tensor) -> torch.Tensor:
        q_max = magnitude_levels(self.bits)
        s1, s2 = self.scales
        a = torch.clamp(x.float().abs(), max=self.range_max)
        center = torch.clamp(torch.round(a / s1), 0, q_max) * s1 if s1 > 0 else torch.zeros_like(a)
        tail = torch.clamp(torch.round((a - self.breakpoint) / s2), 0, q_max) * s2 + self.breakpoint \
            if s2 > 0 else torch.full_like(a, self.breakpoint)
        return torch.sign(x.float()) * torch.where(a <= self.breakpoint, center, tail)


ACTIVATION_SCHEMES = ("uniform", "pwlq")


def activation_quantizer(calibrator: Calibrator, scheme: str, bits: int, breakpoint_method: str):
    """The activation quantizer of ``scheme`` for a layer input whose statistics are collected."""
    if scheme == "pwlq":
        return PwlqActivation.from_calibrator(calibrator, bits, breakpoint_method)
    return UniformActivation.from_range(*calibrator.compute_range(), bits)
