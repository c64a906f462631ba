"""TensorRT toolchain: what TensorRT accepts, and how a bundle's ONNX becomes an engine.

    lint        names every node TensorRT 10's ONNX parser would reject or run in a plugin
    fp16        FP32 ONNX → FP16 ONNX (precision by explicit types, for strongly typed networks)
    qdq         Prism's QDQ form → TensorRT's: symmetric int8 activations, single-DQ weights
    engine      build (Builder → OnnxParser → BuilderConfig → build_serialized_network) and the
                engine cache beside the bundle, keyed by TensorRT version, GPU and precision

Only ``engine`` needs the ``tensorrt`` package, and only when it builds; everything else is ONNX.
"""
from .lint import Finding, LintReport, lint_model

__all__ = ["Finding", "LintReport", "lint_model"]
