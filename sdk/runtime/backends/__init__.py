"""Backend registry. A backend is one module implementing :class:`~.base.Backend`.

Adding a backend (TensorRT, the native integer kernels) is one new module plus one line here.
"""
from __future__ import annotations

from ...errors import InputError
from .base import Backend, BackendUnavailable
from .native import NativeBackend
from .ort import OnnxRuntimeBackend

_REGISTRY: dict[str, type[Backend]] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    _REGISTRY[cls.name] = cls
    return cls


def get_backend(name: str) -> type[Backend]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown backend '{name}' (known: {', '.join(sorted(_REGISTRY))})") from None


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def available_backends() -> dict[str, str]:
    """Every registered backend → "" if it can run here, else the reason it cannot."""
    return {name: cls.available()[1] for name, cls in sorted(_REGISTRY.items())}


register_backend(OnnxRuntimeBackend)
register_backend(NativeBackend)
from . import tensorrt as _tensorrt  # noqa: E402,F401  (registers tensorrt + the ONNX Runtime GPU fallbacks)

__all__ = ["Backend", "BackendUnavailable", "register_backend", "get_backend", "backend_names",
           "available_backends"]
