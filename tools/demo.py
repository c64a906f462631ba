"""``make demo``: the main job on the embedded default (CPU + ONNX Runtime + virtual camera).

train (or reuse the cached) ResNet-20 on MNIST-5k → deploy a ``cpu`` bundle → load → test
accuracy through the engine (frames preprocessed by the C++ kernel) → benchmark against raw
ONNX Runtime → frames from the virtual GenICam camera through the deployed model → a table.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import sdk


def run_camera(engine: sdk.Engine, frames: int) -> dict:
    """``frames`` frames from the Viky GenICam camera through ``engine`` on a Pipeline (camera →
    preprocess → infer → sink threads); prints the pipeline's stats table and returns its dict."""
    try:
        import firmware_bridge
        from firmware_bridge.camera.discovery import bundled_producers, find_producers
    except ImportError as e:
        return {"skipped": f"camera support not installed ({e}); pip install prism-sdk[camera]"}
    from sdk.runtime.pipeline import Pipeline

    try:  # producers on $GENICAM_GENTL64_PATH first, else the virtual camera of the genicam wheel
        producers = find_producers()
    except firmware_bridge.ProducerNotFound:
        producers = bundled_producers()
    if not producers:
        return {"skipped": "no GenTL producer found (install the genicam wheel or set GENICAM_GENTL64_PATH)"}
    uri = f"genicam://0?cti={producers[0]}&width=320&height=240&pixel_format=Mono8&fps=60"
    labels: list[int] = []
    with firmware_bridge.open_source(uri) as cam, \
            Pipeline(cam, engine, sink=lambda frame, logits: labels.append(int(logits.argmax()))) as pipeline:
        stats = pipeline.run(max_frames=frames)
    print("      camera pipeline (" + uri.split("?")[0] + "):\n"
          + "\n".join("      " + line for line in stats.format().splitlines()))
    return {"uri": uri.split("?")[0], "frames": stats.delivered, **stats.to_dict(),
            "classes_seen": sorted(set(labels))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.add_argument("--bench-seconds", type=float, default=4.0)
    p.add_argument("--camera-frames", type=int, default=60)
    args = p.parse_args(argv)

    from sdk.models.train import default_config, get_or_train

    from .bench import bench_bundle, format_report, write_json
    from .cli import _recipe_from_meta, evaluate_bundle

    t0 = time.perf_counter()
    model, meta = get_or_train(default_config(args.model))
    train_s = time.perf_counter() - t0
    print(f"[1/5] {args.model}: {'cached' if meta['cached'] else 'trained'} checkpoint, "
          f"test accuracy (PyTorch) {meta['accuracy']['test']:.4f}, training took {meta['seconds']:.0f} s")

    bundle = sdk.deploy(model, target="cpu", out=args.out / f"{args.model}.cpu.prism",
                        preprocess=_recipe_from_meta(meta), name=args.model,
                        metadata={"dataset": meta["dataset"]["name"], "accuracy": meta["accuracy"]})
    print(f"[2/5] deployed {bundle.path} (ONNX vs PyTorch max |diff| "
          f"{bundle.manifest['export']['max_abs_diff']:.2e})")

    with sdk.load(bundle.path) as engine:
        acc = evaluate_bundle(engine, meta["dataset"]["name"], "test")
        print(f"[3/5] {engine!r}: test accuracy {acc['accuracy']:.4f} on {acc['samples']} digits")
        camera = run_camera(engine, args.camera_frames)
    report = bench_bundle(bundle.path, duration=args.bench_seconds, progress=True)
    write_json(report, args.out / "bench.json")
    print("[4/5] benchmark (batch 1):\n" + format_report(report))
    if "fps" in camera:
        print(f"[5/5] camera {camera['uri']}: {camera['frames']} frames through the pipeline at "
              f"{camera['fps']:.1f} fps, classes seen {camera['classes_seen']}")
    else:
        print(f"[5/5] camera: {camera.get('skipped')}")

    r = report["results"]["prism"]["latency_ms"]
    rows = [("model", args.model), ("train (cached)" if meta["cached"] else "train", f"{train_s:.1f} s"),
            ("accuracy PyTorch / bundle", f"{meta['accuracy']['test']:.4f} / {acc['accuracy']:.4f}"),
            ("latency p50 / p99 (ms)", f"{r['p50']:.3f} / {r['p99']:.3f}"),
            ("overhead vs onnxruntime", f"x{report['overhead']['p50_ratio']:.3f} (p50)"),
            ("camera fps / dropped (pipeline + camera)",
             f"{camera['fps']:.1f} / {camera['dropped']} + {camera['source']['dropped']}"
             if "fps" in camera else camera.get("skipped", "-"))]
    width = max(len(k) for k, _ in rows)
    print("\n".join(["", "Prism demo summary", "-" * (width + 30)]
                    + [f"{k:<{width}}  {v}" for k, v in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
