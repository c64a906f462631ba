"""PWLQ on TensorRT: accuracy, size and cost of the weight decompositions (ONNX Runtime stand-in).

    python -m sdk.tools.bench_trt_decomp [--model resnet20] [--bits 4] [--samples 2000]

TensorRT's Q/DQ is symmetric int8 (INT4 weight-only), so a PWLQ layer — center codes, tail codes
and the tail offset ``p`` — has no single TensorRT layer. The candidates (``sdk.toolchain.trt.qdq``)
are run by ONNX Runtime on the same digits: ``prism-u8`` (the bundle's own QDQ form: reference,
not TensorRT-compatible), ``int8`` (PWLQ weight requantized per channel to int8), ``split``
(center, tail and offset as separate int8 QDQ convolutions, summed) and ``fp16`` (PWLQ-exact
weights, float layer). Writes ``reports/bench/pwlq_tensorrt.{json,md}``. Speed needs the device:
TensorRT fuses each candidate differently, so only MAC and weight-byte counts are reported here.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--out", type=Path, default=Path("reports/bench"))
    args = p.parse_args(argv)

    import onnx
    import onnxruntime as ort
    import torch

    import sdk
    from sdk.data import load_dataset, normalize
    from sdk.models.train import default_config, get_or_train
    from sdk.toolchain.quant import export_onnx as export_quantized
    from sdk.toolchain.trt import lint_model
    from sdk.toolchain.trt.qdq import to_tensorrt

    from .cli import calibration_batch

    model, meta = get_or_train(default_config(args.model), progress=False)
    calib = torch.from_numpy(calibration_batch("mnist5k", 512))
    t0 = time.perf_counter()
    q = sdk.quantize(model, calib, scheme="pwlq", weight_bits=args.bits, progress=False)
    quantize_s = time.perf_counter() - t0
    test = load_dataset("mnist5k", "test")
    x = normalize(test.images[:args.samples], "mnist5k")
    labels = test.labels[:args.samples]
    base = export_quantized(q, calib[:1], form="qdq")
    graphs = {"prism-u8": (base, {"weights": "prism", "layers": len(q.tables)})}
    for w in ("int8", "split", "fp16"):
        graphs[w] = to_tensorrt(base, w)

    def run(m):
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.concatenate([s.run(None, {"input": x[i:i + 250]})[0] for i in range(0, len(x), 250)])

    ref = run(base)
    rows = {}
    for name, (m, info) in graphs.items():
        out = ref if name == "prism-u8" else run(m)
        inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
        weight_bytes = {"int8": 0, "float": 0}
        conv_like = [n for n in m.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
        for n in conv_like:
            w = n.input[1]
            if w in inits:
                weight_bytes["float"] += inits[w].size * (2 if name == "fp16" else 4)
        for n in m.graph.node:
            if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].dtype == np.int8:
                weight_bytes["int8"] += inits[n.input[0]].size
        lint = lint_model(m)
        rows[name] = {"accuracy": float((out.argmax(1) == labels).mean()),
                      "top1_agreement_vs_prism_u8": float((out.argmax(1) == ref.argmax(1)).mean()),
                      "max_abs_vs_prism_u8": float(np.abs(out - ref).max()),
                      "mean_abs_vs_prism_u8": float(np.abs(out - ref).mean()),
                      "weight_layers": len(conv_like), "tensorrt_lint_ok": lint.ok,
                      "lint_rejected": len(lint.rejected), "weight_bytes": weight_bytes, "info": info}
    fp32_acc = float(meta["accuracy"]["test"])
    result = {"command": "python -m sdk.tools.bench_trt_decomp", "model": args.model, "bits": args.bits,
              "samples": int(len(labels)), "fp32_test_accuracy_full_split": fp32_acc,
              "quantize_seconds": quantize_s, "layers": len(q.tables), "candidates": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pwlq_tensorrt.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# PWLQ-{args.bits} {args.model} on TensorRT: weight decompositions (ONNX Runtime stand-in)", "",
             f"`{result['command']}` — {len(labels)} mnist5k test digits, {len(q.tables)} quantized layers; "
             f"FP32 checkpoint accuracy (full test split) {fp32_acc:.4f}.", "",
             "| candidate | TensorRT lint | accuracy | top-1 vs Prism u8 | max abs diff | mean abs diff | weight layers | int8 weight bytes | float weight bytes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lint = "ok" if r["tensorrt_lint_ok"] else f"{r['lint_rejected']} rejected"
        lines.append(f"| {name} | {lint} | "
                     f"{r['accuracy']:.4f} | {r['top1_agreement_vs_prism_u8']:.4f} | {r['max_abs_vs_prism_u8']:.3g} | "
                     f"{r['mean_abs_vs_prism_u8']:.3g} | {r['weight_layers']} | {r['weight_bytes']['int8']} | "
                     f"{r['weight_bytes']['float']} |")
    (args.out / "pwlq_tensorrt.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
