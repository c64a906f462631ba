"""``sdk.quantize``: one entry point for PyTorch models and existing ONNX models."""
from __future__ import annotations

import os
from typing import Any


def quantize(model, calibration_data, **options: Any):
    """Post-training quantization (PWLQ by default, ``scheme="uniform"`` for the baseline).

    ``model``: a ``torch.nn.Module`` → a ``QuantizedModel`` simulating the integer arithmetic
    exactly in PyTorch; or an ONNX model (path or ``onnx.ModelProto``) → a ``QuantizedOnnx``,
    calibrated by running ONNX Runtime. Both carry per-layer quantization tables and deploy with
    ``sdk.deploy``. ``options``: ``scheme``, ``weight_bits`` (2–8), ``breakpoints`` (1–3),
    ``breakpoint_method``, ``per_channel``, ``bias_correction``, ``act_bits``,
    ``act_calibration``, ``skip_first_layer``, ``progress`` (see ``sdk.toolchain.quant``).
    An S2DNAS multi-stage network is quantized whole (the calibration data runs through every
    stage) and keeps its stages, so it deploys as one quantized graph per stage.
    """
    if isinstance(model, (str, os.PathLike)) or type(model).__name__ == "ModelProto":
        from .quant.onnx_input import quantize_onnx

        return quantize_onnx(model, calibration_data, **options)
    from .quant.api import quantize as quantize_torch

    from .s2dnas.packaging import is_dynamic

    qmodel = quantize_torch(model, calibration_data, **options)
    if is_dynamic(model):
        from .s2dnas.quantized import restructure

        return restructure(qmodel, model)
    return qmodel
