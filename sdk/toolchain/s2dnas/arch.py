"""One point of the S2D search space: split points and concat indicator matrices per setting.

For ``s`` stages and ``G`` channel groups, each setting (one per spatial resolution of the
analysed model, see :mod:`.graph`) holds

* split points ``p_1 < ... < p_{s-1}`` in ``1 .. G-1`` (``p_0 = 0``, ``p_s = G`` implied): stage
  ``i`` (0-based) owns groups ``p_i .. p_{i+1}-1`` of every site of the setting;
* the upper triangle of the indicator matrix, ``m_ij`` for ``i < j``: stage ``j`` concatenates
  stage ``i``'s features at the input of each dense layer of the setting. The prediction layer
  always concatenates every earlier stage (the paper fixes the last layer's row to ones).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from ...errors import InputError


def stage_pairs(stages: int) -> list[tuple[int, int]]:
    """The ``(i, j)``, ``i < j``, of an indicator matrix in the order ``concat`` stores them."""
    return [(i, j) for j in range(stages) for i in range(j)]


def split_choices(groups: int, stages: int) -> list[tuple[int, ...]]:
    """Every valid tuple of split points (each stage gets at least one group)."""
    return list(itertools.combinations(range(1, groups), stages - 1))


@dataclass(frozen=True)
class Architecture:
    """Split and concat settings of a multi-stage model; hashable, so it keys result caches."""

    stages: int
    groups: int
    split_points: tuple[tuple[int, ...], ...]
    concat: tuple[tuple[bool, ...], ...]

    def __post_init__(self) -> None:
        if self.stages < 2:
            raise InputError(f"an S2D architecture needs at least 2 stages, got {self.stages}")
        if self.groups < self.stages:
            raise InputError(f"{self.groups} groups cannot give each of {self.stages} stages one")
        if len(self.split_points) != len(self.concat):
            raise InputError(f"{len(self.split_points)} split settings but {len(self.concat)} concat settings")
        pairs = len(stage_pairs(self.stages))
        for k, (points, bits) in enumerate(zip(self.split_points, self.concat)):
            full = (0, *points, self.groups)
            if len(points) != self.stages - 1 or any(a >= b for a, b in zip(full, full[1:])):
                raise InputError(f"setting {k}: split points {list(points)} must be {self.stages - 1} "
                                 f"increasing values in 1..{self.groups - 1}")
            if len(bits) != pairs:
                raise InputError(f"setting {k}: concat has {len(bits)} entries, expected {pairs} "
                                 f"(pairs i<j of {self.stages} stages)")

    @property
    def num_settings(self) -> int:
        return len(self.split_points)

    def group_range(self, setting: int, stage: int) -> tuple[int, int]:
        """Groups ``[first, end)`` that ``stage`` owns in ``setting``."""
        full = (0, *self.split_points[setting], self.groups)
        return full[stage], full[stage + 1]

    def reused_stages(self, setting: int, stage: int) -> list[int]:
        """Earlier stages whose features ``stage`` concatenates at dense layers of ``setting``."""
        bits = dict(zip(stage_pairs(self.stages), self.concat[setting]))
        return [i for i in range(stage) if bits[(i, stage)]]

    @classmethod
    def even(cls, num_settings: int, stages: int = 3, groups: int = 8, concat: bool = True) -> "Architecture":
        """Groups split as evenly as possible; every concat on (or off)."""
        points = tuple(round(groups * k / stages) for k in range(1, stages))
        bits = (concat,) * len(stage_pairs(stages))
        return cls(stages, groups, (points,) * num_settings, (bits,) * num_settings)

    def to_dict(self) -> dict[str, Any]:
        return {"stages": self.stages, "groups": self.groups,
                "settings": [{"split_points": list(p),
                              "concat": [[i, j] for (i, j), b in zip(stage_pairs(self.stages), c) if b]}
                             for p, c in zip(self.split_points, self.concat)]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Architecture":
        try:
            stages, groups = int(d["stages"]), int(d["groups"])
            pairs = stage_pairs(stages)
            points = tuple(tuple(int(p) for p in s["split_points"]) for s in d["settings"])
            concat = tuple(tuple(list(pair) in [list(c) for c in s["concat"]] for pair in pairs)
                           for s in d["settings"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"not an S2D architecture dict ({e}): {d!r}") from None
        return cls(stages, groups, points, concat)

    def describe(self) -> str:
        parts = []
        for k in range(self.num_settings):
            reuse = ",".join(f"{i + 1}>{j + 1}" for (i, j), b in zip(stage_pairs(self.stages), self.concat[k]) if b)
            parts.append(f"[{'|'.join(str(p) for p in self.split_points[k])}; {reuse or '-'}]")
        return " ".join(parts)
