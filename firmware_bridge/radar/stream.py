"""From bytes as they arrive (UART, UDP, a recording) to RadarFrames, with every loss counted.

    stream = PacketStream()
    for chunk in chunks:
        for frame in stream.feed(chunk):      # RadarFrame, in order
            ...
    stream.finish()                           # counts a packet cut off at the end
    stream.counts                             # packets, malformed, truncated, skipped_bytes, ...
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

from .frame import RadarFrame
from .packet import DEFAULT_MAX_PACKET_LEN, DEFAULT_MAX_TLVS, Reason, Status, scan_packet
from .tlv import DecodeOptions, MalformedTLV, decode_packet

__all__ = ["StreamCounts", "PacketStream", "read_recording"]


@dataclass
class StreamCounts:
    packets: int = 0
    """Packets framed and decoded."""
    malformed: int = 0
    """Packets that failed framing (see reasons) or whose TLVs did not decode."""
    truncated: int = 0
    """A packet cut off by the end of the stream (finish())."""
    skipped_bytes: int = 0
    """Bytes outside any packet: before the first magic word, garbage, malformed packets."""
    missing_frames: int = 0
    """Gaps in frameNumber between consecutive decoded packets."""
    reasons: collections.Counter = field(default_factory=collections.Counter)
    """Malformed packets by reason name (BAD_LENGTH, CUT_SHORT, ..., TLV)."""


class PacketStream:
    """Incremental parser. Bytes are kept only from the first possible packet start on.

    header_size: 0 chooses by platform (36 for xWR14xx, else 40). Never raises on the bytes it
    is fed; everything wrong with them is counted in ``counts``.
    """

    def __init__(self, header_size: int = 0, options: DecodeOptions = DecodeOptions(),
                 max_packet_len: int = DEFAULT_MAX_PACKET_LEN, max_tlvs: int = DEFAULT_MAX_TLVS):
        self.header_size, self.options = header_size, options
        self.max_packet_len, self.max_tlvs = max_packet_len, max_tlvs
        self.counts = StreamCounts()
        self._buf = bytearray()
        self._last_frame: int | None = None

    @property
    def pending(self) -> int:
        """Bytes held back for a packet not yet complete (or a possible partial magic word)."""
        return len(self._buf)

    def feed(self, data) -> list[RadarFrame]:
        """Frames completed by ``data`` (bytes-like)."""
        self._buf += data
        frames, pos = [], 0
        while True:
            r = scan_packet(self._buf, pos, self.header_size, self.max_packet_len, self.max_tlvs)
            if r.status == Status.NO_MAGIC or r.status == Status.NEED_MORE:
                self.counts.skipped_bytes += r.offset - pos
                pos = r.offset
                break
            if r.status == Status.MALFORMED:
                self.counts.skipped_bytes += r.offset + 1 - pos
                self._malformed(Reason(r.reason).name)
                pos = r.offset + 1
                continue
            self.counts.skipped_bytes += r.offset - pos
            pos = r.offset + r.length
            packet = bytes(self._buf[r.offset:pos])
            try:
                frame = decode_packet(packet, r.header_size, r.tlvs, base=r.offset,
                                      options=self.options)
            except MalformedTLV:
                self.counts.skipped_bytes += r.length
                self._malformed("TLV")
                continue
            self._count_frame(frame)
            frames.append(frame)
        del self._buf[:pos]
        return frames

    def finish(self) -> None:
        """End of stream: a packet still incomplete is counted as truncated and dropped."""
        r = scan_packet(self._buf, 0, self.header_size, self.max_packet_len, self.max_tlvs)
        if r.status == Status.NEED_MORE:
            self.counts.truncated += 1
        self.counts.skipped_bytes += len(self._buf)
        self._buf.clear()

    def _malformed(self, reason: str) -> None:
        self.counts.malformed += 1
        self.counts.reasons[reason] += 1

    def _count_frame(self, frame: RadarFrame) -> None:
        self.counts.packets += 1
        n = frame.header.frame_number
        if self._last_frame is not None and n > self._last_frame + 1:
            self.counts.missing_frames += n - self._last_frame - 1
        self._last_frame = n


def read_recording(path: str | Path, chunk_size: int = 4096, **stream_options
                   ) -> tuple[list[RadarFrame], StreamCounts]:
    """Every frame of a recorded byte stream (a .dat/.bin of the UART output), fed in chunks as a
    serial port would deliver them, and the counts."""
    stream = PacketStream(**stream_options)
    frames: list[RadarFrame] = []
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            frames += stream.feed(chunk)
    stream.finish()
    return frames, stream.counts
