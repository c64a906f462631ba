"""Training a multi-stage network with the paper's loss (Eq. 3) and schedule.

    L = sum_(x, y) sum_i alpha_i * CE(f_i(x), y)

SGD with momentum 0.9; the learning rate starts at ``lr`` (paper: 0.1) and is divided by 10 at
50 % and 75 % of the training steps (the paper's epochs, counted in steps so that a one-epoch
fine-tune of a search candidate follows the same shape). Inputs are randomly shifted by up to
``shift`` pixels, as in the zoo recipe.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ...errors import InputError


@dataclass(frozen=True, eq=False)
class LabelledData:
    """Model inputs ``x`` ``(N, C, H, W) float32`` and labels ``y`` ``(N,) int64``."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.x.dtype != np.float32:
            raise InputError(f"inputs must be (N, C, H, W) float32, got {self.x.shape} {self.x.dtype}")
        if self.y.shape != (len(self.x),):
            raise InputError(f"labels must be ({len(self.x)},), got {self.y.shape}")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> "LabelledData":
        return LabelledData(self.x[idx], self.y[idx])

    def split(self, fraction: float, seed: int = 0) -> tuple["LabelledData", "LabelledData"]:
        """Stratified ``(rest, held_out)`` with ``fraction`` of each class held out."""
        rng = np.random.default_rng(seed)
        held = []
        for c in np.unique(self.y):
            idx = rng.permutation(np.flatnonzero(self.y == c))
            held.append(idx[:max(1, round(fraction * len(idx)))])
        held_idx = np.sort(np.concatenate(held))
        rest_idx = np.setdiff1d(np.arange(len(self)), held_idx)
        return self.subset(rest_idx), self.subset(held_idx)


def as_labelled(data, dataset: str | None = None) -> LabelledData:
    """``data``: a :class:`sdk.data.Dataset` (u8 images, normalised with its dataset's train
    statistics), a :class:`LabelledData`, or a pair ``(x (N, C, H, W) float32, y (N,) int)`` of
    arrays or tensors."""
    if isinstance(data, LabelledData):
        return data
    from sdk.data import Dataset, normalize

    if isinstance(data, Dataset):
        return LabelledData(normalize(data.images, dataset or data.name), np.asarray(data.labels, np.int64))
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for v in data)
        return LabelledData(np.ascontiguousarray(x, np.float32), y.astype(np.int64))
    raise InputError(f"training data must be an sdk.data.Dataset or a pair (inputs, labels), "
                     f"got {type(data).__name__}")


def shift(x: np.ndarray, rng: np.random.Generator, px: int) -> np.ndarray:
    """Translate each ``(N, C, H, W)`` image by a random offset in ``[-px, px]``, edges repeated
    (for digits the edge is background)."""
    n, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (px, px), (px, px)), mode="edge")
    oy, ox = rng.integers(0, 2 * px + 1, size=(2, n))
    rows = (oy[:, None] + np.arange(h))[:, None, :, None]
    cols = (ox[:, None] + np.arange(w))[:, None, None, :]
    return padded[np.arange(n)[:, None, None, None], np.arange(x.shape[1])[None, :, None, None], rows, cols]


def multi_stage_loss(logits: Sequence[torch.Tensor], y: torch.Tensor,
                     alphas: Sequence[float] | None = None) -> torch.Tensor:
    """Eq. 3 for one batch: ``sum_i alpha_i * CE(f_i(x), y)`` (mean over the batch)."""
    alphas = alphas or [1.0] * len(logits)
    ce = nn.functional.cross_entropy
    return sum(a * ce(z, y) for a, z in zip(alphas, logits))


@dataclass(frozen=True)
class TrainSettings:
    """SGD settings. ``epochs`` may be fractional (a search candidate's short fine-tune)."""

    epochs: float = 20
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of training where lr /= 10
    shift: int = 2
    alphas: tuple[float, ...] | None = None       # Eq. 3 weights, default all 1


def train_stages(net: nn.Module, data: LabelledData, settings: TrainSettings, *, seed: int = 0,
                 progress: bool = False, desc: str = "s2dnas") -> list[dict]:
    """Train ``net`` (returning a list of logits) on ``data`` with Eq. 3; returns per-epoch
    records (``epoch``, ``loss``, ``stage_accuracy`` on the augmented training batches)."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    steps_per_epoch = -(-len(data) // settings.batch_size)
    total = max(1, round(settings.epochs * steps_per_epoch))
    opt = torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=settings.momentum,
                          weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=sorted({max(1, round(f * total)) for f in settings.milestones}), gamma=0.1)
    net.train()
    history, step = [], 0
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False)
    start = time.perf_counter()
    while step < total:
        order = rng.permutation(len(data))
        loss_sum, seen, correct = 0.0, 0, None
        for first in range(0, len(data), settings.batch_size):
            if step >= total:
                break
            idx = order[first:first + settings.batch_size]
            xb = data.x[idx]
            if settings.shift:
                xb = shift(xb, rng, settings.shift)
            x, y = torch.from_numpy(np.ascontiguousarray(xb)), torch.from_numpy(data.y[idx])
            logits = net(x)
            loss = multi_stage_loss(logits, y, settings.alphas)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
            hits = torch.stack([(z.argmax(1) == y).sum() for z in logits]).numpy()
            correct = hits if correct is None else correct + hits
        history.append({"epoch": len(history) + 1, "loss": loss_sum / max(seen, 1),
                        "stage_accuracy": (correct / max(seen, 1)).tolist(),
                        "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - start})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
    bar.close()
    net.eval()
    return history


@torch.no_grad()
def stage_probabilities(net: nn.Module, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Softmax outputs of every stage on every sample: ``(stages, N, classes) float32``.

    Every stage runs on every sample (for threshold search and curves; exits change nothing
    about a stage's output because a stage only reads earlier stages)."""
    was_training = net.training
    net.eval()
    parts = []
    try:
        for i in range(0, len(x), batch_size):
            logits = net(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])))
            parts.append(torch.stack([z.softmax(1) for z in logits]).numpy())
    finally:
        net.train(was_training)
    return np.concatenate(parts, axis=1)
