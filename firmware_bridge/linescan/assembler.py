"""Lines -> fixed-height frames. Frame k holds lines k*H .. k*H + H - 1 (H = lines per frame).

Line ids are the device's line counter, so a jump means lines were lost (the host's line buffer
overflowed because the consumer lagged, or the transport lost them). A lost line leaves its row
zero and ``line_valid`` False; every lost line is counted in ``lines_dropped``, and a frame with no
line at all is counted in ``frames_missing``. Rows keep their place, so geometry along the
direction of travel (one line per encoder step) survives losses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AssembledFrame", "LineAssembler"]


@dataclass
class AssembledFrame:
    index: int
    """Frame number: first line id // lines_per_frame."""
    rows: np.ndarray
    """(H, W, C) uint8."""
    line_ids: np.ndarray
    """(H,) int64: the line id each row holds (also for lost rows: index * H + row)."""
    line_timestamps_ns: np.ndarray
    """(H,) int64 device timestamps; 0 for lost rows."""
    line_valid: np.ndarray
    """(H,) bool."""
    host_timestamp_ns: int
    """Host time the newest line of the frame arrived."""

    @property
    def lines_missing(self) -> int:
        return int((~self.line_valid).sum())


class LineAssembler:
    def __init__(self, lines_per_frame: int, width: int, channels: int = 3, first_line_id: int | None = None):
        """``first_line_id``: the id the device starts counting at, so lines lost before the first
        one read are counted too (None: start at whatever arrives first)."""
        if lines_per_frame < 1:
            raise ValueError("lines_per_frame must be at least 1")
        self.lines_per_frame, self.width, self.channels = lines_per_frame, width, channels
        self.lines_received = self.lines_dropped = self.frames_missing = 0
        self._current: AssembledFrame | None = None
        self._last_id: int | None = None if first_line_id is None else first_line_id - 1
        # the newest frame started
        self._last_index: int | None = None if first_line_id is None else first_line_id // lines_per_frame - 1

    def _new(self, index: int) -> AssembledFrame:
        h = self.lines_per_frame
        return AssembledFrame(index=index, rows=np.zeros((h, self.width, self.channels), np.uint8),
                              line_ids=np.arange(index * h, index * h + h, dtype=np.int64),
                              line_timestamps_ns=np.zeros(h, np.int64),
                              line_valid=np.zeros(h, bool), host_timestamp_ns=0)

    def add(self, line_ids: np.ndarray, device_ts_ns: np.ndarray, host_ts_ns: int | np.ndarray,
            rows: np.ndarray) -> list[AssembledFrame]:
        """Add lines in increasing id order ((n,), (n,), scalar or (n,), (n, W, C)); returns the
        frames they completed, oldest first."""
        done: list[AssembledFrame] = []
        n = len(line_ids)
        if n == 0:
            return done
        line_ids = np.asarray(line_ids, np.int64)
        host = np.broadcast_to(np.asarray(host_ts_ns, np.int64), (n,))
        if np.any(np.diff(line_ids) <= 0) or (self._last_id is not None and line_ids[0] <= self._last_id):
            raise ValueError("line ids must increase")
        expected = line_ids[0] if self._last_id is None else self._last_id + 1
        self.lines_dropped += int(line_ids[-1] - expected + 1 - n)  # every id skipped, anywhere
        self.lines_received += n
        self._last_id = int(line_ids[-1])
        h = self.lines_per_frame
        frame_of = line_ids // h
        start = 0
        while start < n:
            index = int(frame_of[start])
            end = start + int(np.searchsorted(frame_of[start:], index, side="right"))
            cur = self._current
            if cur is None or cur.index != index:
                if cur is not None:
                    done.append(cur)
                if self._last_index is not None:
                    self.frames_missing += index - self._last_index - 1
                self._current = cur = self._new(index)
                self._last_index = index
            at = line_ids[start:end] - index * h
            cur.rows[at] = rows[start:end]
            cur.line_timestamps_ns[at] = device_ts_ns[start:end]
            cur.line_valid[at] = True
            cur.host_timestamp_ns = int(host[end - 1])
            if at[-1] == h - 1:  # the frame's last line: it is complete
                done.append(cur)
                self._current = None
            start = end
        return done

    def flush(self) -> AssembledFrame | None:
        """The frame being assembled, incomplete (at stop); None if there is none."""
        cur, self._current = self._current, None
        return cur
