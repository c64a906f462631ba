"""NAS over the S2D space (Eq. 1): the controller samples settings, each candidate is briefly
fine-tuned from the static weights (approximating ``W*_a``), and its reward (Eq. 2) on the
held-out validation split trains the controller with PPO.

A candidate's reward is taken at its best thresholds: per-sample confidences of every stage are
recorded once on the validation split and the threshold grid is searched on them
(:mod:`.thresholds`). COST is MACs, as in the paper (``cost="macs"``), or the measured batch-1
latency on ONNX Runtime relative to the static model (``cost="latency"``, :mod:`.latency`).
Identical architectures are evaluated once. The log (one JSON line per candidate) and the best
architecture are written to ``log_dir`` as the search goes.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ...errors import InputError
from .arch import Architecture
from .controller import PPO, Controller, PPOSettings
from .graph import Plan
from .thresholds import OMEGA, ExitProfile, Outcome, choose_thresholds
from .stages import MultiStageNet, transform
from .training import LabelledData, TrainSettings, stage_probabilities, train_stages

COSTS = ("macs", "latency")


@dataclass(frozen=True)
class SearchSettings:
    """Search budget and per-candidate fine-tuning."""

    candidates: int = 32                  # architectures the controller samples
    batch: int = 4                        # candidates per PPO update
    finetune: TrainSettings = TrainSettings(epochs=1)
    ppo: PPOSettings = PPOSettings()
    omega: float = OMEGA
    cost: str = "macs"                    # COST of Eq. 2: "macs" (paper) or "latency" (measured)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.batch < 1:
            raise InputError(f"search needs candidates >= 1 and batch >= 1, got {self.candidates}, {self.batch}")
        if self.cost not in COSTS:
            raise InputError(f"unknown cost '{self.cost}' (known: {', '.join(COSTS)})")


@dataclass
class SearchResult:
    best: Architecture
    best_outcome: Outcome
    log: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"best": self.best.to_dict(), "best_description": self.best.describe(),
                "best_outcome": self.best_outcome.to_dict(), "seconds": self.seconds,
                "candidates": len(self.log), "unique": len({json.dumps(r["arch"]) for r in self.log})}


def exit_profiles(net: MultiStageNet, data: LabelledData, meter=None) -> tuple[ExitProfile, ExitProfile]:
    """``(priced in MACs, priced by ``meter``)`` profiles of ``net`` on ``data``; without a
    :class:`~.latency.LatencyMeter` both are the MAC profile."""
    macs = ExitProfile.from_probabilities(stage_probabilities(net, data.x), data.y, net.stage_macs,
                                          net.static_macs)
    return macs, (macs.with_cost(meter.relative_stage_cost(net), 1.0) if meter is not None else macs)


def latency_meter(cost: str, model: nn.Module, data: LabelledData):
    """A :class:`~.latency.LatencyMeter` for ``cost="latency"``, else None."""
    if cost != "latency":
        return None
    from .latency import LatencyMeter

    return LatencyMeter(model, torch.from_numpy(data.x[:1]))


def evaluate_candidate(model: nn.Module, plan: Plan, arch: Architecture, fit: LabelledData,
                       val: LabelledData, finetune: TrainSettings, *, omega: float = OMEGA,
                       seed: int = 0, meter=None) -> tuple[MultiStageNet, Outcome, Outcome]:
    """Transform ``model`` under ``arch``, fine-tune on ``fit``, and score on ``val`` at the
    reward-maximising thresholds. Returns the network, the outcome in the search's cost and the
    same thresholds priced in MACs."""
    net = transform(model, arch, plan=plan)
    train_stages(net, fit, finetune, seed=seed)
    macs, priced = exit_profiles(net, val, meter)
    chosen = choose_thresholds(priced, omega=omega)
    return net, chosen, macs.outcome(chosen.thresholds, omega)


def search(model: nn.Module, plan: Plan, fit: LabelledData, val: LabelledData,
           settings: SearchSettings = SearchSettings(), *, stages: int = 3,
           log_dir: str | Path | None = None, progress: bool = True) -> SearchResult:
    """Run the controller for ``settings.candidates`` samples; returns the best architecture by
    validation reward with the full log."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    controller = Controller(len(plan.settings), stages, plan.groups)
    ppo = PPO(controller, settings.ppo)
    meter = latency_meter(settings.cost, model, val)
    seen: dict[Architecture, tuple[Outcome, Outcome]] = {}
    log: list[dict] = []
    best: tuple[Architecture, Outcome] | None = None
    log_path = None
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        log_path = Path(log_dir) / "search_log.jsonl"
        log_path.write_text("")
    bar = tqdm(total=settings.candidates, desc="S2DNAS search", unit="cand", disable=not progress)
    while len(log) < settings.candidates:
        batch, rewards = [], []
        for _ in range(min(settings.batch, settings.candidates - len(log))):
            sample = controller.sample(gen)
            t0 = time.perf_counter()
            cached = sample.arch in seen
            if not cached:
                _, *seen[sample.arch] = evaluate_candidate(
                    model, plan, sample.arch, fit, val, settings.finetune, omega=settings.omega,
                    seed=settings.seed + len(log), meter=meter)
            outcome, in_macs = seen[sample.arch]
            batch.append(sample)
            rewards.append(outcome.reward)
            if best is None or outcome.reward > best[1].reward:
                best = (sample.arch, outcome)
            record = {"candidate": len(log), "arch": sample.arch.to_dict(),
                      "description": sample.arch.describe(), "reward": outcome.reward,
                      "accuracy": outcome.accuracy, "cost": settings.cost,
                      "relative_cost": outcome.relative_cost, "relative_macs": in_macs.relative_cost,
                      "mean_macs": in_macs.mean_cost, "thresholds": outcome.thresholds,
                      "exit_fractions": outcome.exit_fractions, "cached": cached,
                      "seconds": time.perf_counter() - t0}
            log.append(record)
            bar.update(1)
            bar.set_postfix(best=f"{best[1].reward:.4f}", acc=f"{best[1].accuracy:.3f}",
                            cost=f"{best[1].relative_cost:.2f}")
        stats = ppo.update(batch, rewards)
        for record in log[-len(batch):]:
            record["ppo_update"] = stats
            if log_path is not None:
                with log_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
    bar.close()
    result = SearchResult(best[0], best[1], log, time.perf_counter() - start)
    if log_dir is not None:
        (Path(log_dir) / "best_architecture.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


__all__ = ["SearchSettings", "SearchResult", "search", "evaluate_candidate", "PPOSettings"]
