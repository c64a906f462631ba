"""Per-layer handlers, looked up by module type in ``HANDLERS``.

A handler knows one PyTorch layer type: where its weight and bias are, its attributes, how to run
it with a replacement weight, and which ONNX op types it exports to. Supporting a new layer type
is one new entry in ``HANDLERS``; a layer without a handler stays FP32 and is reported.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class LayerHandler:
    """Interface of a quantizable layer type."""

    onnx_op_types: tuple[str, ...] = ()

    def unsupported_reason(self, module: nn.Module) -> Optional[str]:
        """Why this instance cannot be quantized, or None."""
        return None

    def weight(self, module: nn.Module) -> np.ndarray:
        """The weight, float32, output channels first (C_out, ...)."""
        return module.weight.detach().cpu().float().numpy()

    def bias(self, module: nn.Module) -> np.ndarray:
        """The bias (C_out,) float32; zeros for a layer without one."""
        if module.bias is None:
            return np.zeros(module.weight.shape[0], np.float32)
        return module.bias.detach().cpu().float().numpy()

    def attributes(self, module: nn.Module) -> dict[str, Any]:
        """Layer attributes the integer kernels need (stride, padding, ...)."""
        return {}

    def expected_input(self, module: nn.Module) -> str:
        """The input the layer takes, in words, e.g. "(N, 3, H, W) float"."""
        raise NotImplementedError

    def check_input(self, module: nn.Module, shape: tuple[int, ...]) -> bool:
        """Whether a batch of ``shape`` fits the layer."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, attrs: dict) -> torch.Tensor:
        """The layer's computation with the given weight and bias."""
        raise NotImplementedError


class Conv2dHandler(LayerHandler):
    """nn.Conv2d, including depthwise and grouped convolutions."""

    onnx_op_types = ("Conv",)

    def unsupported_reason(self, module):
        if module.padding_mode != "zeros":
            return f"Conv2d padding_mode={module.padding_mode!r}; supported: 'zeros'"
        return None

    def attributes(self, module):
        return {"stride": tuple(module.stride), "padding": module.padding if isinstance(module.padding, str)
                else tuple(module.padding), "dilation": tuple(module.dilation), "groups": module.groups}

    def expected_input(self, module):
        return f"(N, {module.in_channels}, H, W) float"

    def check_input(self, module, shape):
        return len(shape) == 4 and shape[1] == module.in_channels

    def forward(self, x, weight, bias, attrs):
        return F.conv2d(x, weight, bias, attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"])


class LinearHandler(LayerHandler):
    """nn.Linear."""

    onnx_op_types = ("Gemm", "MatMul")

    def expected_input(self, module):
        return f"(N, {module.in_features}) float"

    def check_input(self, module, shape):
        return len(shape) >= 2 and shape[-1] == module.in_features

    def forward(self, x, weight, bias, attrs):
        return F.linear(x, weight, bias)


HANDLERS: dict[type, LayerHandler] = {nn.Conv2d: Conv2dHandler(), nn.Linear: LinearHandler()}


def handler_for(module: nn.Module) -> Optional[LayerHandler]:
    """The handler registered for ``type(module)`` exactly (subclasses may compute differently)."""
    return HANDLERS.get(type(module))


def has_own_weights(module: nn.Module) -> bool:
    """Whether the module holds parameters itself (not only through children)."""
    return any(True for _ in module.parameters(recurse=False))
