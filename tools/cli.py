"""The ``prism`` command. Every subcommand is a thin layer over the public API.

    prism train  --model resnet20 [--dataset mnist5k] [--epochs N]     → checkpoint (cached)
    prism deploy CHECKPOINT [--target cpu] [--out DIR]                 → bundle
    prism quantize CHECKPOINT [--scheme pwlq] [--bits 4] [--out DIR]   → quantized bundle
    prism infer  BUNDLE (--dataset mnist5k [--split test] | --input x.npy [--output y.npy])
    prism bench  BUNDLE [BUNDLE ...] [--backend a,b] [--scenario sensor --rate 30] [--batch 1,8]
                 [--iterations N | --duration S] [--dataset mnist5k] [--json/--md F] [--plots DIR]
    prism dynamic CHECKPOINT [--candidates 32] [--epochs 20] [--accuracy A | --max-mflops F]
                  [--quantize pwlq4] [--backend native]                → S2DNAS multi-stage bundle
    prism conveyor [--source URI] [--plc HOST:PORT|sim] [--gate-distance-mm D] [--duration S] [--soak]
                                                                       → conveyor scanner / soak bench
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import sdk


def _recipe_from_meta(meta: dict):
    """The preprocessing that reproduces training normalisation from u8 frames."""
    from sdk.preprocess import PreprocessRecipe

    ds = meta["dataset"]
    h, w = ds["image_shape"]
    return PreprocessRecipe(pixel_format="Mono8", channels="gray", size=(h, w), scale=1 / 255,
                            mean=(ds["mean"],), std=(ds["std"],))


def cmd_train(args) -> int:
    from sdk.models.train import default_config, get_or_train

    overrides = {k: v for k, v in {"epochs": args.epochs, "lr": args.lr, "seed": args.seed,
                                   "dataset": args.dataset, "threads": args.threads}.items()
                 if v is not None}
    config = default_config(args.model, **overrides)
    model, meta = get_or_train(config, progress=not args.quiet)
    from sdk.models.train import checkpoint_path

    stem = checkpoint_path(config)
    print(json.dumps({"checkpoint": str(stem), "cached": meta["cached"],
                      "test_accuracy": meta["accuracy"]["test"], "seconds": meta["seconds"]}, indent=2))
    return 0


def cmd_deploy(args) -> int:
    from sdk.models.train import load_checkpoint

    model, meta = load_checkpoint(args.checkpoint)
    name = meta["architecture"]["name"]
    out = args.out or f"{name}.{args.target}.prism"
    bundle = sdk.deploy(model, target=args.target, out=out, precision=args.precision,
                        preprocess=_recipe_from_meta(meta), name=name,
                        metadata={"dataset": meta["dataset"]["name"], "accuracy": meta["accuracy"],
                                  "checkpoint": str(args.checkpoint)})
    print(json.dumps({"bundle": str(bundle.path), "target": bundle.target,
                      "precision": bundle.precision,
                      "max_abs_diff": bundle.manifest["export"]["max_abs_diff"]}, indent=2))
    return 0


def calibration_batch(dataset: str, samples: int, seed: int = 0) -> np.ndarray:
    """``samples`` seeded random training images, normalised: the paper calibrates on 512."""
    from sdk.data import load_dataset, normalize

    train = load_dataset(dataset, "train")
    pick = np.random.default_rng(seed).choice(len(train.labels), size=min(samples, len(train.labels)),
                                              replace=False)
    return normalize(train.images[np.sort(pick)], dataset)


def cmd_quantize(args) -> int:
    if args.checkpoint.suffix == ".onnx":  # an existing ONNX model: no PyTorch source needed
        from sdk.data import dataset_info

        dataset = args.dataset or "mnist5k"
        info = dataset_info(dataset)
        model = str(args.checkpoint)
        meta = {"architecture": {"name": args.checkpoint.stem}, "dataset": info,
                "accuracy": {"test": None}}
        calib = calibration_batch(dataset, args.calibration_samples)
    else:
        import torch

        from sdk.models.train import load_checkpoint

        model, meta = load_checkpoint(args.checkpoint)
        dataset = meta["dataset"]["name"]
        calib = torch.from_numpy(calibration_batch(dataset, args.calibration_samples))
    qmodel = sdk.quantize(model, calib, scheme=args.scheme, weight_bits=args.bits,
                          breakpoints=args.breakpoints, breakpoint_method=args.method,
                          bias_correction=not args.no_bias_correction, act_bits=args.act_bits,
                          act_calibration=args.act_calibration,
                          skip_first_layer=args.skip_first_layer, progress=not args.quiet)
    name = meta["architecture"]["name"]
    precision = f"{args.scheme}{args.bits}"
    out = args.out or f"{name}.{args.target}.{precision}.prism"
    bundle = sdk.deploy(qmodel, target=args.target, out=out, form=args.form,
                        preprocess=_recipe_from_meta(meta), name=name,
                        metadata={"dataset": dataset, "fp32_accuracy": meta["accuracy"],
                                  "checkpoint": str(args.checkpoint)})
    with sdk.load(bundle.path) as engine:
        acc = evaluate_bundle(engine, dataset, "test")
    q = bundle.manifest["quantization"]
    print(json.dumps({"bundle": str(bundle.path), "precision": bundle.precision, "form": q["form"],
                      "test_accuracy": acc["accuracy"], "fp32_test_accuracy": meta["accuracy"]["test"],
                      "packed_weight_ratio": q["sizes"]["packed_weight_ratio"],
                      "skipped_layers": q["skipped"]}, indent=2))
    return 0


def evaluate_bundle(engine: sdk.Engine, dataset: str, split: str, batch: int = 256) -> dict:
    """Accuracy of a bundle on a labelled split, frames preprocessed by the bundle's recipe."""
    from sdk.data import load_dataset

    data = load_dataset(dataset, split)
    correct = 0
    for i in range(0, len(data.labels), batch):
        out = engine.infer(engine.preprocess(data.images[i:i + batch]))
        # a dynamic (early-exit) bundle returns predictions with the exit stage of each sample
        predictions = out.predictions if hasattr(out, "predictions") else out.argmax(1)
        correct += int((predictions == data.labels[i:i + batch]).sum())
    return {"dataset": dataset, "split": split, "samples": int(len(data.labels)),
            "accuracy": correct / len(data.labels)}


