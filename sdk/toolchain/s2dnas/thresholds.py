"""Exit thresholds: simulate dynamic inference on recorded confidences and grid-search them.

A sample stops at the first stage ``j`` whose top-1 softmax confidence ``c_j >= t_j``; the last
stage answers for the rest. With each stage's confidences and correctness recorded once for every
sample (:class:`ExitProfile`), any threshold setting is evaluated without running the network:

    COST = (1/|D|) sum_i COST_i * N_i     (cost of exiting at stage i, times the samples that do)
    ACC  = (1/|D|) sum_i ACC_i * N_i
    R    = (COST / COST_static) ** omega * ACC          (Eq. 2, omega = -0.06)

The cost is MACs (the paper's FLOPs) or measured seconds (:mod:`.latency`); any additive cost per
stage works. Objectives: maximise the reward (the paper), reach ``accuracy >= A`` at the lowest
cost, or stay within ``mean cost <= F`` with the best accuracy.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ...errors import InputError

OMEGA = -0.06
# Confidences of easy samples crowd near 1, so the grid is fine there.
DEFAULT_GRID = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99,
                0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999, 0.99995, 1.0)
MAX_COMBINATIONS = 20000


def reward(relative_cost, accuracy, omega: float = OMEGA):
    """Eq. 2 with COST relative to the static model (a constant factor; same argmax)."""
    return np.power(relative_cost, omega) * accuracy


@dataclass(frozen=True, eq=False)
class ExitProfile:
    """Per-sample top-1 confidence ``(stages, N)`` and correctness ``(stages, N) bool`` of every
    stage, with the cost of exiting at each stage ``(stages,)`` (cumulative: stages ``0..j``
    run) and of the static model, in one unit (MACs or seconds)."""

    confidence: np.ndarray
    correct: np.ndarray
    stage_cost: np.ndarray
    static_cost: float

    @classmethod
    def from_probabilities(cls, probs: np.ndarray, labels: np.ndarray, stage_cost, static_cost: float):
        """``probs``: ``(stages, N, classes)`` softmax outputs; ``labels``: ``(N,)``."""
        return cls(probs.max(axis=2), probs.argmax(axis=2) == np.asarray(labels)[None, :],
                   np.asarray(stage_cost, np.float64), float(static_cost))

    def with_cost(self, stage_cost, static_cost: float) -> "ExitProfile":
        """The same samples priced in another unit."""
        return ExitProfile(self.confidence, self.correct, np.asarray(stage_cost, np.float64), float(static_cost))

    @property
    def stages(self) -> int:
        return self.confidence.shape[0]

    def exit_stages(self, thresholds) -> np.ndarray:
        """``(N,)`` stage at which each sample exits."""
        t = np.asarray(thresholds, np.float64)
        passes = np.vstack([self.confidence[:-1] >= t[:, None], np.ones((1, self.confidence.shape[1]), bool)])
        return passes.argmax(axis=0)

    def evaluate_many(self, table: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Accuracy and mean cost ``(M,)`` of each row of a ``(M, stages - 1)`` threshold table."""
        acc, cost = np.empty(len(table)), np.empty(len(table))
        n = self.confidence.shape[1]
        last = np.ones((1, 1, n), bool)
        for a in range(0, len(table), chunk):
            t = table[a:a + chunk]
            passes = self.confidence[None, :-1, :] >= t[:, :, None]
            exits = np.concatenate([passes, np.broadcast_to(last, (len(t), 1, n))], axis=1).argmax(axis=1)
            acc[a:a + chunk] = np.take_along_axis(self.correct.T[None], exits[..., None], 2)[..., 0].mean(1)
            cost[a:a + chunk] = self.stage_cost[exits].mean(axis=1)
        return acc, cost

    def outcome(self, thresholds, omega: float = OMEGA) -> "Outcome":
        exits = self.exit_stages(thresholds)
        n = len(exits)
        correct = self.correct[exits, np.arange(n)]
        counts = np.bincount(exits, minlength=self.stages)
        stage_acc = [float(correct[exits == j].mean()) if counts[j] else None for j in range(self.stages)]
        cost = float(self.stage_cost[exits].mean())
        rel = cost / self.static_cost
        return Outcome([float(t) for t in thresholds], float(correct.mean()), cost, rel,
                       float(reward(rel, correct.mean(), omega)), (counts / n).tolist(), stage_acc)


