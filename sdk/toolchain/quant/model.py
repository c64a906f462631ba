"""``QuantizedModel``: a PyTorch module that simulates the quantized arithmetic exactly.

Each quantized layer is replaced by a ``QuantizedLayer`` that fake-quantizes its input activation
with the layer's (s, zp) and computes with the dequantized, bias-corrected weight of its table.
The rest of the (batch-norm folded) model runs in FP32.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from .config import QuantConfig
from .layers import LayerHandler
from ...formats.layer_table import LayerQuantTable


class QuantizedLayer(nn.Module):
    """A Conv2d/Linear computing handler(fake_quant(x), W_bc, bias) from its ``LayerQuantTable``."""

    def __init__(self, table: LayerQuantTable, handler: LayerHandler, act_quantizer, attrs: dict):
        super().__init__()
        self.table_name = table.name
        self.handler = handler
        self.act_quantizer = act_quantizer
        self.attrs = attrs
        self.register_buffer("weight", torch.from_numpy(table.dequantized_weight().astype(np.float32)))
        self.register_buffer("bias", torch.from_numpy(table.bias.astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.handler.forward(self.act_quantizer.fake_quantize(x), self.weight, self.bias, self.attrs)

    def extra_repr(self) -> str:
        return f"{self.table_name}, weight={tuple(self.weight.shape)}, act={self.act_quantizer}"


class QuantizedModel(nn.Module):
    """The quantized model. Attributes:

    model        the folded model with ``QuantizedLayer``s in place of the quantized layers
    float_model  the folded FP32 model the tables were computed from (what the export rewrites)
    tables       OrderedDict layer name -> LayerQuantTable, in execution order
    skipped      layer name -> why it stays FP32
    weight_mse   layer name -> {"uniform": mse, "pwlq": mse}, same bits, before bias correction
    config       the QuantConfig used
    """

    def __init__(self, model: nn.Module, float_model: nn.Module, tables: "OrderedDict[str, LayerQuantTable]",
                 skipped: dict[str, str], weight_mse: dict[str, dict[str, float]], config: QuantConfig):
        super().__init__()
        self.model = model
        self.float_model = float_model
        self.tables = tables
        self.skipped = skipped
        self.weight_mse = weight_mse
        self.config = config
        self.eval()

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def summary(self) -> str:
        """A table per quantized layer: share of weights in the center region and the weight MSE of
        uniform vs PWLQ at the same bits; then the layers kept in FP32 and why."""
        head = f"{'layer':<28}{'type':<8}{'center':>8}{'mse uniform':>14}{'mse pwlq':>12}{'pwlq/uni':>10}" \
               f"{'act scale':>12}{'zp':>5}"
        lines = [f"scheme={self.config.scheme} weight_bits={self.config.weight_bits} "
                 f"breakpoints={self.config.breakpoints} method={self.config.breakpoint_method} "
                 f"act_bits={self.config.act_bits} act_calibration={self.config.act_calibration}", head]
        for name, t in self.tables.items():
            mse = self.weight_mse[name]
            ratio = mse["pwlq"] / mse["uniform"] if mse["uniform"] > 0 else float("nan")
            lines.append(f"{name:<28}{t.layer_type:<8}{t.center_share:>8.3f}{mse['uniform']:>14.3e}"
                         f"{mse['pwlq']:>12.3e}{ratio:>10.3f}{t.act_scale:>12.4g}{t.act_zero_point:>5d}")
        for name, reason in self.skipped.items():
            lines.append(f"{name:<28}FP32: {reason}")
        return "\n".join(lines)
