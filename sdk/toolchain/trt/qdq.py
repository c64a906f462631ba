"""Prism's QDQ form → a QDQ graph TensorRT accepts, and the PWLQ weight decompositions.

TensorRT's explicit quantization is symmetric signed INT8 (zero point 0) for activations and
weights; INT4 is weight-only. Prism's quantizer writes u8 asymmetric activations and, for PWLQ,
a weight built from several DequantizeLinear terms (center codes, tail codes, tail offset ``p``
as a sign tensor) summed — neither is TensorRT-compatible. Two rewrites fix that:

* **Activations** (:func:`symmetric_activations`): every u8 QuantizeLinear with scale ``s`` and
  zero point ``z`` becomes int8 with zero point 0 and scale ``s·max(z, 255−z)/127``: the same
  calibrated range, never clipped tighter, at the cost of ≤ 1 bit of resolution (for post-ReLU
  inputs, ``z = 0``: the step doubles). Measured against the u8 simulation at deploy time.
* **Weights**, one of (``weights=``):
  ``"int8"``   the PWLQ-reconstructed weight requantized per output channel to symmetric int8:
               one DequantizeLinear → Conv, fused by TensorRT into an INT8 layer (the default);
  ``"split"``  center and tail as separate symmetric int8 QDQ convolutions plus the offset term
               (a third int8 QDQ convolution of the region-sign tensor scaled by ``p``): exact
               PWLQ arithmetic by linearity, at 2-3× the MACs;
  ``"fp16"``   PWLQ-accurate float weights, activation Q/DQ removed: the layer runs FP16.
  See ``reports/bench/pwlq_tensorrt.md`` (``python -m sdk.tools.bench_trt_decomp``) for the measured
  accuracy and size of each.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

WEIGHT_STRATEGIES = ("int8", "split", "fp16")
_WEIGHT_OPS = ("Conv", "Gemm", "MatMul")


def _graph_maps(g):
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    users = defaultdict(list)
    for n in g.node:
        for i in n.input:
            users[i].append(n)
    return consts, producer, users


def _eval_const(name, consts, producer, memo):
    """Value of tensor ``name`` if it depends on constants only (folded with ONNX's reference
    evaluator), else None."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    if name in memo:
        return memo[name]
    if name in consts:
        return consts[name]
    node = producer.get(name)
    if node is None or node.op_type in ("QuantizeLinear",):
        memo[name] = None
        return None
    args = [_eval_const(i, consts, producer, memo) if i else None for i in node.input]
    if any(a is None for a, i in zip(args, node.input) if i):
        memo[name] = None
        return None
    graph = helper.make_graph([node], "fold",
                              [helper.make_tensor_value_info(f"in{k}", helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                               for k, a in enumerate(args) if a is not None],
                              [helper.make_tensor_value_info(o, 0, None) for o in node.output])
    renamed = type(node)()
    renamed.CopyFrom(node)
    k = 0
    for j, i in enumerate(node.input):
        if i:
            renamed.input[j] = f"in{k}"
            k += 1
    graph.node[0].CopyFrom(renamed)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])  # the reference evaluator has DQ from v19
    outs = ReferenceEvaluator(model).run(None, {f"in{k}": a for k, a in enumerate(a for a in args if a is not None)})
    for o, v in zip(node.output, outs):
        memo[o] = np.asarray(v)
    return memo[name]


def _weight_axis(node) -> int:
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return 1  # MatMul (K, N)


def symmetric_activations(model) -> int:
    """Rewrite u8 activation Q/DQ pairs in place as symmetric int8; returns how many."""
    from onnx import numpy_helper

    g = model.graph
    consts, producer, users = _graph_maps(g)
    count = 0
    for node in list(g.node):
        if node.op_type != "QuantizeLinear" or len(node.input) < 3:
            continue
        zp = consts.get(node.input[2])
        if zp is None or zp.dtype != np.uint8:
            continue
        s = consts[node.input[1]].astype(np.float64)
        z = zp.astype(np.float64)
        new_scale = (s * np.maximum(z, 255 - z) / 127).astype(np.float32)
        base = node.output[0]
        sname, zname = f"{base}_sym_scale", f"{base}_sym_zero_point"
        g.initializer.extend([numpy_helper.from_array(new_scale, sname),
                              numpy_helper.from_array(np.zeros_like(zp, dtype=np.int8), zname)])
        node.input[1], node.input[2] = sname, zname
        for dq in users[node.output[0]]:
            if dq.op_type == "DequantizeLinear":
                dq.input[1], dq.input[2] = sname, zname
        count += 1
    return count


