"""Training recipe for the model zoo on the packaged digit datasets, with a checkpoint cache.

Typical use::

    from sdk.models.train import default_config, get_or_train
    model, meta = get_or_train(default_config("resnet20"))   # trains once, then loads from cache
    meta["accuracy"]["test"], meta["dataset"]["mean"], meta["dataset"]["std"]

A checkpoint is two files side by side: ``<stem>.pt`` (the ``state_dict``) and ``<stem>.json``
(architecture name + kwargs, dataset split and normalisation, config, accuracies, seconds, torch
version), so the model can be rebuilt by name and its input reproduced on a device without
PyTorch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sdk.data import DATASETS, Dataset, dataset_info, load_dataset, normalize
from sdk.errors import InputError

from .zoo import MODEL_NAMES, build_model

SCHEDULES = ("onecycle", "cosine")
SHIFT_PX = 2  # augmentation: random translation of up to this many pixels in x and y
# Bump when the recipe changes in a way that changes trained weights: old cache entries are
# then ignored rather than silently reused.
RECIPE_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``lr`` is the peak learning rate of the schedule.

    ``threads`` (``torch.set_num_threads`` during training; None keeps the current setting) does
    not enter the cache key, since it changes speed, not the recipe. ``max_train_samples`` trains
    on a fixed random subset of the train split (for quick tests).
    """

    model: str
    dataset: str = "mnist5k"
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    augment: bool = True
    seed: int = 0
    threads: int | None = None
    max_train_samples: int | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise InputError(f"unknown model {self.model!r}; known models: {', '.join(MODEL_NAMES)}")
        if self.dataset not in DATASETS:
            raise InputError(f"unknown dataset {self.dataset!r}; known datasets: {', '.join(DATASETS)}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"unknown schedule {self.schedule!r}; known schedules: {', '.join(SCHEDULES)}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise InputError(f"epochs, batch_size and lr must be positive, got "
                             f"{self.epochs}, {self.batch_size}, {self.lr}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise InputError(f"max_train_samples must be positive or None, got {self.max_train_samples}")

    def key(self) -> str:
        """Short hash of everything that determines the trained weights (not ``threads``)."""
        recipe = dataclasses.asdict(self)
        recipe.pop("threads")
        recipe["recipe_version"] = RECIPE_VERSION
        blob = json.dumps(recipe, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# Per-model recipe defaults (one-cycle, shift augmentation, on top of TrainConfig's fields).
# Measured on 2 shared CPU cores, torch 2.13, mnist5k (`prism train --model NAME` re-runs them):
#   lenet5    seeds 0-2: 97.9-98.8% test in ~3 s
#   resnet20  seeds 0-2: 98.5-98.7% test in 45-110 s (the spread is CPU contention)
#   vgg_bn    seed 0: 99.0% test in ~110 s under contention
#   resnet56, mobilenetv2: not trained to the end; one epoch took 46 s and 36 s under
#   contention, so expect 5-10 minutes for these recipes.
DEFAULT_CONFIGS: dict[str, dict[str, Any]] = {
    "lenet5": dict(epochs=15, batch_size=64, lr=0.05),
    "resnet20": dict(epochs=15, batch_size=64, lr=0.2),
    "resnet56": dict(epochs=15, batch_size=64, lr=0.1),
    "vgg_bn": dict(epochs=15, batch_size=64, lr=0.05),
    "mobilenetv2": dict(epochs=15, batch_size=64, lr=0.1, weight_decay=4e-5),
}


def default_config(model_name: str, **overrides: Any) -> TrainConfig:
    """The recommended ``TrainConfig`` for ``model_name`` (one-cycle, shift augmentation), with
    any field overridden by keyword."""
    if model_name not in DEFAULT_CONFIGS:
        raise InputError(f"unknown model {model_name!r}; known models: {', '.join(MODEL_NAMES)}")
    return TrainConfig(model=model_name, **{**DEFAULT_CONFIGS[model_name], **overrides})


@dataclass
class TrainResult:
    """A trained model (eval mode, CPU), its metrics and the wall-clock seconds ``train`` took.

    ``metrics``: ``val_accuracy`` and ``test_accuracy`` in [0, 1], and ``history``, one dict per
    epoch (``epoch``, ``train_loss``, ``train_accuracy``, ``val_accuracy``, ``lr``).
    """

    model: nn.Module
    metrics: dict[str, Any]
    seconds: float


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _shift(images: np.ndarray, rng: np.random.Generator, px: int = SHIFT_PX) -> np.ndarray:
    """Translate each ``(N, H, W) uint8`` image by a random (dy, dx) in [-px, px] (zero fill):
    pad by ``px`` then crop ``H x W`` at a random offset."""
    n, h, w = images.shape
    padded = np.pad(images, ((0, 0), (px, px), (px, px)))
    oy, ox = rng.integers(0, 2 * px + 1, size=(2, n))
    rows = (oy[:, None] + np.arange(h))[:, :, None]
    cols = (ox[:, None] + np.arange(w))[:, None, :]
    return padded[np.arange(n)[:, None, None], rows, cols]


def _train_subset(config: TrainConfig) -> Dataset:
    data = load_dataset(config.dataset, "train")
    if config.max_train_samples is None or config.max_train_samples >= len(data):
        return data
    # The source files are sorted by class, so a prefix would be one class: take a random subset.
    idx = np.sort(np.random.default_rng(config.seed).permutation(len(data))[:config.max_train_samples])
    return Dataset(images=data.images[idx], labels=data.labels[idx], name=data.name, split=data.split)


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    if config.schedule == "onecycle":
        # Momentum stays at config.momentum; only the learning rate follows the cycle.
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps,
                                                   cycle_momentum=False)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)


def evaluate(model: nn.Module, dataset: str, split: str = "test", batch_size: int = 500) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on split ``split`` of dataset ``dataset``.

    Runs in eval mode without gradients and restores the model's previous mode.
    """
    data = load_dataset(dataset, split)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                x = torch.from_numpy(normalize(data.images[start:start + batch_size], dataset)).to(device)
                pred = model(x).argmax(dim=1).cpu().numpy()
                correct += int((pred == data.labels[start:start + batch_size]).sum())
    finally:
        model.train(was_training)
    return correct / len(data)


def train(config: TrainConfig, progress: bool = True) -> TrainResult:
    """Train ``config.model`` from scratch with SGD (Nesterov off) and the configured schedule.

    Validation accuracy is measured after every epoch, test accuracy once at the end. Seeds
    ``random``, NumPy and torch with ``config.seed``; with ``threads`` set, uses that many
    intra-op threads and restores the previous count afterwards.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        _seed_everything(config.seed)
        rng = np.random.default_rng(config.seed)
        data = _train_subset(config)
        model = build_model(config.model, **_model_kwargs(config))
        # channels_last runs the small convolutions ~1.5x faster on CPU; undone before returning.
        model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
        steps_per_epoch = -(-len(data) // config.batch_size)
        scheduler = _scheduler(optimizer, config, config.epochs * steps_per_epoch)
        loss_fn = nn.CrossEntropyLoss()
        history = []
        epochs = tqdm(range(1, config.epochs + 1), desc=f"{config.model}/{config.dataset}",
                      unit="epoch", disable=not progress)
        for epoch in epochs:
            model.train()
            order = rng.permutation(len(data))
            loss_sum, correct = 0.0, 0
            for first in range(0, len(data), config.batch_size):
                idx = order[first:first + config.batch_size]
                images = _shift(data.images[idx], rng) if config.augment else data.images[idx]
                x = torch.from_numpy(normalize(images, config.dataset)).contiguous(
                    memory_format=torch.channels_last)
                y = torch.from_numpy(data.labels[idx])
                logits = model(x)
                loss = loss_fn(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(idx)
                correct += int((logits.argmax(dim=1) == y).sum())
            record = {"epoch": epoch, "train_loss": loss_sum / len(data),
                      "train_accuracy": correct / len(data),
                      "val_accuracy": evaluate(model, config.dataset, "val"),
                      "lr": optimizer.param_groups[0]["lr"]}
            history.append(record)
            epochs.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{record['val_accuracy']:.4f}")
        model = model.to(memory_format=torch.contiguous_format).eval()
        metrics = {"val_accuracy": history[-1]["val_accuracy"],
                   "test_accuracy": evaluate(model, config.dataset, "test"),
                   "history": history}
    finally:
        torch.set_num_threads(previous_threads)
    return TrainResult(model=model, metrics=metrics, seconds=time.perf_counter() - start)


def _model_kwargs(config: TrainConfig) -> dict[str, Any]:
    info = dataset_info(config.dataset)
    return {"in_channels": 1, "num_classes": info["num_classes"], **config.model_kwargs}


def _stem(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".pt", ".json") else path


def save_checkpoint(model: nn.Module, meta: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``<path>.pt`` (``state_dict``) and ``<path>.json`` (``meta``); return the stem.

    ``meta["architecture"]`` must be ``{"name": <zoo name>, "kwargs": {...}}`` so that
    ``load_checkpoint`` can rebuild the model. A ``.pt``/``.json`` suffix on ``path`` is ignored.
    Both files are written to temporary names and renamed, the ``.json`` last, so a reader that
    sees the ``.json`` also sees a complete ``.pt``.
    """
    arch = meta.get("architecture")
    if not isinstance(arch, dict) or arch.get("name") not in MODEL_NAMES:
        raise InputError(f"meta['architecture'] must be {{'name': one of {', '.join(MODEL_NAMES)}, "
                         f"'kwargs': {{...}}}}, got {arch!r}")
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    pt, js = stem.with_name(stem.name + ".pt"), stem.with_name(stem.name + ".json")
    suffix = f".tmp{os.getpid()}"
    torch.save(model.state_dict(), str(pt) + suffix)
    os.replace(str(pt) + suffix, pt)
    Path(str(js) + suffix).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(str(js) + suffix, js)
    return stem


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved by ``save_checkpoint`` at ``path`` (stem, ``.pt`` or ``.json``).

    Returns ``(model in eval mode on CPU, meta)``.
    """
    stem = _stem(path)
    pt, js = stem.with_name(stem.name + ".pt"), stem.with_name(stem.name + ".json")
    for p in (pt, js):
        if not p.is_file():
            raise InputError(f"checkpoint file {p} does not exist")
    meta = json.loads(js.read_text(encoding="utf-8"))
    arch = meta["architecture"]
    model = build_model(arch["name"], **arch.get("kwargs", {}))
    model.load_state_dict(torch.load(pt, map_location="cpu", weights_only=True))
    return model.eval(), meta


def checkpoint_meta(config: TrainConfig, result: TrainResult) -> dict[str, Any]:
    """The JSON record ``get_or_train`` stores next to the weights of ``result``."""
    return {
        "architecture": {"name": config.model, "kwargs": _model_kwargs(config)},
        "input_shape": [1, 28, 28],  # (C, H, W) float32 = normalize(u8 images, dataset)
        "dataset": dataset_info(config.dataset),
        "config": dataclasses.asdict(config),
        "config_key": config.key(),
        "recipe_version": RECIPE_VERSION,
        "accuracy": {"val": result.metrics["val_accuracy"], "test": result.metrics["test_accuracy"]},
        "history": result.metrics["history"],
        "seconds": result.seconds,
        "torch_version": torch.__version__,
    }


def cache_dir() -> Path:
    """Where trained checkpoints are cached: ``$PRISM_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/prism``, else ``~/.cache/prism``."""
    if os.environ.get("PRISM_CACHE_DIR"):
        return Path(os.environ["PRISM_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "prism"


def checkpoint_path(config: TrainConfig) -> Path:
    """Cache stem of ``config``'s checkpoint: ``cache_dir()/checkpoints/<model>-<dataset>-<key>``."""
    return cache_dir() / "checkpoints" / f"{config.model}-{config.dataset}-{config.key()}"


def get_or_train(config: TrainConfig, progress: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """The cached checkpoint for ``config`` if there is one, else train, cache and return it.

    Returns ``(model in eval mode on CPU, meta)``; ``meta["cached"]`` tells whether it was loaded
    (not stored in the file).
    """
    stem = checkpoint_path(config)
    if stem.with_name(stem.name + ".json").is_file():
        model, meta = load_checkpoint(stem)
        return model, {**meta, "cached": True}
    result = train(config, progress=progress)
    meta = checkpoint_meta(config, result)
    save_checkpoint(result.model, meta, stem)
    return result.model, {**meta, "cached": False}
