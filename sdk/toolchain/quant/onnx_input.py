"""``quantize_onnx``: PWLQ or uniform quantization of an existing ONNX model, ONNX in, ONNX out.

For users without the PyTorch source. The same method as ``quantize`` (paper: PWLQ, Fang et al.
2020) on the model's Conv, Gemm and MatMul weights, calibrated on ONNX Runtime:

    q = quantize_onnx("model.onnx", calibration_images, scheme="pwlq", weight_bits=4)
    onnx.save(q.export("integer"), "model.int.onnx")
    logits = q.run_simulation(images)         # the quantized model's output (QDQ form on ORT)

Steps: load the model (shape inference, stable node names, opset >= 13), fold Conv ->
BatchNormalization pairs (``onnx_layers``), read each quantizable node's weight (``onnx_layers``),
collect each one's input activations on ONNX Runtime (``onnx_calibrate``), then quantize with the
PyTorch path's own pieces: ``quantize_weight``, the calibrators and activation quantizers, and its
table builder, so both paths give the same ``LayerQuantTable`` for the same weights and data. The
exports are the PyTorch path's node rewrites (``qdq``, ``integer``) applied to the folded graph.
"""
from __future__ import annotations

import copy
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import onnx
import onnxruntime as ort
from onnx import version_converter
from tqdm.auto import tqdm

from ...errors import InputError
from . import export as _export
from ...formats import packed_tables as packing
from .activation import activation_quantizer
from .api import _table  # the PyTorch path's table builder: both paths must build the same tables
from .config import QuantConfig
from .onnx_calibrate import InputSpec, OrtRunner, calibrate
from .onnx_graph import GraphRewriter
from .onnx_layers import NODE_HANDLERS, find_layers, fold_batch_norms, input_weights, name_nodes, prune_unused
from ...formats.layer_table import LayerQuantTable
from .weights import quantize_weight

MIN_OPSET = 13  # per-axis DequantizeLinear, used by the QDQ weight subgraphs
ModelSource = Union[str, os.PathLike, onnx.ModelProto]


