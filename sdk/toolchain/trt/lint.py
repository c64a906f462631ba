"""TensorRT-capability lint of an ONNX graph: every node TensorRT would reject or run in a plugin.

The rules restate TensorRT 10's ONNX parser support (onnx-tensorrt ``docs/operators.md``) and the
explicit-quantization rules of the TensorRT developer guide: Q/DQ is symmetric (zero point 0),
INT8 (or FP8/INT4 weight-only), there are no integer-accumulator ops (ConvInteger, MatMulInteger,
QLinear*), no float64 tensors. Run at deploy time for Jetson targets; a bundle with a ``reject``
finding is not written.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

# TensorRT 10 parses ONNX opsets 9-20 (newer opsets: the op set version check fails at parse time)
MIN_OPSET, MAX_OPSET = 9, 20

# ai.onnx operators TensorRT 10's parser imports natively (onnx-tensorrt operators.md, 10.x).
SUPPORTED = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Bernoulli
BitShift BlackmanWindow Cast CastLike Ceil Celu Clip Compress Concat ConcatFromSequence Constant
ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout Einsum
Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU
HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If InstanceNormalization IsInf IsNaN
LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool LRN LSTM
MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Multinomial Neg NonMaxSuppression
NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike
RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp
ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape
Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze STFT
Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

# Ops that exist in ONNX but not in TensorRT, with the reason a user can act on.
REJECTED = {
    "ConvInteger": "integer-accumulator convolution has no TensorRT layer; deploy the QDQ form "
                   "(QuantizeLinear/DequantizeLinear around a float Conv), which TensorRT fuses to INT8",
    "MatMulInteger": "integer-accumulator MatMul has no TensorRT layer; deploy the QDQ form",
    "QLinearConv": "QOperator format is not parsed by TensorRT; use the QDQ format",
    "QLinearMatMul": "QOperator format is not parsed by TensorRT; use the QDQ format",
    "QLinearAdd": "QOperator format is not parsed by TensorRT; use the QDQ format",
    "DynamicQuantizeLinear": "dynamic (run-time) quantization ranges are not supported; TensorRT "
                             "needs calibrated, constant Q/DQ scales",
    "Unique": "no TensorRT layer (data-dependent output size)",
    "StringNormalizer": "string tensors do not exist in TensorRT",
    "TfIdfVectorizer": "string/sparse feature op, no TensorRT layer",
    "SequenceConstruct": "sequence types are not supported by TensorRT",
    "SequenceAt": "sequence types are not supported by TensorRT",
    "SequenceInsert": "sequence types are not supported by TensorRT",
    "SequenceEmpty": "sequence types are not supported by TensorRT",
    "SplitToSequence": "sequence types are not supported by TensorRT",
    "Optional": "optional types are not supported by TensorRT",
    "OptionalGetElement": "optional types are not supported by TensorRT",
}

# Non-standard domains TensorRT resolves through its plugin registry (when the plugin library is
# loaded); anything else in a custom domain is rejected unless a plugin of that name is registered.
PLUGIN_DOMAINS = {"trt.plugins", "com.nvidia"}
KNOWN_PLUGINS = {"EfficientNMS_TRT", "BatchedNMS_TRT", "ModulatedDeformConv2d", "MultiscaleDeformableAttnPlugin_TRT",
                 "ResizeNearest_TRT", "InstanceNormalization_TRT", "GroupNorm", "LayerNorm"}

_FLOAT64, _UINT8, _INT8, _INT4, _UINT4 = 11, 2, 3, 22, 21


@dataclass(frozen=True)
class Finding:
    """One node TensorRT would not run as-is. ``severity``: "reject" (the parser or builder
    fails), "plugin" (runs only through a plugin), "warning" (runs, but not as the bundle means:
    e.g. a Q/DQ pair TensorRT cannot fuse, so the layer runs in float)."""

    node: str
    op: str
    severity: str
    reason: str

    def __str__(self) -> str:
        return f"{self.severity:7s} {self.op} '{self.node}': {self.reason}"


@dataclass
class LintReport:
    opset: int
    findings: list[Finding] = field(default_factory=list)

    @property
    def rejected(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "reject"]

    @property
    def plugins(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "plugin"]

    @property
    def ok(self) -> bool:
        return not self.rejected

    def format(self) -> str:
        if not self.findings:
            return f"TensorRT lint: every node is supported (opset {self.opset})"
        head = (f"TensorRT lint (opset {self.opset}): {len(self.rejected)} rejected, "
                f"{len(self.plugins)} plugin, {len(self.findings) - len(self.rejected) - len(self.plugins)} warning")
        return "\n".join([head, *("  " + str(f) for f in self.findings)])

    def to_dict(self) -> dict:
        return {"opset": self.opset, "ok": self.ok, "findings": [asdict(f) for f in self.findings]}


def _constants(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _elem_types(model) -> dict[str, int]:
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def lint_model(model) -> LintReport:
    """Lint an ``onnx.ModelProto`` (or serialized bytes) for TensorRT 10. Shape inference runs
    first so that tensor dtypes are known."""
    import onnx

    if isinstance(model, (bytes, bytearray)):
        model = onnx.load_from_string(bytes(model))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    report = LintReport(opset)
    add = report.findings.append
    if not MIN_OPSET <= opset <= MAX_OPSET:
        add(Finding("<model>", "opset", "reject",
                    f"opset {opset} is outside what TensorRT 10's parser imports ({MIN_OPSET}-{MAX_OPSET}); "
                    f"export with opset {min(max(opset, MIN_OPSET), MAX_OPSET)}"))
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph shape inference cannot handle is still linted op by op
        pass
    consts = _constants(model.graph)
    types = _elem_types(model)
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for v in model.graph.input:
        if v.type.tensor_type.elem_type == _FLOAT64:
            add(Finding(v.name, "input", "reject", "float64 tensors do not exist in TensorRT; export float32"))
    for node in model.graph.node:
        name = node.name or (node.output[0] if node.output else node.op_type)
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            if node.domain in PLUGIN_DOMAINS or op in KNOWN_PLUGINS:
                add(Finding(name, op, "plugin", f"custom op ({node.domain}) runs through the TensorRT "
                                                f"plugin '{op}': its library must be loaded on the device"))
            else:
                add(Finding(name, op, "reject", f"custom domain '{node.domain}': TensorRT runs it only if a "
                                                f"plugin named '{op}' is registered (none is shipped)"))
            continue
        if op in REJECTED:
            add(Finding(name, op, "reject", REJECTED[op]))
            continue
        if op not in SUPPORTED:
            add(Finding(name, op, "reject", "not in TensorRT 10's ONNX operator list"))
            continue
        if any(types.get(o) == _FLOAT64 for o in node.output):
            add(Finding(name, op, "reject", "produces float64, which TensorRT has no type for"))
        if op in ("QuantizeLinear", "DequantizeLinear"):
            _lint_qdq(node, name, consts, types, consumers, add)
    return report


def _lint_qdq(node, name, consts, types, consumers, add) -> None:
    op = node.op_type
    zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
    scale_name = node.input[1]
    if scale_name not in consts:
        add(Finding(name, op, "reject", "the scale is computed at run time; TensorRT needs a constant scale"))
    if zp_name is None:
        return
    zp = consts.get(zp_name)
    zp_type = types.get(zp_name)
    if zp_type == _UINT8 or (zp is not None and zp.dtype == np.uint8):
        add(Finding(name, op, "reject",
                    "uint8 (asymmetric) quantization: TensorRT Q/DQ is signed INT8 with zero point 0. "
                    "Prism's u8 activations must be made symmetric int8 (sdk.toolchain.trt.qdq) or the "
                    "layer kept in FP16"))
        return
    if zp is None:
        add(Finding(name, op, "reject", "the zero point is computed at run time; TensorRT needs a constant 0"))
    elif np.any(zp != 0):
        add(Finding(name, op, "reject", f"zero point {np.unique(zp)[:4].tolist()} ≠ 0: TensorRT supports "
                                        f"symmetric quantization only"))
    if op == "QuantizeLinear" and zp_type in (_INT4, _UINT4):
        add(Finding(name, op, "reject", "INT4 in TensorRT is weight-only (DequantizeLinear of constant weights)"))
    if op == "DequantizeLinear" and node.input[0] in consts:
        users = [n.op_type for n in consumers.get(node.output[0], [])]
        if users and not all(u in _WEIGHT_USERS for u in users):
            add(Finding(name, op, "warning",
                        f"weight DequantizeLinear feeds {sorted(set(users))}, not a Conv/Gemm/MatMul "
                        f"directly: TensorRT cannot fuse it into an INT8 layer, which then runs in float"))


_WEIGHT_USERS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
