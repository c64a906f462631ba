"""The toolchain: export, quantization (PWLQ), dynamic exits (S2DNAS), engine building.

Needs PyTorch (``pip install prism-sdk[toolchain]``); the runtime does not import it.
"""
from .deploy import deploy
from .export import ExportError, export_onnx
from .quantize import quantize

__all__ = ["deploy", "quantize", "export_onnx", "ExportError"]
