"""The S2D transformation: a static CNN + an :class:`Architecture` → a multi-stage network.

Stage ``j`` is a thin copy of the static network that computes only its own channel groups of
every split site. Its dense layers read their own input channels plus, where the concat matrix
says so, the same site's channels of earlier stages, which those stages computed already and
left in a *feature cache*; connections from later to earlier stages do not exist. Its prediction
layer reads the pooled features of every stage up to ``j``. Weights are slices of the static
model's weights: stage ``j``'s layer keeps ``W[own outputs, own + reused inputs]``.

``MultiStageNet.forward(x)`` runs the stages one after another and returns every stage's logits
(for the multi-stage loss); ``infer(x)`` exits samples early as the runtime does.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ...errors import InputError
from ...runtime.dynamic import check_thresholds
from .arch import Architecture
from .graph import Plan, TransformError, analyze, layer_macs


def feature_name(stage: int, site: str) -> str:
    """Cache key and ONNX tensor name of ``stage``'s channels of ``site`` (stages 0-based)."""
    return f"s{stage}.{site}"


# -- weight slicing: one entry per layer type with parameters ----------------------------------
def _slice_conv(m: nn.Conv2d, out_idx: torch.Tensor, in_idx: torch.Tensor | None) -> nn.Conv2d:
    depthwise = in_idx is None
    n_in = len(out_idx) if depthwise else len(in_idx)
    new = nn.Conv2d(n_in, len(out_idx), m.kernel_size, m.stride, m.padding, m.dilation,
                    groups=len(out_idx) if depthwise else 1, bias=m.bias is not None,
                    padding_mode=m.padding_mode, device="meta")  # no random init: weights are copied
    w = m.weight.detach()[out_idx]
    new.weight = nn.Parameter((w if depthwise else w[:, in_idx]).clone())
    if m.bias is not None:
        new.bias = nn.Parameter(m.bias.detach()[out_idx].clone())
    return new


def _slice_linear(m: nn.Linear, out_idx: torch.Tensor, in_idx: torch.Tensor | None) -> nn.Linear:
    in_idx = torch.arange(m.in_features) if in_idx is None else in_idx
    new = nn.Linear(len(in_idx), len(out_idx), bias=m.bias is not None, device="meta")
    new.weight = nn.Parameter(m.weight.detach()[out_idx][:, in_idx].clone())
    if m.bias is not None:
        new.bias = nn.Parameter(m.bias.detach()[out_idx].clone())
    return new


def _slice_bn(m: nn.modules.batchnorm._BatchNorm, out_idx: torch.Tensor, _in) -> nn.Module:
    new = type(m)(len(out_idx), eps=m.eps, momentum=m.momentum, affine=m.affine,
                  track_running_stats=m.track_running_stats)
    if m.affine:
        new.weight.data.copy_(m.weight.detach()[out_idx])
        new.bias.data.copy_(m.bias.detach()[out_idx])
    if m.track_running_stats:
        new.running_mean.copy_(m.running_mean[out_idx])
        new.running_var.copy_(m.running_var[out_idx])
        new.num_batches_tracked.copy_(m.num_batches_tracked)
    return new


SLICERS: dict[type, Callable[..., nn.Module]] = {
    nn.Conv2d: _slice_conv, nn.Linear: _slice_linear,
    nn.BatchNorm1d: _slice_bn, nn.BatchNorm2d: _slice_bn,
}


class _Function(nn.Module):
    """A channel-wise function of the traced model (``torch.relu``, ...) as a layer."""

    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _copy_stateless(m: nn.Module) -> nn.Module:
    new = copy.deepcopy(m)
    if hasattr(new, "inplace"):
        new.inplace = False  # a cached feature must not be overwritten by a later in-place op
    return new


@dataclass(frozen=True)
class Step:
    """One layer of a stage program. ``reuse``: earlier stages concatenated before own input."""

    role: str
    name: str
    inputs: tuple[str, ...]
    output: str
    reuse: tuple[int, ...] = ()


