"""PWLQ report: the paper's Tables 1-2, Fig. 1 and Lemma 2 on the model zoo and real digits.

    python -m sdk.tools.report_pwlq [--models resnet20 vgg_bn mobilenetv2] [--quick] [--out DIR]

For each model (trained once, then cached by ``sdk.models.train.get_or_train``) it measures the
top-1 accuracy on the mnist5k test split (1000 images: one image is 0.1 pt) of post-training
quantized versions, evaluated through the PyTorch simulation (``QuantizedModel``, the exact
arithmetic), calibrated on 512 random training images (seed 0):

1. Table 2: weight bits 8/6/4/3 x {uniform, PWLQ} x {without, with bias correction};
2. Table 1: PWLQ with 1/2/3 breakpoints at 5/4/3 bits (no bias correction, as in the paper);
3. the five breakpoint methods at 4 bits: accuracy and weight MSE;
4. per layer at 4 bits: weight MSE uniform vs PWLQ, center-region share, Lemma 2;
5. Fig. 1 (right): weight MSE of PWLQ against the breakpoint p/m for one ResNet-20 layer;
6. the goal: 4-bit PWLQ+BC within 0.5 pt of FP32 and below 4-bit uniform+BC;
7. sizes: FP32 / QDQ / integer ONNX, packed tables (np.savez), packed weight bits; and the
   integer ONNX run through ONNX Runtime to show the deployed form gives the same accuracy;
8. the layers left in FP32.

Writes ``report.md``, ``results.json`` (every number), ``perf.json`` (rows for the README table,
see ``perf_table.py``) and four PNGs to ``--out`` (default ``reports/pwlq``). Every finished
configuration is cached in ``--cache`` (default ``out/pwlq_report``), so an interrupted run
resumes where it stopped; delete the cache to measure from scratch.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sdk.data import load_dataset, normalize
from sdk.toolchain.quant import api as quant_api
from sdk.toolchain.quant import export_onnx, pack_tables, quantize
from sdk.toolchain.quant.breakpoints import METHODS, select_breakpoints
from sdk.toolchain.quant.core import channel_rows, rows_mse
from sdk.toolchain.quant.error_model import Gaussian, expected_error_1bp, uniform_expected_error
from sdk.toolchain.quant.layers import handler_for
from sdk.toolchain.quant.onnx_graph import export_float
from sdk.toolchain.quant.uniform import error_constant, uni

from .bench import host_info

DATASET = "mnist5k"
CALIBRATION_SEED = 0
GOAL_DROP_PT = 0.5      # 4-bit PWLQ+BC may lose at most this much accuracy against FP32
GOAL_PACKED_PCT = 20.0  # packed 4-bit PWLQ weights (codes + region bits) vs FP32 weight bytes
CACHE_VERSION = 1       # bump when a cached number would change meaning
COMMAND = "python -m sdk.tools.report_pwlq"
TITLES = {"resnet20": "ResNet-20", "vgg_bn": "VGG-BN", "mobilenetv2": "MobileNetV2", "lenet5": "LeNet-5",
          "resnet56": "ResNet-56"}
DEFAULT_MODELS = ("resnet20", "vgg_bn", "mobilenetv2")
CURVE_MODEL = "resnet20"  # Fig. 1 right is drawn for one layer of this model (else the first model)


# ---------------------------------------------------------------------------------------------
# What is measured


@dataclass(frozen=True)
class Setting:
    """One quantize() configuration (8-bit top-k-median activations, per-channel weights)."""

    scheme: str
    bits: int
    bias_correction: bool
    breakpoints: int = 1
    method: str = "gaussian_closed"
    skip_first_layer: bool = False

    @classmethod
    def uniform(cls, bits: int, bias_correction: bool, **kw) -> "Setting":
        return cls("uniform", bits, bias_correction, **kw)

    @classmethod
    def pwlq(cls, bits: int, bias_correction: bool, breakpoints: int = 1, method: str = "gaussian_closed",
             **kw) -> "Setting":
        return cls("pwlq", bits, bias_correction, breakpoints, method, **kw)

    @property
    def key(self) -> str:
        """Stable name, e.g. ``pwlq-w4-bp1-gaussian_closed-bc``; the cache is keyed on it."""
        parts = [self.scheme, f"w{self.bits}"]
        if self.scheme == "pwlq":
            parts += [f"bp{self.breakpoints}", self.method]
        parts.append("bc" if self.bias_correction else "nobc")
        if self.skip_first_layer:
            parts.append("skipfirst")
        return "-".join(parts)

    @property
    def label(self) -> str:
        """Human name, e.g. ``4-bit PWLQ+BC``."""
        text = f"{self.bits}-bit {'PWLQ' if self.scheme == 'pwlq' else 'uniform'}"
        if self.scheme == "pwlq" and (self.breakpoints, self.method) != (1, "gaussian_closed"):
            text += f" ({self.breakpoints} bp, {self.method})"
        text += "+BC" if self.bias_correction else ""
        return text + (", first layer FP32" if self.skip_first_layer else "")

    def quantize_kwargs(self) -> dict[str, Any]:
        return dict(scheme=self.scheme, weight_bits=self.bits, breakpoints=self.breakpoints,
                    breakpoint_method=self.method, bias_correction=self.bias_correction,
                    skip_first_layer=self.skip_first_layer, per_channel=True, act_bits=8,
                    act_calibration="topk_median", act_scheme="uniform")


@dataclass(frozen=True)
class Plan:
    """The grid of the report. ``FULL`` is the report; ``QUICK`` a small subset for smoke tests."""

    table2_bits: tuple[int, ...] = (8, 6, 4, 3)
    table1_bits: tuple[int, ...] = (5, 4, 3)
    # (breakpoints, method) rows of Table 1: the default closed form and the empirical search
    table1_variants: tuple[tuple[int, str], ...] = ((1, "gaussian_closed"), (1, "empirical"),
                                                    (2, "empirical"), (3, "empirical"))
    methods: tuple[str, ...] = METHODS
    goal_bits: int = 4  # also the bits of the method comparison, the per-layer view and the sizes
    curve_bits: tuple[int, ...] = (4, 6, 8)
    curve_points: int = 100
    calibration_images: int = 512
    test_images: Optional[int] = None  # n evenly spaced test images (smoke tests); None: the whole split

    @property
    def goal(self) -> Setting:
        return Setting.pwlq(self.goal_bits, True)

    @property
    def goal_peer(self) -> Setting:
        return Setting.uniform(self.goal_bits, True)

    def table2(self) -> list[Setting]:
        return [make(b, bc) for b in self.table2_bits for make in (Setting.uniform, Setting.pwlq)
                for bc in (False, True)]

    def table1(self) -> list[Setting]:
        return [Setting.pwlq(b, False, n, m) for n, m in self.table1_variants for b in self.table1_bits]

    def method_rows(self) -> list[Setting]:
        return [Setting.pwlq(self.goal_bits, bc, 1, m) for m in self.methods for bc in (False, True)]

    def options(self) -> list[Setting]:
        """Documented options tried for the goal, reported as separate, labelled rows."""
        return [Setting.pwlq(self.goal_bits, True, skip_first_layer=True),
                Setting.uniform(self.goal_bits, True, skip_first_layer=True)]

    def settings(self) -> list[Setting]:
        """Every setting once, goal settings first (they matter most if a run is cut short)."""
        ordered = [self.goal, self.goal_peer] + self.table2() + self.table1() + self.method_rows() + self.options()
        return list(OrderedDict.fromkeys(ordered))


FULL = Plan()
QUICK = Plan(table2_bits=(8, 4), table1_bits=(4,), table1_variants=((1, "gaussian_closed"), (2, "empirical")),
             methods=("gaussian_closed", "empirical"), curve_points=12, calibration_images=64)


@dataclass
class Subject:
    """A model under test. ``key`` identifies its weights (the checkpoint's config key)."""

    name: str
    model: nn.Module
    key: str
    title: str = ""
    trained_accuracy: Optional[float] = None  # as recorded at training time, for a sanity check

    def __post_init__(self):
        self.title = self.title or TITLES.get(self.name, self.name)


def load_subject(name: str) -> Subject:
    """A zoo model trained with its default recipe (trains once, then loads from the cache)."""
    from sdk.models.train import default_config, get_or_train

    model, meta = get_or_train(default_config(name), progress=True)
    return Subject(name, model.eval(), meta["config_key"], trained_accuracy=meta["accuracy"]["test"])


@dataclass
class Data:
    """Normalised (N, 1, 28, 28) float32 calibration images and the test split."""

    calibration: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def load_data(calibration_images: int, test_images: Optional[int] = None, seed: int = CALIBRATION_SEED) -> Data:
    """``calibration_images`` random training images (without replacement, ``seed``) and the test
    split (``test_images`` evenly spaced ones if given; the split is ordered by class)."""
    train, test = load_dataset(DATASET, "train"), load_dataset(DATASET, "test")
    idx = np.sort(np.random.default_rng(seed).choice(len(train), calibration_images, replace=False))
    keep = np.linspace(0, len(test) - 1, test_images).astype(int) if test_images else np.arange(len(test))
    return Data(normalize(train.images[idx], DATASET), normalize(test.images[keep], DATASET), test.labels[keep])


# ---------------------------------------------------------------------------------------------
# Running


@contextlib.contextmanager
def shared_calibration() -> Iterator[None]:
    """Inside the block, ``quantize`` calibrates each (model, calibration data) pair only once.

    The activation ranges depend only on the FP32 model and the calibration data, not on the
    weight scheme, bits or bias correction, and the top-k pass over every activation is ~90% of a
    quantize() call. quantize() has no public hook for reusing calibrators, so its private
    ``_calibrate`` is wrapped (calibrators are read-only once collected); the smoke test checks
    that the tables come out identical with and without sharing.
    """
    original = quant_api._calibrate
    memo: dict[tuple, tuple] = {}

    def calibrate_once(model, folded, folded_bns, candidates, data, config, progress):
        key = (id(model), id(data), config.act_calibration, tuple(candidates))
        if key not in memo:  # the model and data are kept in the entry, so their ids stay unique
            memo[key] = (model, data, original(model, folded, folded_bns, candidates, data, config, progress))
        return OrderedDict(memo[key][2])

    quant_api._calibrate = calibrate_once
    try:
        yield
    finally:
        quant_api._calibrate = original


def predict(model: nn.Module, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """Logits (N, classes) float32 of ``model`` on normalised images (N, 1, 28, 28)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            out.append(model(torch.from_numpy(images[start:start + batch])).float().numpy())
    return np.concatenate(out)


class ResultCache:
    """Finished measurements of one subject in one JSON file, rewritten after every entry."""

    def __init__(self, path: Path, identity: dict):
        self.path, self.identity = path, identity
        self.entries: dict[str, Any] = {}
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("identity") == identity:
                self.entries = saved["entries"]

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __getitem__(self, key: str) -> Any:
        return self.entries[key]

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self.entries:
            self.entries[key] = compute()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"identity": self.identity, "entries": self.entries}))
            os.replace(tmp, self.path)
        return self.entries[key]


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(logits.argmax(axis=1) == labels))


def _predictions(logits: np.ndarray) -> str:
    """Predicted classes as one digit string (compact in JSON; 0-9 classes)."""
    return "".join(map(str, logits.argmax(axis=1)))


def quantize_setting(subject: Subject, setting: Setting, data: Data):
    return quantize(subject.model, data.calibration, progress=False, **setting.quantize_kwargs())


def measure_setting(subject: Subject, setting: Setting, data: Data) -> dict:
    """Accuracy and weight MSE of one setting; the simulation is the exact quantized arithmetic."""
    t0 = time.perf_counter()
    qmodel = quantize_setting(subject, setting, data)
    t1 = time.perf_counter()
    logits = predict(qmodel, data.test_images)
    t2 = time.perf_counter()
    sizes = {name: t.codes.size for name, t in qmodel.tables.items()}
    mse = {s: float(sum(qmodel.weight_mse[n][s] * k for n, k in sizes.items()) / sum(sizes.values()))
           for s in ("uniform", "pwlq")}
    ratios = [m["pwlq"] / m["uniform"] for m in qmodel.weight_mse.values() if m["uniform"] > 0]
    return {
        "setting": asdict(setting), "label": setting.label,
        "accuracy": _accuracy(logits, data.test_labels), "predictions": _predictions(logits),
        # weight-count-weighted MSE over all quantized weights, before bias correction, both schemes
        "weight_mse": mse, "weight_mse_ratio_mean": float(np.mean(ratios)) if ratios else None,
        "center_share": float(np.mean([t.center_share for t in qmodel.tables.values()])),
        "skipped": dict(qmodel.skipped), "quantize_s": t1 - t0, "evaluate_s": t2 - t1,
    }


# ---------------------------------------------------------------------------------------------
# Per-layer analysis (Lemma 2) and Fig. 1 right


def _layer_weight(qmodel, name: str) -> np.ndarray:
    module = qmodel.float_model.get_submodule(name)
    return handler_for(module).weight(module)


def layer_analysis(qmodel) -> list[dict]:
    """Per quantized layer: weight MSE of both schemes, center share and the Lemma 2 check.

    Lemma 2 bounds the *expected* error of PWLQ at the optimal breakpoint p* by
    C(b-1)/(16 C(b)) of the Eq. 1 uniform error. Three ratios are reported per layer:
    ``ratio_deployed`` = MSE PWLQ / MSE of the deployed uniform scheme (2^b - 1 levels, what the
    toolchain ships); ``ratio_eq1`` = MSE PWLQ / MSE of the paper's Eq. 1 uniform quantizer
    (2^b levels on [-m, m], a finer step, so a stricter test); ``ratio_expected`` = Eq. 4 at p* /
    Eq. 7 under each channel's Gaussian fit (truncated to [-m, m]). PWLQ MSEs are those of the
    deployed breakpoints; all per channel, before bias correction.
    """
    bits = qmodel.config.weight_bits
    bound = error_constant(bits - 1) / (16 * error_constant(bits))
    layers = []
    for name, table in qmodel.tables.items():
        rows = channel_rows(_layer_weight(qmodel, name))
        m, std = np.abs(rows).max(axis=1), rows.std(axis=1)
        live = (std > 0) & (m > 0)  # an all-zero channel has no error under any scheme
        lo = -m[live, None]
        err = uni(rows[live], bits, lo, -lo, lo, signed=False) - rows[live]
        eq1 = float(np.sum(err ** 2) / rows.size)
        p_star = select_breakpoints(rows[live], m[live], bits, 1, "gaussian_expected")[:, 0]
        m_n, p_n, var = m[live] / std[live], p_star / std[live], std[live] ** 2
        e_pw = float(np.sum(var * expected_error_1bp(p_n, m_n, Gaussian, bits)))
        e_uni = float(np.sum(var * uniform_expected_error(m_n, bits)))
        mse = qmodel.weight_mse[name]
        layer = {
            "name": name, "type": table.layer_type, "shape": list(table.codes.shape),
            "groups": table.groups, "weights": int(table.codes.size), "center_share": table.center_share,
            "mse_uniform": mse["uniform"], "mse_pwlq": mse["pwlq"], "mse_uniform_eq1": eq1,
            "ratio_deployed": mse["pwlq"] / mse["uniform"] if mse["uniform"] > 0 else None,
            "ratio_eq1": mse["pwlq"] / eq1 if eq1 > 0 else None,
            "ratio_expected": e_pw / e_uni if e_uni > 0 else None,
            "mean_p_over_m": float(np.mean(table.breakpoints[:, 0] / np.where(m > 0, m, 1))) if table.n_regions > 1 else None,
            "bound": bound,
        }
        layer["empirical_pass"] = layer["ratio_eq1"] is not None and layer["ratio_eq1"] <= bound
        layer["expected_pass"] = layer["ratio_expected"] is not None and layer["ratio_expected"] <= bound
        layers.append(layer)
    return layers


def curve_layer(qmodel) -> str:
    """The layer drawn in Fig. 1 right: the largest Conv2d (first in execution order on ties)."""
    convs = [(t.codes.size, -i, n) for i, (n, t) in enumerate(qmodel.tables.items()) if t.layer_type == "Conv2d"]
    pool = convs or [(t.codes.size, -i, n) for i, (n, t) in enumerate(qmodel.tables.items())]
    return max(pool)[2]


def mse_curve(weight: np.ndarray, bits_list, points: int) -> dict:
    """Empirical PWLQ weight MSE as a function of p/m in (0, 0.5] for the whole tensor as one
    range [-m, m] (per-layer mode, as in the paper's Fig. 1), the uniform MSE at the same bits,
    and the breakpoints the closed form and the empirical search choose."""
    rows = channel_rows(weight).reshape(1, -1)
    m = float(np.abs(rows).max())
    t = np.linspace(0.5 / points, 0.5, points)
    out = {"p_over_m": t.tolist(), "m": m, "weights": int(rows.size), "bits": {}}
    for b in bits_list:
        pwlq = [float(rows_mse(rows, np.array([[0.0, ti * m, m]]), b)[0]) for ti in t]
        chosen = {}
        for method in ("gaussian_closed", "empirical"):
            p = float(select_breakpoints(rows, np.array([m]), b, 1, method)[0, 0])
            chosen[method] = {"p_over_m": p / m, "mse": float(rows_mse(rows, np.array([[0.0, p, m]]), b)[0])}
        out["bits"][str(b)] = {"pwlq": pwlq, "uniform": float(rows_mse(rows, np.array([[0.0, m]]), b)[0]),
                               "chosen": chosen}
    return out


# ---------------------------------------------------------------------------------------------
# Deployment: sizes and the integer ONNX through ONNX Runtime


def _ort_logits(model_bytes: bytes, images: np.ndarray, batch: int = 250) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: images[s:s + batch]})[0]
                           for s in range(0, len(images), batch)])


def deployment(qmodel, data: Data, workdir: Path) -> dict:
    """File sizes of the FP32 / QDQ / integer ONNX and the packed tables, the packed weight bytes,
    and the integer ONNX's accuracy in ONNX Runtime next to the simulation's."""
    workdir.mkdir(parents=True, exist_ok=True)
    example = torch.from_numpy(data.test_images[:1])
    models = {"fp32": export_float(qmodel.float_model, example),
              "qdq": export_onnx(qmodel, example, form="qdq"),
              "integer": export_onnx(qmodel, example, form="integer")}
    sizes = {}
    for form, model in models.items():
        path = workdir / f"{form}.onnx"
        path.write_bytes(model.SerializeToString())
        sizes[f"{form}_onnx"] = path.stat().st_size
    packed = pack_tables(qmodel)
    np.savez(workdir / "tables.npz", **packed)  # the spec's container: np.savez, uncompressed
    sizes["tables_npz"] = (workdir / "tables.npz").stat().st_size
    names = list(qmodel.tables)
    codes = sum(packed[f"{n}/codes"].nbytes for n in names)
    regions = sum(packed[f"{n}/regions"].nbytes for n in names)
    fp32_weights = sum(4 * t.codes.size for t in qmodel.tables.values())
    t0 = time.perf_counter()
    ort_logits = _ort_logits(models["integer"].SerializeToString(), data.test_images)
    ort_s = time.perf_counter() - t0
    sim_logits = predict(qmodel, data.test_images)
    return {
        "bytes": sizes, "packed_codes_bytes": codes, "packed_region_bytes": regions,
        "fp32_weight_bytes": fp32_weights, "weights": fp32_weights // 4,
        "packed_weight_pct": 100.0 * (codes + regions) / fp32_weights,
        "tables_pct_of_fp32_weights": 100.0 * sizes["tables_npz"] / fp32_weights,
        "tables_pct_of_fp32_onnx": 100.0 * sizes["tables_npz"] / sizes["fp32_onnx"],
        "ort_integer_accuracy": _accuracy(ort_logits, data.test_labels),
        "simulation_accuracy": _accuracy(sim_logits, data.test_labels),
        "ort_agreement": float(np.mean(ort_logits.argmax(1) == sim_logits.argmax(1))),
        "ort_max_abs_logit_diff": float(np.abs(ort_logits - sim_logits).max()),
        "ort_seconds": ort_s, "artifacts": str(workdir),
    }


# ---------------------------------------------------------------------------------------------
# The whole run


def _cache_identity(subject: Subject, plan: Plan) -> dict:
    identity = {"version": CACHE_VERSION, "model": subject.name, "weights": subject.key, "dataset": DATASET,
                "calibration_images": plan.calibration_images, "calibration_seed": CALIBRATION_SEED}
    if plan.test_images:
        identity["test_images"] = plan.test_images
    return identity


def run_subject(subject: Subject, plan: Plan, data: Data, cache_dir: Path, progress: bool = True,
                curve: bool = False) -> dict:
    """Every measurement of one model (cached per entry); returns its section of results.json."""
    cache = ResultCache(cache_dir / f"{subject.name}-{subject.key}-cal{plan.calibration_images}.json",
                        _cache_identity(subject, plan))

    def fp32():
        t0 = time.perf_counter()
        logits = predict(subject.model, data.test_images)
        return {"accuracy": _accuracy(logits, data.test_labels), "predictions": _predictions(logits),
                "evaluate_s": time.perf_counter() - t0}

    settings = plan.settings()
    todo = sum(s.key not in cache for s in settings) + sum(
        k not in cache for k in ("fp32", "layers", "deployment") + (("curve",) if curve else ()))
    bar = tqdm(total=todo, desc=subject.title, unit="config", disable=not progress)
    reused = len(settings) + 3 + int(curve) - todo
    runs: dict[str, dict] = {}
    with shared_calibration():
        def step(key, compute):
            if key in cache:
                return cache[key]
            bar.set_postfix_str(key)
            value = cache.get_or_compute(key, compute)
            bar.update(1)
            return value

        base = step("fp32", fp32)
        for setting in settings:
            runs[setting.key] = step(setting.key, lambda s=setting: measure_setting(subject, s, data))

        goal_qmodel = None

        def goal_model():
            nonlocal goal_qmodel
            if goal_qmodel is None:
                goal_qmodel = quantize_setting(subject, plan.goal, data)
            return goal_qmodel

        layers = step("layers", lambda: layer_analysis(goal_model()))
        deploy = step("deployment", lambda: deployment(goal_model(), data, cache_dir / "artifacts" / subject.name))
        curve_data = None
        if curve:
            def compute_curve():
                name = curve_layer(goal_model())
                return {"layer": name, **mse_curve(_layer_weight(goal_model(), name), plan.curve_bits,
                                                  plan.curve_points)}
            curve_data = step("curve", compute_curve)
    bar.close()
    fp32_acc = base["accuracy"]
    for r in runs.values():
        r["drop_pt"] = 100.0 * (fp32_acc - r["accuracy"])
    result = {
        "title": subject.title, "checkpoint_key": subject.key, "fp32_accuracy": fp32_acc,
        "trained_accuracy": subject.trained_accuracy, "runs": runs, "layers": layers, "deployment": deploy,
        "skipped": runs[plan.goal.key]["skipped"],
        "goal": goal_check(runs, base, plan, data.test_labels),
        "entries_measured": todo, "entries_reused": reused,
        "compute_s": base["evaluate_s"] + deploy["ort_seconds"] + sum(r["quantize_s"] + r["evaluate_s"]
                                                                      for r in runs.values()),
    }
    if curve_data is not None:
        result["curve"] = curve_data
    return result


def mcnemar(a: str, b: str, labels: np.ndarray) -> dict:
    """Images only ``a`` gets right, only ``b`` gets right, and the exact two-sided McNemar p-value
    of the difference (predictions as digit strings)."""
    pa = np.frombuffer(a.encode(), np.uint8) - ord("0")
    pb = np.frombuffer(b.encode(), np.uint8) - ord("0")
    only_a = int(np.sum((pa == labels) & (pb != labels)))
    only_b = int(np.sum((pa != labels) & (pb == labels)))
    n = only_a + only_b
    p = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2 ** n)
    return {"only_first_right": only_a, "only_second_right": only_b, "p_value": p}


def goal_check(runs: dict, fp32: dict, plan: Plan, labels: np.ndarray) -> dict:
    """The goal per model: the goal setting's drop <= GOAL_DROP_PT, and below the peer's drop."""
    fp32_acc = fp32["accuracy"]
    goal, peer = runs[plan.goal.key], runs[plan.goal_peer.key]
    drop, peer_drop = 100.0 * (fp32_acc - goal["accuracy"]), 100.0 * (fp32_acc - peer["accuracy"])
    within, better = drop <= GOAL_DROP_PT + 1e-9, drop < peer_drop - 1e-9
    return {"setting": plan.goal.label, "peer": plan.goal_peer.label, "fp32_accuracy": fp32_acc,
            "accuracy": goal["accuracy"], "drop_pt": drop, "peer_accuracy": peer["accuracy"],
            "peer_drop_pt": peer_drop, "within_goal": within, "better_than_peer": better,
            "met": within and better, "goal_drop_pt": GOAL_DROP_PT,
            "vs_peer": mcnemar(goal["predictions"], peer["predictions"], labels)}


def versions() -> dict:
    import onnx
    import onnxruntime

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "torch_threads": torch.get_num_threads()}


def run_report(subjects: list[Subject], plan: Plan, out: Path, cache_dir: Path, progress: bool = True,
               argv: Optional[list[str]] = None) -> dict:
    """Measure every subject, then write results.json, perf.json, the PNGs and report.md to ``out``."""
    started = time.perf_counter()
    data = load_data(plan.calibration_images, plan.test_images)
    curve_name = CURVE_MODEL if any(s.name == CURVE_MODEL for s in subjects) else subjects[0].name
    models = {}
    for subject in subjects:
        models[subject.name] = run_subject(subject, plan, data, cache_dir, progress, curve=subject.name == curve_name)
    command = COMMAND + ("" if not argv else " " + " ".join(argv))
    results = {
        "meta": {
            "command": command, "host": host_info(), "versions": versions(), "dataset": DATASET,
            "test_images": int(len(data.test_labels)),
            "calibration": {"images": plan.calibration_images, "split": "train", "seed": CALIBRATION_SEED,
                            "rule": "numpy.random.default_rng(seed).choice(len(train), n, replace=False), sorted"},
            "activations": "8-bit uniform per tensor, top-k median range (k = 10)",
            "weights": "per output channel", "plan": asdict(plan),
            "wall_s": time.perf_counter() - started,
            "compute_s": sum(m["compute_s"] for m in models.values()),
            "entries_measured": sum(m["entries_measured"] for m in models.values()),
            "entries_reused": sum(m["entries_reused"] for m in models.values()),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
        "models": models, "curve_model": curve_name,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_plots(results, plan, out)
    results["meta"]["wall_s"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(_strip_predictions(results), indent=1) + "\n")
    (out / "perf.json").write_text(json.dumps(perf_json(results), indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(results, plan))
    return results


def _strip_predictions(results: dict) -> dict:
    """results.json keeps every number; the per-image predictions stay in the cache."""
    copy = json.loads(json.dumps(results))
    for m in copy["models"].values():
        for r in m["runs"].values():
            r.pop("predictions", None)
    return copy


def perf_json(results: dict) -> dict:
    """Rows for the README's performance table (format of ``perf_table.py``)."""
    host = results["meta"]["host"]
    rows = []
    for m in results["models"].values():
        g, d = m["goal"], m["deployment"]
        rows.append({"what": f"{m['title']} {g['setting']} accuracy drop vs FP32", "value": round(g["drop_pt"], 2),
                     "unit": "pt", "peer": f"FP32 ({100 * g['fp32_accuracy']:.1f}%)",
                     "goal": f"<= {GOAL_DROP_PT:g}", "met": bool(g["within_goal"])})
        rows.append({"what": f"{m['title']} {g['peer']} accuracy drop vs FP32 (peer)",
                     "value": round(g["peer_drop_pt"], 2), "unit": "pt",
                     "peer": f"{g['setting']} ({g['drop_pt']:.1f} pt)",
                     "goal": f"> {g['setting']} drop", "met": bool(g["better_than_peer"])})
        rows.append({"what": f"{m['title']} 4-bit PWLQ packed weights (codes + region bits) vs FP32 weights",
                     "value": round(d["packed_weight_pct"], 2), "unit": "%",
                     "peer": f"FP32 weights ({d['fp32_weight_bytes']} B)", "goal": f"<= {GOAL_PACKED_PCT:g}",
                     "met": bool(d["packed_weight_pct"] <= GOAL_PACKED_PCT)})
    return {"host": {"cpu": host.get("cpu"), "cores": host.get("cores"), "simd": host.get("simd")},
            "command": COMMAND, "rows": rows}


# ---------------------------------------------------------------------------------------------
# Plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_STYLE = {"uniform": ("tab:blue", "o"), "pwlq": ("tab:red", "s")}


def _accuracy_limits(ax, fp32: float, span: float = 1.5) -> None:
    """Show at least ``span`` pt below FP32, so that one test image (0.1 pt) does not look like a cliff."""
    lo, hi = ax.get_ylim()
    ax.set_ylim(min(lo, fp32 - span), max(hi, fp32 + 0.2))


def write_plots(results: dict, plan: Plan, out: Path) -> None:
    plot_table2(results, plan, out / "table2.png")
    plot_table1(results, plan, out / "breakpoints_table1.png")
    plot_per_layer(results, out / "per_layer_mse.png")
    plot_curve(results, out / "mse_vs_breakpoint.png")


def plot_table2(results: dict, plan: Plan, path: Path) -> None:
    plt = _pyplot()
    models = list(results["models"].values())
    fig, axes = plt.subplots(2, len(models), figsize=(4.6 * len(models), 6.4), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 1.2]})
    bits = sorted(plan.table2_bits)
    for col, m in enumerate(models):
        fp32 = 100 * m["fp32_accuracy"]
        for row, ax in enumerate(axes[:, col]):
            for scheme in ("uniform", "pwlq"):
                for bc in (False, True):
                    make = Setting.uniform if scheme == "uniform" else Setting.pwlq
                    acc = [100 * m["runs"][make(b, bc).key]["accuracy"] for b in bits]
                    color, marker = _STYLE[scheme]
                    ax.plot(bits, acc, color=color, marker=marker, ls="-" if bc else "--", alpha=1 if bc else 0.6,
                            label=f"{'PWLQ' if scheme == 'pwlq' else 'uniform'}{'+BC' if bc else ''}")
            ax.axhline(fp32, color="k", lw=0.8, ls=":", label=f"FP32 {fp32:.1f}%")
            ax.set_xticks(bits)
            ax.grid(alpha=0.3)
            if row == 0:
                _accuracy_limits(ax, fp32)
                ax.set_title(m["title"])
                ax.set_ylabel("test accuracy (%)")
            else:
                ax.axhspan(fp32 - GOAL_DROP_PT, fp32 + 0.5, color="g", alpha=0.08, label="goal band (0.5 pt)")
                ax.set_ylim(fp32 - 3, fp32 + 0.6)
                ax.set_ylabel("zoom: FP32 - 3 pt .. FP32")
                ax.set_xlabel("weight bits")
        axes[0, col].legend(fontsize=7, loc="lower right")
    fig.suptitle("Table 2 analogue: accuracy vs weight bits\n(8-bit activations, per-channel weights)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_table1(results: dict, plan: Plan, path: Path) -> None:
    plt = _pyplot()
    models = list(results["models"].values())
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 3.6), squeeze=False)
    bits = sorted(plan.table1_bits)
    colors = ["tab:red", "tab:orange", "tab:green", "tab:purple"]
    for ax, m in zip(axes[0], models):
        for (n, method), color in zip(plan.table1_variants, colors):
            acc = [100 * m["runs"][Setting.pwlq(b, False, n, method).key]["accuracy"] for b in bits]
            ax.plot(bits, acc, marker="o", color=color, ls="-" if method == "empirical" else "--",
                    label=f"{n} bp, {method}")
        ax.axhline(100 * m["fp32_accuracy"], color="k", lw=0.8, ls=":", label="FP32")
        _accuracy_limits(ax, 100 * m["fp32_accuracy"])
        ax.set_xticks(bits)
        ax.set_title(m["title"])
        ax.set_xlabel("weight bits")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Table 1 analogue: PWLQ with 1-3 breakpoints (no bias correction)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_per_layer(results: dict, path: Path) -> None:
    plt = _pyplot()
    models = list(results["models"].values())
    fig, axes = plt.subplots(len(models), 1, figsize=(13, 3.9 * len(models)), squeeze=False)
    for ax, m in zip(axes[:, 0], models):
        layers = m["layers"]
        x = np.arange(len(layers))
        ax.bar(x - 0.2, [L["mse_uniform"] for L in layers], 0.4, color="tab:blue", label="uniform MSE")
        ax.bar(x + 0.2, [L["mse_pwlq"] for L in layers], 0.4, color="tab:red", label="PWLQ MSE")
        ax.set_yscale("log")
        ax.set_ylabel("weight MSE (log)")
        ax.set_xticks(x)
        ax.set_xticklabels([L["name"] for L in layers], rotation=90, fontsize=6 if len(layers) > 30 else 7)
        ax.set_xlim(-0.7, len(layers) - 0.3)
        twin = ax.twinx()
        twin.plot(x, [L["center_share"] for L in layers], "k.-", lw=0.8, label="center-region share")
        twin.plot(x, [L["ratio_eq1"] for L in layers], "g^", ms=4, label="MSE ratio PWLQ / Eq. 1 uniform")
        twin.axhline(layers[0]["bound"], color="g", lw=0.8, ls="--", label="Lemma 2 bound C(b-1)/16C(b)")
        twin.set_ylim(0, 1)
        twin.set_ylabel("share / ratio")
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles, [h.get_label() for h in handles], fontsize=7, ncol=5, loc="upper center",
                  bbox_to_anchor=(0.5, 1.13), frameon=False)
        ax.set_title(f"{m['title']}: 4-bit weights per layer", pad=22)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curve(results: dict, path: Path) -> None:
    plt = _pyplot()
    m = results["models"][results["curve_model"]]
    c = m["curve"]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = ["tab:red", "tab:green", "tab:blue", "tab:purple"]
    for (b, v), color in zip(c["bits"].items(), colors):
        ax.plot(c["p_over_m"], v["pwlq"], color=color, label=f"PWLQ {b}-bit")
        ax.axhline(v["uniform"], color=color, ls="--", lw=1, label=f"uniform {b}-bit")
        for method, marker in (("gaussian_closed", "o"), ("empirical", "*")):
            ch = v["chosen"][method]
            ax.plot(ch["p_over_m"], ch["mse"], marker, color="k", mfc=color, ms=8 if marker == "*" else 6,
                    label=f"chosen: {method}" if b == next(iter(c["bits"])) else None)
    ax.set_yscale("log")
    ax.set_xlim(0, 0.5)
    ax.set_xlabel("breakpoint p / m")
    ax.set_ylabel("weight MSE (log)")
    ax.set_title(f"{m['title']} {c['layer']} ({c['weights']} weights, one range per layer)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Markdown


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _cell(run: dict) -> str:
    """Accuracy (%) and drop from FP32 (pt) of one run, e.g. ``98.3 (0.4)`` or ``98.8 (−0.1)``."""
    drop = round(run["drop_pt"], 1) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{100 * run['accuracy']:.1f} ({drop:.1f})".replace("-", "−")


def _images(n: int) -> str:
    return f"{n} image" + ("" if n == 1 else "s")


def _verdict(flag: bool) -> str:
    return "**met**" if flag else "**not met**"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(results: dict, plan: Plan) -> str:
    meta, models = results["meta"], results["models"]
    host, ver = meta["host"], meta["versions"]
    parts = [
        "# PWLQ on the model zoo: accuracy, error and size",
        "",
        f"Post-training quantization of {', '.join(m['title'] for m in models.values())} trained on "
        f"`{meta['dataset']}` (28x28 digits), after Fang et al., *Post-training Piecewise Linear Quantization "
        "for Deep Neural Networks* (ECCV 2020). Generated by `" + COMMAND + "`; every number is in "
        "[`results.json`](results.json).",
        "",
        f"Setup: weights per output channel, batch norms folded; activations 8-bit uniform per tensor "
        f"with the top-k median range (k = 10), calibrated on {meta['calibration']['images']} random training "
        f"images (seed {meta['calibration']['seed']}). Accuracy is top-1 on the {meta['test_images']} test images, "
        "measured through the PyTorch simulation of the quantized arithmetic; **one image is 0.1 pt**, so "
        "differences of a few tenths are within noise. Cells read `accuracy % (drop from FP32 in pt)`; "
        "a negative drop means above FP32.",
        "",
        "## Summary: the 4-bit goal",
        "",
        "Goal: 4-bit PWLQ with bias correction (BC) within 0.5 pt of FP32 on every model, and a smaller drop "
        "than 4-bit uniform+BC.",
        "",
        _summary_table(models),
        "",
        "## 1. Table 2: uniform vs PWLQ, with and without bias correction",
        "",
        _table2(models, plan),
        "",
        "![accuracy vs bits](table2.png)",
        "",
        "As in the paper, schemes are compared at the same multiply width b: b-bit PWLQ also stores a region "
        "bit per weight, so it has as many levels as (b+1)-bit uniform (paper Sect. 3.2).",
        "",
        _table2_notes(models, plan),
        "",
        "## 2. Table 1: more breakpoints",
        "",
        f"PWLQ without bias correction (as in the paper's Table 1) with 1, 2 and 3 breakpoints; one breakpoint "
        f"with the default closed form (`gaussian_closed`) and with the empirical MSE search, 2 and 3 "
        "breakpoints with the empirical search (the closed forms exist for one breakpoint only). "
        "The paper's integer form (Table 1) needs 2R - 1 accumulators for R = breakpoints + 1 regions (one per "
        "region and one sign term per tail region: 3/5/7); Prism folds the tail offsets into the lower regions' "
        "codes (offset_r = Q (s_0 + ... + s_{r-1}) exactly), so it runs one per region: 2/3/4.",
        "",
        _table1(models, plan),
        "",
        "![breakpoints](breakpoints_table1.png)",
        "",
        "## 3. Breakpoint methods",
        "",
        f"{plan.goal_bits}-bit PWLQ, one breakpoint. Weight MSE is over all quantized weights (before bias "
        "correction); the ratio is the mean over layers of MSE PWLQ / MSE uniform at the same bits.",
        "",
        _methods(models, plan),
        "",
        "## 4. Per layer: weight MSE, center region and Lemma 2",
        "",
        _lemma_intro(models, plan),
        "",
        "![per-layer MSE](per_layer_mse.png)",
        "",
        _per_layer(models),
        "",
        "## 5. MSE against the breakpoint (Fig. 1 right)",
        "",
        _curve_text(results),
        "",
        "![MSE vs breakpoint](mse_vs_breakpoint.png)",
        "",
        "## 6. Goal check",
        "",
        _goal_text(models, plan),
        "",
        "## 7. Size",
        "",
        _size_text(models),
        "",
        "## 8. Layers left in FP32",
        "",
        _skipped_text(models),
        "",
        "## How this report was made",
        "",
        f"- Command: `{meta['command']}` (resumable: finished configurations are cached under "
        "`out/pwlq_report/`; the artifacts of section 7 are kept there too).",
        f"- Host: {host.get('cpu')}, {host.get('cores')} cores ({host.get('machine')}), shared with other jobs; "
        f"SIMD: {', '.join(k for k, v in (host.get('simd') or {}).items() if v) or 'n/a'}.",
        f"- Versions: Python {ver['python']}, torch {ver['torch']} ({ver['torch_threads']} threads), "
        f"numpy {ver['numpy']}, onnx {ver['onnx']}, onnxruntime {ver['onnxruntime']}.",
        f"- Data: `{meta['dataset']}` test split ({meta['test_images']} images); calibration: "
        f"{meta['calibration']['images']} images of the train split, `{meta['calibration']['rule']}`, "
        f"seed {meta['calibration']['seed']}. Models: `sdk.models.train.get_or_train(default_config(name))` "
        "(training seed 0), checkpoint keys in results.json.",
        f"- Run time: the measurements took {meta['compute_s'] / 60:.1f} min of quantize + evaluate (+ ONNX "
        "Runtime) time in total, summed over the cached entries; the invocation that wrote this report measured "
        f"{meta['entries_measured']} entries, reused {meta['entries_reused']} from the cache and took "
        f"{meta['wall_s'] / 60:.1f} min. Activation calibration is shared between the configurations of a "
        "model (it does not depend on the weight settings).",
        f"- Generated {meta['date']}.",
        "",
    ]
    return "\n".join(parts)


def _summary_table(models: dict) -> str:
    rows = []
    for m in models.values():
        g, d = m["goal"], m["deployment"]
        rows.append([m["title"], _pct(g["fp32_accuracy"]), f"{_pct(g['accuracy'])} ({g['drop_pt']:.1f})",
                     f"{_pct(g['peer_accuracy'])} ({g['peer_drop_pt']:.1f})",
                     _verdict(g["within_goal"]), _verdict(g["better_than_peer"]), f"{g['vs_peer']['p_value']:.2g}",
                     f"{d['packed_weight_pct']:.1f}% ({'met' if d['packed_weight_pct'] <= GOAL_PACKED_PCT else 'not met'})",
                     _pct(d["ort_integer_accuracy"])])
    return _table(["model", "FP32 %", "4-bit PWLQ+BC % (drop)", "4-bit uniform+BC % (drop)",
                   f"drop ≤ {GOAL_DROP_PT:g} pt", "drop < uniform+BC", "McNemar p (PWLQ+BC vs uniform+BC)",
                   f"packed weights (goal ≤ {GOAL_PACKED_PCT:g}%)",
                   "ONNX Runtime, integer ONNX %"], rows)


def _table2(models: dict, plan: Plan) -> str:
    bits = plan.table2_bits
    head = ["network (FP32 %)", "scheme"] + [f"{b}-bit{s}" for b in bits for s in ("", "+BC")]
    rows = []
    for m in models.values():
        for scheme, make in (("uniform", Setting.uniform), ("PWLQ", Setting.pwlq)):
            rows.append([f"{m['title']} ({_pct(m['fp32_accuracy'])})", scheme] +
                        [_cell(m["runs"][make(b, bc).key]) for b in bits for bc in (False, True)])
    return _table(head, rows)


def _table2_notes(models: dict, plan: Plan) -> str:
    lines = ["Checks:"]
    low = [b for b in plan.table2_bits if b <= plan.goal_bits]
    for m in models.values():
        r = m["runs"]
        top = max(plan.table2_bits)
        eight = max(abs(r[make(top, bc).key]["drop_pt"]) for make in (Setting.uniform, Setting.pwlq)
                    for bc in (False, True))
        pairs = [(r[Setting.pwlq(b, bc).key]["accuracy"], r[Setting.uniform(b, bc).key]["accuracy"])
                 for b in low for bc in (False, True)]
        wins, ties = sum(p > u for p, u in pairs), sum(p == u for p, u in pairs)
        lines.append(f"- {m['title']}: at {top} bits every cell is within {eight:.1f} pt of FP32; at "
                     f"{'/'.join(map(str, low))} bits PWLQ beats uniform in {wins} of {len(pairs)} cells "
                     f"(ties: {ties}, losses: {len(pairs) - wins - ties}).")
    hurt = [f"{m['title']} {b}-bit {name} ({_pct(r0['accuracy'])} → {_pct(r1['accuracy'])})"
            for m in models.values() for b in plan.table2_bits
            for name, make in (("uniform", Setting.uniform), ("PWLQ", Setting.pwlq))
            for r0, r1 in [(m["runs"][make(b, False).key], m["runs"][make(b, True).key])]
            if r0["accuracy"] - r1["accuracy"] > 0.01]
    if hurt:
        lines.append("- Bias correction costs more than 1 pt in: " + "; ".join(hurt) + ". (It matches each "
                     "output channel's mean and std of the quantized weights to the FP32 ones, paper Sect. 5.1; "
                     "this report does not analyse why it hurts there.)")
    return "\n".join(lines)


def _table1(models: dict, plan: Plan) -> str:
    bits = plan.table1_bits
    head = ["network (FP32 %)", "breakpoints", "method", "accumulators (paper / folded)"] + [f"{b}-bit" for b in bits]
    rows = []
    for m in models.values():
        for n, method in plan.table1_variants:
            rows.append([f"{m['title']} ({_pct(m['fp32_accuracy'])})", n, f"`{method}`", f"{2 * n + 1} / {n + 1}"] +
                        [_cell(m["runs"][Setting.pwlq(b, False, n, method).key]) for b in bits])
    return _table(head, rows)


def _methods(models: dict, plan: Plan) -> str:
    head = ["network", "method", "accuracy % (drop)", "+BC accuracy % (drop)", "weight MSE", "MSE ratio vs uniform",
            "center share"]
    rows = []
    for m in models.values():
        for method in plan.methods:
            r0 = m["runs"][Setting.pwlq(plan.goal_bits, False, 1, method).key]
            r1 = m["runs"][Setting.pwlq(plan.goal_bits, True, 1, method).key]
            rows.append([m["title"], f"`{method}`", _cell(r0), _cell(r1), f"{r0['weight_mse']['pwlq']:.3e}",
                         f"{r0['weight_mse_ratio_mean']:.3f}", f"{r0['center_share']:.3f}"])
        u = m["runs"][Setting.uniform(plan.goal_bits, False).key]
        ub = m["runs"][Setting.uniform(plan.goal_bits, True).key]
        rows.append([m["title"], "uniform (reference)", _cell(u), _cell(ub), f"{u['weight_mse']['uniform']:.3e}",
                     "1", "1"])
    return _table(head, rows)


def _lemma_intro(models: dict, plan: Plan) -> str:
    any_layers = next(iter(models.values()))["layers"]
    bound = any_layers[0]["bound"]
    lines = [
        f"{plan.goal_bits}-bit weights, default PWLQ (`gaussian_closed`), before bias correction. "
        f"Lemma 2: at the optimal breakpoint p*, the *expected* PWLQ error is below C(b-1)/(16 C(b)) = "
        f"{bound:.4f} of the *expected* b-bit uniform error (≤ 9/16 for every b ≥ 2). Three ratios per layer:",
        "",
        "- **deployed**: empirical MSE PWLQ / MSE of the uniform scheme the toolchain deploys (restricted "
        "symmetric range, 2^b - 1 levels, as ONNX symmetric int8 expects);",
        "- **Eq. 1**: empirical MSE PWLQ / MSE of the paper's Eq. 1 uniform quantizer (2^b levels on [-m, m]; a "
        "finer step, so the stricter test). The empirical pass/fail uses this one;",
        "- **expected (Gaussian fit)**: Eq. 4 at p* / Eq. 7, with each channel's weights fitted by a Gaussian "
        "of their std truncated to [-m, m], i.e. exactly the lemma's statement.",
        "",
        "The empirical ratio is not what the lemma is about (real weights are not Gaussian, and the deployed "
        "breakpoint is the closed form, not the empirical optimum); it is reported as measured.",
        "",
    ]
    rows = []
    for m in models.values():
        layers = m["layers"]
        emp = sum(L["empirical_pass"] for L in layers)
        exp = sum(L["expected_pass"] for L in layers)
        worst_emp = max(layers, key=lambda L: L["ratio_eq1"] or 0)
        worst_exp = max(layers, key=lambda L: L["ratio_expected"] or 0)
        rows.append([m["title"], len(layers), f"{emp}/{len(layers)}", f"{worst_emp['ratio_eq1']:.3f} ({worst_emp['name']})",
                     f"{exp}/{len(layers)}", f"{worst_exp['ratio_expected']:.3f} ({worst_exp['name']})",
                     f"{np.mean([L['center_share'] for L in layers]):.3f}"])
    lines.append(_table(["model", "layers", "empirical (Eq. 1) ≤ bound", "worst empirical ratio",
                         "expected ≤ bound", "worst expected ratio", "mean center share"], rows))
    failed = [(m["title"], L) for m in models.values() for L in m["layers"] if not L["empirical_pass"]]
    if failed:
        per_channel = {L["weights"] // L["shape"][0] for _, L in failed}
        lines += ["", "Empirical ratios above the bound: " + "; ".join(
            f"{title} `{L['name']}` ({L['ratio_eq1']:.3f}, {L['weights'] // L['shape'][0]} weights per channel)"
            for title, L in failed) + "."]
        if max(per_channel) <= 9:
            lines.append("All of them have at most 9 weights per output channel (a 3x3 kernel over one input "
                         "channel: the first layer, or a depthwise layer). Nine values do not form a bell-shaped "
                         "distribution and their own max sets the range, so their measured MSE need not follow the "
                         f"lemma's expectation (the largest excess over the bound is "
                         f"{max(L['ratio_eq1'] - L['bound'] for _, L in failed):.3f})"
                         + ("; the expected ratio under the Gaussian fit stays below the bound there."
                            if all(L["expected_pass"] for _, L in failed) else "."))
    return "\n".join(lines)


def _per_layer(models: dict) -> str:
    out = []
    for m in models.values():
        rows = []
        for L in m["layers"]:
            kind = L["type"] + (" dw" if (L.get("groups") or 1) > 1 else "")
            rows.append([L["name"], kind, L["weights"], L["weights"] // L["shape"][0], f"{L['center_share']:.3f}",
                         f"{L['mse_uniform']:.2e}",
                         f"{L['mse_pwlq']:.2e}", f"{L['ratio_deployed']:.3f}", f"{L['ratio_eq1']:.3f}",
                         "pass" if L["empirical_pass"] else "**fail**", f"{L['ratio_expected']:.3f}",
                         "pass" if L["expected_pass"] else "**fail**"])
        out += [f"<details><summary>{m['title']}: {len(rows)} layers (click to open)</summary>", "",
                _table(["layer", "type", "weights", "per channel", "center share", "MSE uniform", "MSE PWLQ",
                        "ratio deployed",
                        "ratio Eq. 1", "empirical", "ratio expected", "expected"], rows), "", "</details>", ""]
    return "\n".join(out)


def _curve_text(results: dict) -> str:
    m = results["models"][results["curve_model"]]
    c = m["curve"]
    lines = [f"{m['title']} layer `{c['layer']}` (the largest convolution, {c['weights']} weights), quantized "
             "with one range [-m, m] for the whole tensor as in the paper's figure (the deployed scheme is per "
             "channel). Curves: empirical PWLQ MSE for p/m in (0, 0.5]; dashed: uniform at the same bits; "
             "markers: the breakpoint the closed form (`gaussian_closed`, circle) and the empirical search "
             "(star) choose.", ""]
    rows = []
    for b, v in c["bits"].items():
        best = int(np.argmin(v["pwlq"]))
        g, e = v["chosen"]["gaussian_closed"], v["chosen"]["empirical"]
        rows.append([b, f"{v['uniform']:.3e}", f"{c['p_over_m'][best]:.3f}", f"{v['pwlq'][best]:.3e}",
                     f"{g['p_over_m']:.3f} / {g['mse']:.3e}", f"{e['p_over_m']:.3f} / {e['mse']:.3e}",
                     f"{e['mse'] / v['uniform']:.3f}"])
    lines.append(_table(["bits", "uniform MSE", "grid minimum p/m", "grid minimum MSE", "closed form p/m / MSE",
                         "empirical p/m / MSE", "best PWLQ / uniform"], rows))
    return "\n".join(lines)


def _goal_text(models: dict, plan: Plan) -> str:
    lines = []
    for m in models.values():
        g = m["goal"]
        mc = g["vs_peer"]
        verdict = "met" if g["met"] else "not met"
        lines.append(
            f"- **{m['title']}: {verdict}.** {g['setting']} {_pct(g['accuracy'])}% vs FP32 {_pct(g['fp32_accuracy'])}%: "
            f"drop {g['drop_pt']:.1f} pt ({'within' if g['within_goal'] else 'outside'} {GOAL_DROP_PT:g} pt); "
            f"{g['peer']} {_pct(g['peer_accuracy'])}%, drop {g['peer_drop_pt']:.1f} pt "
            f"({'PWLQ+BC is better' if g['better_than_peer'] else 'PWLQ+BC is not better'}). "
            f"Image by image, PWLQ+BC alone is right on {_images(mc['only_first_right'])} and uniform+BC alone "
            f"on {_images(mc['only_second_right'])} (exact McNemar p = {mc['p_value']:.2g}).")
    weak = [m["title"] for m in models.values() if m["goal"]["vs_peer"]["p_value"] >= 0.05]
    if weak:
        lines += ["", f"The difference between PWLQ+BC and uniform+BC is **not statistically significant** on "
                  f"{', '.join(weak)} (McNemar p ≥ 0.05): there, the 'smaller drop' part of the goal is decided by "
                  "a few of the 1000 test images."]
    lines += ["", "Documented options, tried and reported separately (not used for the verdict above):", ""]
    rows = []
    for m in models.values():
        for s in plan.options() + [Setting.pwlq(plan.goal_bits, True, 1, "empirical")]:
            if s.key in m["runs"]:
                rows.append([m["title"], s.label, _cell(m["runs"][s.key])])
    lines.append(_table(["model", "setting", "accuracy % (drop)"], rows))
    return "\n".join(lines)


def _size_text(models: dict) -> str:
    rows = []
    for m in models.values():
        d = m["deployment"]
        b = d["bytes"]
        rows.append([m["title"], d["weights"], b["fp32_onnx"], f"{b['qdq_onnx']} ({100 * b['qdq_onnx'] / b['fp32_onnx']:.0f}%)",
                     f"{b['integer_onnx']} ({100 * b['integer_onnx'] / b['fp32_onnx']:.0f}%)",
                     f"{b['tables_npz']} ({d['tables_pct_of_fp32_onnx']:.1f}%)", d["fp32_weight_bytes"],
                     f"{d['packed_codes_bytes']} + {d['packed_region_bytes']}",
                     f"**{d['packed_weight_pct']:.1f}%**", f"{d['tables_pct_of_fp32_weights']:.1f}%"])
    text = [
        "4-bit PWLQ+BC (one breakpoint). Bytes on disk: the FP32 ONNX (batch norms folded), the QDQ and integer "
        "ONNX exports, and the packed tables written with `np.savez` (uncompressed, as the packing spec says); "
        "percentages of the ONNX files are of the FP32 ONNX. Packed weights are the 4-bit sign+magnitude codes "
        "(two per byte) plus one region bit per weight, against 4 bytes per FP32 weight "
        f"(goal ≤ {GOAL_PACKED_PCT:g}%; 5 bits / 32 bits = 15.6% before padding). The whole tables file "
        "(codes, region bits, per-channel scales, breakpoints, bias correction, bias, activation "
        "parameters, names and JSON metadata) is also given as a % of the FP32 weight bytes.",
        "",
        _table(["model", "weights", "FP32 ONNX", "QDQ ONNX", "integer ONNX", "tables .npz (% of FP32 ONNX)",
                "FP32 weight bytes", "packed codes + region bytes", "packed weights %", "tables .npz % of FP32 weights"],
               rows),
        "",
        "The integer ONNX keeps one int8 tensor per region accumulator (the folded codes, paper Eqs. 11-13), so "
        "it is not the compact form; the packed tables are what a native PWLQ kernel reads.",
        "",
        "Deployed form: the integer ONNX of the same 4-bit PWLQ+BC model run by ONNX Runtime (CPU) on the test split:",
        "",
        _table(["model", "PyTorch simulation %", "ONNX Runtime integer %", "same prediction", "max abs logit diff",
                "ORT seconds"],
               [[m["title"], _pct(m["deployment"]["simulation_accuracy"]), _pct(m["deployment"]["ort_integer_accuracy"]),
                 f"{100 * m['deployment']['ort_agreement']:.1f}%", f"{m['deployment']['ort_max_abs_logit_diff']:.2e}",
                 f"{m['deployment']['ort_seconds']:.1f}"] for m in models.values()]),
    ]
    return "\n".join(text)


def _skipped_text(models: dict) -> str:
    lines = []
    for m in models.values():
        skipped = m["skipped"]
        if skipped:
            lines.append(f"- {m['title']}: " + "; ".join(f"`{n}` ({why})" for n, why in skipped.items()))
        else:
            lines.append(f"- {m['title']}: none; every Conv2d and Linear layer is quantized (the first one included).")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=None,
                   help=f"zoo models, space or comma separated (default: {' '.join(DEFAULT_MODELS)}; "
                        "with --quick: resnet20)")
    p.add_argument("--quick", action="store_true", help="a small grid and 64 calibration images (smoke test)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default reports/pwlq; with --quick out/pwlq_report/quick)")
    p.add_argument("--cache", type=Path, default=Path("out/pwlq_report"), help="per-configuration cache folder")
    args = p.parse_args(argv)
    names = [n for item in (args.models or (["resnet20"] if args.quick else list(DEFAULT_MODELS)))
             for n in item.split(",") if n]
    out = args.out or (Path("out/pwlq_report/quick") if args.quick else Path("reports/pwlq"))
    subjects = [load_subject(n) for n in names]
    results = run_report(subjects, QUICK if args.quick else FULL, out, args.cache, argv=argv)
    for m in results["models"].values():
        g = m["goal"]
        print(f"{m['title']}: FP32 {_pct(g['fp32_accuracy'])}%, {g['setting']} {_pct(g['accuracy'])}% "
              f"(drop {g['drop_pt']:.1f} pt), {g['peer']} {_pct(g['peer_accuracy'])}% -> goal "
              f"{'met' if g['met'] else 'NOT met'}; packed weights {m['deployment']['packed_weight_pct']:.1f}%")
    print(f"wrote {out}/report.md, results.json, perf.json and 4 PNGs in {results['meta']['wall_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
