"""``prism bench``: latency and throughput of a bundle, with ONNX Runtime as the peer.

The engine (``sdk.load(...).infer``) and a raw ``onnxruntime.InferenceSession.run`` on the same
ONNX file, same input and same thread count are timed in interleaved rounds, so that machine
noise hits both alike; Prism's overhead is reported as a ratio of the two (goal ≤ 5 %).

Scenarios (single-stream, multi-stream, offline, sensor-paced), several bundles or backends side
by side, output comparison, per-stage breakdown and reports live in the helper modules:
``bench_scenarios`` (the scenarios), ``bench_stats`` (percentiles with confidence intervals),
``bench_suite`` (:func:`~tools.bench_suite.run_suite`), ``bench_report`` (Markdown, PNG plots),
``bench_host`` (Jetson power mode, clocks, tegrastats, peak RSS).
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

import sdk


@dataclass
class LatencyStats:
    """Latency percentiles in milliseconds over ``n`` timed calls."""

    n: int
    min: float
    mean: float
    p50: float
    p90: float
    p99: float
    max: float
    p95: float = float("nan")

    @classmethod
    def from_seconds(cls, samples: np.ndarray) -> "LatencyStats":
        ms = np.asarray(samples, dtype=np.float64) * 1e3
        p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
        return cls(int(ms.size), float(ms.min()), float(ms.mean()), float(p50), float(p90),
                   float(p99), float(ms.max()), float(p95))


#: environment variables that cap the instruction sets kernels dispatch on
ISA_CAP_VARIABLES = ("PRISM_MAX_ISA", "PRISM_DISABLE_SIMD", "ONEDNN_MAX_CPU_ISA",
                     "ATEN_CPU_CAPABILITY")


def host_info() -> dict[str, Any]:
    """CPU model, core count, the SIMD features kernels dispatch on, and on a Jetson its model,
    power mode and clocks (``bench_host.jetson_info``)."""
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Model")):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"machine": platform.machine(), "cpu": model, "cores": os.cpu_count(),
            "python": platform.python_version()}
    # Instruction-set caps in force (an AVX-512 host run as an AVX2-only one, say): Prism's
    # kernels, oneDNN's (PyTorch's convolutions) and ATen's.
    caps = {k: os.environ[k] for k in ISA_CAP_VARIABLES if os.environ.get(k)}
    if caps:
        info["isa_caps"] = caps
    try:
        from sdk import _kernels

        info["simd"] = {k: v for k, v in _kernels.cpu_features().items() if k != "arch"}
    except ImportError:
        info["simd"] = None
    from .bench_host import jetson_info

    jetson = jetson_info()
    if jetson:
        info["jetson"] = jetson
    return info


def capped_command(command: str, host: dict[str, Any]) -> str:
    """``command`` led by the instruction-set caps in force (``host_info()["isa_caps"]``): they
    are part of what reproduces a run."""
    caps = host.get("isa_caps") or {}
    return " ".join([*(f"{k}={v}" for k, v in caps.items()), command])


def measured_vpdpbusd_peak() -> float:
    """``vpdpbusd`` zmm per CPU-second of one thread, the best of three 0.3 s loops (0 without
    AVX-512 VNNI): the denominator of the integer kernels' "fraction of peak"."""
    from sdk import _kernels

    return max(_kernels.vpdpbusd_per_second(0.3) for _ in range(3))


def info_row(what: str, value: float, unit: str, peer: str) -> dict[str, Any]:
    """A perf-table row that reports a measurement without a goal (``goal``/``met`` None)."""
    return {"what": what, "value": value, "unit": unit, "peer": peer, "goal": None, "met": None}


def time_calls(fn: Callable[[], Any], count: int) -> np.ndarray:
    """Wall time in seconds of ``count`` consecutive calls of ``fn``."""
    out = np.empty(count)
    clock = time.perf_counter
    for i in range(count):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out