class Stage(nn.Module):
    """Stage ``index``: its layers and the program that runs them.

    ``forward(x, cache)``: ``x`` the network input ``(N, C, H, W)``; ``cache`` maps
    :func:`feature_name` keys of earlier stages to tensors. Writes the features later stages
    reuse (``exports``) into ``cache`` and returns the stage's logits ``(N, classes)``.
    """

    def __init__(self, index: int, steps: list[Step], layers: dict[str, nn.Module], input_site: str,
                 output_site: str):
        super().__init__()
        self.index = index
        self.steps = steps
        self.layers = nn.ModuleDict(layers)
        self.input_site = input_site
        self.output_site = output_site
        self.exports: list[str] = []   # sites of this stage that later stages read
        self.reuses: list[str] = []    # feature_name keys this stage reads from earlier stages

    def forward(self, x: torch.Tensor, cache: dict[str, torch.Tensor]) -> torch.Tensor:
        values = {self.input_site: x}
        for step in self.steps:
            if step.role == "add":
                out = values[step.inputs[0]] + values[step.inputs[1]]
            elif step.role == "flatten":
                out = torch.flatten(values[step.inputs[0]], 1)
            else:
                h = values[step.inputs[0]]
                if step.reuse:
                    h = torch.cat([cache[feature_name(i, step.inputs[0])] for i in step.reuse] + [h], 1)
                out = self.layers[step.name](h)
            values[step.output] = out
        for site in self.exports:
            cache[feature_name(self.index, site)] = values[site]
        return values[self.output_site]


