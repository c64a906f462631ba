"""``QuantConfig``: the validated settings of one ``quantize`` call."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ...errors import InputError
from .activation import ACTIVATION_SCHEMES
from .breakpoints import METHODS, check_method
from .calibration import CALIBRATORS
from .weights import WEIGHT_SCHEMES

BITS = range(2, 9)
BREAKPOINTS = range(1, 4)


@dataclass(frozen=True)
class QuantConfig:
    """Settings of a quantization run; the constructor rejects values outside the allowed sets."""

    scheme: str = "pwlq"
    weight_bits: int = 4
    breakpoints: int = 1
    breakpoint_method: str = "gaussian_closed"
    per_channel: bool = True
    bias_correction: bool = True
    act_bits: int = 8
    act_calibration: str = "topk_median"
    act_scheme: str = "uniform"
    skip_first_layer: bool = False

    def __post_init__(self):
        _one_of("scheme", self.scheme, WEIGHT_SCHEMES)
        _one_of("act_scheme", self.act_scheme, ACTIVATION_SCHEMES)
        _one_of("act_calibration", self.act_calibration, CALIBRATORS)
        _one_of("breakpoint_method", self.breakpoint_method, METHODS)
        for name in ("weight_bits", "act_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value not in BITS:
                raise InputError(f"{name}={value!r}; allowed: an integer from {BITS[0]} to {BITS[-1]}")
        if isinstance(self.breakpoints, bool) or not isinstance(self.breakpoints, int) \
                or self.breakpoints not in BREAKPOINTS:
            raise InputError(f"breakpoints={self.breakpoints!r}; allowed: 1, 2 or 3")
        # checked for "uniform" too: the summary compares every layer with PWLQ at these settings
        check_method(self.breakpoint_method, self.breakpoints)
        if self.act_scheme == "pwlq":
            check_method(self.breakpoint_method, 1)

    def as_dict(self) -> dict:
        return asdict(self)


def _one_of(name: str, value, allowed) -> None:
    if value not in allowed:
        raise InputError(f"{name}={value!r}; allowed: {', '.join(repr(a) for a in allowed)}")
