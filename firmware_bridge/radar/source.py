"""RadarSource: what the UDP and serial radar sources share — parsing the byte stream into
frames on the reader's thread, and counting everything lost.

A Frame from a radar source holds:
    data          (N, 4) float32 points x, y, z (m), v (m/s) — RadarFrame.points
    frame_id      the packet's frameNumber
    pixel_format  "RadarPointsXYZV32f"
    meta["radar"] the whole RadarFrame (header, SNR/noise, range profile, heatmaps, stats, ...)
    device_timestamp_ns  None: the header's timeCpuCycles counts CPU cycles of an unknown clock
                  (it is in meta["radar"].header.time_cpu_cycles)

Options common to both schemes (URI query or open_source keywords):
    timeout      default read() timeout in s (2)
    header_size  0: by platform (36 for xWR14xx, else 40), or 36 / 40
    buffers      decoded frames kept for a reader that lags; older ones are dropped (16)
    doppler_resolution  m/s per Doppler bin, for the velocities of SDK 2.x points
    range_bins   to shape heatmaps of packets without a range profile
    max_packet_len  bytes (1 MiB)
"""
from __future__ import annotations

import abc
import collections
import select
import time

from firmware_bridge.errors import AcquisitionTimeout, SourceStopped
from firmware_bridge.source import DeliveryRate, Frame, Source, SourceStats, SourceURI

from .frame import RadarFrame
from .packet import DEFAULT_MAX_PACKET_LEN
from .stream import PacketStream
from .tlv import DecodeOptions

__all__ = ["RadarSource", "PIXEL_FORMAT"]

PIXEL_FORMAT = "RadarPointsXYZV32f"
_COMMON_OPTIONS = {"timeout", "header_size", "buffers", "doppler_resolution", "range_bins",
                   "max_packet_len"}
_WAIT_SLICE_S = 0.1   # how often a waiting read() looks at stop()
_READ_SIZE = 65536


class RadarSource(Source):
    """A TI mmWave out-of-box demo stream as a Source. Subclasses open the transport and say
    which extra options they take; everything else is here."""

    transport_options: frozenset[str] = frozenset()

    def __init__(self, uri: SourceURI):
        super().__init__(uri.text)
        options = dict(uri.options)
        unknown = set(options) - _COMMON_OPTIONS - self.transport_options
        if unknown:
            raise ValueError(f"unknown {uri.scheme} option(s) {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(sorted(_COMMON_OPTIONS | self.transport_options))}")
        self.default_timeout_s = float(options.get("timeout", 2.0))
        self._buffers = int(options.get("buffers", 16))
        if self._buffers < 1:
            raise ValueError(f"buffers={self._buffers}: keep at least one frame")
        res, bins = options.get("doppler_resolution"), options.get("range_bins")
        self._stream = PacketStream(
            header_size=int(options.get("header_size", 0)),
            options=DecodeOptions(doppler_resolution_mps=None if res is None else float(res),
                                  range_bins=None if bins is None else int(bins)),
            max_packet_len=int(options.get("max_packet_len", DEFAULT_MAX_PACKET_LEN)))
        self._frames: collections.deque[RadarFrame] = collections.deque()
        self._delivered = self._dropped = self._timeouts = 0
        self._rate = DeliveryRate()
        self._info = {"uri": self.uri, "pixel_format": PIXEL_FORMAT}
        self._info.update(self._open(uri.target, options))

    # -- what a transport implements --------------------------------------------------------
    @abc.abstractmethod
    def _open(self, target: str, options: dict) -> dict:
        """Open the transport; return what goes into info."""

    @abc.abstractmethod
    def fileno(self) -> int:
        """A descriptor select() can wait on."""

    @abc.abstractmethod
    def _receive(self) -> bytes:
        """Bytes available now (b"" if none); called after select() said readable."""

    # -- Source -----------------------------------------------------------------------------
    def _start(self) -> None:
        pass

    def _stop(self) -> None:
        self._dropped += len(self._frames)
        self._frames.clear()

    def _read(self, timeout_s: float) -> Frame:
        deadline = time.monotonic() + timeout_s
        while not self._frames:
            if not self.streaming:
                raise SourceStopped(f"{self.uri} is stopped")
            left = deadline - time.monotonic()
            if left <= 0:
                self._timeouts += 1
                raise AcquisitionTimeout(timeout_s, self.uri)
            try:
                readable = select.select([self.fileno()], [], [], min(_WAIT_SLICE_S, left))[0]
            except (OSError, ValueError):   # closed under us by close() from another thread
                raise SourceStopped(f"{self.uri} was closed") from None
            if readable:
                self._accept(self._receive())
        radar = self._frames.popleft()
        now = time.monotonic_ns()
        self._delivered += 1
        self._rate.tick(now)
        return Frame(data=radar.points, frame_id=radar.frame_number, host_timestamp_ns=now,
                     device_timestamp_ns=None, pixel_format=PIXEL_FORMAT, source=self.uri,
                     meta={"radar": radar})

    def _accept(self, data: bytes) -> None:
        if not data:
            return
        self._frames.extend(self._stream.feed(data))
        while len(self._frames) > self._buffers:
            self._frames.popleft()
            self._dropped += 1

    @property
    def info(self) -> dict:
        return dict(self._info)

    @property
    def stats(self) -> SourceStats:
        c = self._stream.counts
        return SourceStats(delivered=self._delivered, dropped=self._dropped,
                           missing=c.missing_frames, timeouts=self._timeouts,
                           errors=c.malformed + c.truncated, fps=self._rate.fps(),
                           acquired=c.packets)

    @property
    def stream_counts(self):
        """The parser's own counts: packets, malformed by reason, skipped bytes, ..."""
        return self._stream.counts
