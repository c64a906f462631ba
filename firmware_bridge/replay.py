"""ReplaySource: a recording (``recording.py``) played back as a Source.

    file:///path/to/recording?rate=original&loop=0&late_ms=2

    rate     "original": frames keep the recorded spacing of their host timestamps;
             "<fps>": a fixed rate; "max": as fast as they are read (default "original")
    loop     1: start again after the last frame (meta["pass"] counts passes); 0: end (default 0)
    late_ms  a frame read more than this after its scheduled time counts as late (default 2)

Frames keep their recorded frame id, device timestamp, pixel format and meta; ``host_timestamp_ns``
is the replay's own delivery time (so latency measured downstream is real), the recorded one is
in ``meta["recorded_host_timestamp_ns"]`` and the recorded URI in ``meta["recorded_source"]``.
Replay never drops: a reader slower than the schedule receives every frame, late, and
``stats.late`` counts them. After the last frame read() raises EndOfRecording (a SourceStopped).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from firmware_bridge.errors import AcquisitionTimeout, SourceStopped
from firmware_bridge.recording import Recording
from firmware_bridge.source import DeliveryRate, Frame, Source, SourceStats, SourceURI, register_source

__all__ = ["ReplaySource", "ReplayStats", "EndOfRecording"]


class EndOfRecording(SourceStopped):
    """The replay delivered its last frame (and does not loop)."""


@dataclass
class ReplayStats(SourceStats):
    late: int = 0
    """Frames delivered more than ``late_ms`` after their scheduled time."""
    max_late_ms: float = 0.0
    """The worst delay behind schedule."""
    passes: int = 0
    """Completed passes over the recording."""
    truncated: bool = False
    """The recording was cut short (a crash mid-write): only its complete frames play."""


def _rate(text) -> float | None:
    """None for "original", 0.0 for "max", else frames per second."""
    text = str(text).lower()
    if text == "original":
        return None
    if text == "max":
        return 0.0
    try:
        fps = float(text)
    except ValueError:
        fps = -1.0
    if fps <= 0:
        raise ValueError(f"rate={text!r}: use 'original', 'max' or a positive number of frames per second")
    return fps


class ReplaySource(Source):
    def __init__(self, uri: SourceURI):
        super().__init__(uri.text)
        options = dict(uri.options)
        unknown = set(options) - {"rate", "loop", "late_ms", "timeout"}
        if unknown:
            raise ValueError(f"unknown file option(s) {', '.join(sorted(unknown))}: rate, loop, late_ms, timeout")
        self._rate = _rate(options.get("rate", "original"))
        self._loop = str(options.get("loop", "0")).lower() in ("1", "true", "yes", "on")
        self._late_ns = int(float(options.get("late_ms", 2.0)) * 1e6)
        self.default_timeout_s = float(options.get("timeout", 2.0))
        self.recording = Recording(uri.target)
        if not len(self.recording):
            raise EndOfRecording(f"{uri.text}: the recording holds no complete frame")
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._next = 0          # index of the next frame to deliver
        self._passes = 0
        self._t0_ns: int | None = None  # replay clock origin, set by the first read after start()
        self._first_recorded_ns = self.recording.entries[0].host_timestamp_ns
        self._delivered = self._late = 0
        self._max_late_ns = 0
        self._fps = DeliveryRate()

    def _start(self) -> None:
        self._halt.clear()
        self._t0_ns = None

    def _stop(self) -> None:
        self._halt.set()

    def _close(self) -> None:
        self._halt.set()
        self.recording.close()

    def _schedule_ns(self, index: int) -> int:
        """Offset of frame ``index`` (within a pass) from the start of the pass."""
        if self._rate is None:
            return self.recording.entries[index].host_timestamp_ns - self._first_recorded_ns
        if self._rate == 0.0:
            return 0
        return int(index * 1e9 / self._rate)

    def _pass_length_ns(self) -> int:
        n = len(self.recording)
        if self._rate is None:  # the last gap repeated, so pass k+1 starts one frame period later
            last = self._schedule_ns(n - 1)
            return last + (last // (n - 1) if n > 1 else 0)
        return self._schedule_ns(n) if self._rate else 0

    def _read(self, timeout_s: float) -> Frame:
        with self._lock:  # one reader at a time keeps the schedule and the counters exact
            if self._next >= len(self.recording):
                if not self._loop:
                    raise EndOfRecording(f"{self.uri}: end of recording ({len(self.recording)} frames)")
                self._next, self._passes = 0, self._passes + 1
            now = time.monotonic_ns()
            if self._t0_ns is None:
                self._t0_ns = now - self._schedule_ns(self._next)
            due = self._t0_ns + self._passes * self._pass_length_ns() + self._schedule_ns(self._next)
            if self._rate == 0.0:
                due = now
            wait_s = (due - now) / 1e9
            if wait_s > timeout_s:
                self._halt.wait(timeout_s)
                if self._halt.is_set():
                    raise SourceStopped(f"{self.uri} is stopped")
                raise AcquisitionTimeout(timeout_s, self.uri)
            if wait_s > 0 and self._halt.wait(wait_s):
                raise SourceStopped(f"{self.uri} is stopped")
            frame = self.recording[self._next]
            now = time.monotonic_ns()
            behind = now - due
            if behind > self._late_ns:
                self._late += 1
            self._max_late_ns = max(self._max_late_ns, behind)
            self._next += 1
            self._delivered += 1
            self._fps.tick(now)
        frame.meta = {**frame.meta, "recorded_host_timestamp_ns": frame.host_timestamp_ns,
                      "recorded_source": frame.source, "pass": self._passes}
        frame.host_timestamp_ns, frame.source = now, self.uri
        return frame

    @property
    def info(self) -> dict:
        rec = self.recording
        return {"device": f"recording {rec.path}", "recorded_source": rec.header.get("source"),
                "frames": len(rec), "complete": rec.complete, "truncated_bytes": rec.truncated_bytes,
                "recorded_info": rec.header.get("source_info", {}),
                "recorded_stats": rec.source_stats,
                "rate": "original" if self._rate is None else "max" if self._rate == 0 else self._rate,
                "loop": self._loop}

    @property
    def stats(self) -> ReplayStats:
        return ReplayStats(delivered=self._delivered, acquired=self._delivered, fps=self._fps.fps(),
                           late=self._late, max_late_ms=self._max_late_ns / 1e6,
                           passes=self._passes, truncated=self.recording.truncated)


register_source("file", ReplaySource)
