"""``quantize``: post-training quantization of a PyTorch model (paper: PWLQ, Fang et al. 2020).

    qmodel = quantize(model, calibration_batches, scheme="pwlq", weight_bits=4)
    print(qmodel.summary())
    logits = qmodel(x)                      # simulates the quantized arithmetic exactly

Steps: fold batch norms (``folding``), run the calibration data through the folded FP32 model
collecting each quantized layer's input range (``calibration``), quantize each layer's weights
per output channel with bias correction (``weights``), and build the simulation
(``QuantizedModel``) and its per-layer tables (``LayerQuantTable``).
"""
from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from typing import Iterable, Iterator, Union

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ...errors import InputError, PrismError
from .activation import PwlqActivation, activation_quantizer
from .calibration import Calibrator, create_calibrator
from .config import QuantConfig
from .folding import fold_batch_norms
from .layers import HANDLERS, handler_for, has_own_weights
from .model import QuantizedLayer, QuantizedModel
from ...formats.layer_table import LayerQuantTable
from .weights import quantize_weight

CalibrationData = Union[torch.Tensor, np.ndarray, Iterable]
_CHUNK = 64  # a single calibration tensor is run in chunks of this many samples


def quantize(model: nn.Module, calibration_data: CalibrationData, scheme: str = "pwlq", weight_bits: int = 4,
             breakpoints: int = 1, breakpoint_method: str = "gaussian_closed", per_channel: bool = True,
             bias_correction: bool = True, act_bits: int = 8, act_calibration: str = "topk_median",
             act_scheme: str = "uniform", skip_first_layer: bool = False, progress: bool = True) -> QuantizedModel:
    """Quantize ``model``'s Conv2d and Linear layers (weights and their input activations).

    calibration_data: one float tensor/array (N, C, H, W) (or (N, features) for an MLP), or an
    iterable of such batches; a batch may be a (inputs, targets) tuple, as a DataLoader yields.
    scheme: weight scheme, "pwlq" or "uniform"; weight_bits, act_bits: 2..8; breakpoints: 1..3.
    breakpoint_method: "gaussian_closed", "laplacian_closed", "gaussian_expected",
    "laplacian_expected" or "empirical" (see ``breakpoints``).
    act_calibration: "topk_median" (k=10), "percentile" (99.99) or "minmax".
    Layers without a handler (``layers.HANDLERS``) stay FP32 and are listed in ``.skipped``.
    """
    config = QuantConfig(scheme, weight_bits, breakpoints, breakpoint_method, per_channel, bias_correction,
                         act_bits, act_calibration, act_scheme, skip_first_layer)
    skipped: dict[str, str] = {}
    try:
        folded, folded_bns = fold_batch_norms(model)
    except PrismError as exc:
        warnings.warn(f"{exc}; batch norms stay unfolded (FP32)", stacklevel=2)
        folded, folded_bns = copy.deepcopy(model).eval(), []

    candidates: "OrderedDict[str, nn.Module]" = OrderedDict()
    for name, module in folded.named_modules():
        handler = handler_for(module)
        reason = handler.unsupported_reason(module) if handler else None
        if handler and not reason:
            candidates[name] = module
        elif reason:
            skipped[name] = reason
        elif has_own_weights(module):
            skipped[name] = _why_unsupported(module)
    if not candidates:
        raise InputError(f"{type(model).__name__} has no layer quantize() supports; supported types: "
                         f"{', '.join(t.__name__ for t in HANDLERS)}")

    calibrators = _calibrate(model, folded, folded_bns, candidates, calibration_data, config, progress)
    order = list(calibrators)  # execution order
    for name in candidates:
        if name not in order:
            skipped[name] = "not executed on the calibration data"
    if skip_first_layer:
        skipped[order.pop(0)] = "first layer kept in FP32 (skip_first_layer=True)"

    simulated = copy.deepcopy(folded)
    tables: "OrderedDict[str, LayerQuantTable]" = OrderedDict()
    weight_mse: dict[str, dict[str, float]] = {}
    for name in tqdm(order, desc="quantize weights", disable=not progress, leave=False):
        module, handler = candidates[name], handler_for(candidates[name])
        lw = quantize_weight(handler.weight(module), config.scheme, config.weight_bits, config.breakpoints,
                             config.breakpoint_method, config.per_channel, config.bias_correction)
        act = activation_quantizer(calibrators[name], config.act_scheme, config.act_bits,
                                   config.breakpoint_method)
        attrs = handler.attributes(module)
        table = _table(name, type(module).__name__, config, lw, handler.bias(module), act, attrs)
        tables[name] = table
        weight_mse[name] = lw.mse
        _set_submodule(simulated, name, QuantizedLayer(table, handler, act, attrs))
    return QuantizedModel(simulated, folded, tables, skipped, weight_mse, config)