@dataclass
class Outcome:
    """Dynamic inference under ``thresholds`` on a profile's samples."""

    thresholds: list[float]
    accuracy: float
    mean_cost: float                     # in the profile's unit (MACs or seconds)
    relative_cost: float
    reward: float
    exit_fractions: list[float]
    stage_accuracy: list[float | None]   # accuracy of the samples that exit at each stage
    objective: str = ""
    met: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def threshold_table(stages: int, grid=DEFAULT_GRID) -> np.ndarray:
    """Every combination of grid values for the ``stages - 1`` thresholds, thinned evenly so at
    most ``MAX_COMBINATIONS`` rows remain."""
    grid = np.asarray(sorted(set(grid)), np.float64)
    while len(grid) ** (stages - 1) > MAX_COMBINATIONS:
        grid = grid[::2] if grid[-1] == grid[::2][-1] else np.append(grid[::2], grid[-1])
    return np.array(list(itertools.product(grid, repeat=stages - 1)), np.float64).reshape(-1, stages - 1)


def choose_thresholds(profile: ExitProfile, *, target_accuracy: float | None = None,
                      max_cost: float | None = None, omega: float = OMEGA, grid=DEFAULT_GRID) -> Outcome:
    """Grid-search thresholds on ``profile``.

    Default: the highest reward (Eq. 2). ``target_accuracy``: the lowest mean cost with
    accuracy >= it. ``max_cost``: the best accuracy with mean cost <= it (the profile's unit).
    When no setting meets a target, the closest one is returned with ``met=False``.
    """
    if target_accuracy is not None and max_cost is not None:
        raise InputError("give a target accuracy or a cost budget, not both")
    if target_accuracy is not None and not 0.0 <= target_accuracy <= 1.0:
        raise InputError(f"target_accuracy is a fraction in [0, 1], got {target_accuracy}")
    if max_cost is not None and max_cost <= 0:
        raise InputError(f"the cost budget must be positive, got {max_cost}")
    table = threshold_table(profile.stages, grid)
    acc, cost = profile.evaluate_many(table)
    met = None
    if target_accuracy is not None:
        ok = acc >= target_accuracy - 1e-12
        met = bool(ok.any())
        # fewest MACs among those that reach it, then best accuracy; else the most accurate
        key = np.lexsort((-acc, cost)) if met else np.lexsort((cost, -acc))
        best = next(i for i in key if ok[i]) if met else key[0]
        objective = f"accuracy >= {target_accuracy:.4f}"
    elif max_cost is not None:
        ok = cost <= max_cost
        met = bool(ok.any())
        key = np.lexsort((cost, -acc)) if met else np.lexsort((-acc, cost))
        best = next(i for i in key if ok[i]) if met else key[0]
        objective = f"mean cost <= {max_cost:.4g}"
    else:
        r = reward(cost / profile.static_cost, acc, omega)
        best = np.lexsort((cost, -r))[0]
        objective = f"max reward (omega={omega})"
    out = profile.outcome(table[best], omega)
    out.objective, out.met = objective, met
    return out


def tradeoff_curve(profile: ExitProfile, grid=DEFAULT_GRID) -> dict[str, np.ndarray]:
    """Accuracy and mean cost of every grid setting, plus the Pareto front (Fig. 6)."""
    table = threshold_table(profile.stages, grid)
    acc, cost = profile.evaluate_many(table)
    order = np.lexsort((-acc, cost))
    front, best = [], -1.0
    for i in order:
        if acc[i] > best:
            front.append(i)
            best = acc[i]
    front = np.array(front)
    return {"thresholds": table, "accuracy": acc, "mean_cost": cost, "front": front}
