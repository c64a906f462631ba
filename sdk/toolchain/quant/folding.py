"""Batch-norm folding (paper Sect. 5: "we always apply batch normalization folding").

``fold_batch_norms`` traces the model with torch.fx, finds every Conv2d -> BatchNorm2d and
Linear -> BatchNorm1d pair where the layer's output feeds only the batch norm, folds the
normalisation into the layer's weight and bias and removes the batch norm:

    W' = W * g / sqrt(var + eps)   (per output channel)
    b' = (b - mean) * g / sqrt(var + eps) + beta
"""
from __future__ import annotations

import copy

import torch
import torch.fx
from torch import nn

from ...errors import PrismError

# layer type -> the batch-norm type that may follow it
FOLDABLE = {nn.Conv2d: nn.BatchNorm2d, nn.Linear: nn.BatchNorm1d}


def fold_batch_norms(model: nn.Module) -> tuple[torch.fx.GraphModule, list[str]]:
    """A folded copy of ``model`` in eval mode and the names of the batch norms folded away.

    The input model is not modified. Raises PrismError if torch.fx cannot trace the model.
    """
    source = copy.deepcopy(model).eval()
    try:
        gm = torch.fx.symbolic_trace(source)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, NotImplementedError...)
        raise PrismError(f"batch-norm folding needs a model torch.fx can trace; "
                         f"{type(model).__name__} failed: {exc}") from exc
    modules = dict(gm.named_modules())
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    folded = []
    for node in list(gm.graph.nodes):
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)) or not node.args:
            continue
        producer = node.args[0]
        layer = modules.get(producer.target) if isinstance(producer, torch.fx.Node) and producer.op == "call_module" else None
        if not _can_fold(layer, bn) or len(producer.users) != 1 or calls[producer.target] != 1:
            continue
        _fold_into(layer, bn)
        node.replace_all_uses_with(producer)
        gm.graph.erase_node(node)
        if calls[node.target] == 1:
            gm.delete_submodule(node.target)
        calls[node.target] -= 1
        folded.append(node.target)
    gm.graph.lint()
    gm.recompile()
    return gm.eval(), folded


def _can_fold(layer, bn) -> bool:
    bn_type = next((b for t, b in FOLDABLE.items() if type(layer) is t), None)
    return (bn_type is not None and type(bn) is bn_type and bn.running_mean is not None
            and bn.num_features == layer.weight.shape[0])


@torch.no_grad()
def _fold_into(layer: nn.Module, bn: nn.Module) -> None:
    """Fold ``bn`` into ``layer``'s weight and bias in float64, stored back as float32."""
    w = layer.weight.double()
    gamma = bn.weight.double() if bn.affine else torch.ones_like(bn.running_mean, dtype=torch.float64)
    beta = bn.bias.double() if bn.affine else torch.zeros_like(bn.running_mean, dtype=torch.float64)
    factor = gamma / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(factor)
    layer.weight.copy_((w * factor.reshape((-1,) + (1,) * (w.dim() - 1))).to(layer.weight.dtype))
    new_bias = ((bias - bn.running_mean.double()) * factor + beta).to(layer.weight.dtype)
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias)
    else:
        layer.bias.copy_(new_bias)
