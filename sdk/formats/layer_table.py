"""``LayerQuantTable``: everything a runtime needs to run one quantized layer.

The table is the single source of truth: the PyTorch simulation, the ONNX exports and the packed
``.npz`` tables all compute from these arrays (float32 scales, integer codes), so they agree.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np


@dataclass
class LayerQuantTable:
    """Quantization table of one layer.

    Weight (shape S = the layer's weight shape, C = S[0] output channels, R regions):
      codes            int8 S: signed code sign(w) q, |q| <= 2^(b-1)-1
      regions          uint8 S: region of each weight, 0 = center; always 0 for "uniform"
      scales           float32 (C, R): step of each region
      offsets          float32 (C, R): start of each region in magnitude; offsets[:, 0] = 0
      breakpoints      float32 (C, R-1): offsets[:, 1:], the breakpoints (empty for "uniform")
      bc_scale, bc_shift float32 (C,): bias correction w_bc = bc_scale w_hat + bc_shift
      bias             float32 (C,): the (batch-norm folded) bias; zeros if the layer has none
    Input activation (per tensor):
      act_scheme "uniform": act_scale (float32 value), act_zero_point in [0, 2^act_bits - 1]
      act_scheme "pwlq": act_breakpoints (1,) and act_range_max; act_scale/act_zero_point unused
    Layer: layer_type ("Conv2d", "Linear"); stride/padding/dilation/groups for Conv2d, else None.
    """

    name: str
    layer_type: str
    scheme: str
    weight_bits: int
    breakpoint_method: Optional[str]
    per_channel: bool
    codes: np.ndarray
    regions: np.ndarray
    scales: np.ndarray
    offsets: np.ndarray
    bc_scale: np.ndarray
    bc_shift: np.ndarray
    bias: np.ndarray
    act_bits: int
    act_scheme: str = "uniform"
    act_scale: float = 1.0
    act_zero_point: int = 0
    act_breakpoints: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    act_range_max: float = 0.0
    stride: Optional[tuple[int, int]] = None
    padding: Optional[Union[tuple[int, int], str]] = None
    dilation: Optional[tuple[int, int]] = None
    groups: Optional[int] = None

    @property
    def breakpoints(self) -> np.ndarray:
        """(C, R-1) float32."""
        return self.offsets[:, 1:]

    @property
    def n_regions(self) -> int:
        return self.scales.shape[1]

    @property
    def out_channels(self) -> int:
        return self.codes.shape[0]

    @property
    def center_share(self) -> float:
        """Share of the weights coded in the center region."""
        return float(np.mean(self.regions == 0)) if self.regions.size else 1.0

    def region_codes(self, region: int) -> np.ndarray:
        """Codes of the weights in ``region``, 0 elsewhere; int8, weight shape."""
        return np.where(self.regions == region, self.codes, 0).astype(np.int8)

    def region_signs(self, region: int) -> np.ndarray:
        """Region-sign indicator sign(code) on ``region``, 0 elsewhere; int8 in {-1, 0, 1}."""
        return np.where(self.regions == region, np.sign(self.codes), 0).astype(np.int8)

    def _per_channel(self, v: np.ndarray) -> np.ndarray:
        return np.asarray(v, np.float64).reshape((-1,) + (1,) * (self.codes.ndim - 1))

    def dequantized_weight(self, bias_corrected: bool = True) -> np.ndarray:
        """w_hat = sum_r (scales_r code_r + offsets_r sign_r), then bc_scale w_hat + bc_shift.

        Float64 from the stored float32 values; the simulation casts it to float32.
        """
        w = np.zeros(self.codes.shape)
        for r in range(self.n_regions):
            w += self._per_channel(self.scales[:, r]) * self.region_codes(r)
            w += self._per_channel(self.offsets[:, r]) * self.region_signs(r)
        if bias_corrected:
            w = self._per_channel(self.bc_scale) * w + self._per_channel(self.bc_shift)
        return w
