"""Encoder count tracking: a wrapping hardware counter -> an unwrapped position, with faults counted.

PLC and camera encoder counters are fixed-width (32 bits here) and wrap. ``EncoderTracker`` turns
successive raw readings into a monotone 64-bit position and reports the two faults that make
positions untrustworthy for reject timing:

- **backwards**: a reading behind the previous one (belt reversed, counter reset, A/B swapped);
- **jump**: a step larger than expected plus a tolerance (missed readings, a glitch, a counter
  preset). The caller passes the step it expects (e.g. lines skipped x counts per line).

A fault never moves the position backwards: after ``backwards`` the position holds until the
counter passes the old maximum again, so a schedule made against it can never fire twice.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass

__all__ = ["ENCODER_MODULUS", "EncoderEvent", "EncoderTracker"]

ENCODER_MODULUS = 1 << 32
"""The counter width of the PLC's encoder register pair (two 16-bit registers)."""


@dataclass(frozen=True)
class EncoderEvent:
    kind: str
    """"backwards" or "jump"."""
    position: int
    """Unwrapped position (counts) before the faulty reading."""
    delta: int
    """The signed step of the faulty reading, in counts."""
    expected: int | None
    """The step the caller expected (None: no expectation given)."""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "position": self.position, "delta": self.delta,
                "expected": self.expected}


class EncoderTracker:
    """Unwraps a ``modulus``-wide counter and detects backwards steps and jumps.

    ``jump_tolerance``: counts a step may exceed the expected one before it is a jump;
    ``max_step``: the largest plausible step when the caller gives no expectation (None: no
    jump check then).
    """

    def __init__(self, modulus: int = ENCODER_MODULUS, *, jump_tolerance: int = 0,
                 max_step: int | None = None, keep_events: int = 256):
        if modulus < 2:
            raise ValueError(f"encoder modulus must be at least 2, got {modulus}")
        self.modulus, self.jump_tolerance, self.max_step = modulus, jump_tolerance, max_step
        self.position: int | None = None
        """Unwrapped position in counts (None before the first reading)."""
        self._raw: int | None = None
        self._unwrapped = 0  # raw readings unwrapped; may fall back, the position does not
        self.backwards = self.jumps = self.wraps = self.readings = 0
        self.events: collections.deque[EncoderEvent] = collections.deque(maxlen=keep_events)

    def update(self, raw: int, expected_delta: int | None = None) -> tuple[int, EncoderEvent | None]:
        """Take one raw reading; returns (position, the fault it showed or None)."""
        raw = int(raw)
        if not 0 <= raw < self.modulus:
            raise ValueError(f"encoder reading {raw} outside [0, {self.modulus})")
        self.readings += 1
        if self._raw is None:
            self._raw, self.position = raw, raw
            self._unwrapped = raw
            return raw, None
        step = (raw - self._raw) % self.modulus
        if step >= self.modulus // 2:
            step -= self.modulus  # the shorter way round: a step backwards
        elif raw < self._raw:
            self.wraps += 1
        self._raw = raw
        event = None
        limit = self.max_step if expected_delta is None else expected_delta + self.jump_tolerance
        if step < 0:
            self.backwards += 1
            event = EncoderEvent("backwards", self.position, step, expected_delta)
        elif limit is not None and step > limit:
            self.jumps += 1
            event = EncoderEvent("jump", self.position, step, expected_delta)
        self._unwrapped += step
        self.position = max(self.position, self._unwrapped)
        if event is not None:
            self.events.append(event)
        return self.position, event

    def counters(self) -> dict:
        return {"readings": self.readings, "backwards": self.backwards, "jumps": self.jumps,
                "wraps": self.wraps}