@dataclass
class QuantizedOnnx:
    """A quantized ONNX model. Attributes:

    float_model   the input model after shape inference (unnamed nodes named "<op>_<index>")
    tables        OrderedDict ONNX node name -> LayerQuantTable, in graph order
    skipped       node name -> why it stays FP32 (nodes with weights, batch norms not folded)
    config        the QuantConfig used
    weight_mse    node name -> {"uniform": mse, "pwlq": mse}, same bits, before bias correction
    input_name, output_names   the graph's input and outputs
    folded_model  ``float_model`` with its Conv -> BatchNormalization pairs folded: the FP32 graph
                  the tables were computed from and the exports rewrite
    """

    float_model: onnx.ModelProto
    tables: "OrderedDict[str, LayerQuantTable]"
    skipped: dict[str, str]
    config: QuantConfig
    weight_mse: dict[str, dict[str, float]]
    input_name: str
    output_names: list[str]
    folded_model: onnx.ModelProto
    _simulation: Optional[OrtRunner] = field(default=None, repr=False, compare=False)

    def export(self, form: str = "qdq") -> onnx.ModelProto:
        """The quantized ONNX model in ``form`` "qdq" or "integer" (see ``export``): every node in
        ``tables`` is rewritten, the rest of the folded graph is kept; opset as the input (>= 13)."""
        if form not in _export.FORMS:
            raise InputError(f"form={form!r}; allowed: {', '.join(repr(f) for f in _export.FORMS)}")
        model = copy.deepcopy(self.folded_model)
        rw = GraphRewriter(model)
        for index, node in enumerate(list(model.graph.node)):
            if node.name in self.tables:
                _export.FORMS[form](rw, index, node, self.tables[node.name])
        model.producer_name = "prism-quant"
        model = rw.finish()
        prune_unused(model)  # Constant/Identity nodes that fed the replaced float weights
        onnx.checker.check_model(model)
        return model

    def manifest_section(self) -> dict:
        """JSON-serialisable summary for the bundle manifest; the keys of ``export.manifest_section``."""
        return _export.manifest_section(self)  # it reads only config, tables, weight_mse, skipped

    def pack_tables(self) -> dict[str, np.ndarray]:
        """The packed tables for native kernels, in the ``packing`` npz format (layer names are the
        ONNX node names): ``np.savez(path, **q.pack_tables())``."""
        return packing.pack_tables(self.tables)

    def run_simulation(self, x) -> np.ndarray:
        """The quantized model's first output for ``x`` (shape and dtype of the model input).

        Runs the QDQ export on ONNX Runtime with graph optimizations at the basic level (constant
        folding, no QDQ fusions): the exact quantized arithmetic, float ops on the dequantized
        activations and weights, as ``QuantizedModel`` simulates it in PyTorch (equal up to float32
        summation order). Batches of any size; a fixed-batch model runs in pieces.
        """
        if self._simulation is None:
            spec = InputSpec.of(self.float_model, "the quantized model")
            self._simulation = OrtRunner(self.export("qdq"), spec, "the quantized QDQ model",
                                         ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
        return self._simulation.run(self._simulation.spec.check(x, "x"))[0]


def quantize_onnx(model: ModelSource, calibration_data, *, scheme: str = "pwlq", weight_bits: int = 4,
                  breakpoints: int = 1, breakpoint_method: str = "gaussian_closed", per_channel: bool = True,
                  bias_correction: bool = True, act_bits: int = 8, act_calibration: str = "topk_median",
                  skip_first_layer: bool = False, progress: bool = True) -> QuantizedOnnx:
    """Quantize the Conv, Gemm and MatMul weights of an ONNX model and their input activations.

    model: a path to an .onnx file or an onnx.ModelProto (not modified) with one input;
    initializers also listed as graph inputs count as constants.
    calibration_data: one array/tensor of the model input's shape, e.g. (N, C, H, W), any float
    dtype (cast to the input's), or an iterable of such batches, (inputs, targets) tuples allowed;
    one array runs in chunks of 64 samples, and a model with a fixed batch size B in pieces of B.
    The other arguments are ``quantize``'s; activations are uniform (PWLQ activations have no ONNX
    form).

    Quantized (tables keyed by node name): Conv with a 4-D constant weight (any group, stride,
    pads, dilation, auto_pad), Gemm with a constant weight (transB 0 or 1; transA=0, alpha=beta=1;
    C one value per output), MatMul x @ W with a constant 2-D W. Constants may come through
    Constant and Identity nodes. A BatchNormalization right after a Conv is folded into it first
    (``onnx_layers.fold_batch_norms``; on the first calibration batch the folded model's outputs
    must match the original's within 1e-5 relative to max(1, |y|), else PrismError). Every other
    Conv/Gemm/MatMul, weighted op or batch norm stays FP32 and is listed in ``.skipped`` with why.
    """
    config = QuantConfig(scheme, weight_bits, breakpoints, breakpoint_method, per_channel, bias_correction,
                         act_bits, act_calibration, "uniform", skip_first_layer)
    where = _describe(model)
    float_model = load_model(model, where)
    spec = InputSpec.of(float_model, where, input_weights(float_model.graph))
    folded, folded_bns, skipped = fold_batch_norms(float_model)
    layers, unsupported = find_layers(folded)
    skipped.update(unsupported)
    if not layers:
        ops = sorted({n.op_type for n in float_model.graph.node})
        reasons = "".join(f"; {name}: {why}" for name, why in unsupported.items())
        raise InputError(f"{where} has no {'/'.join(NODE_HANDLERS)} node with a constant weight to quantize; "
                         f"its op types: {', '.join(ops) or 'none'}{reasons}")
    order = list(layers)
    if skip_first_layer:
        skipped[order.pop(0)] = "first layer kept in FP32 (skip_first_layer=True)"

    calibrators = calibrate(folded, spec, OrderedDict((name, layers[name].input) for name in order),
                            calibration_data, config.act_calibration, where, progress,
                            reference=float_model if folded_bns else None, folded_bns=tuple(folded_bns))
    tables: "OrderedDict[str, LayerQuantTable]" = OrderedDict()
    weight_mse: dict[str, dict[str, float]] = {}
    for name in tqdm(order, desc="quantize weights", disable=not progress, leave=False):
        layer = layers[name]
        lw = quantize_weight(layer.weight, config.scheme, config.weight_bits, config.breakpoints,
                             config.breakpoint_method, config.per_channel, config.bias_correction)
        act = activation_quantizer(calibrators[name], config.act_scheme, config.act_bits, config.breakpoint_method)
        tables[name] = _table(name, layer.layer_type, config, lw, layer.bias, act, layer.attributes)
        weight_mse[name] = lw.mse
    return QuantizedOnnx(float_model, tables, skipped, config, weight_mse, spec.name,
                         [o.name for o in float_model.graph.output], folded)


def load_model(model: ModelSource, where: str) -> onnx.ModelProto:
    """A checked copy of ``model`` after shape inference, with named nodes and opset >= 13.

    Initializers also listed as graph inputs (IR < 4) are taken as constants and dropped from the
    inputs. InputError names the file when it is missing or not a valid ONNX model.
    """
    if isinstance(model, onnx.ModelProto):
        proto = copy.deepcopy(model)
    elif isinstance(model, (str, os.PathLike)):
        if not Path(model).is_file():
            raise InputError(f"{where}: no such file")
        try:
            proto = onnx.load(os.fspath(model))
        except Exception as exc:  # protobuf DecodeError, external-data errors, ... all mean "not ONNX"
            raise InputError(f"{where} is not an ONNX model ({type(exc).__name__}: {exc})") from None
    else:
        raise InputError(f"model is a {type(model).__name__}; expected a path to an .onnx file or an onnx.ModelProto")
    if not proto.graph.node:
        raise InputError(f"{where} is not an ONNX model (no graph nodes)")
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise InputError(f"{where} is not a valid ONNX model: {exc}") from None
    _inputs_not_initializers(proto)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        try:
            proto = version_converter.convert_version(proto, MIN_OPSET)
        except Exception as exc:  # the converter raises bare RuntimeErrors and ValidationErrors
            raise InputError(f"{where} has opset {opset}; converting it to {MIN_OPSET} (needed for per-channel "
                             f"DequantizeLinear) failed: {exc}") from None
    proto = onnx.shape_inference.infer_shapes(proto)
    name_nodes(proto.graph)
    return proto


def _inputs_not_initializers(model: onnx.ModelProto) -> None:
    constants = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in constants]
    if len(inputs) != len(model.graph.input):
        del model.graph.input[:]
        model.graph.input.extend(inputs)
        model.ir_version = max(model.ir_version, 4)


def _describe(model: Any) -> str:
    if isinstance(model, onnx.ModelProto):
        return f"ONNX model '{model.graph.name}'" if model.graph.name else "the ONNX model"
    return f"'{os.fspath(model)}'" if isinstance(model, (str, os.PathLike)) else "model"
