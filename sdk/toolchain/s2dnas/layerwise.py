"""The naive layer-wise early-exit baseline (the paper's "Naive", Fig. 1a): prediction layers
(global average pooling + Linear) attached to intermediate layers of the unchanged static model.

Exits sit at the last layer of each of the first ``stages - 1`` resolutions (for ResNet-20:
after its 28x28 and 14x14 stages). An early exit cannot use the deeper, semantic features, which
is the weakness the channel-wise split addresses. Trained with the same Eq. 3 loss as S2DNAS.
"""
from __future__ import annotations

import copy

import torch
from torch import fx, nn

from ...errors import InputError
from .graph import Plan, analyze


def layerwise_exits(plan: Plan, stages: int = 3) -> list[str]:
    """Site names of the ``stages - 1`` early exits: the last feature map of each of the first
    resolutions, in execution order."""
    last: dict[int, str] = {}
    for layer in plan.layers:
        site = plan.sites[layer.output]
        if site.setting is not None and len(site.shape) == 3:
            last[site.setting] = layer.output
    exits = [last[k] for k in sorted(last)][:stages - 1]
    if len(exits) < stages - 1:
        raise InputError(f"the model has {len(exits)} resolutions with feature maps; "
                         f"{stages - 1} early exits need as many")
    return exits


class LayerwiseExitNet(nn.Module):
    """The static model plus early classifiers. ``forward(x)`` → list of logits, early exits
    first, the original prediction last. ``stage_macs[j]``: MACs of exiting at exit ``j``
    (backbone up to it plus every classifier evaluated so far)."""

    def __init__(self, model: nn.Module, plan: Plan, exits: list[str]):
        super().__init__()
        gm = fx.symbolic_trace(copy.deepcopy(model))
        for m in gm.modules():
            if hasattr(m, "inplace"):
                m.inplace = False  # exit features must survive the rest of the forward
        nodes = {n.name: n for n in gm.graph.nodes}
        output = next(n for n in gm.graph.nodes if n.op == "output")
        output.args = (tuple(nodes[e] for e in exits) + (output.args[0],),)
        gm.recompile()
        self.backbone = gm
        self.exits = list(exits)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(plan.sites[e].shape[0], plan.num_classes)) for e in exits)
        order = [l.output for l in plan.layers]
        head_macs = [plan.sites[e].shape[0] * plan.num_classes for e in exits]
        self.stage_macs = []
        for k, e in enumerate(exits):
            upto = sum(l.macs for l in plan.layers[:order.index(e) + 1])
            self.stage_macs.append(upto + sum(head_macs[:k + 1]))
        self.stage_macs.append(plan.static_macs + sum(head_macs))
        self.static_macs = plan.static_macs
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        *features, logits = self.backbone(x)
        return [head(f) for head, f in zip(self.heads, features)] + [logits]


def build_layerwise(model: nn.Module, stages: int = 3, input_shape=(1, 28, 28)) -> LayerwiseExitNet:
    """The naive baseline for ``model`` with ``stages`` exits (the last is the original one)."""
    plan = analyze(model, input_shape, groups=2)
    return LayerwiseExitNet(model, plan, layerwise_exits(plan, stages))