def cmd_infer(args) -> int:
    engine = sdk.load(args.bundle, backend=args.backend)
    if args.dataset:
        print(json.dumps(evaluate_bundle(engine, args.dataset, args.split), indent=2))
        return 0
    x = np.load(args.input)
    if x.dtype == np.uint8:  # raw frames: apply the bundle's preprocessing
        x = engine.preprocess(x)
    y = engine.infer(x)
    if args.output:
        np.save(args.output, y)
    print(json.dumps({"input": list(x.shape), "output": list(y.shape),
                      "argmax": y.argmax(-1).tolist()[:32]}))
    return 0


def _csv(text: str, cast=str) -> list:
    return [cast(v) for v in str(text).split(",") if v.strip()]


def cmd_bench(args) -> int:
    from .bench import bench_bundle, format_report, write_json

    backends, batches = _csv(args.backend), _csv(args.batch, int)
    scenarios = args.scenario or (["sensor"] if args.rate else [])
    suite = (len(args.bundle) > 1 or len(backends) > 1 or len(batches) > 1 or scenarios or args.dataset
             or args.md or args.plots)
    if not suite:  # one bundle, one backend: single-stream against raw onnxruntime (overhead)
        report = bench_bundle(args.bundle[0], backend=backends[0], batch=batches[0], warmup=args.warmup,
                              iterations=args.iterations, duration=args.duration, threads=args.threads,
                              progress=not args.quiet)
        print(format_report(report))
        if args.json:
            write_json(report, args.json)
        return 0
    from .bench_report import to_markdown, write_plots
    from .bench_scenarios import Budget
    from .bench_suite import run_suite, strip_private

    budget = Budget(min_seconds=10.0 if args.duration is None else args.duration,
                    min_queries=args.min_queries, iterations=args.iterations, warmup=args.warmup)
    report = run_suite(args.bundle, backends=backends, scenarios=scenarios or ["single-stream"],
                       batches=batches, threads=args.threads, rate=args.rate, streams=args.streams,
                       offline_batch=args.offline_batch, budget=budget, dataset=args.dataset,
                       accuracy_limit=args.accuracy_samples, atol=args.atol, rtol=args.rtol,
                       progress=not args.quiet)
    markdown = to_markdown(report)
    if args.plots:
        plots = write_plots(report, args.plots)
        import os

        base = args.md.parent if args.md else Path.cwd()
        markdown += "\n## Plots\n\n" + "\n".join(f"![{p.stem}]({os.path.relpath(p, base)})" for p in plots) + "\n"
    print(markdown)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(markdown + "\n")
    if args.json:
        write_json(strip_private(report), args.json)
    return 0


def _parse_quant_precision(text: str) -> tuple[str, int]:
    """"pwlq4" -> ("pwlq", 4); a clear error for anything else."""
    import re

    m = re.fullmatch(r"(pwlq|uniform)([2-8])", text)
    if not m:
        raise SystemExit(f"prism dynamic: --quantize {text!r}: expected pwlq<bits> or uniform<bits>, "
                         f"bits 2..8 (e.g. pwlq4, uniform8)")
    return m.group(1), int(m.group(2))


