"""The interface every source implements (camera, line-scan, radar, file replay).

Sources are addressed by URI, as in jetson-inference's ``videoSource``::

    with open_source("genicam://1?cti=/opt/mvIMPACT/lib/x86_64/mvGenTLProducer.cti&width=320") as cam:
        for frame in cam:                     # Frame.data: (H, W) or (H, W, C) uint8
            outputs = model(frame.data)

A scheme maps to a Source class (``register_source``); the URI's host/path names the device and its
query carries options. Keyword options given to ``open_source`` override the query.
"""
from __future__ import annotations

import abc
import collections
import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import parse_qsl, unquote, urlsplit

import numpy as np

from firmware_bridge.errors import AcquisitionTimeout, SourceStopped, UnknownScheme

__all__ = ["Frame", "SourceStats", "SourceURI", "Source", "register_source", "open_source",
           "registered_schemes"]


@dataclass
class Frame:
    """One unit of data from a sensor."""

    data: np.ndarray
    """Cameras: (H, W) Mono8 or (H, W, C) uint8, owned by the Frame (a view only inside read_view())."""
    frame_id: int
    """Device frame id when the device provides one, else a host counter."""
    host_timestamp_ns: int
    """time.monotonic_ns() when the frame reached the host."""
    device_timestamp_ns: int | None
    """The device's own clock, None when the device has none."""
    pixel_format: str
    """PFNC name: "Mono8", "RGBa8", "RGB8", ..."""
    source: str
    """The URI it came from."""
    meta: dict = field(default_factory=dict)


@dataclass
class SourceStats:
    """Counters of a source since it was opened; every dropped or missing frame is counted."""

    delivered: int = 0
    """Frames returned by read()/iteration."""
    dropped: int = 0
    """Frames that reached the host but were overwritten or refused in the ring (or discarded unread at stop)."""
    missing: int = 0
    """Frames the device produced that never reached the host (gaps in device frame ids)."""
    timeouts: int = 0
    """Periods of the configured timeout with no frame from the device."""
    errors: int = 0
    """Incomplete or undecodable buffers."""
    reconnects: int = 0
    """Times the device was reopened after it was lost."""
    fps: float = 0.0
    """Delivered frames per second over the last few seconds."""
    acquired: int = 0
    """Frames that reached the host: delivered + dropped + those still waiting in the ring."""


@dataclass(frozen=True)
class SourceURI:
    """A parsed source URI: ``scheme://target?key=value&...`` plus keyword overrides."""

    text: str
    scheme: str
    target: str
    """Host and path, unquoted: a serial, index or file path; "" for the first/default device."""
    options: dict[str, Any]
    """Query values (strings) overridden by keyword options (any type)."""

    @classmethod
    def parse(cls, uri: str, **overrides: Any) -> "SourceURI":
        parts = urlsplit(uri)
        if not parts.scheme:
            raise ValueError(f"source URI needs a scheme (e.g. 'genicam://0'): {uri!r}")
        options: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
        options.update(overrides)
        return cls(text=uri, scheme=parts.scheme.lower(),
                   target=unquote(parts.netloc) + unquote(parts.path), options=options)


class DeliveryRate:
    """Delivered frames per second over a sliding window of host time."""

    def __init__(self, window_s: float = 2.0):
        self._window_ns = int(window_s * 1e9)
        self._times: collections.deque[int] = collections.deque()

    def tick(self, now_ns: int) -> None:
        self._times.append(now_ns)
        while now_ns - self._times[0] > self._window_ns:
            self._times.popleft()

    def fps(self) -> float:
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / ((self._times[-1] - self._times[0]) / 1e9)


