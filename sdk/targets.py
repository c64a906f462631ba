"""Deployment targets: what a bundle is built for and which backends run it, best first.

Pure data, shared by the toolchain (``sdk.deploy`` validates against it) and the runtime
(``sdk.load`` picks a backend from ``backends``). Jetson profiles arrive with the TensorRT work.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    precisions: tuple[str, ...]          # what deploy may write for this target
    default_precision: str
    backends: tuple[str, ...]            # runtime preference order
    opset: int = 17


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
))