class MultiStageNet(nn.Module):
    """A transformed network: ``stages[j]`` runs after ``stages[:j]`` and reuses their features.

    ``forward(x)`` → list of ``(N, classes)`` logits, one per stage. ``thresholds`` (``stages - 1``
    top-1 softmax confidences in [0, 1]) decide exits in :meth:`infer` and in deployed bundles.
    ``stage_macs[j]``: multiply-accumulates per sample of exiting at stage ``j`` (stages ``0..j``
    run); ``static_macs``: of the static model.
    """

    def __init__(self, plan: Plan, arch: Architecture, stages: list[Stage], own_macs: list[int]):
        super().__init__()
        self.plan = plan
        self.arch = arch
        self.stages = nn.ModuleList(stages)
        self.input_shape = plan.input_shape
        self.static_macs = plan.static_macs
        self.thresholds: list[float] = [1.0] * (len(stages) - 1)
        self.stage_macs: list[int] = [int(sum(own_macs[:j + 1])) for j in range(len(stages))]

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        cache: dict[str, torch.Tensor] = {}
        return [stage(x, cache) for stage in self.stages]

    def set_thresholds(self, thresholds) -> None:
        self.thresholds = check_thresholds(thresholds, self.num_stages)

    @torch.no_grad()
    def infer(self, x: torch.Tensor, thresholds=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Dynamic inference in PyTorch: ``(logits (N, classes), exit_stage (N,) int8)``.

        Samples whose top-1 softmax reaches stage ``j``'s threshold stop there; the rest (only
        they, with their cached features) go on. The last stage answers for all that remain.
        """
        t = self.thresholds if thresholds is None else check_thresholds(thresholds, self.num_stages)
        if self.training:
            raise InputError("infer() runs the network in eval mode; call net.eval() first")
        n = x.shape[0]
        logits = torch.empty(n, self.plan.num_classes)
        exit_stage = torch.empty(n, dtype=torch.int8)
        active = torch.arange(n)
        cache: dict[str, torch.Tensor] = {}
        for j, stage in enumerate(self.stages):
            out = stage(x[active], cache)
            # top-1 softmax computed as the runtime does (sdk.runtime.dynamic._confidence)
            conf = 1.0 / torch.exp(out - out.amax(1, keepdim=True)).sum(1)
            done = torch.ones(len(active), dtype=torch.bool) if j == self.num_stages - 1 else conf >= t[j]
            logits[active[done]] = out[done]
            exit_stage[active[done]] = j
            keep = ~done
            if not keep.any():
                break
            active = active[keep]
            cache = {k: v[keep] for k, v in cache.items()}
        return logits, exit_stage

    def describe(self) -> dict:
        return {"architecture": self.arch.to_dict(), "thresholds": list(self.thresholds),
                "stage_macs": list(self.stage_macs), "static_macs": self.static_macs,
                "settings": [s.description for s in self.plan.settings]}


def _ranges(plan: Plan, arch: Architecture, site: str, stages) -> torch.Tensor:
    """Feature indices of ``site`` owned by ``stages``, in stage order."""
    s = plan.sites[site]
    if s.setting is None:
        return torch.arange(s.shape[0])
    bounds = plan.group_bounds(site)
    parts = []
    for i in stages:
        g0, g1 = arch.group_range(s.setting, i)
        parts.append(torch.arange(bounds[g0], bounds[g1]))
    return torch.cat(parts)


def transform(model: nn.Module, arch: Architecture, *, plan: Plan | None = None,
              input_shape: tuple[int, ...] = (1, 28, 28)) -> MultiStageNet:
    """Build the multi-stage network of ``model`` under ``arch``, weights sliced from ``model``.

    ``plan``: the :func:`~.graph.analyze` result for ``model`` (computed when omitted, with
    ``arch.groups`` groups and ``input_shape``). Raises :class:`TransformError` naming the layer
    when ``model`` cannot be split, :class:`InputError` when ``arch`` does not fit the plan.
    """
    plan = plan or analyze(model, input_shape, arch.groups)
    if arch.groups != plan.groups:
        raise InputError(f"architecture has {arch.groups} groups, the plan {plan.groups}")
    if arch.num_settings != len(plan.settings):
        raise InputError(f"architecture has {arch.num_settings} settings but {type(model).__name__} "
                         f"has {len(plan.settings)} ({', '.join(s.description for s in plan.settings)})")
    stages, own_macs = [], []
    for j in range(arch.stages):
        steps, layers, macs = [], {}, 0
        for layer in plan.layers:
            if layer.role in ("add", "flatten"):
                steps.append(Step(layer.role, layer.name, layer.inputs, layer.output))
                continue
            src = plan.sites[layer.inputs[0]]
            out_idx = _ranges(plan, arch, layer.output, [j])
            reuse: tuple[int, ...] = ()
            m = layer.module
            if layer.role == "predict":
                reuse = tuple(range(j)) if src.setting is not None else ()
            elif layer.role == "dense" and src.setting is not None:
                reuse = tuple(arch.reused_stages(src.setting, j))
            if layer.role in ("dense", "predict"):
                in_idx = _ranges(plan, arch, layer.inputs[0], [*reuse, j])
                new = SLICERS[type(m)](m, out_idx, in_idx)
            elif m is None:
                new = _Function(layer.function)
            elif type(m) in SLICERS:  # channel-wise with parameters: BatchNorm, depthwise conv
                new = SLICERS[type(m)](m, out_idx, None)
            else:
                new = _copy_stateless(m)
            layers[layer.name] = new
            steps.append(Step(layer.role, layer.name, layer.inputs, layer.output, reuse))
            macs += layer_macs(new, (len(out_idx), *plan.sites[layer.output].shape[1:]))
        out_site = plan.layers[-1].output
        stages.append(Stage(j, steps, layers, plan.input_site, out_site))
        own_macs.append(macs)
    # Each stage exports the sites a later stage concatenates.
    for stage in stages:
        for step in stage.steps:
            for i in step.reuse:
                key = feature_name(i, step.inputs[0])
                if key not in stage.reuses:
                    stage.reuses.append(key)
                if step.inputs[0] not in stages[i].exports:
                    stages[i].exports.append(step.inputs[0])
    net = MultiStageNet(plan, arch, stages, own_macs)
    net.train(model.training)
    return net


__all__ = ["MultiStageNet", "Stage", "Step", "transform", "feature_name", "check_thresholds",
           "TransformError", "SLICERS"]