def _raw_ort_session(engine: sdk.Engine):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = engine.describe().get("intra_op_threads") or os.cpu_count() or 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(engine.bundle.file(engine.graph.file)), sess_options=opts,
                                providers=["CPUExecutionProvider"])


def bench_bundle(path: str | os.PathLike, *, backend: str = "auto", batch: int = 1,
                 warmup: int = 10, iterations: int | None = None, duration: float | None = None,
                 threads: int | None = None, compare_raw: bool = True, rounds: int = 10,
                 progress: bool = True) -> dict[str, Any]:
    """Benchmark a bundle. Runs ``iterations`` timed calls (default: as many as fit in
    ``duration`` seconds, default 5 s) split into ``rounds`` interleaved with the raw peer."""
    options = {"intra_op_threads": threads} if threads else {}
    engine = sdk.load(path, backend=backend, **options)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(engine.example_shape(batch)).astype(np.float32)
    engine.warmup(warmup, batch=batch)
    contenders: dict[str, Callable[[], Any]] = {"prism": lambda: engine.infer(x)}
    # the raw peer is one InferenceSession on the entry graph: only comparable to a plain Engine
    # (a multi-stage dynamic bundle would be compared against its first stage alone)
    if compare_raw and type(engine) is sdk.Engine and engine.backend_name == "onnxruntime":
        session = _raw_ort_session(engine)
        feeds = {engine.input_spec.name: x}
        out_names = [engine.output_spec.name]
        for _ in range(warmup):
            session.run(out_names, feeds)
        contenders["onnxruntime"] = lambda: session.run(out_names, feeds)

    if iterations is None:
        probe = float(np.median(time_calls(contenders["prism"], 5)))
        budget = duration if duration is not None else 5.0
        iterations = max(rounds, int(budget / len(contenders) / max(probe, 1e-6)))
    per_round = max(1, iterations // rounds)
    samples: dict[str, list[np.ndarray]] = {k: [] for k in contenders}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=per_round * rounds * len(contenders), desc="bench", unit="call", leave=False)
    wall = {k: 0.0 for k in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            samples[name].append(time_calls(fn, per_round))
            wall[name] += time.perf_counter() - t0
            if bar:
                bar.update(per_round)
    if bar:
        bar.close()
    results: dict[str, Any] = {}
    for name, parts in samples.items():
        s = np.concatenate(parts)
        results[name] = {"latency_ms": asdict(LatencyStats.from_seconds(s)),
                         "throughput_per_s": batch * s.size / wall[name]}
    report = {"bundle": str(Path(path)), "engine": engine.describe(), "batch": batch,
              "iterations": per_round * rounds, "warmup": warmup, "host": host_info(),
              "results": results}
    if "onnxruntime" in results:
        p, r = results["prism"]["latency_ms"], results["onnxruntime"]["latency_ms"]
        report["overhead"] = {"mean_ratio": p["mean"] / r["mean"], "p50_ratio": p["p50"] / r["p50"],
                              "goal_max_ratio": 1.05}
    engine.close()
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"bundle {report['bundle']}  backend {report['engine']['backend']}  "
             f"batch {report['batch']}  iterations {report['iterations']}",
             f"{'':12s} {'min':>8s} {'mean':>8s} {'p50':>8s} {'p90':>8s} {'p99':>8s} {'max':>8s}  {'items/s':>9s}"]
    for name, r in report["results"].items():
        s = r["latency_ms"]
        lines.append(f"{name:12s} {s['min']:8.3f} {s['mean']:8.3f} {s['p50']:8.3f} {s['p90']:8.3f} "
                     f"{s['p99']:8.3f} {s['max']:8.3f}  {r['throughput_per_s']:9.1f}   (ms)")
    if "overhead" in report:
        o = report["overhead"]
        lines.append(f"Prism overhead vs raw onnxruntime: mean x{o['mean_ratio']:.3f}, "
                     f"p50 x{o['p50_ratio']:.3f} (goal <= x{o['goal_max_ratio']:.2f})")
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: str | os.PathLike) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2) + "\n")
