"""Whole-model benchmark of the native backend (issue goals, ratios from one run).

    python -m sdk.tools.bench_native [--model resnet20] [--seconds 4]

- latency of a PWLQ W4A8 bundle on the native backend vs the same model as uniform int8 QDQ on
  ONNX Runtime (ORT fuses QDQ into QLinearConv: its fastest int8 path), and vs the PWLQ integer
  ONNX form on ORT (the form the native backend reproduces bit for bit), batch 1 and 32. The
  contenders run in interleaved rounds (all engines loaded at once, each round times every one
  in turn), so that load from other processes on a shared machine hits them alike: the ratios
  are what the run measures, the absolute times depend on the machine's load. Batch 1 is timed
  with one thread per engine as well (ORT's spinning worker threads suffer most on a loaded
  machine, so this is the conservative ratio);
- peak resident memory at batch 1 of each, measured in a fresh process per backend, over a
  baseline process that imports the same modules and loads nothing;
- accuracy of each on the test split, so speed is never bought with a silent error.

Writes reports/native/{bench.json, perf.json, perf.md, latency.png}. Under ``PRISM_MAX_ISA=avx2``
(``--out reports/native_avx2``) the native backend runs as on an AVX2-only host while ONNX
Runtime, which has no such switch, keeps this host's best path: the peers say "not capped", and
the ratios are conservative for such a host.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

import sdk

from .bench import LatencyStats, capped_command, host_info, time_calls
from .perf_table import render

_RSS_PROBE = r"""
import resource, sys, numpy as np, sdk
path, backend, iters = sys.argv[1], sys.argv[2], int(sys.argv[3])
x = np.zeros((1, 1, 28, 28), np.float32)
if backend != "none":
    engine = sdk.load(path, backend=backend)
    for _ in range(iters):
        engine.infer(x)
