"""A simulated line-scan camera: a node map (``sim_camera_nodes.json``), a line clock, and a host
line buffer that overflows when the reader lags — the same behaviour a real device's host-side
buffer pool shows.

Lines are produced on a thread at the configured line rate (``AcquisitionLineRate``, or under an
encoder LineStart trigger ``encoder_hz / EncoderDivider``), in batches every few milliseconds, by
a ``line_generator(line_ids, device_timestamps_ns, width) -> (n, width, 3) uint8`` over the full
sensor span of the ROIs; the ROIs' columns are cut out and stored side by side.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np

from firmware_bridge.errors import DeviceLost
from firmware_bridge.linescan.nodemap import SIM_CAMERA_NODES, FakeNodeMap

__all__ = ["LineGenerator", "moving_pattern", "decode_line_ids", "SimulatedLineScanCamera"]

LineGenerator = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
_TICK_S = 0.004  # the producer wakes this often and makes every line that fell due


def moving_pattern(line_ids: np.ndarray, device_timestamps_ns: np.ndarray, width: int) -> np.ndarray:
    """Plausible RGB rows with a known per-line signal: R, G = the line id's low and high byte
    (every column, so any ROI decodes it: ``decode_line_ids``); B = diagonal stripes moving one
    pixel per line, plus a dark band every 256 px as a texture for the eye."""
    ids = np.asarray(line_ids, np.int64)[:, None]
    x = np.arange(width, dtype=np.int64)[None, :]
    rows = np.empty((len(ids), width, 3), np.uint8)
    rows[..., 0] = ids & 0xFF
    rows[..., 1] = (ids >> 8) & 0xFF
    rows[..., 2] = ((x + ids) * 4 % 256) // np.where(x % 256 < 16, 4, 1)
    return rows


def decode_line_ids(rows: np.ndarray) -> np.ndarray:
    """Line ids (mod 65536) of rows made by ``moving_pattern``: (..., W, 3) -> (...,)."""
    return rows[..., 0, 0].astype(np.int64) | (rows[..., 0, 1].astype(np.int64) << 8)


class SimulatedLineScanCamera:
    """The device side: ``node_map`` to configure, start()/stop() the line clock, take() lines.

    ``buffer_lines``: host line buffer; when the reader falls this many lines behind, the oldest
    unread lines are overwritten and their ids never reach it (the assembler counts them).
    """

    def __init__(self, node_map: FakeNodeMap | None = None, *, line_generator: LineGenerator | None = None,
                 buffer_lines: int = 4096, encoder_hz: float = 20000.0):
        self.node_map = node_map if node_map is not None else FakeNodeMap.from_json(SIM_CAMERA_NODES)
        self.line_generator = line_generator or moving_pattern
        self.buffer_lines, self.encoder_hz = buffer_lines, encoder_hz
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running = False
        self.produced = 0  # line ids 0 .. produced - 1 exist
        self._read_next = 0
        self.error: BaseException | None = None  # what stopped the line clock, if it failed

    # -- geometry from the node map --------------------------------------------------------------
    def regions(self) -> list[tuple[int, int]]:
        """[(offset_x, width)] of the regions that are On, in RegionSelector order."""
        nm = self.node_map
        out = []
        for entry in nm.RegionSelector.symbolics:
            if nm.value_for("RegionMode", entry) == "On":
                out.append((nm.value_for("OffsetX", entry), nm.value_for("Width", entry)))
        return out

    def line_rate_hz(self) -> float:
        nm = self.node_map
        if nm.value_for("TriggerMode", "LineStart") == "On":
            source = nm.value_for("TriggerSource", "LineStart")
            if source.startswith("Encoder"):
                return self.encoder_hz / nm.value_for("EncoderDivider", source)
            return self.encoder_hz  # an I/O line: pulses at the same simulated rate
        return float(nm.AcquisitionLineRate.value)

    # -- the line clock --------------------------------------------------------------------------
    def start(self) -> None:
        regions = self.regions()
        self._span = (min(o for o, _ in regions), max(o + w for o, w in regions))
        self._columns = np.concatenate([np.arange(o, o + w) for o, w in regions]) - self._span[0]
        self.width = len(self._columns)
        self.period_ns = int(round(1e9 / self.line_rate_hz()))
        n = self.buffer_lines
        self._rows = np.zeros((n, self.width, 3), np.uint8)
        self._device_ts = np.zeros(n, np.int64)
        self._host_ts = np.zeros(n, np.int64)
        self._running = True
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._produce, name="prism-linescan-sim", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _produce(self) -> None:
        t0 = time.monotonic_ns()
        first = self.produced  # after a restart the line counter goes on
        device_t0 = first * self.period_ns
        while True:
            with self._cond:
                if not self._running:
                    return
            due = first + (time.monotonic_ns() - t0) // self.period_ns + 1
            count = min(int(due - self.produced), self.buffer_lines)
            if count > 0:
                start = due - count  # a producer that fell behind by a whole buffer skips ahead
                ids = np.arange(start, due, dtype=np.int64)
                dts = device_t0 + (ids - first) * self.period_ns
                try:
                    full = self.line_generator(ids, dts, self._span[1] - self._span[0])
                    rows = full[:, self._columns] if len(self._columns) != full.shape[1] else full
                except Exception as exc:  # the device stops; take() reports why, never a silent hang
                    with self._cond:
                        self.error, self._running = exc, False
                        self._cond.notify_all()
                    return
                now = time.monotonic_ns()
                at = ids % self.buffer_lines
                with self._cond:
                    self._rows[at] = rows
                    self._device_ts[at] = dts
                    self._host_ts[at] = now
                    self.produced = int(due)
                    self._cond.notify_all()
            time.sleep(_TICK_S)

    def take(self, max_lines: int, timeout_s: float):
        """The oldest unread lines still in the buffer, up to ``max_lines``:
        (ids (n,), device_ts (n,), host_ts (n,), rows (n, W, 3)) copies; None on timeout or stop."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.produced <= self._read_next:
                if self.error is not None:
                    raise DeviceLost("simulated line-scan camera", f"its line generator failed: "
                                     f"{type(self.error).__name__}: {self.error}") from self.error
                remaining = deadline - time.monotonic()
                if not self._running or remaining <= 0:
                    return None
                self._cond.wait(remaining)
            oldest = max(self._read_next, self.produced - self.buffer_lines)  # the rest was overwritten
            end = min(self.produced, oldest + max_lines)
            ids = np.arange(oldest, end, dtype=np.int64)
            at = ids % self.buffer_lines
            self._read_next = end
            return ids, self._device_ts[at], self._host_ts[at], self._rows[at]

    def discard_unread(self) -> int:
        """Forget the lines produced but never taken (before a restart); returns how many."""
        with self._cond:
            stale = min(self.produced - self._read_next, self.buffer_lines)
            self._read_next = self.produced
            return max(stale, 0)

    @property
    def unread(self) -> int:
        with self._cond:
            return min(self.produced - self._read_next, self.buffer_lines)
