"""Per-line height profiles -> objects: segmentation by encoder position, measurement, height maps.

A ``LineProfile`` is one scan line after decoding: heights across the belt (Q columns, mm above
the belt, NaN where the sensor has no data) at one encoder count. ``ObjectTracker`` opens an
object at the first line with anything above ``min_height_mm`` and closes it after ``gap_lines``
empty lines; the object's trailing edge is the encoder count of its last occupied line — the
count the reject gate is scheduled from. Single lane: objects follow one another along travel.

An object is **unmeasured** (``measured=False``, ``unmeasured_reason`` says why) when a line
inside it was dropped or invalid, the encoder jumped or ran backwards inside it, the source
failed while it was open, or it grew longer than ``max_lines``. Its height map is then not
trustworthy, and the scanner applies its unmeasured policy instead of the classifier.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["LineProfile", "TrackedObject", "ObjectTracker", "height_map", "HEIGHT_MAP_SCALE_MM"]

HEIGHT_MAP_SCALE_MM = 50.0
"""Heights in a classifier height map are mm / this (objects up to ~50 mm map to [0, 1])."""


@dataclass
class LineProfile:
    """One decoded scan line."""

    encoder_count: int
    """Unwrapped encoder position of the line (counts)."""
    line_id: int
    """The camera's line counter."""
    timestamp_ns: int
    """Host time (time.monotonic_ns) the line reached the host."""
    height_mm: np.ndarray
    """(Q,) float32 heights above the belt in mm; NaN = no data in that column."""
    valid: bool = True
    """False for a line that was lost (its row is empty): never treated as "belt empty"."""


@dataclass
class TrackedObject:
    object_id: int
    first_count: int
    last_count: int
    """Encoder count of the last occupied line: the trailing edge."""
    first_line_id: int
    last_line_id: int
    closed_ns: int
    """Host time of the line that closed the object (decision latency counts from here)."""
    measured: bool
    unmeasured_reason: str | None
    length_mm: float
    width_mm: float
    height_mm: float
    volume_mm3: float
    height_map: np.ndarray
    """(H, W) float32 heights / HEIGHT_MAP_SCALE_MM over the object's bounding box."""

    def summary(self) -> dict:
        return {"object_id": self.object_id, "first_count": self.first_count, "last_count": self.last_count,
                "first_line_id": self.first_line_id, "last_line_id": self.last_line_id,
                "measured": self.measured, "unmeasured_reason": self.unmeasured_reason,
                "length_mm": round(self.length_mm, 3), "width_mm": round(self.width_mm, 3),
                "height_mm": round(self.height_mm, 3), "volume_mm3": round(self.volume_mm3, 1)}