def _per_channel_int8(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    red = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.abs(w).max(axis=red) if red else np.abs(w)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    codes = np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return codes, scale


def to_tensorrt(model, weights: str = "int8"):
    """A TensorRT-compatible copy of a Prism QDQ-form ``onnx.ModelProto`` (see module docstring).
    Returns ``(model, info)``; ``info`` counts the rewritten layers."""
    import onnx
    from onnx import helper, numpy_helper

    if weights not in WEIGHT_STRATEGIES:
        from ...errors import InputError

        raise InputError(f"weights='{weights}'; allowed: {', '.join(WEIGHT_STRATEGIES)}")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    info = {"weights": weights, "layers": 0, "activations": 0}
    if weights != "fp16":
        info["activations"] = symmetric_activations(m)
    consts, producer, users = _graph_maps(g)
    memo: dict = {}
    new_nodes = []
    for node in g.node:
        if node.op_type not in _WEIGHT_OPS or len(node.input) < 2 or node.input[1] in consts:
            new_nodes.append(node)
            continue
        src = producer.get(node.input[1])
        w = _eval_const(node.input[1], consts, producer, memo)
        if w is None or src is None:
            new_nodes.append(node)
            continue
        info["layers"] += 1
        base = node.name or node.output[0]
        axis = _weight_axis(node)
        x = node.input[0]
        if weights == "fp16":
            # drop the activation fake-quantization: Q → DQ → layer becomes layer(x)
            dq = producer.get(x)
            if dq is not None and dq.op_type == "DequantizeLinear":
                q = producer.get(dq.input[0])
                if q is not None and q.op_type == "QuantizeLinear":
                    x = q.input[0]
            wname = f"{base}_w_pwlq"
            g.initializer.append(numpy_helper.from_array(w.astype(np.float32), wname))
            node.input[0], node.input[1] = x, wname
            new_nodes.append(node)
            continue
        terms = _split_terms(node.input[1], producer, consts, memo) if weights == "split" else None
        if terms is None:
            terms = [w]
        outs = []
        for k, term in enumerate(terms):
            codes, scale = term if isinstance(term, tuple) else _per_channel_int8(term, axis)
            cn, sn, zn = f"{base}_w{k}_codes", f"{base}_w{k}_scale", f"{base}_w{k}_zp"
            g.initializer.extend([numpy_helper.from_array(codes, cn), numpy_helper.from_array(scale, sn),
                                  numpy_helper.from_array(np.zeros_like(scale, np.int8), zn)])
            wq = f"{base}_w{k}_dq"
            new_nodes.append(helper.make_node("DequantizeLinear", [cn, sn, zn], [wq], axis=axis, name=wq))
            layer = type(node)()
            layer.CopyFrom(node)
            layer.input[1] = wq
            if k:  # the bias is added once, by the first term
                del layer.input[2:]
            out = node.output[0] if len(terms) == 1 else f"{base}_term{k}"
            del layer.output[:]
            layer.output.append(out)
            layer.name = f"{base}_term{k}" if len(terms) > 1 else node.name
            new_nodes.append(layer)
            outs.append(out)
        if len(outs) > 1:
            new_nodes.append(helper.make_node("Sum", outs, [node.output[0]], name=f"{base}_terms_sum"))
    del g.node[:]
    g.node.extend(new_nodes)
    _prune(g)
    onnx.checker.check_model(m)
    return m, info


def _split_terms(name, producer, consts, memo):
    """PWLQ weight ``Sum(DQ(center), DQ(tail), DQ(signs; p))`` (optionally ``·a + c``) → the
    float terms, bias correction folded into each (``c`` into the center term)."""
    node = producer.get(name)
    scale = shift = None
    if node is not None and node.op_type == "Add":
        mul = producer.get(node.input[0])
        shift = _eval_const(node.input[1], consts, producer, memo)
        if mul is None or mul.op_type != "Mul":
            return None
        scale = _eval_const(mul.input[1], consts, producer, memo)
        node = producer.get(mul.input[0])
    if node is None or node.op_type != "Sum":
        return None
    terms = []
    for i in node.input:  # keep each term's own int8 codes and scales: exact, no requantization
        dq = producer.get(i)
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in consts:
            return None
        codes, s = consts[dq.input[0]], consts[dq.input[1]].astype(np.float32)
        if scale is not None:
            s = s * scale.reshape(-1) if scale.size == s.size else s
        terms.append((codes.astype(np.int8), s.astype(np.float32)))
    if shift is not None and np.any(shift != 0):
        terms.append(np.broadcast_to(shift, terms[0][0].shape).astype(np.float32))
    return terms


def _prune(g) -> None:
    """Drop nodes and initializers nothing reads any more."""
    needed = {o.name for o in g.output}
    keep = []
    for node in reversed(list(g.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