def _calibrate(model, folded, folded_bns, candidates, data, config, progress) -> "OrderedDict[str, Calibrator]":
    """Run the calibration batches through the folded model; each quantizable layer's calibrator
    collects its input. Returns the calibrators in the order their layers first ran."""
    calibrators: "OrderedDict[str, Calibrator]" = OrderedDict()
    batch_count = 0
    first_name, direct = _first_layer(folded, candidates)
    first = candidates[first_name]
    expected = f"{handler_for(first).expected_input(first)} (the input of the first layer " \
               f"'{first_name}', {type(first).__name__})"

    def hook(name):
        def collect(_module, inputs):
            if name not in calibrators:
                calibrators[name] = create_calibrator(config.act_calibration)
            calibrators[name].collect(inputs[0].detach().cpu().numpy())
        return collect

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in candidates.items()]
    try:
        with torch.no_grad():
            batches = _batches(data, first if direct else None, expected)
            for i, batch in enumerate(tqdm(batches, desc="calibrate", disable=not progress, leave=False,
                                           total=_len(data))):
                batch_count += 1
                try:
                    out = folded(batch)
                except (RuntimeError, ValueError, IndexError, TypeError) as exc:
                    raise InputError(f"calibration batch of shape {tuple(batch.shape)} does not run through "
                                     f"{type(model).__name__} ({exc}); expected {expected}") from exc
                if i == 0 and folded_bns:
                    _check_folding(model, batch, out, folded_bns)
    finally:
        for h in handles:
            h.remove()
    if not batch_count:
        raise InputError(f"calibration_data holds no batch; expected a float tensor/ndarray {expected} "
                         f"or an iterable of them")
    if not calibrators:
        raise InputError(f"no quantizable layer of {type(model).__name__} ran on the calibration data")
    return calibrators


def _batches(data, first_layer, expected: str) -> Iterator[torch.Tensor]:
    """Float32 tensors from ``data``. Each must be floating point; its shape is checked against
    ``first_layer`` when that layer takes the model input directly (else the run itself checks)."""
    if isinstance(data, (torch.Tensor, np.ndarray)):
        whole = _as_batch(data, first_layer, expected)
        yield from torch.split(whole, _CHUNK)
        return
    if not isinstance(data, Iterable):
        raise InputError(f"calibration_data is a {type(data).__name__}; expected a tensor/ndarray {expected} "
                         f"or an iterable of them")
    for item in data:
        if isinstance(item, (tuple, list)) and item:
            item = item[0]
        yield _as_batch(item, first_layer, expected)


def _as_batch(x, layer, expected) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise InputError(f"calibration_data has dtype {x.dtype}; expected {expected}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise InputError(f"calibration batch is a {type(x).__name__}; expected a tensor/ndarray {expected}")
    if not x.is_floating_point():
        raise InputError(f"calibration_data has dtype {x.dtype}; expected {expected}")
    if layer is not None and not handler_for(layer).check_input(layer, tuple(x.shape)):
        raise InputError(f"calibration_data has shape {tuple(x.shape)}; expected {expected}")
    return x.detach().cpu().float()


def _len(data):
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return -(-len(data) // _CHUNK)
    try:
        return len(data)
    except TypeError:
        return None


def _first_layer(folded: nn.Module, candidates) -> tuple[str, bool]:
    """The first quantizable layer in graph order (fx) or else in registration order, and whether
    it takes the model input directly (then its expected input shape is the model's)."""
    if isinstance(folded, torch.fx.GraphModule):
        for node in folded.graph.nodes:
            if node.op == "call_module" and node.target in candidates:
                source = node.args[0] if node.args else None
                return node.target, isinstance(source, torch.fx.Node) and source.op == "placeholder"
    return next(iter(candidates)), False


def _check_folding(model, batch, folded_out, folded_bns) -> None:
    """Batch-norm folding must not change the model's output (guards unusual layer/BN layouts)."""
    with torch.no_grad():
        ref = copy.deepcopy(model).eval()(batch)
    if isinstance(ref, torch.Tensor) and isinstance(folded_out, torch.Tensor):
        tol = 1e-3 * (float(ref.abs().max()) + 1e-6)
        if ref.shape != folded_out.shape or float((ref - folded_out).abs().max()) > tol:
            raise PrismError(f"batch-norm folding of {', '.join(folded_bns)} changed the model output; "
                             f"the batch norm does not normalise the preceding layer's output channels")


def _why_unsupported(module: nn.Module) -> str:
    kind = type(module).__name__
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return f"{kind} not folded (it does not directly follow a Conv2d/Linear used once); runs in FP32"
    return f"{kind} has no quantization handler (supported: {', '.join(t.__name__ for t in HANDLERS)}); runs in FP32"


def _table(name, layer_type, config: QuantConfig, lw, bias, act, attrs) -> LayerQuantTable:
    q = lw.quantized
    table = LayerQuantTable(
        name=name, layer_type=layer_type, scheme=config.scheme, weight_bits=config.weight_bits,
        breakpoint_method=config.breakpoint_method if config.scheme == "pwlq" else None,
        per_channel=config.per_channel, codes=q.codes, regions=q.regions, scales=q.scales,
        bc_scale=lw.bc_scale.astype(np.float32), bc_shift=lw.bc_shift.astype(np.float32),
        bias=np.asarray(bias, np.float32), act_bits=config.act_bits, act_scheme=config.act_scheme,
        stride=attrs.get("stride"), padding=attrs.get("padding"), dilation=attrs.get("dilation"),
        groups=attrs.get("groups"))
    if isinstance(act, PwlqActivation):
        table.act_scale, table.act_zero_point = float("nan"), 0
        table.act_breakpoints = np.array([act.breakpoint], np.float32)
        table.act_range_max = act.range_max
    else:
        table.act_scale, table.act_zero_point = act.scale, act.zero_point
    return table


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)
