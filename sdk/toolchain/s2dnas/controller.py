"""The RNN controller that emits S2D settings, trained with PPO (Schulman et al., 2017) and Adam.

For every setting (resolution) in order, the LSTM emits one categorical decision for the split
points (one of the ``C(G-1, s-1)`` valid tuples) and one binary decision per concat entry
``m_ij`` (``i < j``). Each decision's action is embedded and fed back as the next step's input,
as in Zoph & Le's controller.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .arch import Architecture, split_choices, stage_pairs


@dataclass(frozen=True)
class Sample:
    """A sampled architecture, its actions and their log-probability under the sampling policy."""

    arch: Architecture
    actions: tuple[int, ...]
    log_prob: float


class Controller(nn.Module):
    """LSTM policy over the decisions of ``num_settings`` settings."""

    def __init__(self, num_settings: int, stages: int = 3, groups: int = 8, hidden: int = 64):
        super().__init__()
        self.num_settings, self.stages, self.groups = num_settings, stages, groups
        self.splits = split_choices(groups, stages)
        self.pairs = stage_pairs(stages)
        # decision kinds: 0 = split (len(splits) actions), 1 = concat bit (2 actions)
        self.kinds = [0] + [1] * len(self.pairs)
        self.sizes = [len(self.splits), 2]
        self.cell = nn.LSTMCell(hidden, hidden)
        self.start = nn.Parameter(torch.zeros(1, hidden))
        self.embed = nn.ModuleList(nn.Embedding(n, hidden) for n in self.sizes)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.sizes)
        for head in self.heads:  # start near uniform: every architecture equally likely
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def _decisions(self) -> list[int]:
        return self.kinds * self.num_settings

    def _run(self, actions: torch.Tensor | None, generator: torch.Generator | None):
        """Sample (``actions`` None) or score ``actions`` ``(B, steps)``; returns
        ``(actions, log_prob (B,), entropy (B,))``."""
        batch = 1 if actions is None else actions.shape[0]
        h = c = torch.zeros(batch, self.start.shape[1])
        inp = self.start.expand(batch, -1)
        taken, logp, ent = [], torch.zeros(batch), torch.zeros(batch)
        for t, kind in enumerate(self._decisions()):
            h, c = self.cell(inp, (h, c))
            dist = torch.distributions.Categorical(logits=self.heads[kind](h))
            if actions is None:
                a = torch.multinomial(dist.probs, 1, generator=generator).squeeze(1)
            else:
                a = actions[:, t]
            taken.append(a)
            logp = logp + dist.log_prob(a)
            ent = ent + dist.entropy()
            inp = self.embed[kind](a)
        return torch.stack(taken, 1), logp, ent

    @torch.no_grad()
    def sample(self, generator: torch.Generator | None = None) -> Sample:
        actions, logp, _ = self._run(None, generator)
        acts = tuple(int(a) for a in actions[0])
        return Sample(self.decode(acts), acts, float(logp[0]))

    def log_prob(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, logp, ent = self._run(actions, None)
        return logp, ent

    def decode(self, actions: tuple[int, ...]) -> Architecture:
        per = len(self.kinds)
        points, concat = [], []
        for k in range(self.num_settings):
            a = actions[k * per:(k + 1) * per]
            points.append(self.splits[a[0]])
            concat.append(tuple(bool(b) for b in a[1:]))
        return Architecture(self.stages, self.groups, tuple(points), tuple(concat))


@dataclass(frozen=True)
class PPOSettings:
    lr: float = 0.03               # Adam; small budgets (dozens of candidates) need a fast policy
    clip: float = 0.2
    epochs: int = 4                # passes over each batch of candidates
    entropy: float = 1e-3          # bonus that keeps the policy exploring
    baseline_decay: float = 0.8    # exponential moving average of the reward


class PPO:
    """Clipped-surrogate updates of a :class:`Controller` from (sample, reward) batches."""

    def __init__(self, controller: Controller, settings: PPOSettings = PPOSettings()):
        self.controller, self.settings = controller, settings
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=settings.lr)
        self.baseline: float | None = None

    def update(self, samples: list[Sample], rewards: list[float]) -> dict[str, float]:
        s = self.settings
        r = torch.tensor(rewards, dtype=torch.float32)
        if self.baseline is None:
            self.baseline = float(r.mean())
        adv = r - self.baseline
        if len(r) > 1 and float(adv.std()) > 0:
            adv = adv / (adv.std() + 1e-8)
        self.baseline = s.baseline_decay * self.baseline + (1 - s.baseline_decay) * float(r.mean())
        actions = torch.tensor([x.actions for x in samples])
        old = torch.tensor([x.log_prob for x in samples])
        for _ in range(s.epochs):
            logp, ent = self.controller.log_prob(actions)
            ratio = torch.exp(logp - old)
            surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - s.clip, 1 + s.clip) * adv)
            loss = -(surrogate.mean() + s.entropy * ent.mean())
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        return {"loss": loss.item(), "baseline": self.baseline, "entropy": ent.mean().item()}
