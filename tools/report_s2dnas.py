"""S2DNAS report: the paper's Table 1, Fig. 6 and exit statistics on MNIST-5k, plus measured
wall-clock latency of the deployed dynamic bundles against the static one.

    python -m sdk.tools.report_s2dnas [--model resnet20] [--candidates 24] [--epochs 15] [--quick]

1. the static model (``sdk.models.train.get_or_train``, cached);
2. S2DNAS through ``sdk.make_dynamic``, twice: with the paper's reward (COST = FLOPs) and with
   COST = measured ONNX Runtime latency. Each search samples ``--candidates`` architectures, each
   fine-tuned ``--finetune-epochs`` from the static weights and scored by Eq. 2 on the held-out
   10 % of the training split; the best is trained ``--epochs`` with Eq. 3;
3. the naive layer-wise early-exit baseline (classifiers after the 28x28 and 14x14 layers),
   trained the same way on the same samples;
4. thresholds chosen on a calibration set no weights were fitted to (the 350 held-out training
   images + the 500 validation images) two ways: the paper's maximum reward (omega = -0.06), and
   "no calibration loss" (lowest cost whose accuracy is at least the best single stage's);
5. Table 1 on the 1000 test images (one image is 0.1 pt): mean FLOPs, reduction, accuracy;
   Fig. 6 (accuracy vs FLOPs over the threshold grid) and the exit histogram;
6. the models deployed (``sdk.deploy``), the dynamic bundles checked against PyTorch on the
   test set, then timed on ONNX Runtime (1 thread each, interleaved rounds): single-stream
   latency (batch 1, one test image per call, in a fixed random order) and throughput at batch
   64; plus ``prism bench`` (its random N(0,1) input) for reference.

Writes ``README.md``, ``results.json``, ``perf.json`` (rows for the main README's table),
search logs and PNGs to ``--out`` (default ``reports/s2dnas``). Trained networks and search logs
are cached in ``--cache`` (default ``out/s2dnas_report``): a re-run only re-measures; delete it
to search again.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import sdk
from sdk.data import dataset_info, load_dataset, normalize
from sdk.models import count_flops
from sdk.models.train import default_config, evaluate, get_or_train
from sdk.preprocess import PreprocessRecipe
from sdk.toolchain.s2dnas import (Architecture, DynamicConfig, ExitProfile, LabelledData, as_labelled,
                                  build_layerwise, choose_thresholds, make_dynamic, stage_probabilities,
                                  train_stages, tradeoff_curve, transform)
from sdk.toolchain.s2dnas.latency import LatencyMeter
from sdk.toolchain.s2dnas.nas import SearchSettings
from sdk.toolchain.s2dnas.training import TrainSettings

from .bench import LatencyStats, bench_bundle, host_info

DATASET = "mnist5k"
GOAL_LATENCY_RATIO = 0.5   # dynamic mean latency <= half the static one
GOAL_MAX_DROP_PT = 0.3     # at no more than this accuracy loss (percentage points)
COMMAND = "python -m sdk.tools.report_s2dnas"
QUANTIZED_VARIANT = "s2dnas_latency_w"  # the S2DNAS network quantized to PWLQ 4-bit in the report
# key -> (label, COST of the search reward and of the thresholds)
@dataclasses.dataclass(frozen=True)
class Variant:
    """One S2DNAS run: the reward's COST and omega, the controller's Adam lr and seed."""

    label: str
    cost: str           # "macs" (the paper's FLOPs) or "latency" (measured)
    omega: float = -0.06
    ppo_lr: float = 3e-3
    seed: int = 0

    @property
    def cache_name(self) -> str:  # the first two runs' cache folders predate omega/lr/seed
        default = (self.omega, self.ppo_lr, self.seed) == (-0.06, 3e-3, 0)
        return self.cost if default else f"{self.cost}_w{-self.omega:g}_lr{self.ppo_lr:g}_s{self.seed}"


VARIANTS = {
    "s2dnas": Variant("S2DNAS, FLOPs reward (paper)", "macs"),
    "s2dnas_latency": Variant("S2DNAS, latency reward", "latency"),
    # omega -0.3 weighs cost 5x more (halving it is worth 23 % relative accuracy, not 4.2 %); the
    # faster controller lr lets the policy move within a few dozen candidates; another seed.
    "s2dnas_latency_w": Variant("S2DNAS, latency reward, ω = −0.3", "latency", -0.3, 0.03, 1),
}
RULES = {"reward": "max reward", "no_loss": "no calibration loss"}


def _recipe() -> PreprocessRecipe:
    ds = dataset_info(DATASET)
    return PreprocessRecipe(pixel_format="Mono8", channels="gray", size=tuple(ds["image_shape"]),
                            scale=1 / 255, mean=(ds["mean"],), std=(ds["std"],))


# -- models ------------------------------------------------------------------------------------
def build_s2dnas(model, config: DynamicConfig, cache: Path, progress: bool):
    """``make_dynamic`` once; later runs rebuild the network from the cached architecture."""
    cache.mkdir(parents=True, exist_ok=True)
    state, meta = cache / "s2dnas.pt", cache / "report.json"
    if state.is_file() and meta.is_file():
        report = json.loads(meta.read_text())
        net = transform(model, Architecture.from_dict(report["architecture"]))
        net.load_state_dict(torch.load(state, weights_only=True))
        net.report = report
        return net.eval()
    net = make_dynamic(model, load_dataset(DATASET, "train"), config=config, log_dir=cache, progress=progress)
    torch.save(net.state_dict(), state)
    return net


def build_naive(model, config: DynamicConfig, cache: Path, progress: bool):
    net = build_layerwise(model, config.stages)
    state = cache / "naive.pt"
    if state.is_file():
        net.load_state_dict(torch.load(state, weights_only=True))
        return net.eval(), json.loads((cache / "naive.json").read_text())
    fit, _ = as_labelled(load_dataset(DATASET, "train")).split(config.val_fraction, config.seed)
    t0 = time.perf_counter()
    history = train_stages(net, fit, config.final, seed=config.seed, progress=progress, desc="naive train")
    info = {"exits": net.exits, "history": history, "seconds": time.perf_counter() - t0}
    torch.save(net.state_dict(), state)
    (cache / "naive.json").write_text(json.dumps(info, indent=2) + "\n")
    return net.eval(), info


def mac_profile(net, data: LabelledData) -> ExitProfile:
    return ExitProfile.from_probabilities(stage_probabilities(net, data.x), data.y, net.stage_macs,
                                          net.static_macs)


def choose(net, calib: LabelledData, test: LabelledData, omega: float, relative_latency=None) -> dict:
    """Both threshold rules on the calibration profile (priced in MACs, or in relative latency
    when given), and what they give on test (priced in MACs)."""
    cal, tst = mac_profile(net, calib), mac_profile(net, test)
    priced = cal.with_cost(relative_latency, 1.0) if relative_latency is not None else cal
    best_stage = float(cal.correct.mean(axis=1).max())
    out: dict[str, Any] = {}
    for rule, kw in (("reward", {}), ("no_loss", {"target_accuracy": best_stage})):
        chosen = choose_thresholds(priced, omega=omega, **kw)
        out[rule] = {"calibration": chosen.to_dict(), "test": tst.outcome(chosen.thresholds, omega).to_dict()}
    out["best_stage_calibration_accuracy"] = best_stage
    out["stage_test_accuracy"] = tst.correct.mean(axis=1).tolist()
    out["relative_latency"] = relative_latency
    return out, tst


# -- deployment and timing ---------------------------------------------------------------------
def deploy(model, out: Path, name: str, **kw) -> Path:
    x = torch.from_numpy(normalize(load_dataset(DATASET, "test").images[:2], DATASET))
    return sdk.deploy(model, example_input=x, out=out / f"{name}.prism", preprocess=_recipe(), name=name, **kw).path


def check_bundle(path: Path, net, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """A dynamic bundle's test accuracy and exits, against the PyTorch network's own exits."""
    with sdk.load(path) as engine:
        res = [engine.infer(x[i:i + 250]) for i in range(0, len(x), 250)]
        stats = engine.stats()
    pred = np.concatenate([r.predictions for r in res])
    exits = np.concatenate([r.exit_stage for r in res])
    logits, torch_exits = net.infer(torch.from_numpy(x))
    return {"accuracy": float((pred == y).mean()), "thresholds": list(net.thresholds),
            "exit_fractions": (np.bincount(exits, minlength=net.num_stages) / len(y)).tolist(),
            "mean_macs": stats["mean_macs"],
            "same_exits_as_pytorch": float((exits == torch_exits.numpy()).mean()),
            "same_predictions_as_pytorch": float((pred == logits.argmax(1).numpy()).mean())}


def _timed(engine, batches: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(batches))
    clock = time.perf_counter
    for i, b in enumerate(batches):
        t0 = clock()
        engine.infer(b)
        out[i] = clock() - t0
    return out


def measure(paths: dict[str, Path], x: np.ndarray, *, rounds: int, per_round: int, seed: int = 0) -> dict:
    """Single-stream (batch 1) latency and batch-64 throughput of every bundle, rounds
    interleaved so machine load hits all alike; ratios against ``paths["static"]``."""
    engines = {k: sdk.load(p, intra_op_threads=1) for k, p in paths.items()}
    order = np.random.default_rng(seed).permutation(len(x))
    singles = [x[i:i + 1] for i in order]
    batches = [x[i:i + 64] for i in range(0, len(x), 64)]
    for e in engines.values():
        e.warmup(10)
    dynamic = {k: e for k, e in engines.items() if hasattr(e, "stats")}
    lat: dict[str, list] = {k: [] for k in engines}
    thr: dict[str, list] = {k: [] for k in engines}
    for r in range(rounds):
        chunk = [singles[(r * per_round + i) % len(singles)] for i in range(per_round)]
        for name, e in engines.items():
            lat[name].append(_timed(e, chunk))
    stats = {k: {"batch1": e.stats()} for k, e in dynamic.items()}
    for e in dynamic.values():
        e.reset_stats()
    for _ in range(max(2, rounds // 2)):
        for name, e in engines.items():
            t0 = time.perf_counter()
            _timed(e, batches)
            thr[name].append(len(x) / (time.perf_counter() - t0))
    for k, e in dynamic.items():
        stats[k]["batch64"] = e.stats()
    result: dict[str, Any] = {"single_stream": {}, "batch64": {}, "stage_stats": stats}
    for name in engines:
        result["single_stream"][name] = dataclasses.asdict(LatencyStats.from_seconds(np.concatenate(lat[name])))
        result["batch64"][name] = {"items_per_s": float(np.median(thr[name])), "rounds": thr[name]}
    s = result["single_stream"]["static"]
    items = {k: v["items_per_s"] for k, v in result["batch64"].items()}
    result["ratios"] = {k: {"mean": d["mean"] / s["mean"], "p50": d["p50"] / s["p50"], "p90": d["p90"] / s["p90"],
                            "throughput": items[k] / items["static"]}
                        for k, d in result["single_stream"].items() if k != "static"}
    result["engines"] = {k: e.describe() for k, e in engines.items()}
    for e in engines.values():
        e.close()
    return result


def quantized(static, net, calib_x: np.ndarray, test: LabelledData, cache: Path, *, rounds: int,
              per_round: int, seed: int = 0) -> dict:
    """PWLQ 4-bit of the static model and of the dynamic ``net`` (every stage, calibrated on 512
    training images through all stages), deployed in the integer form: test accuracy and exits on
    ONNX Runtime and on the native backend, and batch-1 latency of dynamic vs static on each
    (interleaved rounds, 1 thread)."""
    calib = torch.from_numpy(calib_x)
    q_static = sdk.quantize(static, calib, scheme="pwlq", weight_bits=4, progress=False)
    q_net = sdk.quantize(net, calib, scheme="pwlq", weight_bits=4, progress=False)
    paths = {"static": deploy(q_static, cache, "static_pwlq4", form="integer"),
             "dynamic": deploy(q_net, cache, "dynamic_pwlq4", form="integer")}
    out: dict[str, Any] = {"thresholds": list(net.thresholds), "backends": {}}
    order = np.random.default_rng(seed).permutation(len(test.x))
    for backend, opts in (("onnxruntime", {"intra_op_threads": 1}), ("native", {"num_threads": 1})):
        engines = {k: sdk.load(p, backend=backend, **opts) for k, p in paths.items()}
        row: dict[str, Any] = {}
        for k, e in engines.items():
            res = [e.infer(test.x[i:i + 250]) for i in range(0, len(test.x), 250)]
            if k == "dynamic":
                pred = np.concatenate([r.predictions for r in res])
                exits = np.concatenate([r.exit_stage for r in res])
                row["exit_fractions"] = (np.bincount(exits, minlength=net.num_stages) / len(exits)).tolist()
            else:
                pred = np.concatenate(res).argmax(1)
            row[f"{k}_accuracy"] = float((pred == test.y).mean())
            e.warmup(10)
        lat = {k: [] for k in engines}
        for r in range(rounds):
            chunk = [test.x[order[(r * per_round + i) % len(order)]][None] for i in range(per_round)]
            for k, e in engines.items():
                lat[k].append(_timed(e, chunk))
        stats = {k: dataclasses.asdict(LatencyStats.from_seconds(np.concatenate(v))) for k, v in lat.items()}
        row["latency_ms"] = {k: {q: v[q] for q in ("mean", "p50", "p90")} for k, v in stats.items()}
        row["mean_ratio"] = stats["dynamic"]["mean"] / stats["static"]["mean"]
        row["p50_ratio"] = stats["dynamic"]["p50"] / stats["static"]["p50"]
        out["backends"][backend] = row
        for e in engines.values():
            e.close()
    ort_row, nat_row = out["backends"]["onnxruntime"], out["backends"]["native"]
    out["native_equals_ort"] = (ort_row["dynamic_accuracy"] == nat_row["dynamic_accuracy"]
                                and ort_row["exit_fractions"] == nat_row["exit_fractions"])
    return out


def prism_bench(paths: dict[str, Path], seconds: float) -> dict:
    out = {name: bench_bundle(p, batch=1, duration=seconds, threads=1, compare_raw=False,
                              progress=False)["results"]["prism"]["latency_ms"] for name, p in paths.items()}
    out["ratios"] = {k: out[k]["mean"] / out["static"]["mean"] for k in paths if k != "static"}
    return out


# -- figures -----------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_tradeoff(curves: dict[str, dict], static: tuple[float, float], chosen: dict, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.6, 4.6))
    for (name, c), color in zip(curves.items(), ("tab:blue", "tab:green", "tab:orange", "tab:red", "tab:purple")):
        ax.scatter(c["mean_cost"] / 1e6, 100 * c["accuracy"], s=4, alpha=0.12, color=color)
        f = c["front"]
        ax.plot(c["mean_cost"][f] / 1e6, 100 * c["accuracy"][f], "-o", ms=3, color=color, label=name)
    ax.scatter([static[0] / 1e6], [100 * static[1]], marker="*", s=140, color="k", label="static", zorder=5)
    for label, (m, a) in chosen.items():
        ax.scatter([m / 1e6], [100 * a], marker="D", s=40, edgecolor="k", facecolor="none", zorder=6)
        ax.annotate(label, (m / 1e6, 100 * a), textcoords="offset points", xytext=(5, -9), fontsize=6)
    ax.set_xlabel("mean MFLOPs (MACs) per image, test")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(95.0, 99.5)
    ax.set_title("Accuracy vs computation over exit thresholds (Fig. 6)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_exits(rows: dict[str, dict], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.6, 3.6))
    stages = len(next(iter(rows.values()))["exit_fractions"])
    width = 0.8 / len(rows)
    for k, (label, r) in enumerate(rows.items()):
        bars = ax.bar(np.arange(stages) + k * width, 100 * np.asarray(r["exit_fractions"]), width, label=label)
        for b, acc in zip(bars, r["stage_accuracy"]):
            if acc is not None:
                ax.annotate(f"{100 * acc:.1f}%", (b.get_x() + b.get_width() / 2, b.get_height()),
                            ha="center", va="bottom", fontsize=6)
    ax.set_xticks(np.arange(stages) + 0.4 - width / 2)
    ax.set_xticklabels([f"stage {j + 1}" for j in range(stages)])
    ax.set_ylabel("test images exiting (%)")
    ax.set_title("Where test images exit (labels: accuracy of the images exiting there)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_search(logs: dict[str, list[dict]], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(logs), figsize=(3.4 * len(logs), 3.0), squeeze=False)
    for ax, (label, log) in zip(axes[0], logs.items()):
        r = np.array([e["reward"] for e in log])
        ax.plot(r, "o", ms=3, label="candidate")
        ax.plot(np.maximum.accumulate(r), "-", label="best so far")
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("candidate")
        ax.set_ylabel("reward (Eq. 2, held-out)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


# -- report ------------------------------------------------------------------------------------
def _t(values) -> str:
    return "[" + ", ".join(f"{t:g}" for t in values) + "]"


def render(res: dict) -> str:
    st = res["static"]
    sm, sa = st["macs"], st["test_accuracy"]
    cfg, meta, lat = res["config"], res["meta"], res["latency"]
    methods = [("naive", "Naive (layer-wise exits)")] + [(k, v.label) for k, v in VARIANTS.items()]
    lines = [
        "# S2DNAS on MNIST-5k: ResNet-20 made dynamic",
        "",
        f"Generated by `{meta['command']}` on {meta['host']['cpu']} ({meta['host']['cores']} cores, "
        f"shared with other jobs); torch {meta['torch']}, onnxruntime {meta['onnxruntime']}; "
        f"{meta['minutes']:.0f} min for this run (searches and training cached from earlier runs).",
        "",
        "## Table 1 (test split, 1000 images; one MAC counted as one FLOP, as in the paper)",
        "",
        "| method | thresholds | mean FLOPs | reduction | accuracy |",
        "| --- | --- | --- | --- | --- |",
        f"| Original (static) | - | {sm / 1e6:.2f}M | - | {100 * sa:.1f}% |",
    ]
    for key, label in methods:
        omega = VARIANTS[key].omega if key in VARIANTS else -0.06
        for rule, text in RULES.items():
            o = res[key]["thresholds"][rule]["test"]
            text = f"max reward (ω = {omega:g})" if rule == "reward" else text
            lines.append(f"| {label} | {text} {_t(o['thresholds'])} | {o['mean_cost'] / 1e6:.2f}M | "
                         f"{100 * (1 - o['mean_cost'] / sm):.0f}% | {100 * o['accuracy']:.1f}% "
                         f"({100 * (o['accuracy'] - sa):+.1f} pt) |")
    lines += [
        "",
        "Thresholds are chosen on 850 calibration images no weights were fitted to (the 350 held-out "
        "training images, 10 % of the training split, plus the 500 validation images) by the paper's "
        "rule, the highest reward (Eq. 2), and by *no calibration loss*: the lowest cost whose "
        "calibration accuracy is at least that of the best single stage. Cost is FLOPs for the naive "
        "baseline and the paper's S2DNAS, measured latency for the latency-reward variants. With "
        "ω = −0.06, halving the cost is worth 4.2 % relative accuracy, which on digits buys aggressive exits.",
        "",
        "| method | MFLOPs of exiting at stage 1 / 2 / 3 | test accuracy of each stage alone | architecture |",
        "| --- | --- | --- | --- |",
    ]
    for key, label in methods:
        r = res[key]
        arch = f"`{r['description']}`" if "description" in r else f"exits after {', '.join(r['exits'])}"
        lines.append(f"| {label} | {' / '.join(f'{m / 1e6:.2f}' for m in r['stage_macs'])} | "
                     f"{' / '.join(f'{100 * a:.1f}%' for a in r['thresholds']['stage_test_accuracy'])} | {arch} |")
    lines += [
        "",
        "Architectures: per resolution (28x28, 14x14, 7x7 maps) the split points of the 8 channel "
        "groups between stages 1 | 2 | 3, then the concat entries (i>j: stage j reuses stage i's "
        "features at that resolution's layers; the classifier always reuses every earlier stage).",
        "",
        "![accuracy vs FLOPs](tradeoff.png)",
        "",
        "![exit histogram](exits.png)",
        "",
        "## Search",
        "",
        f"Budget per search: {cfg['search']['candidates']} candidates sampled by the RNN controller (PPO, "
        f"Adam, {cfg['search']['batch']} candidates per update), each fine-tuned "
        f"{cfg['search']['finetune']['epochs']:g} epoch from the static weights (SGD, momentum 0.9, lr "
        f"{cfg['search']['finetune']['lr']:g} divided by 10 at 50 % and 75 %) and scored on the 350 "
        f"held-out images at its best thresholds. The chosen network is then trained "
        f"{cfg['final']['epochs']:g} epochs with the same schedule (lr {cfg['final']['lr']:g}), as is the "
        f"naive baseline. The latency reward prices a candidate's stages by their median ONNX Runtime "
        f"time (batch 1, 1 thread) relative to the static graph's, timed in the same interleaved rounds.",
        "",
        "| search | distinct candidates | minutes | best reward | its held-out accuracy / cost "
        "(after the short fine-tune) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key in VARIANTS:
        sr = res[key]["search"]
        b = sr["best_outcome"]
        lines.append(f"| {VARIANTS[key].label} | {sr['unique']} | {sr['seconds'] / 60:.0f} | {b['reward']:.4f} | "
                     f"{100 * b['accuracy']:.1f}% at {100 * b['relative_cost']:.0f}% of the static "
                     f"{'FLOPs' if VARIANTS[key].cost == 'macs' else 'latency'} (ω = {VARIANTS[key].omega:g}, "
                     f"controller lr {VARIANTS[key].ppo_lr:g}, seed {VARIANTS[key].seed}) |")
    lines += ["", "Logs: " + ", ".join(f"`search_log_{k}.jsonl`" for k in VARIANTS) + ".", "",
              "![search](search.png)", "",
              "## Deployed: measured wall-clock time (ONNX Runtime, 1 thread per engine)", ""]
    for key in VARIANTS:
        bc = res["bundles"][key]
        lines.append(f"- {VARIANTS[key].label} bundle, thresholds {_t(bc['thresholds'])} (no calibration "
                     f"loss): {100 * bc['accuracy']:.1f}% on the test set through the runtime, "
                     f"{bc['mean_macs'] / 1e6:.2f} MFLOPs per image; exits identical to PyTorch's on "
                     f"{100 * bc['same_exits_as_pytorch']:.1f}% of the images.")
    ss = lat["single_stream"]
    names = ["static"] + list(VARIANTS)
    lines += ["", "| measurement | " + " | ".join(["static"] + [v.label for v in VARIANTS.values()]) + " |",
              "| --- | " + " | ".join("---" for _ in names) + " |"]
    for q in ("mean", "p50", "p90"):
        cells = [f"{ss[n][q]:.3f} ms" + ("" if n == "static" else f" (×{lat['ratios'][n][q]:.2f})") for n in names]
        lines.append(f"| single stream, batch 1: {q} latency | " + " | ".join(cells) + " |")
    cells = [f"{lat['batch64'][n]['items_per_s']:.0f} img/s" + ("" if n == "static" else
             f" (×{lat['ratios'][n]['throughput']:.2f})") for n in names]
    lines.append("| batch 64: throughput | " + " | ".join(cells) + " |")
    pb = res["prism_bench"]
    cells = [f"{pb[n]['mean']:.3f} ms" + ("" if n == "static" else f" (×{pb['ratios'][n]:.2f})") for n in names]
    lines += ["| `prism bench` (random N(0,1) input), batch 1: mean | " + " | ".join(cells) + " |", ""]
    lines += ["Per stage, single stream (images entering / exiting, mean ms per graph run):", "",
              "| bundle | stage 1 | stage 2 | stage 3 |", "| --- | --- | --- | --- |"]
    for key in VARIANTS:
        cells = []
        for p in lat["stage_stats"][key]["batch1"]["stages"]:
            ms = 1e3 * p["seconds"] / p["calls"] if p["calls"] else 0.0
            cells.append(f"{p['entered']} / {p['exited']}, {ms:.3f} ms")
        lines.append(f"| {VARIANTS[key].label} | " + " | ".join(cells) + " |")
    g = res["goal"]
    lines += [
        "",
        f"**Goal** (≥ 50 % lower mean latency at ≤ {GOAL_MAX_DROP_PT} pt accuracy loss): "
        + "; ".join(f"{VARIANTS[k].label}: mean ×{v['latency_ratio']:.2f}, {v['accuracy_change_pt']:+.1f} pt"
                    for k, v in g["bundles"].items())
        + f" → **{'met' if g['met'] else 'not met'}**"
        + (f" by {VARIANTS[g['best']].label}." if g["met"] else "."),
        "",
        "Notes. FLOPs undercount thin stages: at batch 1 on these 28x28 inputs a stage's time is "
        "mostly per-operator and per-tensor overhead (ONNX Runtime runs every layer of a stage, "
        "however few channels it has, and a stage that reuses many cached features pays for each "
        "input and Concat), so a stage with a sixth of the FLOPs can take half the static model's "
        "time; hence the latency reward. Single-stream numbers feed one test image per call in a "
        "fixed random order, so the exit mix is the test set's; `prism bench` feeds random noise, "
        "on which confidences are low and many calls run every stage, so its ratio is a pessimistic "
        "bound. At batch 64 a batch pays for every stage any of its images reaches, on fewer images "
        "each (compaction). The machine's 2 cores were shared with other jobs; all bundles were "
        "timed in interleaved rounds so the load hits them alike, which shows more in the mean than "
        "in the median.",
        "",
        "## Findings and limits",
        "",
        "- FLOPs (Table 1) reproduce the paper's ordering: S2DNAS cuts 77-81 % of the static FLOPs where "
        "the naive layer-wise exits cut 58-61 %, at a smaller accuracy cost, because every S2DNAS stage "
        "classifies from the deepest features.",
        "- Wall-clock gains are smaller than FLOP gains: a stage runs every layer of the network, so "
        "its time has a floor set by per-operator overhead; the first stage of the paper-reward "
        "network has 18 % of the FLOPs but about half the static model's median time.",
        "- The searches are short (24 candidates, 1 epoch each). A one-epoch fine-tune leaves thin "
        "first stages unconfident, so the proxy reward undervalues the architectures a latency goal "
        "needs; with the controller's Adam lr at 0.003 the policy barely moved in 6 updates (the first "
        "two searches sampled the same 24 architectures and differ only in how they ranked them). "
        "The third search used lr 0.03 (now the default) and ω = −0.3.",
        "",
    ]
    q = res.get("quantized")
    if q:
        label = VARIANTS[q["variant"]].label
        lines += [
            "## Composed with PWLQ: every stage 4-bit, on ONNX Runtime and on the native backend",
            "",
            f"`sdk.deploy(sdk.quantize(net, 512 calibration images))`: the {label} network and the static "
            f"ResNet-20, PWLQ 4-bit weights (one breakpoint, bias correction), u8 activations, integer "
            f"ONNX form (ConvInteger/MatMulInteger), thresholds {_t(q['thresholds'])}; the calibration "
            "images run through all stages, so every stage's layers are calibrated on the activations "
            "they see deployed. Batch 1, 1 thread, interleaved rounds.",
            "",
            "| backend | static PWLQ4 accuracy | dynamic PWLQ4 accuracy | exits per stage | static mean / p50 | dynamic mean / p50 | mean ratio | p50 ratio |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for backend, r in q["backends"].items():
            ls, ld = r["latency_ms"]["static"], r["latency_ms"]["dynamic"]
            lines.append(
                f"| {backend} | {100 * r['static_accuracy']:.1f}% | {100 * r['dynamic_accuracy']:.1f}% | "
                f"{' / '.join(f'{100 * f:.1f}%' for f in r['exit_fractions'])} | "
                f"{ls['mean']:.3f} / {ls['p50']:.3f} ms | {ld['mean']:.3f} / {ld['p50']:.3f} ms | "
                f"×{r['mean_ratio']:.2f} | ×{r['p50_ratio']:.2f} |")
        lines += ["", "The native backend's integer stages give the same exits and predictions as ONNX "
                  "Runtime's integer form: " + ("yes." if q["native_equals_ort"] else "**no**."), ""]
    return "\n".join(lines)


def perf_rows(res: dict) -> dict:
    """README rows for the fastest bundle within the accuracy budget (else the fastest)."""
    g = res["goal"]
    key = g["best"]
    r = res["latency"]["ratios"][key]
    name = f"{VARIANTS[key].label}, ResNet-20"
    rows = [
        {"what": f"{name}: mean latency, batch 1, MNIST test images", "value": r["mean"], "unit": "x",
         "peer": "static ResNet-20 bundle", "goal": f"<= {GOAL_LATENCY_RATIO}", "met": r["mean"] <= GOAL_LATENCY_RATIO},
        {"what": f"{name}: accuracy change, test", "value": g["bundles"][key]["accuracy_change_pt"], "unit": "pt",
         "peer": "static ResNet-20", "goal": f">= -{GOAL_MAX_DROP_PT}",
         "met": g["bundles"][key]["accuracy_change_pt"] >= -GOAL_MAX_DROP_PT - 1e-9},
        {"what": f"{name}: throughput, batch 64", "value": r["throughput"], "unit": "x",
         "peer": "static ResNet-20 bundle", "goal": "-", "met": None},
    ]
    q = res.get("quantized")
    for backend, row in (q or {}).get("backends", {}).items():
        drop = 100 * (row["dynamic_accuracy"] - row["static_accuracy"])
        qname = f"{VARIANTS[q['variant']].label}, ResNet-20, every stage PWLQ4 (integer form) on {backend}"
        rows.append({"what": f"{qname}: mean latency, batch 1 ({drop:+.1f} pt vs static PWLQ4)",
                     "value": row["mean_ratio"], "unit": "x", "peer": f"static ResNet-20 PWLQ4 on {backend}",
                     "goal": f"<= {GOAL_LATENCY_RATIO}",
                     "met": row["mean_ratio"] <= GOAL_LATENCY_RATIO and drop >= -GOAL_MAX_DROP_PT - 1e-9})
    return {"host": res["meta"]["host"], "command": res["meta"]["command"], "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--candidates", type=int, default=24)
    p.add_argument("--finetune-epochs", type=float, default=1.0)
    p.add_argument("--epochs", type=float, default=15)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--per-round", type=int, default=200)
    p.add_argument("--bench-seconds", type=float, default=4.0)
    p.add_argument("--quick", action="store_true", help="tiny budget, to check the script runs")
    p.add_argument("--out", type=Path, default=Path("reports/s2dnas"))
    p.add_argument("--cache", type=Path, default=Path("out/s2dnas_report"))
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.quick:  # its own cache and output, so it never mixes with the real report
        args.candidates, args.finetune_epochs, args.epochs = 2, 0.05, 0.2
        args.rounds, args.per_round, args.bench_seconds = 2, 20, 0.5
        args.cache = args.cache.with_name(args.cache.name + "_quick")
        args.out = args.cache / "report"
    torch.set_num_threads(1)
    started = time.perf_counter()
    progress = not args.quiet
    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)

    static, meta = get_or_train(default_config(args.model), progress=progress)
    static_macs = count_flops(static)
    static_acc = evaluate(static, DATASET, "test")
    base = DynamicConfig(search=SearchSettings(candidates=args.candidates,
                                               finetune=TrainSettings(epochs=args.finetune_epochs)),
                         final=TrainSettings(epochs=args.epochs))
    nets = {}
    for key, v in VARIANTS.items():
        search = dataclasses.replace(base.search, cost=v.cost, omega=v.omega, seed=v.seed,
                                     ppo=dataclasses.replace(base.search.ppo, lr=v.ppo_lr))
        config = dataclasses.replace(base, search=search, omega=v.omega)
        nets[key] = build_s2dnas(static, config, args.cache / v.cache_name, progress)
    naive, naive_info = build_naive(static, base, args.cache, progress)

    _, held = as_labelled(load_dataset(DATASET, "train")).split(base.val_fraction, base.seed)
    val = as_labelled(load_dataset(DATASET, "val"))
    calib = LabelledData(np.concatenate([held.x, val.x]), np.concatenate([held.y, val.y]))
    test = as_labelled(load_dataset(DATASET, "test"))
    meter = LatencyMeter(static, torch.from_numpy(test.x[:1]), runs=400)
    results: dict[str, Any] = {"static": {"macs": static_macs, "test_accuracy": static_acc,
                                          "checkpoint_accuracy": meta["accuracy"]},
                               "config": nets["s2dnas"].report["config"]}
    curves, chosen_points, exit_rows = {}, {}, {}
    for key, m in (("naive", naive), *nets.items()):
        v = VARIANTS.get(key, Variant("Naive (layer-wise)", "macs"))
        label = v.label
        latency = meter.relative_stage_cost(m) if v.cost == "latency" else None
        block, tst = choose(m, calib, test, v.omega, latency)
        results[key] = {"stage_macs": list(m.stage_macs), "thresholds": block}
        curves[label] = tradeoff_curve(tst)
        for rule in RULES:
            o = block[rule]["test"]
            short = {"naive": "naive", "s2dnas": "S2D", "s2dnas_latency": "S2D-lat",
                     "s2dnas_latency_w": "S2D-lat-0.3"}[key]
            chosen_points[f"{short} {rule}"] = (o["mean_cost"], o["accuracy"])
        exit_rows[f"{label}, no loss"] = block["no_loss"]["test"]
        if key != "naive":
            results[key].update({k: m.report[k] for k in ("architecture", "description", "search", "training")})
    results["naive"].update({"exits": naive_info["exits"], "training": naive_info["history"]})

    plot_tradeoff(curves, (static_macs, static_acc), chosen_points, args.out / "tradeoff.png")
    plot_exits(exit_rows, args.out / "exits.png")
    logs = {}
    for key, v in VARIANTS.items():
        text = (args.cache / v.cache_name / "search_log.jsonl").read_text()
        (args.out / f"search_log_{key}.jsonl").write_text(text)
        logs[v.label] = [json.loads(line) for line in text.splitlines() if line]
    plot_search(logs, args.out / "search.png")

    paths = {"static": deploy(static, args.cache, "static")}
    results["bundles"] = {}
    for key, net in nets.items():
        net.set_thresholds(results[key]["thresholds"]["no_loss"]["calibration"]["thresholds"])
        paths[key] = deploy(net, args.cache, key, metadata={"architecture": net.arch.describe()})
        results["bundles"][key] = check_bundle(paths[key], net, test.x, test.y)
    results["latency"] = measure(paths, test.x, rounds=args.rounds, per_round=args.per_round)
    results["prism_bench"] = prism_bench(paths, args.bench_seconds)
    pick = np.random.default_rng(0).choice(len(calib.y), size=min(512, len(calib.y)), replace=False)
    results["quantized"] = {"variant": QUANTIZED_VARIANT, **quantized(
        static, nets[QUANTIZED_VARIANT], calib.x[np.sort(pick)], test, args.cache,
        rounds=args.rounds, per_round=args.per_round)}
    goal = {k: {"latency_ratio": results["latency"]["ratios"][k]["mean"],
                "accuracy_change_pt": 100 * (results["bundles"][k]["accuracy"] - static_acc)} for k in VARIANTS}
    for g in goal.values():
        g["within_accuracy"] = g["accuracy_change_pt"] >= -GOAL_MAX_DROP_PT - 1e-9
        g["met"] = g["within_accuracy"] and g["latency_ratio"] <= GOAL_LATENCY_RATIO
    best = min(goal, key=lambda k: (not goal[k]["within_accuracy"], goal[k]["latency_ratio"]))
    results["goal"] = {"bundles": goal, "best": best, "met": goal[best]["met"]}
    import onnxruntime

    results["meta"] = {"command": COMMAND + ("" if not argv else " " + " ".join(argv)),
                       "host": host_info(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                       "minutes": (time.perf_counter() - started) / 60}
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    (args.out / "perf.json").write_text(json.dumps(perf_rows(results), indent=2) + "\n")
    (args.out / "README.md").write_text(render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
