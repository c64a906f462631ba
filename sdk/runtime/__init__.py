"""The on-device runtime: needs only NumPy, ONNX Runtime and the native kernels (no PyTorch)."""
from .embed import EngineClosed, EngineStats
from .engine import Engine, load
from .dynamic import DynamicEngine, DynamicResult  # noqa: F401  (registers the multi-stage S2DNAS engine)

__all__ = ["Engine", "EngineClosed", "EngineStats", "load"]
