"""Runtime benchmark: Prism's engine overhead vs raw ONNX Runtime, and the C++ frame
preprocessing kernel vs its NumPy twin. Ratios from one run; results in ``reports/runtime/``.

    python -m sdk.tools.bench_runtime [--model resnet20] [--seconds 6]

Writes ``bench.json`` (everything), ``perf.json`` (rows for the README table, see
``perf_table.py``) and ``latency.png`` (latency CDFs of engine and raw session).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import sdk
from sdk.preprocess import PreprocessRecipe, preprocess, preprocess_reference

from .bench import bench_bundle, host_info


def _best_of(fn, repeats: int = 5, inner: int = 3) -> float:
    """Best mean time per call over ``repeats`` blocks of ``inner`` calls (robust to noise)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def bench_preprocess() -> list[dict]:
    rng = np.random.default_rng(0)
    cases = [
        ("camera 480x640 RGBa8 -> 1x28x28 gray", rng.integers(0, 256, (480, 640, 4), np.uint8),
         PreprocessRecipe(pixel_format="RGBa8", channels="gray", size=(28, 28))),
        ("8x 480x640 RGB8 -> 3x224x224", rng.integers(0, 256, (8, 480, 640, 3), np.uint8),
         PreprocessRecipe(pixel_format="RGB8", channels="rgb", size=(224, 224),
                          mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))),
        ("256x 28x28 Mono8 -> 1x28x28 (MNIST batch)", rng.integers(0, 256, (256, 28, 28), np.uint8),
         PreprocessRecipe()),
    ]
    rows = []
    for name, frames, recipe in cases:
        np.testing.assert_allclose(preprocess(frames, recipe), preprocess_reference(frames, recipe),
                                   rtol=1e-5, atol=1e-5)
        t_cpp = _best_of(lambda: preprocess(frames, recipe))
        t_ref = _best_of(lambda: preprocess_reference(frames, recipe), repeats=3, inner=1)
        rows.append({"case": name, "kernel_ms": t_cpp * 1e3, "numpy_ms": t_ref * 1e3,
                     "speedup": t_ref / t_cpp})
    return rows


def plot_latency(report: dict, samples_note: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, res in report["results"].items():
        s = res["latency_ms"]
        qs = [0, 50, 90, 99, 100]
        ax.plot([s["min"], s["p50"], s["p90"], s["p99"], s["max"]], qs, marker="o", label=name)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("percentile")
    ax.set_title(samples_note)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--out", type=Path, default=Path("reports/runtime"))
    args = p.parse_args(argv)
    from sdk.models.train import default_config, get_or_train

    from .cli import _recipe_from_meta

    model, meta = get_or_train(default_config(args.model))
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"host": host_info(), "model": args.model}
    with tempfile.TemporaryDirectory() as tmp:
        bundle = sdk.deploy(model, out=Path(tmp) / "m.prism", preprocess=_recipe_from_meta(meta),
                            name=args.model)
        for batch in (1, 32):
            results[f"batch{batch}"] = bench_bundle(bundle.path, batch=batch,
                                                    duration=args.seconds, progress=True)
    results["preprocess"] = bench_preprocess()
    (args.out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_latency(results["batch1"], f"{args.model} batch 1: Prism engine vs raw onnxruntime",
                 args.out / "latency.png")

    rows = []
    for batch in (1, 32):
        o = results[f"batch{batch}"]["overhead"]
        rows.append({"what": f"engine p50 latency vs raw ORT session ({args.model}, batch {batch})",
                     "value": o["p50_ratio"], "unit": "x", "peer": "onnxruntime InferenceSession.run",
                     "goal": "<= 1.05", "met": o["p50_ratio"] <= 1.05})
    for r in results["preprocess"]:
        rows.append({"what": f"frame preprocessing, {r['case']} ({r['kernel_ms']:.3f} ms)",
                     "value": r["speedup"], "unit": "x faster", "peer": "NumPy twin",
                     "goal": None, "met": None})
    perf = {"host": results["host"], "command": "python -m sdk.tools.bench_runtime", "rows": rows}
    (args.out / "perf.json").write_text(json.dumps(perf, indent=2) + "\n")
    for r in rows:
        print(f"{r['what']}: {r['value']:.3f} {r['unit']} (peer: {r['peer']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
