"""Reading a static CNN as a list of layers whose channels the S2D split can divide.

``analyze(model, input_shape, groups)`` traces the model with ``torch.fx``, records each tensor's
shape (a *site*), and decides for every site how its channels are divided among stages:

* a dense layer (``Conv2d`` with ``groups=1``, ``Linear``) starts a new split site; sites of the
  same spatial resolution share one *setting* (split points and concat matrix), as in the paper;
* channel-wise layers (BatchNorm, activations, pooling, depthwise conv) keep their input's split;
* a residual add joins two sites, which must then share a setting (they are merged);
* the layer that produces the model output is the prediction layer: it sees every earlier stage;
* the network input is not split (the paper does not split the first layer's input channels).

Each layer type is one entry of ``HANDLERS`` (keyed by module class or function), so supporting a
new layer is a new entry. A layer with no handler, or one a handler refuses (a grouped conv, a
concatenation), raises :class:`TransformError` naming the layer and why.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ...errors import InputError


class TransformError(InputError):
    """The model has a layer the S2D transformation cannot divide into stages."""


@dataclass
class Site:
    """A tensor of the traced model. ``shape`` excludes the batch dimension.

    ``setting`` is the index of the split/concat setting that divides its channels (``None``:
    not split, every stage sees all of it, like the network input). A flattened map keeps its
    map's split; each channel then spans ``scale`` consecutive features.
    """

    name: str
    shape: tuple[int, ...]
    setting: int | None = None
    scale: int = 1

    @property
    def units(self) -> int:
        """Channels the split divides (features / scale)."""
        return self.shape[0] // self.scale


@dataclass
class Layer:
    """One traced operation. ``role``: dense | predict | channelwise | add | flatten."""

    name: str                      # fx node name, unique, a valid identifier
    target: str                    # module path or function name, for messages
    role: str
    inputs: tuple[str, ...]        # site names
    output: str
    module: nn.Module | None = None
    macs: int = 0                  # multiply-accumulates per sample in the static model
    function: Callable | None = None  # for channel-wise functions (torch.relu, ...)


@dataclass
class Setting:
    """A group of sites that share split points and concat matrix (one resolution)."""

    index: int
    description: str               # e.g. "14x14 maps"
    sites: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """The analysed model: layers in execution order, sites, shared settings."""

    layers: list[Layer]
    sites: dict[str, Site]
    settings: list[Setting]
    input_site: str
    input_shape: tuple[int, ...]   # (C, H, W), batch excluded
    num_classes: int
    groups: int
    static_macs: int

    def group_bounds(self, site: str) -> list[int]:
        """Feature offsets of the ``groups + 1`` group boundaries of a split site."""
        s = self.sites[site]
        units, g = s.units, self.groups
        return [round(k * units / g) * s.scale for k in range(g + 1)]


# -- handlers ------------------------------------------------------------------------------------
# A handler returns (role, reason): the reason is None when the layer is supported.
Handler = Callable[[Any], tuple[str, str | None]]


def _conv(m: nn.Conv2d) -> tuple[str, str | None]:
    if m.groups == 1:
        return "dense", None
    if m.groups == m.in_channels == m.out_channels:
        return "channelwise", None  # depthwise: output channel c reads only input channel c
    return "dense", (f"grouped convolution (groups={m.groups}, {m.in_channels}->{m.out_channels} "
                     f"channels) mixes channels within groups the split would cut")


def _fixed(role: str) -> Handler:
    return lambda _m: (role, None)


def _flatten_module(m: nn.Flatten) -> tuple[str, str | None]:
    if m.start_dim != 1 or m.end_dim != -1:
        return "flatten", f"Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}) keeps no channel axis"
    return "flatten", None


HANDLERS: dict[Any, Handler] = {
    nn.Conv2d: _conv,
    nn.Linear: _fixed("dense"),
    nn.BatchNorm1d: _fixed("channelwise"),
    nn.BatchNorm2d: _fixed("channelwise"),
    nn.Flatten: _flatten_module,
    operator.add: _fixed("add"),
    operator.iadd: _fixed("add"),
    torch.add: _fixed("add"),
    torch.flatten: _fixed("flatten"),
    "flatten": _fixed("flatten"),  # the tensor method x.flatten(1)
}
# Parameter-free layers that act on each channel alone keep their input's split.
for _cls in (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Hardswish, nn.GELU, nn.Sigmoid, nn.Tanh,
             nn.Identity, nn.Dropout, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
             nn.AdaptiveMaxPool2d):
    HANDLERS[_cls] = _fixed("channelwise")
for _fn in (torch.relu, nn.functional.relu, nn.functional.relu6, torch.sigmoid):
    HANDLERS[_fn] = _fixed("channelwise")

_WHY_NOT = {
    torch.cat: "concatenates feature maps, so a stage's channels would come from other layers' splits",
    "view": "reshapes features; only flattening (N, C, H, W) -> (N, C*H*W) is supported",
    "reshape": "reshapes features; only flattening (N, C, H, W) -> (N, C*H*W) is supported",
}


def layer_macs(module: nn.Module, out_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates per sample of a Conv2d/Linear with output ``out_shape`` (batch
    excluded), counted as ``sdk.models.count_flops`` does; 0 for other layers."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        n_out = 1
        for d in out_shape:
            n_out *= d
        return n_out * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def add(self, k: int) -> None:
        self.parent.setdefault(k, k)

    def find(self, k: int) -> int:
        while self.parent[k] != k:
            self.parent[k] = self.parent[self.parent[k]]
            k = self.parent[k]
        return k

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _trace(model: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # fx raises TraceError, TypeError, ... for data-dependent code
        raise TransformError(f"{type(model).__name__} cannot be traced by torch.fx (needed to find "
                             f"its layers): {e}") from e
    ShapeProp(gm).propagate(example)
    return gm


def _describe_target(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return f"'{node.target}' ({type(gm.get_submodule(node.target)).__name__})"
    name = getattr(node.target, "__name__", str(node.target))
    return f"'{node.name}' ({name})"


def analyze(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28), groups: int = 8) -> Plan:
    """Trace ``model`` (eval mode, float32 input ``(N, *input_shape)``) into a :class:`Plan`.

    Raises :class:`TransformError` naming the layer when a layer cannot be split: an unknown
    operation, a grouped convolution, a residual add of features split differently, a site with
    fewer channels than ``groups``, or an output not produced by a Linear/Conv prediction layer.
    """
    if groups < 2:
        raise InputError(f"groups must be at least 2, got {groups}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            gm = _trace(model, torch.zeros(2, *input_shape))
    finally:
        model.train(was_training)

    sites: dict[str, Site] = {}
    layers: list[Layer] = []
    uf = _UnionFind()
    resolution_of: dict[tuple, int] = {}     # spatial size -> provisional setting id
    output_node = None
    input_site = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if input_site is not None:
                raise TransformError(f"{type(model).__name__} takes more than one input ('{node.name}')")
            input_site = node.name
            sites[node.name] = Site(node.name, tuple(input_shape), None)
            continue
        if node.op == "output":
            output_node = node
            continue
        if node.op == "get_attr":
            raise TransformError(f"layer '{node.name}' reads the tensor attribute '{node.target}' "
                                 f"directly; the split cannot divide it")
        meta = node.meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            raise TransformError(f"layer {_describe_target(gm, node)} does not produce one tensor")
        shape = tuple(int(d) for d in meta.shape[1:])
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        key = type(module) if module is not None else node.target
        handler = HANDLERS.get(key)
        what = _describe_target(gm, node)
        if handler is None:
            why = _WHY_NOT.get(key, "has no S2D handler (sdk.toolchain.s2dnas.graph.HANDLERS)")
            raise TransformError(f"layer {what} cannot be transformed: it {why}")
        role, reason = handler(module)
        if reason:
            raise TransformError(f"layer {what} cannot be transformed: {reason}")
        tensor_args = [a for a in node.args if isinstance(a, fx.Node)]
        if any(isinstance(a, fx.Node) for a in node.kwargs.values()):
            raise TransformError(f"layer {what} takes tensor keyword arguments; not supported")
        inputs = tuple(a.name for a in tensor_args)
        if role != "add" and len(inputs) != 1:
            raise TransformError(f"layer {what} takes {len(inputs)} tensors; expected one")
        src = sites[inputs[0]] if inputs else None
        if role == "dense":
            # A new split site; sites of one spatial size share a provisional setting.
            res = shape[1:] if len(shape) == 3 else ("vector",)
            if res not in resolution_of:
                resolution_of[res] = len(resolution_of)
                uf.add(resolution_of[res])
            site = Site(node.name, shape, resolution_of[res])
        elif role == "channelwise":
            site = Site(node.name, shape, src.setting, src.scale)
        elif role == "flatten":
            if len(src.shape) == 1:
                site = Site(node.name, shape, src.setting, src.scale)
            else:
                spatial = 1
                for d in src.shape[1:]:
                    spatial *= d
                site = Site(node.name, shape, src.setting, src.scale * spatial)
        else:  # add
            if len(inputs) != 2:
                raise TransformError(f"layer {what} adds {len(inputs)} tensors; a residual add takes two")
            a, b = (sites[n] for n in inputs)
            if a.shape != b.shape or a.scale != b.scale:
                raise TransformError(f"residual add {what} joins tensors of shapes {a.shape} and {b.shape}")
            if (a.setting is None) != (b.setting is None):
                raise TransformError(f"residual add {what} joins the unsplit network input with a "
                                     f"split feature map; the stages could not keep their channels apart")
            if a.setting is not None:
                uf.union(a.setting, b.setting)  # both sides must divide channels alike
            site = Site(node.name, shape, a.setting, a.scale)
        sites[node.name] = site
        layers.append(Layer(node.name, what, role, inputs, node.name, module,
                            layer_macs(module, shape) if module is not None else 0,
                            node.target if node.op == "call_function" else None))

    if output_node is None or input_site is None:
        raise TransformError(f"{type(model).__name__}: traced graph has no input or output")
    out = output_node.args[0]
    if not isinstance(out, fx.Node):
        raise TransformError(f"{type(model).__name__} returns {type(out).__name__}; S2D needs one "
                             f"logits tensor")
    last = next(l for l in layers if l.output == out.name)
    if last.role != "dense" or len(sites[out.name].shape) != 1:
        raise TransformError(f"the model output comes from layer {last.target}, not from a Linear "
                             f"prediction layer; S2D attaches each stage's classifier there")
    last.role = "predict"
    if sites[last.inputs[0]].setting is None:
        raise TransformError(f"the prediction layer {last.target} reads the unsplit input: "
                             f"the model has no hidden layer to split")
    sites[out.name].setting = None

    # Renumber merged settings in order of first appearance and check group sizes.
    order: dict[int, int] = {}
    settings: list[Setting] = []
    for layer in layers:
        site = sites[layer.output]
        if site.setting is None:
            continue
        root = uf.find(site.setting)
        if root not in order:
            order[root] = len(order)
            dims = site.shape[1:] if len(site.shape) == 3 and site.scale == 1 else None
            desc = f"{dims[0]}x{dims[1]} maps" if dims else "vectors"
            settings.append(Setting(order[root], desc))
        site.setting = order[root]
        settings[site.setting].sites.append(site.name)
        if site.units < groups:
            raise TransformError(f"layer {layer.target} has {site.units} channels, fewer than the "
                                 f"{groups} groups the split divides them into")
    num_classes = sites[out.name].shape[0]
    static = sum(l.macs for l in layers)
    return Plan(layers, sites, settings, input_site, tuple(input_shape), num_classes, groups, static)
