"""Decisions -> reject commands at the encoder count where the object reaches the gate.

The gate sits ``gate_distance_counts`` after the scan line. An object's reject is due at
``gate_count = last_count (trailing edge) + gate_distance_counts``; the command must reach the PLC
at least ``margin_counts`` before that (its queueing, the network, the actuator's lead). A decision
is made against the **freshest** encoder position the scanner knows at the moment it is ready,
never the position when classification started:

- ``scheduled``: a reject sent in time; the PLC fires at ``gate_count``;
- ``accepted``: the object passes (a pass needs no command, but is still checked for lateness);
- ``late``: the decision came after ``gate_count - margin_counts``: reported, never fired;
- ``unsent``: in time, but the PLC link was down (the gate is held safe; the object is reported);
- ``stale``: the decision refers to an object already decided, or to one whose position was
  invalidated after it closed (an encoder fault between closing and deciding): refused.
"""
from __future__ import annotations

import collections
import threading
from dataclasses import asdict, dataclass
from typing import Callable

__all__ = ["Decision", "RejectScheduler", "STATUSES"]

_REMEMBER = 4096  # decided object ids kept for the stale check (memory stays flat)
STATUSES = ("scheduled", "accepted", "late", "unsent", "stale")


@dataclass(frozen=True)
class Decision:
    object_id: int
    reject: bool
    """What the classifier (or the unmeasured policy) wanted."""
    status: str
    """One of STATUSES."""
    reason: str
    """Why reject/accept: "defect p=0.93", "ok p=0.02", "unmeasured: ..."."""
    gate_count: int
    decided_at_count: int
    """The encoder position when the decision was ready."""
    slack_counts: int
    """gate_count - margin - decided_at_count: > 0 in time, < 0 late."""
    latency_ns: int
    """Host time from the object's closing line to the decision."""

    def to_dict(self) -> dict:
        return asdict(self)


class RejectScheduler:
    """``send(gate_count) -> bool`` writes a reject to the PLC (False when it could not)."""

    def __init__(self, gate_distance_counts: int, margin_counts: int, send: Callable[[int], bool]):
        if gate_distance_counts <= margin_counts or margin_counts < 0:
            raise ValueError(f"gate distance ({gate_distance_counts} counts) must exceed the margin "
                             f"({margin_counts} counts), and the margin must be >= 0")
        self.gate_distance_counts, self.margin_counts, self._send = gate_distance_counts, margin_counts, send
        self._lock = threading.Lock()
        self._decided: collections.OrderedDict[int, None] = collections.OrderedDict()  # recent ids
        self._invalid_after: int | None = None  # encoder fault: objects closed before it are stale
        self.counts = {s: 0 for s in STATUSES}

    def invalidate_before(self, object_id_bound: int) -> None:
        """Objects with id < ``object_id_bound`` lost their position (encoder fault after they
        closed); decisions for them are refused as stale."""
        with self._lock:
            self._invalid_after = max(self._invalid_after or 0, object_id_bound)

    def decide(self, object_id: int, last_count: int, reject: bool, reason: str, now_count: int,
               latency_ns: int) -> Decision:
        gate = last_count + self.gate_distance_counts
        slack = gate - self.margin_counts - now_count
        with self._lock:
            if object_id in self._decided or (self._invalid_after is not None
                                                   and object_id < self._invalid_after):
                status = "stale"
            elif slack < 0:
                status = "late"
            elif not reject:
                status = "accepted"
            else:
                status = "scheduled" if self._send(gate) else "unsent"
            if status != "stale":
                self._decided[object_id] = None
                if len(self._decided) > _REMEMBER:
                    self._decided.popitem(last=False)
            self.counts[status] += 1
        return Decision(object_id, reject, status, reason, gate, now_count, slack, latency_ns)
