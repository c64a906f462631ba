"""``prism bench`` beyond one bundle: scenarios, side-by-side comparison, breakdown, accuracy.

    report = run_suite(["a.prism", "b.prism"], scenarios=("single-stream", "sensor"), rate=30)

Every contender (a bundle × a backend) gets the same inputs; outputs are compared with the first
contender's as Polygraphy does (``|a − b| ≤ atol + rtol·|b|``, max and mean error); latency
percentiles carry confidence intervals (``bench_stats``); per-inference stages (preprocessing,
host→device, compute, device→host, postprocessing) are timed where the backend exposes them
(``last_breakdown`` with ``profile_stages``); dynamic bundles (an engine with ``stats()``) add
per-stage latency and exit shares.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import sdk

from .bench_host import TegraStats, environment, peak_rss_mb
from .bench_scenarios import Budget, run_scenario


@dataclass
class Contender:
    label: str
    bundle: str
    backend: str


def _logits(result) -> np.ndarray:
    """Array output of an engine (a DynamicEngine returns a result with ``.logits``)."""
    return np.asarray(getattr(result, "logits", result), dtype=np.float32)


def compare_outputs(reference: np.ndarray, got: np.ndarray, atol: float, rtol: float) -> dict[str, Any]:
    """Polygraphy-style comparison of ``got`` against ``reference``."""
    if reference.shape != got.shape:
        return {"pass": False, "reason": f"shapes differ: {reference.shape} vs {got.shape}"}
    err = np.abs(got.astype(np.float64) - reference.astype(np.float64))
    rel = err / np.maximum(np.abs(reference), 1e-12)
    ok = err <= atol + rtol * np.abs(reference)
    out = {"pass": bool(ok.all()), "atol": atol, "rtol": rtol, "max_abs": float(err.max()),
           "mean_abs": float(err.mean()), "max_rel": float(rel.max()), "mean_rel": float(rel.mean()),
           "mismatched": int((~ok).sum()), "elements": int(ok.size)}
    if reference.ndim == 2 and reference.shape[1] > 1:
        out["top1_agreement"] = float((reference.argmax(1) == got.argmax(1)).mean())
    return out


def breakdown(engine, x: np.ndarray, frames: np.ndarray | None, calls: int = 20) -> dict[str, Any]:
    """Mean ms per stage of one inference: preprocess (u8 frames → input, the bundle's recipe),
    h2d / compute / d2h when the backend reports them, infer (the whole call) and postprocess
    (softmax + top-1 on the host)."""
    backend = getattr(engine, "_backend", None)
    stages: dict[str, list[float]] = {}
    clock = time.perf_counter
    profiled = backend is not None and hasattr(backend, "last_breakdown")
    if profiled:
        backend.options["profile_stages"] = True
    try:
        for _ in range(calls):
            if frames is not None and engine.bundle.preprocess:
                t0 = clock()
                engine.preprocess(frames)
                stages.setdefault("preprocess", []).append(clock() - t0)
            t0 = clock()
            y = _logits(engine.infer(x))
            stages.setdefault("infer", []).append(clock() - t0)
            for k, v in (getattr(backend, "last_breakdown", None) or {}).items():
                stages.setdefault(k, []).append(v)
            t0 = clock()
            z = y - y.max(axis=-1, keepdims=True)
            p = np.exp(z)
            (p / p.sum(axis=-1, keepdims=True)).argmax(-1)
            stages.setdefault("postprocess", []).append(clock() - t0)
    finally:
        if profiled:
            backend.options["profile_stages"] = False
    out = {k: float(np.mean(v) * 1e3) for k, v in stages.items()}
    if not profiled:
        out["note"] = "the backend runs on the host: no separate copy stages (compute = infer)"
    return out


def dynamic_report(engine) -> dict[str, Any] | None:
    """Per-stage latency and exit shares of a dynamic engine (duck-typed: ``stats()``)."""
    stats = getattr(engine, "stats", None)
    if not callable(stats):
        return None
    s = stats()
    samples = s.get("samples") or 0
    stages = []
    for st in s.get("stages", []):
        stages.append({"stage": st["stage"], "entered": st["entered"], "exited": st["exited"],
                       "exit_share": st["exited"] / samples if samples else 0.0,
                       "ms_per_call": st["seconds"] / st["calls"] * 1e3 if st["calls"] else 0.0,
                       "macs": st.get("macs")})
    return {"samples": samples, "mean_macs": s.get("mean_macs"), "stages": stages,
            "exit_histogram": [st["exited"] for st in stages]}


def accuracy(engine, dataset: str, split: str = "test", limit: int | None = None) -> dict[str, Any]:
    from sdk.data import load_dataset

    data = load_dataset(dataset, split)
    n = len(data.labels) if limit is None else min(limit, len(data.labels))
    correct = 0
    for i in range(0, n, 256):
        y = _logits(engine.infer(engine.preprocess(data.images[i:min(i + 256, n)])))
        correct += int((y.argmax(1) == data.labels[i:min(i + 256, n)]).sum())
    return {"dataset": dataset, "split": split, "samples": n, "accuracy": correct / n}


def _inputs(engine, batch: int, dataset: str | None, count: int = 16) -> tuple[np.ndarray, np.ndarray | None]:
    """(model input of ``batch``, u8 frames or None): the dataset's images when given, else
    seeded random u8 frames through the bundle's recipe (random normal input without one)."""
    n = max(batch, count)
    if dataset:
        from sdk.data import load_dataset

        frames = load_dataset(dataset, "test").images[:n]
        return engine.preprocess(frames), frames
    rng = np.random.default_rng(0)
    recipe = engine.bundle.preprocess
    if recipe:
        h, w = recipe.get("size", (0, 0))
        pf = recipe.get("pixel_format", "Mono8")
        shape = (n, h, w) if pf.startswith(("Mono", "Bayer")) else (n, h, w, 3)
        frames = rng.integers(0, 256, size=shape, dtype=np.uint8)
        try:
            return engine.preprocess(frames), frames
        except sdk.PrismError:
            pass
    return rng.standard_normal(engine.example_shape(n)).astype(np.float32), None


def run_suite(bundles: Sequence[str | Path], *, backends: Sequence[str] = ("auto",),
              scenarios: Sequence[str] = ("single-stream",), batches: Sequence[int] = (1,),
              threads: int | None = None, rate: float | None = None, streams: int = 4,
              offline_batch: int = 32, budget: Budget | None = None, dataset: str | None = None,
              accuracy_limit: int | None = None, atol: float = 1e-3, rtol: float = 1e-3,
              progress: bool = True) -> dict[str, Any]:
    """Benchmark every bundle × backend on the same inputs; see the module docstring."""
    from .bench import host_info

    budget = budget or Budget()
    if "sensor" in scenarios and rate is None:
        from sdk.errors import InputError

        raise InputError("the sensor scenario needs a rate (frames or lines per second), e.g. --rate 30")
    options = {"intra_op_threads": threads} if threads else {}
    contenders, results = [], []
    reference = None
    with TegraStats() as tegra:
        for path in bundles:
            for backend in backends:
                engine = sdk.load(path, backend=backend, **options)
                label = Path(path).name + ("" if len(backends) == 1 else f" [{engine.backend_name}]")
                if any(c.label == label for c in contenders):
                    label += f" #{sum(c.label.startswith(label) for c in contenders) + 1}"
                c = Contender(label, str(path), engine.backend_name)
                entry: dict[str, Any] = {**asdict(c), "engine": engine.describe(),
                                         "precision": engine.bundle.precision, "scenarios": {}}
                x_all, frames = _inputs(engine, max(batches), dataset)
                out = _logits(engine.infer(x_all))
                if reference is None:
                    reference = out
                else:
                    entry["compare_to_first"] = compare_outputs(reference, out, atol, rtol)
                if hasattr(engine, "reset_stats"):
                    engine.reset_stats()
                for scenario in scenarios:
                    for batch in (batches if scenario in ("single-stream",) else batches[:1]):
                        key = scenario if len(batches) == 1 or scenario != "single-stream" else f"{scenario}/b{batch}"
                        entry["scenarios"][key] = run_scenario(
                            scenario, engine.infer, x_all[:batch], budget, rate=rate, streams=streams,
                            offline_batch=offline_batch, progress=progress)
                entry["dynamic"] = dynamic_report(engine)
                entry["breakdown"] = breakdown(engine, x_all[:1], frames[:1] if frames is not None else None)
                if dataset:
                    entry["accuracy"] = accuracy(engine, dataset, limit=accuracy_limit)
                engine.close()
                contenders.append(c)
                results.append(entry)
    return {"kind": "prism-bench-suite", "bundles": [str(b) for b in bundles], "backends": list(backends),
            "scenarios": list(scenarios), "batches": list(batches), "rate_per_s": rate,
            "budget": asdict(budget), "atol": atol, "rtol": rtol, "host": host_info(),
            "environment": environment(), "peak_rss_mb": peak_rss_mb(),
            "tegrastats": tegra.summary(), "contenders": results}


def strip_private(obj):
    """The report without raw samples/timelines (keys starting with ``_``), JSON-ready."""
    if isinstance(obj, dict):
        return {k: strip_private(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [strip_private(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
