"""Deployment targets: what a bundle is built for and which backends run it, best first.

Pure data, shared by the toolchain (``sdk.deploy`` validates against it) and the runtime
(``sdk.load`` picks a backend from ``backends``). Jetson targets carry a :class:`DeviceProfile`
(compute capability, memory, DLA): ``"jetson"`` is the generic profile (any Orin/Xavier),
``"jetson-orin-nano"`` etc. name one module, so the engine builder and the runtime can say which
device a bundle was meant for.
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
    device: "DeviceProfile | None" = None  # Jetson module(s) the target stands for

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


@dataclass(frozen=True)
class DeviceProfile:
    """A Jetson module as TensorRT sees it. ``compute_capability``: the GPU's SM versions this
    profile accepts, e.g. ``((8, 7),)`` for Orin; ``memory_gb``: unified memory shared by CPU and
    GPU (the engine's workspace limit is derived from it); ``dla_cores``: NVDLA engines (0: none);
    ``int4``: TensorRT's weight-only INT4 runs there (SM ≥ 8.0 GPUs)."""

    module: str
    compute_capability: tuple[tuple[int, int], ...]
    memory_gb: float
    dla_cores: int
    jetpack: str                 # the JetPack line whose TensorRT builds for it
    int4: bool = True

    def accepts(self, capability: tuple[int, int]) -> bool:
        return tuple(capability) in self.compute_capability

    @property
    def workspace_bytes(self) -> int:
        """Builder workspace: a quarter of unified memory, at most 2 GiB (the rest is the app's)."""
        return int(min(self.memory_gb / 4, 2.0) * (1 << 30))


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


# Jetson: TensorRT first, ONNX Runtime (TensorRT/CUDA execution providers, then CPU, with a
# warning) as fallback; see sdk.runtime.backends.tensorrt.
# Float precisions are written as an FP32 or an FP16 ONNX; int8 models only in QDQ form (TensorRT
# has no ConvInteger). Precisions need the device's FP16/INT8 tensor cores: every profile has both.
JETSON_BACKENDS = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")
JETSON_OPSET = 17   # TensorRT 8.6-10.x parse opsets 9-20 (onnx-tensorrt operators.md); 17 is covered by all

_JETSON = {
    "jetson": ("any Jetson Orin/Xavier through TensorRT (engine built on the device at first load)",
               DeviceProfile("Jetson (generic Orin/Xavier)", ((8, 7), (7, 2)), 4.0, 0, "5.x/6.x"),
               "fp16"),
    "jetson-orin-nano": ("Jetson Orin Nano 4/8 GB (Ampere, 1024 CUDA cores, SM 8.7, no DLA)",
                         DeviceProfile("Jetson Orin Nano", ((8, 7),), 8.0, 0, "6.x"), "fp16"),
    "jetson-orin-nx": ("Jetson Orin NX 8/16 GB (Ampere, SM 8.7, 1-2 DLA v2)",
                       DeviceProfile("Jetson Orin NX", ((8, 7),), 16.0, 2, "6.x"), "fp16"),
    "jetson-agx-orin": ("Jetson AGX Orin 32/64 GB (Ampere, SM 8.7, 2 DLA v2)",
                        DeviceProfile("Jetson AGX Orin", ((8, 7),), 64.0, 2, "6.x"), "fp16"),
    "jetson-xavier-nx": ("Jetson Xavier NX 8/16 GB (Volta, SM 7.2, 2 DLA v1; TensorRT ≤ 8.6 via JetPack 5)",
                         DeviceProfile("Jetson Xavier NX", ((7, 2),), 8.0, 2, "5.x", int4=False), "fp16"),
}
for _name, (_description, _profile, _default) in _JETSON.items():
    register_target(Target(
        name=_name, description=_description, precisions=("fp32", "fp16", "int8"),
        default_precision=_default, backends=JETSON_BACKENDS, opset=JETSON_OPSET,
        quant_schemes=QUANT_SCHEMES, quant_forms=("qdq",), device=_profile))


def is_jetson(target: Target | str) -> bool:
    name = target if isinstance(target, str) else target.name
    return name == "jetson" or name.startswith("jetson-")
