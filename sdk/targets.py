"""Deployment targets: what a bundle is built for and which backends run it, best first.

Pure data, shared by the toolchain (``sdk.deploy`` validates against it) and the runtime
(``sdk.load`` picks a backend from ``backends``). Jetson profiles arrive with the TensorRT work.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError


QUANT_SCHEMES = ("pwlq", "uniform")
QUANT_FORMS = ("integer", "qdq")


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    precisions: tuple[str, ...]          # float precisions deploy may write for this target
    default_precision: str
    backends: tuple[str, ...]            # runtime preference order
    opset: int = 17
    quant_schemes: tuple[str, ...] = ()  # quantized models: "<scheme><bits>" precisions, e.g. pwlq4
    quant_forms: tuple[str, ...] = ()    # ONNX forms of a quantized model, default first

    def check_precision(self, precision: str) -> None:
        """Raise InputError unless this target can run ``precision`` ("fp32", "pwlq4", ...)."""
        if precision in self.precisions:
            return
        scheme = precision.rstrip("0123456789")
        bits = precision[len(scheme):]
        if scheme in self.quant_schemes and bits.isdigit() and 2 <= int(bits) <= 8:
            return
        known = list(self.precisions) + [f"{s}<2-8>" for s in self.quant_schemes]
        raise InputError(f"target '{self.name}' does not support precision '{precision}' "
                         f"(supported: {', '.join(known)})")


_TARGETS: dict[str, Target] = {}


def register_target(target: Target) -> Target:
    _TARGETS[target.name] = target
    return target


def get_target(name: str) -> Target:
    try:
        return _TARGETS[name]
    except KeyError:
        raise InputError(f"unknown target '{name}' (known targets: {', '.join(sorted(_TARGETS))})") from None


def target_names() -> list[str]:
    return sorted(_TARGETS)


register_target(Target(
    name="cpu",
    description="x86-64 or aarch64 CPU through ONNX Runtime (the embedded default)",
    precisions=("fp32",),
    default_precision="fp32",
    backends=("onnxruntime",),
    quant_schemes=QUANT_SCHEMES,
    # ConvInteger/MatMulInteger: real integer accumulators on ORT CPU (Eqs. 11-13); QDQ as option
    quant_forms=("integer", "qdq"),
))
