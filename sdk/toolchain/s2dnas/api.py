"""``sdk.make_dynamic``: a trained static CNN → a searched, trained multi-stage network with exit
thresholds, ready for ``sdk.deploy``."""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import InputError
from .arch import Architecture
from .graph import analyze
from .nas import SearchResult, SearchSettings, exit_profiles, latency_meter, search
from .stages import MultiStageNet, transform
from .thresholds import OMEGA, choose_thresholds
from .training import TrainSettings, as_labelled, train_stages


@dataclass(frozen=True)
class DynamicConfig:
    """Everything ``make_dynamic`` does, with the paper's values as defaults (G = 8, s = 3,
    omega = -0.06, SGD 0.9 momentum, lr 0.1 divided by 10 at 50 % / 75 %).

    ``val_fraction`` of the training data is held out (stratified, ``seed``): the search's reward
    and the thresholds are measured on it, never on samples the weights were fitted to.
    ``threads``: ``torch.set_num_threads`` while it runs (None keeps the current setting).
    """

    stages: int = 3
    groups: int = 8
    val_fraction: float = 0.1
    search: SearchSettings = SearchSettings()
    final: TrainSettings = TrainSettings(epochs=20)
    omega: float = OMEGA
    seed: int = 0
    threads: int | None = None


# flat keyword shortcuts accepted by make_dynamic (e.g. candidates=8) -> where they live
_SHORTCUTS = {"candidates": ("search", "candidates"), "finetune_epochs": ("search", "finetune", "epochs"),
              "cost": ("search", "cost"), "epochs": ("final", "epochs"), "lr": ("final", "lr")}


def _with_overrides(config: DynamicConfig, overrides: dict[str, Any]) -> DynamicConfig:
    for name, value in overrides.items():
        if name in _SHORTCUTS:
            path = _SHORTCUTS[name]
        elif name in {f.name for f in dataclasses.fields(DynamicConfig)}:
            path = (name,)
        else:
            raise InputError(f"make_dynamic got an unknown option '{name}' (options: "
                             f"{', '.join([f.name for f in dataclasses.fields(DynamicConfig)] + list(_SHORTCUTS))})")

        def put(obj, keys):
            if len(keys) == 1:
                return dataclasses.replace(obj, **{keys[0]: value})
            return dataclasses.replace(obj, **{keys[0]: put(getattr(obj, keys[0]), keys[1:])})

        config = put(config, path)
    return config


def make_dynamic(model: nn.Module, train_data, *, config: DynamicConfig | None = None,
                 arch: Architecture | dict | None = None, target_accuracy: float | None = None,
                 max_macs: float | None = None, log_dir: str | Path | None = None,
                 progress: bool = True, **overrides: Any) -> MultiStageNet:
    """Transform a trained static ``model`` for dynamic inference (S2DNAS).

    ``train_data``: an ``sdk.data.Dataset`` (u8 images, normalised with the dataset's recorded
    statistics) or ``(inputs (N, C, H, W) float32, labels (N,))``. Steps: hold out
    ``val_fraction``; search split/concat settings with the RNN controller and PPO (skipped when
    ``arch`` is given); train the chosen multi-stage network with Eq. 3 from the static weights;
    grid-search the exit thresholds on the held-out part for the highest reward (Eq. 2), or for
    ``target_accuracy`` (lowest cost with accuracy >= it) or ``max_macs`` (best accuracy with mean
    MACs <= it). The reward's COST is MACs as in the paper, or with ``cost="latency"`` the
    measured ONNX Runtime latency (search and thresholds). ``overrides``: fields of
    :class:`DynamicConfig`, or the shortcuts ``candidates``, ``finetune_epochs``, ``cost``,
    ``epochs``, ``lr``.

    Returns the :class:`MultiStageNet` (eval mode) with ``thresholds`` set; ``.report`` holds the
    search result, training history and the held-out outcome. With ``log_dir``, the search log,
    best architecture and report are written there.
    """
    config = _with_overrides(config or DynamicConfig(), overrides)
    if not 0.0 < config.val_fraction < 1.0:
        raise InputError(f"val_fraction must be in (0, 1), got {config.val_fraction}")
    data = as_labelled(train_data)
    fit, val = data.split(config.val_fraction, config.seed)
    previous = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    start = time.perf_counter()
    try:
        model = model.eval()
        plan = analyze(model, tuple(data.x.shape[1:]), config.groups)
        found: SearchResult | None = None
        if arch is None:
            found = search(model, plan, fit, val, config.search, stages=config.stages,
                           log_dir=log_dir, progress=progress)
            arch = found.best
        elif isinstance(arch, dict):
            arch = Architecture.from_dict(arch)
        net = transform(model, arch, plan=plan)
        history = train_stages(net, fit, config.final, seed=config.seed, progress=progress,
                               desc="S2DNAS train")
        macs, priced = exit_profiles(net, val, latency_meter(config.search.cost, model, val))
        if max_macs is not None:  # "mean FLOPs <= F" is always counted in MACs
            chosen = choose_thresholds(macs, target_accuracy=target_accuracy, max_cost=max_macs, omega=config.omega)
        else:
            chosen = choose_thresholds(priced, target_accuracy=target_accuracy, omega=config.omega)
        net.set_thresholds(chosen.thresholds)
        in_macs = macs.outcome(chosen.thresholds, config.omega)
    finally:
        torch.set_num_threads(previous)
    net.report = {"architecture": arch.to_dict(), "description": arch.describe(),
                  "search": found.to_dict() if found else None,
                  "training": history, "thresholds": chosen.to_dict(), "cost": config.search.cost,
                  "held_out_mean_macs": in_macs.mean_cost,
                  "held_out_samples": len(val), "fit_samples": len(fit),
                  "stage_macs": net.stage_macs, "static_macs": net.static_macs,
                  "config": dataclasses.asdict(config), "seconds": time.perf_counter() - start}
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        (Path(log_dir) / "report.json").write_text(json.dumps(net.report, indent=2) + "\n")
    return net.eval()
