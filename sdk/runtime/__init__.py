"""The on-device runtime: needs only NumPy, ONNX Runtime and the native kernels (no PyTorch)."""
from .engine import Engine, load

__all__ = ["Engine", "load"]