def cmd_dynamic(args) -> int:
    from sdk.data import load_dataset
    from sdk.models.train import load_checkpoint

    quant = _parse_quant_precision(args.quantize) if args.quantize else None  # fail before the search
    model, meta = load_checkpoint(args.checkpoint)
    dataset = meta["dataset"]["name"]
    options = {k: v for k, v in {"candidates": args.candidates, "finetune_epochs": args.finetune_epochs,
                                 "epochs": args.epochs, "lr": args.lr, "stages": args.stages,
                                 "groups": args.groups, "threads": args.threads}.items() if v is not None}
    net = sdk.make_dynamic(model, load_dataset(dataset, "train"), target_accuracy=args.accuracy,
                           max_macs=args.max_mflops * 1e6 if args.max_mflops else None,
                           log_dir=args.log, progress=not args.quiet, **options)
    name = meta["architecture"]["name"]
    suffix = f"dynamic.{args.quantize}" if args.quantize else "dynamic"
    out = args.out or f"{name}.{args.target}.{suffix}.prism"
    if quant:  # every stage quantized (PWLQ or uniform), calibrated through all stages
        import torch

        net = sdk.quantize(net, torch.from_numpy(calibration_batch(dataset, 512)), scheme=quant[0],
                           weight_bits=quant[1], progress=not args.quiet)
    bundle = sdk.deploy(net, target=args.target, out=out, preprocess=_recipe_from_meta(meta),
                        name=f"{name}_s2dnas",
                        metadata={"dataset": dataset, "static_accuracy": meta["accuracy"],
                                  "checkpoint": str(args.checkpoint)})
    test = load_dataset(dataset, "test")
    with sdk.load(bundle.path, backend=args.backend) as engine:
        results = [engine.infer(engine.preprocess(test.images[i:i + 256]))
                   for i in range(0, len(test.labels), 256)]
        stats = engine.stats()
    pred = np.concatenate([r.predictions for r in results])
    exits = np.concatenate([r.exit_stage for r in results])
    dyn = bundle.manifest["dynamic"]
    print(json.dumps({"bundle": str(bundle.path), "precision": bundle.manifest["precision"],
                      "backend": engine.backend_name, "architecture": dyn["architecture_description"],
                      "thresholds": dyn["thresholds"], "test_accuracy": float((pred == test.labels).mean()),
                      "static_test_accuracy": meta["accuracy"]["test"],
                      "mean_mflops": stats["mean_macs"] / 1e6, "static_mflops": dyn["static_macs"] / 1e6,
                      "stage_mflops": [s["macs"] / 1e6 for s in dyn["stages"]],
                      "exit_fractions": (np.bincount(exits, minlength=len(dyn["stages"])) / len(exits)).tolist()},
                     indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prism", description="Prism edge deployment SDK")
    p.add_argument("--version", action="version", version=f"prism {sdk.__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a zoo model (cached checkpoint)")
    t.add_argument("--model", required=True)
    t.add_argument("--dataset", default=None)
    t.add_argument("--epochs", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--threads", type=int)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(fn=cmd_train)

    d = sub.add_parser("deploy", help="export a checkpoint into a bundle for a target")
    d.add_argument("checkpoint", type=Path)
    d.add_argument("--target", default="cpu", help=f"one of: {', '.join(sdk.target_names())}")
    d.add_argument("--precision", default=None)
    d.add_argument("--out", type=Path)
    d.set_defaults(fn=cmd_deploy)

    q = sub.add_parser("quantize", help="post-training quantization (PWLQ/uniform) into a bundle")
    q.add_argument("checkpoint", type=Path, help="a checkpoint (prism train) or an .onnx model")
    q.add_argument("--dataset", help="calibration/evaluation data for an .onnx model (default mnist5k)")
    q.add_argument("--scheme", default="pwlq", choices=["pwlq", "uniform"])
    q.add_argument("--bits", type=int, default=4, help="weight bits, 2-8")
    q.add_argument("--breakpoints", type=int, default=1, help="PWLQ breakpoints, 1-3")
    q.add_argument("--method", default="gaussian_closed",
                   help="breakpoint method: gaussian_closed, laplacian_closed, gaussian_expected, "
                        "laplacian_expected, empirical")
    q.add_argument("--no-bias-correction", action="store_true")
    q.add_argument("--act-bits", type=int, default=8)
    q.add_argument("--act-calibration", default="topk_median", choices=["topk_median", "percentile", "minmax"])
    q.add_argument("--skip-first-layer", action="store_true")
    q.add_argument("--calibration-samples", type=int, default=512)
    q.add_argument("--target", default="cpu")
    q.add_argument("--form", default=None, help="ONNX form: integer (ConvInteger) or qdq")
    q.add_argument("--out", type=Path)
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(fn=cmd_quantize)

    i = sub.add_parser("infer", help="run a bundle on a dataset split or a .npy file")
    i.add_argument("bundle", type=Path)
    i.add_argument("--backend", default="auto")
    g = i.add_mutually_exclusive_group(required=True)
    g.add_argument("--dataset")
    g.add_argument("--input", type=Path, help=".npy: float32 model input, or uint8 frames")
    i.add_argument("--split", default="test")
    i.add_argument("--output", type=Path)
    i.set_defaults(fn=cmd_infer)

    b = sub.add_parser("bench", help="latency/throughput of bundles: scenarios, comparison, reports",
                       description="One bundle, no scenario: single-stream vs raw onnxruntime (overhead). "
                                   "Several bundles/backends/batches, --scenario, --rate, --dataset, --md or "
                                   "--plots: the suite (MLPerf-style scenarios, side-by-side outputs, breakdown).")
    b.add_argument("bundle", type=Path, nargs="+", help="one or more bundles, compared side by side")
    b.add_argument("--backend", default="auto", help="backend(s), comma-separated: auto,onnxruntime,native,tensorrt,...")
    b.add_argument("--batch", default="1", help="batch size(s), comma-separated (single-stream)")
    b.add_argument("--scenario", action="append", choices=["single-stream", "multi-stream", "offline", "sensor"],
                   help="repeatable; default single-stream (sensor when --rate is given)")
    b.add_argument("--rate", type=float, help="sensor-paced: arrivals per second (30 fps, 1743 lines/s)")
    b.add_argument("--streams", type=int, default=4, help="multi-stream: samples per query")
    b.add_argument("--offline-batch", type=int, default=32, help="offline: batch size")
    b.add_argument("--warmup", type=int, default=10)
    b.add_argument("--iterations", type=int, help="timed queries (sensor: arriving frames), instead of a duration")
    b.add_argument("--duration", type=float, help="minimum seconds per scenario (suite default 10, like MLPerf; "
                                                   "single-bundle default 5)")
    b.add_argument("--min-queries", type=int, default=100, help="minimum queries per scenario (MLPerf: 100)")
    b.add_argument("--threads", type=int)
    b.add_argument("--dataset", help="accuracy on a labelled set, e.g. mnist5k (inputs become its images)")
    b.add_argument("--accuracy-samples", type=int, help="limit the accuracy evaluation to N images")
    b.add_argument("--atol", type=float, default=1e-3, help="output comparison: absolute tolerance")
    b.add_argument("--rtol", type=float, default=1e-3, help="output comparison: relative tolerance")
    b.add_argument("--json", type=Path)
    b.add_argument("--md", type=Path, help="write the Markdown report here")
    b.add_argument("--plots", type=Path, help="directory for PNG plots (latency histogram/CDF, keep-up)")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(fn=cmd_bench)

    y = sub.add_parser("dynamic", help="S2DNAS: search, train and deploy a multi-stage early-exit model")
    y.add_argument("checkpoint", type=Path)
    y.add_argument("--candidates", type=int, help="architectures the controller samples (default 32)")
    y.add_argument("--finetune-epochs", type=float, help="fine-tuning of each candidate (default 1)")
    y.add_argument("--epochs", type=float, help="training of the chosen network (default 20)")
    y.add_argument("--lr", type=float, help="initial learning rate of that training (default 0.1)")
    y.add_argument("--stages", type=int)
    y.add_argument("--groups", type=int)
    g = y.add_mutually_exclusive_group()
    g.add_argument("--accuracy", type=float, help="thresholds: fewest MACs with held-out accuracy >= A")
    g.add_argument("--max-mflops", type=float, help="thresholds: best accuracy with mean MMACs <= F")
    y.add_argument("--threads", type=int)
    y.add_argument("--log", type=Path, help="directory for the search log, best architecture, report")
    y.add_argument("--target", default="cpu")
    y.add_argument("--quantize", metavar="PRECISION",
                   help="quantize every stage after training, e.g. pwlq4 or uniform8 (512 calibration images)")
    y.add_argument("--backend", default="auto", help="backend the test accuracy is measured on "
                   "(auto, onnxruntime, native)")
    y.add_argument("--out", type=Path)
    y.add_argument("--quiet", action="store_true")
    y.set_defaults(fn=cmd_dynamic)

    from .conveyor import add_arguments as conveyor_arguments, run_command as conveyor_command

    c = sub.add_parser("conveyor", help="conveyor scanner: line-scan -> objects -> classifier -> reject gate (Modbus)")
    conveyor_arguments(c)
    c.set_defaults(fn=conveyor_command)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except sdk.PrismError as e:
        print(f"prism {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