def height_map(rows: np.ndarray, occupied_cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rows (L, Q) mm of one object -> (H, W) float32 map over its bounding box (nearest
    sampling; NaN -> 0), heights / HEIGHT_MAP_SCALE_MM. The classifier is trained on exactly this."""
    h, w = shape
    cols = np.flatnonzero(occupied_cols)
    c0, c1 = (int(cols[0]), int(cols[-1]) + 1) if len(cols) else (0, rows.shape[1])
    ri = np.minimum((np.arange(h) + 0.5) * len(rows) / h, len(rows) - 1).astype(np.int64)
    ci = c0 + np.minimum((np.arange(w) + 0.5) * (c1 - c0) / w, c1 - c0 - 1).astype(np.int64)
    out = rows[ri][:, ci]
    return (np.nan_to_num(out, nan=0.0) / HEIGHT_MAP_SCALE_MM).astype(np.float32)


@dataclass
class _Open:
    rows: list = field(default_factory=list)
    counts: list = field(default_factory=list)
    line_ids: list = field(default_factory=list)
    last_occupied: int = -1  # index into rows
    reason: str | None = None


class ObjectTracker:
    """Segments objects from a stream of LineProfiles (feed them in line order).

    ``mm_per_count``: belt travel per encoder count; ``column_pitch_mm``: belt width per column;
    ``min_height_mm``: what counts as "something there"; ``gap_lines``: empty lines that end an
    object; ``max_lines``: longest object kept (longer ones are closed unmeasured, so memory
    stays bounded); ``map_shape``: the classifier's height map (H along travel, W across).
    """

    def __init__(self, *, mm_per_count: float, column_pitch_mm: float, min_height_mm: float = 2.0,
                 gap_lines: int = 3, max_lines: int = 4096, map_shape: tuple[int, int] = (32, 32)):
        if mm_per_count <= 0 or column_pitch_mm <= 0:
            raise ValueError(f"mm_per_count and column_pitch_mm must be positive, got {mm_per_count}, "
                             f"{column_pitch_mm}")
        self.mm_per_count, self.column_pitch_mm = mm_per_count, column_pitch_mm
        self.min_height_mm, self.gap_lines, self.max_lines = min_height_mm, gap_lines, max_lines
        self.map_shape = map_shape
        self._open: _Open | None = None
        self._empty_run = 0
        self._next_id = 0
        self._last_line_id: int | None = None
        self.lines = self.invalid_lines = self.missing_lines = 0

    @property
    def next_object_id(self) -> int:
        """The id the next object will get (objects closed so far have smaller ids)."""
        return self._next_id

    @property
    def open_object(self) -> bool:
        return self._open is not None

    def invalidate(self, reason: str) -> None:
        """Mark the object being built unmeasured (encoder fault, source failure)."""
        if self._open is not None and self._open.reason is None:
            self._open.reason = reason

    def feed(self, profile: LineProfile) -> list[TrackedObject]:
        """Take one line; returns the objects it completed (0 or 1, or 2 when a forced close and
        a new object meet)."""
        self.lines += 1
        done: list[TrackedObject] = []
        if self._last_line_id is not None and profile.line_id > self._last_line_id + 1:
            self.missing_lines += profile.line_id - self._last_line_id - 1
            self.invalidate(f"lines {self._last_line_id + 1}..{profile.line_id - 1} missing")
        self._last_line_id = profile.line_id
        if not profile.valid:
            self.invalid_lines += 1
            self.invalidate(f"line {profile.line_id} dropped")
            if self._open is not None:
                self._append(profile)
            return done
        heights = np.asarray(profile.height_mm, np.float32)
        occupied = bool(np.any(heights > self.min_height_mm))  # NaN compares False
        cur = self._open
        if cur is None:
            if occupied:
                self._open = _Open()
                self._append(profile)
                self._open.last_occupied = 0
                self._empty_run = 0
            return done
        self._append(profile)
        if occupied:
            cur.last_occupied = len(cur.rows) - 1
            self._empty_run = 0
            if len(cur.rows) >= self.max_lines:
                cur.reason = cur.reason or f"longer than {self.max_lines} lines"
                done.append(self._close(profile))
        else:
            self._empty_run += 1
            if self._empty_run >= self.gap_lines:
                done.append(self._close(profile))
        return done

    def _append(self, profile: LineProfile) -> None:
        row = np.asarray(profile.height_mm, np.float32)
        self._open.rows.append(row if profile.valid else np.full_like(row, np.nan))
        self._open.counts.append(int(profile.encoder_count))
        self._open.line_ids.append(int(profile.line_id))

    def _close(self, closing: LineProfile) -> TrackedObject:
        cur, self._open = self._open, None
        self._empty_run = 0
        n = cur.last_occupied + 1
        rows = np.stack(cur.rows[:n])
        counts = np.asarray(cur.counts[:n], np.int64)
        occupied = np.nan_to_num(rows, nan=0.0) > self.min_height_mm
        cols = occupied.any(axis=0)
        pitch_along = float(np.median(np.diff(counts))) * self.mm_per_count if n > 1 else self.mm_per_count
        span = np.flatnonzero(cols)
        width = (span[-1] - span[0] + 1) * self.column_pitch_mm if len(span) else 0.0
        top = np.where(occupied, np.nan_to_num(rows, nan=0.0), 0.0)
        obj = TrackedObject(
            object_id=self._next_id, first_count=int(counts[0]), last_count=int(counts[-1]),
            first_line_id=cur.line_ids[0], last_line_id=cur.line_ids[n - 1],
            closed_ns=int(closing.timestamp_ns), measured=cur.reason is None,
            unmeasured_reason=cur.reason,
            length_mm=float(counts[-1] - counts[0]) * self.mm_per_count + pitch_along,
            width_mm=float(width), height_mm=float(top.max()) if top.size else 0.0,
            volume_mm3=float(top.sum()) * self.column_pitch_mm * pitch_along,
            height_map=height_map(rows, cols, self.map_shape))
        self._next_id += 1
        return obj
