"""FP32 ONNX → FP16 ONNX: TensorRT's precision by explicit types.

TensorRT 10 builds *strongly typed* networks from the ONNX tensor types (the FP16/INT8 builder
flags are deprecated and gone in TensorRT 11), so FP16 means an ONNX whose weights and
activations are float16. The graph's inputs and outputs stay float32 (a Cast at each boundary) so
the bundle's API — and ``Engine.infer`` — does not change with precision.

Weights beyond the float16 range (±65504) are clipped and counted; normalisation layers that
TensorRT computes more exactly in FP32 are not special-cased: the accuracy against FP32 is
measured at deploy time (``sdk.deploy`` records it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_F32, _F16 = 1, 10
FP16_MAX = float(np.finfo(np.float16).max)


@dataclass
class Fp16Result:
    model: object            # onnx.ModelProto
    converted: int           # float initializers/constants turned into float16
    clipped: int             # values clipped to ±65504
    underflow: int           # non-zero values that became 0 in float16


def _to_half(arr: np.ndarray, stats: list[int]) -> np.ndarray:
    big = np.abs(arr) > FP16_MAX
    stats[1] += int(big.sum())
    out = np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16)
    stats[2] += int(((out == 0) & (arr != 0)).sum())
    return out


def convert_to_fp16(model, *, keep_io_float32: bool = True) -> Fp16Result:
    """Return an FP16 copy of ``model`` (``onnx.ModelProto``); see the module docstring."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    stats = [0, 0, 0]
    for i, t in enumerate(g.initializer):
        if t.data_type == _F32:
            half = numpy_helper.from_array(_to_half(numpy_helper.to_array(t), stats), t.name)
            g.initializer[i].CopyFrom(half)
            stats[0] += 1
    for node in g.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == _F32:
                attr.t.CopyFrom(numpy_helper.from_array(_to_half(numpy_helper.to_array(attr.t), stats),
                                                        attr.t.name))
                stats[0] += 1
        if node.op_type in ("Cast", "RandomNormal", "RandomUniform", "RandomNormalLike",
                            "RandomUniformLike", "EyeLike"):
            for attr in node.attribute:
                if attr.name in ("to", "dtype") and attr.i == _F32:
                    attr.i = _F16
    renames: list = []
    if keep_io_float32:
        # float32 graph inputs: Cast → float16 in front; float32 outputs: Cast back at the end
        for v in g.input:
            if v.type.tensor_type.elem_type == _F32:
                half = f"{v.name}__fp16"
                for node in g.node:
                    for k, name in enumerate(node.input):
                        if name == v.name:
                            node.input[k] = half
                renames.append(helper.make_node("Cast", [v.name], [half], to=_F16, name=f"{v.name}_to_fp16"))
        tail = []
        for v in g.output:
            if v.type.tensor_type.elem_type == _F32:
                half = f"{v.name}__fp16"
                for node in g.node:
                    for k, name in enumerate(node.output):
                        if name == v.name:
                            node.output[k] = half
                    for k, name in enumerate(node.input):
                        if name == v.name:
                            node.input[k] = half
                tail.append(helper.make_node("Cast", [half], [v.name], to=_F32, name=f"{v.name}_to_fp32"))
        nodes = [*renames, *g.node, *tail]
        del g.node[:]
        g.node.extend(nodes)
    else:
        for v in (*g.input, *g.output):
            if v.type.tensor_type.elem_type == _F32:
                v.type.tensor_type.elem_type = _F16
    del g.value_info[:]  # stale float32 annotations; re-inferred by whoever needs them
    onnx.checker.check_model(m)
    return Fp16Result(m, *stats)