try:  # the peak of this program's own memory map (ru_maxrss would include the parent's
    # pages where the child was started by vfork from a large parent)
    with open("/proc/self/status") as f:
        print(next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")))  # KiB
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux, bytes on macOS
"""


def peak_rss_kib(bundle: Path, backend: str, iters: int = 50) -> int:
    out = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(bundle), backend, str(iters)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def interleaved_latency(engines: dict[str, Any], batch: int, seconds: float, rounds: int = 10,
                        warmup: int = 10) -> dict[str, dict]:
    """Latency of ``engine.infer`` on one random float32 batch for every engine, timed in
    ``rounds`` interleaved rounds that share ``seconds`` of wall time equally. Returns, per
    engine, ``{"latency_ms": LatencyStats, "throughput_per_s": items per second}``."""
    rng = np.random.default_rng(0)
    calls = {}
    for name, engine in engines.items():
        x = rng.standard_normal(engine.example_shape(batch)).astype(np.float32)
        calls[name] = (lambda e=engine, x=x: e.infer(x))
        for _ in range(warmup):
            calls[name]()
    per_round = {name: max(1, int(seconds / rounds / len(calls) / max(float(np.median(time_calls(fn, 5))), 1e-6)))
                 for name, fn in calls.items()}
    samples: dict[str, list[np.ndarray]] = {name: [] for name in calls}
    wall = dict.fromkeys(calls, 0.0)
    for _ in range(rounds):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            samples[name].append(time_calls(fn, per_round[name]))
            wall[name] += time.perf_counter() - t0
    out = {}
    for name, parts in samples.items():
        s = np.concatenate(parts)
        out[name] = {"latency_ms": asdict(LatencyStats.from_seconds(s)),
                     "throughput_per_s": batch * s.size / wall[name]}
    return out


def write_markdown(out: Path, perf: dict, results: dict) -> None:
    """``out/perf.md``: the summary rows as a table and the p50 latencies they come from."""
    lines = [f"# Native backend: {results['model']}", "",
             f"Reproduce: `{perf['command']}`. Contenders are timed in interleaved rounds on a "
             f"machine shared with other jobs: the ratios are the result, absolute times follow "
             f"the load.", "", render([("native", perf)]), "",
             "| contender | batch 1 p50 (ms) | batch 32 p50 (ms) | accuracy |", "| --- | --- | --- | --- |"]
    for name, run in results["runs"].items():
        lines.append(f"| {name} | {run['batch1']['latency_ms']['p50']:.3f} | "
                     f"{run['batch32']['latency_ms']['p50']:.2f} | {run['accuracy']:.4f} |")
    for name, run in results.get("batch1_one_thread", {}).items():
        lines.append(f"| {name}, 1 thread | {run['latency_ms']['p50']:.3f} | - | - |")
    (out / "perf.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--out", type=Path, default=Path("reports/native"))
    args = p.parse_args(argv)
    import torch

    from sdk.models.train import default_config, get_or_train

    from .cli import _recipe_from_meta, calibration_batch, evaluate_bundle

    model, meta = get_or_train(default_config(args.model))
    calib = torch.from_numpy(calibration_batch("mnist5k", 512))
    recipe = _recipe_from_meta(meta)
    results: dict = {"host": host_info(), "model": args.model, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        pwlq = sdk.deploy(sdk.quantize(model, calib, scheme="pwlq", weight_bits=4, progress=False),
                          out=Path(tmp) / "pwlq4.prism", preprocess=recipe)
        uni = sdk.deploy(sdk.quantize(model, calib, scheme="uniform", weight_bits=8, progress=False),
                         out=Path(tmp) / "int8qdq.prism", form="qdq", preprocess=recipe)
        contenders = {"native pwlq4": (pwlq.path, "native"),
                      "ORT int8 QDQ": (uni.path, "onnxruntime"),
                      "ORT pwlq4 integer form": (pwlq.path, "onnxruntime")}
        baseline = peak_rss_kib(pwlq.path, "none")
        engines = {name: sdk.load(path, backend=backend) for name, (path, backend) in contenders.items()}
        # one thread each as well: ORT's worker threads spin-wait between operators, which a
        # loaded machine punishes, so the default (all cores) ratio can flatter the native backend
        single = {"native pwlq4": sdk.load(pwlq.path, backend="native", num_threads=1),
                  "ORT int8 QDQ": sdk.load(uni.path, backend="onnxruntime", intra_op_threads=1)}
        try:
            timed = {batch: interleaved_latency(engines, batch, args.seconds * len(engines))
                     for batch in (1, 32)}
            timed_single = interleaved_latency(single, 1, args.seconds * len(single))
            accuracy = {name: evaluate_bundle(engine, "mnist5k", "test")["accuracy"]
                        for name, engine in engines.items()}
        finally:
            for engine in [*engines.values(), *single.values()]:
                engine.close()
        for name, (path, backend) in contenders.items():
            run = {"backend": backend, "precision": sdk.read_bundle(path).precision}
            for batch in (1, 32):
                run[f"batch{batch}"] = timed[batch][name]
            run["accuracy"] = accuracy[name]
            run["peak_rss_kib"] = peak_rss_kib(path, backend)
            run["rss_over_baseline_kib"] = run["peak_rss_kib"] - baseline
            results["runs"][name] = run
            print(f"{name:24s} b1 p50 {run['batch1']['latency_ms']['p50']:.3f} ms  "
                  f"b32 p50 {run['batch32']['latency_ms']['p50']:.3f} ms  acc {run['accuracy']:.4f}  "
                  f"rss +{run['rss_over_baseline_kib'] / 1024:.1f} MiB", flush=True)
    results["rss_baseline_kib"] = baseline
    results["batch1_one_thread"] = timed_single
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")

    r = results["runs"]
    nat, qdq = r["native pwlq4"], r["ORT int8 QDQ"]
    # Under PRISM_MAX_ISA only Prism's kernels are capped; ONNX Runtime has no such switch and
    # keeps this host's best path, so the peers say so.
    peer_note = " (not capped)" if results["host"].get("isa_caps") else ""
    rows = []
    for batch in (1, 32):
        ratio = qdq[f"batch{batch}"]["latency_ms"]["p50"] / nat[f"batch{batch}"]["latency_ms"]["p50"]
        rows.append({"what": f"{args.model} PWLQ W4A8 on native backend, batch {batch} (speed-up, p50)",
                     "value": ratio, "unit": "x", "peer": "uniform int8 QDQ on ORT" + peer_note,
                     "goal": ">= 1.0", "met": ratio >= 1.0})
        ratio_int = (r["ORT pwlq4 integer form"][f"batch{batch}"]["latency_ms"]["p50"]
                     / nat[f"batch{batch}"]["latency_ms"]["p50"])
        rows.append({"what": f"{args.model} PWLQ W4A8 native vs the same integer ONNX on ORT, batch {batch}",
                     "value": ratio_int, "unit": "x", "peer": "ORT ConvInteger form (bit-identical output)",
                     "goal": None, "met": None})
    one = results["batch1_one_thread"]
    ratio = one["ORT int8 QDQ"]["latency_ms"]["p50"] / one["native pwlq4"]["latency_ms"]["p50"]
    rows.append({"what": f"{args.model} PWLQ W4A8 on native backend, batch 1, 1 thread each (speed-up, p50)",
                 "value": ratio, "unit": "x",
                 "peer": "uniform int8 QDQ on ORT, 1 intra-op thread" + peer_note,
                 "goal": ">= 1.0", "met": ratio >= 1.0})
    rss_ratio = nat["rss_over_baseline_kib"] / max(qdq["rss_over_baseline_kib"], 1)
    rows.append({"what": f"{args.model} peak RSS over baseline at batch 1, native / ORT int8 QDQ",
                 "value": rss_ratio, "unit": "x", "peer": "ORT int8 QDQ", "goal": "< 1.0",
                 "met": rss_ratio < 1.0})
    rows.append({"what": f"{args.model} accuracy native PWLQ4 / ORT int8 QDQ",
                 "value": f"{nat['accuracy']:.4f} / {qdq['accuracy']:.4f}", "unit": "",
                 "peer": "ORT int8 QDQ", "goal": None, "met": None})
    command = "python -m sdk.tools.bench_native" + (
        f" --out {args.out}" if args.out != Path("reports/native") else "")
    perf = {"host": results["host"], "command": capped_command(command, results["host"]),
            "rows": rows}
    (args.out / "perf.json").write_text(json.dumps(perf, indent=2) + "\n")
    write_markdown(args.out, perf, results)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    names = list(r)
    for ax, batch in zip(axes, (1, 32)):
        p50 = [r[n][f"batch{batch}"]["latency_ms"]["p50"] for n in names]
        p99 = [r[n][f"batch{batch}"]["latency_ms"]["p99"] for n in names]
        xs = np.arange(len(names))
        ax.bar(xs - 0.2, p50, 0.4, label="p50")
        ax.bar(xs + 0.2, p99, 0.4, label="p99")
        ax.set_xticks(xs, [n.replace(" ", "\n", 1) for n in names], fontsize=8)
        ax.set_ylabel("latency (ms)")
        ax.set_title(f"{args.model}, batch {batch}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "latency.png", dpi=120)
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
