"""Multiply-accumulate count of a model's conv and linear layers, measured with forward hooks."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    # Each output element is a dot product over (C_in / groups) * kH * kW inputs.
    kh, kw = module.kernel_size
    return output.numel() * (module.in_channels // module.groups) * kh * kw


def _linear_macs(module: nn.Linear, output: torch.Tensor) -> int:
    return output.numel() * module.in_features


_MAC_COUNTERS = {nn.Conv2d: _conv_macs, nn.Linear: _linear_macs}


def count_flops(model: nn.Module, input_shape: Sequence[int] = (1, 1, 28, 28)) -> int:
    """MACs (multiply-accumulates) of all Conv2d and Linear layers for one forward pass of a
    ``float32`` tensor of ``input_shape`` (batch included, so MACs scale with N).

    Biases, BatchNorm, activations, pooling and adds are not counted. The model is run once in
    eval mode under ``torch.no_grad`` and put back in its previous mode.
    """
    total = 0

    def hook(module: nn.Module, _inputs, output) -> None:
        nonlocal total
        total += _MAC_COUNTERS[type(module)](module, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if type(m) in _MAC_COUNTERS]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros(tuple(input_shape), dtype=torch.float32, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return int(total)
