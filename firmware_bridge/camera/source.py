"""CameraSource: a GenICam camera (any GenTL producer, through harvesters) as a Source.

    genicam://<serial|id|model|index>?cti=/path/a.cti&width=320&height=240&pixel_format=Mono8
        &fps=30&buffers=8&drop=newest&timeout=2&reconnect=5

An empty target (``genicam://``) opens the first device. Feature options (width, height,
offset_x, offset_y, pixel_format, fps, exposure, gain, trigger_mode, trigger_source, or any
capitalised SFNC name) are written before acquisition starts; the others:

    cti        .cti file or folder (default: every producer on $GENICAM_GENTL64_PATH)
    device     overrides the URI target; an int is an index
    buffers    ring slots = GenTL buffers (default 4)
    drop       "newest": a lagging reader loses the oldest unread frames (counted as dropped);
               "block": the acquisition process waits for a free slot and the device's own
               drops show up as missing frame ids
    timeout    default read() timeout, and the idle period counted as one timeout (s, default 2)
    reconnect  how many times to reopen a lost device, with back-off 0.5 s, 1 s, 2 s ... 8 s
               (default 5; 0 raises DeviceLost at once)
    open_timeout  s allowed for spawning the acquisition process and opening the device (30)
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import threading
import time
import weakref
from typing import Iterator

from firmware_bridge.camera import discovery, pixels
from firmware_bridge.camera.acquisition import AcquisitionProcess, AcquisitionRequest
from firmware_bridge.camera.features import sfnc_name
from firmware_bridge.camera.ring import Counter, FrameRing, RingStalled, SlotMeta
from firmware_bridge.errors import AcquisitionTimeout, DeviceLost, SourceError, SourceStopped
from firmware_bridge.source import DeliveryRate, Frame, Source, SourceStats, SourceURI

log = logging.getLogger(__name__)

_TRANSPORT_OPTIONS = {"cti", "device", "buffers", "drop", "timeout", "reconnect", "open_timeout"}
_WAIT_SLICE_S = 0.1  # how often a waiting read() looks at stop() and at the acquisition process
_MAX_BACKOFF_S = 8.0


def _request_from(uri: SourceURI) -> tuple[AcquisitionRequest, dict]:
    if importlib.util.find_spec("harvesters") is None or importlib.util.find_spec("genicam") is None:
        raise SourceError("genicam:// sources need harvesters and genicam: pip install harvesters")
    options = dict(uri.options)
    feature_values, unknown = {}, []
    for key in [k for k in options if k not in _TRANSPORT_OPTIONS]:
        name = sfnc_name(key)
        if name is None:
            unknown.append(key)
        else:
            feature_values[name] = options.pop(key)
    if unknown:
        raise ValueError(f"unknown genicam option(s) {', '.join(sorted(unknown))}; transport options: "
                         f"{', '.join(sorted(_TRANSPORT_OPTIONS))}; features: SFNC names or "
                         "width, height, offset_x, offset_y, pixel_format, fps, exposure, gain, "
                         "trigger_mode, trigger_source")
    drop = options.get("drop", "newest")
    if drop not in ("newest", "block"):
        raise ValueError(f"drop={drop!r}: use 'newest' or 'block'")
    buffers = int(options.get("buffers", 4))
    if buffers < 1:
        raise ValueError(f"buffers={buffers}: a ring needs at least one slot")
    selector = options.get("device", uri.target or None)
    request = AcquisitionRequest(
        producers=tuple(discovery.find_producers(options.get("cti"))),
        selector=selector, features=feature_values, block=drop == "block", buffers=buffers,
        timeout_s=float(options.get("timeout", 2.0)))
    policy = {"drop": drop, "reconnect": int(options.get("reconnect", 5)),
              "open_timeout": float(options.get("open_timeout", 30.0))}
    return request, policy


def _release(process: AcquisitionProcess, ring: FrameRing) -> None:
    ring.close()
    process.close()


class CameraSource(Source):
    """Frames from one GenICam device, acquired in a separate process through a shared-memory ring.

    Opening spawns the acquisition process, which opens and configures the device (errors come
    back typed: DeviceNotFound, FeatureNotAvailable, InvalidFeatureValue, ...).
    """

    def __init__(self, uri: SourceURI):
        super().__init__(uri.text)
        self._request, self._policy = _request_from(uri)
        self.default_timeout_s = self._request.timeout_s
        self._process: AcquisitionProcess | None = None
        self._ring: FrameRing | None = None
        self._ring_guard = threading.RLock()  # no unmapping while a reader copies out of a slot
        self._info: dict = {}
        self._delivered = self._discarded = self._reconnects = 0
        self._retired = dict.fromkeys(Counter, 0)  # counts of earlier openings (before reconnects)
        self._rate = DeliveryRate()
        self._release_at_exit: weakref.finalize | None = None
        self._connect()

    # -- opening -----------------------------------------------------------------------------
    def _connect(self) -> None:
        label = self._request.selector if self._request.selector not in (None, "") else "first"
        process = AcquisitionProcess(self._request, name=f"prism-genicam-{label}")
        try:
            info = process.wait_ready(self._policy["open_timeout"])
            slot_bytes = pixels.image_nbytes(info["pixel_format"], info["width"], info["height"])
            ring = FrameRing.create(self._request.buffers, slot_bytes, process.sync)
        except BaseException:
            process.close()
            raise
        self._process, self._ring = process, ring
        # A script that never calls close() still releases the device and unlinks the ring at exit.
        self._release_at_exit = weakref.finalize(self, _release, process, ring)
        self._info = {**info, "uri": self.uri, "producers": list(self._request.producers),
                      "buffers": self._request.buffers, "drop": self._policy["drop"]}

    def _disconnect(self) -> None:
        if self._release_at_exit is not None:
            self._release_at_exit.detach()
        process, self._process = self._process, None
        try:
            with self._ring_guard:
                ring, self._ring = self._ring, None
                if ring is not None:
                    self._discarded += ring.unread()  # frames that reached the host but go with it
                    for counter in Counter:
                        self._retired[counter] += ring.counter(counter)
                    ring.close()
        finally:
            if process is not None:
                process.close()

    def _recover(self, lost: SourceError) -> None:
        """Reopen a lost device with exponential back-off, or raise DeviceLost."""
        self._disconnect()
        attempts = self._policy["reconnect"]
        device = self._info.get("device", self.uri)
        if attempts <= 0:
            raise DeviceLost(device, str(lost))
        log.warning("%s: %s; reopening (up to %d attempts)", self.uri, lost, attempts)
        delay = 0.5
        for attempt in range(1, attempts + 1):
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:  # a stop() during back-off ends it
                if not self.streaming:
                    raise SourceStopped(f"{self.uri} stopped while reconnecting")
                time.sleep(0.05)
            with self._state_lock:
                if not self.streaming:
                    raise SourceStopped(f"{self.uri} stopped while reconnecting")
                try:
                    self._connect()
                    self._process.start(self._ring.spec)
                except SourceError as e:
                    self._disconnect()
                    log.warning("%s: reconnect attempt %d/%d failed: %s", self.uri, attempt, attempts, e)
                    delay = min(delay * 2, _MAX_BACKOFF_S)
                    continue
            self._reconnects += 1
            log.warning("%s: reopened after %d attempt(s)", self.uri, attempt)
            return
        raise DeviceLost(device, f"{lost}; gave up after {attempts} reconnect attempts")

    # -- Source ------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._process is None:
            raise SourceStopped(f"{self.uri} lost its device; nothing to start")
        self._process.start(self._ring.spec)

    def _stop(self) -> None:
        with self._ring_guard:
            if self._ring is not None:
                self._ring.wake_reader()
        if self._process is None:
            return
        try:
            self._process.stop()
        except SourceError as e:  # lost while stopping: the next start() finds out
            log.warning("%s: %s", self.uri, e)
        with self._ring_guard:
            if self._ring is not None:
                self._discarded += self._ring.discard_unread()

    def _close(self) -> None:
        self._disconnect()

    def _next_slot(self, timeout_s: float) -> tuple[FrameRing, SlotMeta]:
        """The oldest unread slot, lent until ring.release(); reopens the device if it was lost."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.streaming:
                raise SourceStopped(f"{self.uri} is stopped")
            lost = None
            with self._ring_guard:
                ring = self._ring
                if ring is not None:
                    wait = min(_WAIT_SLICE_S, max(0.0, deadline - time.monotonic()))
                    try:
                        meta = ring.take(wait)
                    except RingStalled as e:
                        meta, lost = None, DeviceLost(self.uri, str(e))
                    if meta is not None:
                        return ring, meta
            if lost is None and (self._process is None or not self._process.alive):
                lost = self._process.failure() if self._process else DeviceLost(self.uri, "not open")
            if lost is not None:
                self._recover(lost)
                continue
            if time.monotonic() >= deadline:
                raise AcquisitionTimeout(timeout_s, self.uri)

    def _frame(self, ring: FrameRing, meta: SlotMeta, copy: bool) -> Frame:
        info = self._info
        view = pixels.as_image(ring.slot(meta.index), info["pixel_format"], info["width"], info["height"])
        self._delivered += 1
        self._rate.tick(time.monotonic_ns())
        return Frame(data=view.copy() if copy else view, frame_id=meta.frame_id,
                     host_timestamp_ns=meta.host_timestamp_ns,
                     device_timestamp_ns=meta.device_timestamp_ns,
                     pixel_format=info["pixel_format"], source=self.uri)

    def _read(self, timeout_s: float) -> Frame:
        ring, meta = self._next_slot(timeout_s)
        with self._ring_guard:
            if self._ring is not ring:
                raise SourceStopped(f"{self.uri} was closed")
            try:
                return self._frame(ring, meta, copy=True)
            finally:
                ring.release(meta.index)

    @contextlib.contextmanager
    def read_view(self, timeout: float | None = None) -> Iterator[Frame]:
        """``with source.read_view() as frame:`` — frame.data is the ring slot itself (no copy),
        valid until the block exits, when the slot goes back to the acquisition process."""
        ring, meta = self._next_slot(self._read_timeout(timeout))
        with self._ring_guard:
            if self._ring is not ring:
                raise SourceStopped(f"{self.uri} was closed")
            frame = self._frame(ring, meta, copy=False)
        try:
            yield frame
        finally:
            with self._ring_guard:
                if self._ring is ring:  # a reconnect or close() in between retired it
                    ring.release(meta.index)

    @property
    def info(self) -> dict:
        return dict(self._info)

    @property
    def stats(self) -> SourceStats:
        with self._ring_guard:
            live = {c: self._ring.counter(c) if self._ring is not None else 0 for c in Counter}
        total = {c: self._retired[c] + live[c] for c in Counter}
        return SourceStats(delivered=self._delivered, dropped=total[Counter.DROPPED] + self._discarded,
                           missing=total[Counter.MISSING], timeouts=total[Counter.TIMEOUTS],
                           errors=total[Counter.ERRORS], reconnects=self._reconnects,
                           fps=self._rate.fps(), acquired=total[Counter.ACQUIRED])
