"""``LayerQuantTable``: everything a runtime needs to run one quantized layer.

The table is the single source of truth: the PyTorch simulation, the ONNX exports and the packed
``.npz`` tables all compute from these arrays (float32 scales, integer codes), so they agree.

Region offsets are not stored: they are defined by the steps, ``offset_r = Q * (s_0 + ... +
s_{r-1})`` with ``Q = 2^(b-1) - 1`` (region edges are consecutive and each region has Q steps), and
the quantizer puts a channel's steps on one grid (the float32 ulp of its largest step) so that this
float64 sum is exact. Then a weight of region r, ``sign * (s_r * q + offset_r)``, is
``sum_{j<r} s_j * (Q * sign) + s_r * (sign * q)``: the offset folds into the lower regions' codes
(``folded_codes``), and the integer form needs one accumulator per region and no sign term.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np


def magnitude_levels(bits: int) -> int:
    """Largest magnitude code Q = 2^(b-1) - 1 of a b-bit signed (sign + (b-1)-bit) code."""
    return (1 << (bits - 1)) - 1


def step_grid(steps: np.ndarray) -> np.ndarray:
    """(C, 1) float64: each channel's step grid U, the float32 ulp of its largest step (at least
    float32's smallest subnormal)."""
    top = np.asarray(steps, np.float64).max(axis=1, initial=0.0)
    _, exp = np.frexp(top)  # top = f * 2^exp, f in [0.5, 1): its float32 ulp is 2^(exp - 24)
    return np.ldexp(1.0, np.maximum(exp - 24, -149))[:, None]


def check_steps_on_grid(steps: np.ndarray) -> None:
    """ValueError unless the steps (C, R) are finite, >= 0 and integer multiples of their channel's
    ``step_grid``: the condition under which ``region_offsets`` is exact."""
    steps = np.asarray(steps, np.float64)
    if steps.ndim != 2 or not np.all(np.isfinite(steps)) or np.any(steps < 0):
        raise ValueError(f"region steps: expected finite values >= 0 of shape (C, R), received "
                         f"{steps.dtype} {steps.shape}")
    k = steps / step_grid(steps)
    off = k != np.round(k)
    if off.any():
        c = int(np.argwhere(off)[0, 0])
        raise ValueError(f"channel {c}: region steps {steps[c].tolist()} are not integer multiples of "
                         f"the float32 ulp of the largest one, so the region offsets Q * cumulative "
                         f"steps are not exact (quantize with sdk.toolchain.quant.core.quantize_with_edges)")


def region_offsets(steps: np.ndarray, bits: int) -> np.ndarray:
    """Offsets (C, R) float64: offset_r = Q * (steps_0 + ... + steps_{r-1}); exact for steps on
    their grid (``check_steps_on_grid``): every partial sum is an integer multiple of U below
    2^33 U."""
    steps = np.asarray(steps, np.float64)
    cum = np.cumsum(steps[:, :-1], axis=1)
    return np.concatenate([np.zeros((steps.shape[0], 1)), magnitude_levels(bits) * cum], axis=1)


def folded_codes(codes: np.ndarray, regions: np.ndarray, region: int, bits: int) -> np.ndarray:
    """Region ``region``'s folded int8 code tensor: the codes of its own weights, Q * sign(code)
    at every weight of a higher region, 0 elsewhere (|values| <= Q <= 127)."""
    own = np.where(regions == region, codes, 0)
    above = np.where(regions > region, magnitude_levels(bits) * np.sign(codes.astype(np.int16)), 0)
    return (own + above).astype(np.int8)


@dataclass
class LayerQuantTable:
    """Quantization table of one layer.

    Weight (shape S = the layer's weight shape, C = S[0] output channels, R regions):
      codes            int8 S: signed code sign(w) q, |q| <= 2^(b-1)-1
      regions          uint8 S: region of each weight, 0 = center; always 0 for "uniform"
      scales           float32 (C, R): step of each region, on the channel's grid (module doc)
      offsets          float64 (C, R), derived: Q * cumulative scales; offsets[:, 0] = 0
      breakpoints      float64 (C, R-1), derived: offsets[:, 1:] (empty for "uniform")
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

    def __post_init__(self):
        check_steps_on_grid(self.scales)

    @property
    def offsets(self) -> np.ndarray:
        """(C, R) float64: start of each region in magnitude, Q * cumulative scales (exact)."""
        return region_offsets(self.scales, self.weight_bits)

    @property
    def breakpoints(self) -> np.ndarray:
        """(C, R-1) float64."""
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

    def folded_codes(self, region: int) -> np.ndarray:
        """Region ``region``'s folded codes (``folded_codes``): its own codes and Q * sign at
        every weight of a higher region; int8, weight shape. w_hat = sum_r scales_r * these."""
        return folded_codes(self.codes, self.regions, region, self.weight_bits)

    def _per_channel(self, v: np.ndarray) -> np.ndarray:
        return np.asarray(v, np.float64).reshape((-1,) + (1,) * (self.codes.ndim - 1))

    def dequantized_weight(self, bias_corrected: bool = True) -> np.ndarray:
        """w_hat = sum_r scales_r folded_r (= sign (scales_r q + offsets_r)), then
        bc_scale w_hat + bc_shift.

        Float64 from the stored float32 values; the simulation casts it to float32.
        """
        w = np.zeros(self.codes.shape)
        for r in range(self.n_regions):
            w += self._per_channel(self.scales[:, r]) * self.folded_codes(r)
        if bias_corrected:
            w = self._per_channel(self.bc_scale) * w + self._per_channel(self.bc_shift)
        return w