class Source(abc.ABC):
    """A stream of Frames. Life cycle: opened -> start() -> read()... -> stop() -> close().

    A context manager (``__enter__`` starts, ``__exit__`` closes). Iteration yields frames until
    stop() or close() — from any thread — and keeps waiting through read timeouts. read() on an
    opened source starts it. Subclasses implement ``_start``, ``_stop``, ``_close``, ``_read`` and
    the ``info``/``stats`` properties; ``_read`` must return promptly (SourceStopped) once
    ``self.streaming`` turns False.
    """

    default_timeout_s: float = 2.0

    def __init__(self, uri: str):
        self.uri = uri
        self._state_lock = threading.RLock()
        self._streaming = threading.Event()
        self._running = False  # between _start() and _stop()
        self._started_once = False
        self._closed = False

    # -- what a source implements -------------------------------------------------------------
    @abc.abstractmethod
    def _start(self) -> None: ...

    @abc.abstractmethod
    def _stop(self) -> None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    @abc.abstractmethod
    def _read(self, timeout_s: float) -> Frame: ...

    @property
    @abc.abstractmethod
    def info(self) -> dict:
        """What the source is: device, width, height, pixel_format, ... (keys depend on the source)."""

    @property
    @abc.abstractmethod
    def stats(self) -> SourceStats:
        """A snapshot of the counters."""

    # -- life cycle ---------------------------------------------------------------------------
    @property
    def streaming(self) -> bool:
        return self._streaming.is_set()

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        with self._state_lock:
            if self._closed:
                raise SourceStopped(f"{self.uri} is closed")
            if not self._running:
                self._start()
                self._running = self._started_once = True
                self._streaming.set()

    def stop(self) -> None:
        """Stop streaming; any thread may call it. A blocked read() raises SourceStopped."""
        # Cleared before taking the lock so a reader waiting in another thread sees it at once.
        self._streaming.clear()
        with self._state_lock:
            if self._running:
                self._running = False
                self._stop()

    def close(self) -> None:
        """Stop and release everything (device, processes, memory). Idempotent."""
        self._streaming.clear()
        with self._state_lock:
            if self._closed:
                return
            try:
                if self._running:
                    self._running = False
                    self._stop()
            finally:
                self._closed = True
                self._close()

    def _read_timeout(self, timeout: float | None) -> float:
        """Start a never-started source, refuse a stopped one; the timeout to use, in s."""
        if not self._started_once:
            self.start()
        if not self._streaming.is_set():
            raise SourceStopped(f"{self.uri} is stopped")
        return self.default_timeout_s if timeout is None else float(timeout)

    def read(self, timeout: float | None = None) -> Frame:
        """The next frame; waits up to ``timeout`` s (None: the source's default).

        Raises AcquisitionTimeout when nothing arrived in time, SourceStopped after stop()/close().
        """
        return self._read(self._read_timeout(timeout))

    @contextlib.contextmanager
    def read_view(self, timeout: float | None = None) -> Iterator[Frame]:
        """``with source.read_view() as frame:`` — sources with a ring override this to lend the
        slot itself (zero copy) until the block exits; here it is a plain read()."""
        yield self.read(timeout)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            try:
                yield self.read()
            except SourceStopped:
                return
            except AcquisitionTimeout:
                continue

    def __enter__(self) -> "Source":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "streaming" if self.streaming else "open"
        return f"<{type(self).__name__} {self.uri} ({state})>"


_SOURCES: dict[str, type[Source]] = {}


def register_source(scheme: str, cls: type[Source]) -> None:
    """Make ``open_source("<scheme>://...")`` construct ``cls(SourceURI)``."""
    _SOURCES[scheme.lower()] = cls


def registered_schemes() -> list[str]:
    return sorted(_SOURCES)


def open_source(uri: str, **options: Any) -> Source:
    """Open the source a URI names; keyword options override the URI's query.

    The source is open (device claimed, configured) but not streaming: ``with`` or start() or the
    first read() starts it. Unknown scheme -> UnknownScheme listing the known ones.
    """
    parsed = SourceURI.parse(uri, **options)
    try:
        cls = _SOURCES[parsed.scheme]
    except KeyError:
        raise UnknownScheme(parsed.scheme, registered_schemes()) from None
    return cls(parsed)

