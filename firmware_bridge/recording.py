"""Recording frames to a directory, and reading a recording back (``replay.py`` plays it as a Source).

    with open_source("genicam://1?cti=...") as cam, Recorder("session1", source=cam) as rec:
        rec.record(max_frames=200)            # or rec.write(frame) from a pipeline tap

A recording is a directory of three files:

    header.json   {"format": "prism-recording", "version": 1, "source": <URI>, "source_info": {...},
                   "created_unix": <s>, "complete": false}; rewritten atomically by close() with
                   "complete": true, "frames": <written>, "unwritten": <count>,
                   "unwritten_reasons": [...], "source_stats": {SourceStats fields}.
    frames.bin    append-only records, each a fixed 96-byte little-endian header then the pixels
                  (C order) then the frame's meta as UTF-8 JSON:
                      0  4s  magic b"PRFR"        4  u16 version (1)      6  u8 ndim (0..4)
                      7  u8  reserved             8  i64 frame_id        16  i64 host_timestamp_ns
                     24  i64 device_timestamp_ns (INT64_MIN: none)
                     32  16s pixel_format (ASCII, NUL-padded)
                     48  4×u32 shape (unused axes 0)     64  8s dtype (NumPy str, e.g. "|u1")
                     72  u64 payload bytes               80  u32 meta bytes
                     84  u32 CRC-32 of payload + meta    88  u64 reserved
    index.bin     one 24-byte record per frame written after its record is complete:
                  u64 offset in frames.bin, i64 frame_id, i64 host_timestamp_ns.

Frames may change shape, dtype and pixel format from one record to the next. ``Frame.meta`` must
be JSON-serialisable; NumPy arrays in it are stored as lists and come back as lists. A crash mid-write
leaves a partial last record: the reader returns every complete record (CRC-checked) and reports
the rest as truncated (``Recording.truncated_bytes``); records written but not yet indexed are
found by scanning on from the last indexed one. Nothing is dropped silently: a frame the recorder
could not write (disk full, an object array) is counted in ``unwritten`` with its reason.
"""
from __future__ import annotations

import dataclasses
import json
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from firmware_bridge.source import Frame, Source, SourceStats
from firmware_bridge.errors import AcquisitionTimeout, SourceError, SourceStopped

__all__ = ["Recorder", "Recording", "RecordingError", "FORMAT", "VERSION"]

FORMAT, VERSION = "prism-recording", 1
MAGIC = b"PRFR"
RECORD = struct.Struct("<4sHBBqqq16s4I8sQII8x")
INDEX = struct.Struct("<Qqq")
NO_TIMESTAMP = -(2 ** 63)
HEADER, FRAMES, INDEX_FILE = "header.json", "frames.bin", "index.bin"
assert RECORD.size == 96


class RecordingError(SourceError):
    """A directory that is not a readable recording."""


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return repr(value)


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default))
    os.replace(tmp, path)


class Recorder:
    """Writes frames and their metadata to a recording directory (format: module docstring).

    ``source`` (optional) supplies the URI, info and end-of-session stats; ``record()`` reads it.
    ``write(frame)`` may also be called directly, e.g. as a Pipeline ``tap``. Use with ``with``
    or call close(): the header then says the recording is complete and holds the source's stats.
    """

    def __init__(self, path: str | os.PathLike, source: Source | None = None, *,
                 source_uri: str | None = None, info: dict | None = None, overwrite: bool = False):
        self.path = Path(path)
        self.source = source
        self.path.mkdir(parents=True, exist_ok=True)
        if (self.path / HEADER).exists() and not overwrite:
            raise FileExistsError(f"{self.path} already holds a recording (overwrite=True replaces it)")
        self.written = 0
        self.unwritten = 0
        self.unwritten_reasons: list[str] = []  # the first few, for the header
        self._header = {"format": FORMAT, "version": VERSION,
                        "source": source_uri or (source.uri if source is not None else None),
                        "source_info": info if info is not None else (source.info if source else {}),
                        "created_unix": time.time(), "complete": False}
        _write_json_atomic(self.path / HEADER, self._header)
        self._frames = open(self.path / FRAMES, "wb")
        self._index = open(self.path / INDEX_FILE, "wb")
        self._offset = 0
        self._closed = False

    def write(self, frame: Frame) -> bool:
        """Append one frame; False (and counted in ``unwritten``) when it could not be written."""
        try:
            data = np.asarray(frame.data)
            data = data if data.flags.c_contiguous else data.copy(order="C")  # keeps 0-d arrays 0-d
            if data.dtype.hasobject or data.ndim > 4:
                raise ValueError(f"cannot record a {data.dtype} array of {data.ndim} axes")
            meta = json.dumps(frame.meta, default=_json_default).encode() if frame.meta else b""
            payload = data.tobytes()
            shape = list(data.shape) + [0] * (4 - data.ndim)
            device_ts = NO_TIMESTAMP if frame.device_timestamp_ns is None else frame.device_timestamp_ns
            head = RECORD.pack(MAGIC, VERSION, data.ndim, 0, frame.frame_id, frame.host_timestamp_ns,
                               device_ts, frame.pixel_format.encode()[:16], *shape,
                               data.dtype.str.encode(), len(payload), len(meta),
                               zlib.crc32(meta, zlib.crc32(payload)))
            self._frames.write(head)
            self._frames.write(payload)
            self._frames.write(meta)
            self._frames.flush()  # hand it to the OS: a crash of this process then loses nothing
            self._index.write(INDEX.pack(self._offset, frame.frame_id, frame.host_timestamp_ns))
            self._index.flush()
        except (OSError, ValueError, TypeError, struct.error) as e:
            self._count_unwritten(f"frame {getattr(frame, 'frame_id', '?')}: {e}")
            # Keep the file consistent after a partial write: cut back to the last whole record.
            try:
                self._frames.seek(self._offset)
                self._frames.truncate()
            except OSError:
                pass
            return False
        self._offset += RECORD.size + len(payload) + len(meta)
        self.written += 1
        return True

    __call__ = write

    def _count_unwritten(self, reason: str) -> None:
        self.unwritten += 1
        if len(self.unwritten_reasons) < 20:
            self.unwritten_reasons.append(reason)

    def record(self, max_frames: int | None = None, duration: float | None = None) -> int:
        """Read ``self.source`` and write every frame until ``max_frames``, ``duration`` s, or the
        source stops. Returns the frames written in this call."""
        if self.source is None:
            raise ValueError("Recorder.record() needs a source (Recorder(path, source=...))")
        deadline = None if duration is None else time.monotonic() + duration
        count = 0
        while (max_frames is None or count < max_frames) and (deadline is None or time.monotonic() < deadline):
            try:
                frame = self.source.read(timeout=0.5 if deadline is not None else None)
            except AcquisitionTimeout:
                continue
            except SourceStopped:
                break
            self.write(frame)
            count += 1
        return count

    def close(self, stats: SourceStats | None = None) -> None:
        """Finish the recording: the header gets the counts and the source's stats. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if stats is None and self.source is not None:
            stats = self.source.stats
        for f in (self._frames, self._index):
            try:
                f.close()
            except OSError as e:
                self._count_unwritten(f"closing: {e}")
        self._header.update(complete=True, frames=self.written, unwritten=self.unwritten,
                            unwritten_reasons=self.unwritten_reasons, closed_unix=time.time(),
                            source_stats=dataclasses.asdict(stats) if stats is not None else None)
        _write_json_atomic(self.path / HEADER, self._header)

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Entry:
    """Where one complete record lies in frames.bin."""

    offset: int
    frame_id: int
    host_timestamp_ns: int


class Recording:
    """A recording directory opened for reading: ``len()``, ``rec[i]`` -> Frame, iteration.

    ``header`` is header.json; ``complete`` is False when the recorder never closed (a crash);
    ``truncated_bytes`` counts trailing bytes of frames.bin that hold no whole, valid record.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.header = json.loads((self.path / HEADER).read_text())
        except (OSError, ValueError) as e:
            raise RecordingError(f"{self.path}: no readable {HEADER} ({e})") from None
        if self.header.get("format") != FORMAT:
            raise RecordingError(f"{self.path}: not a {FORMAT} (format={self.header.get('format')!r})")
        if self.header.get("version", 0) > VERSION:
            raise RecordingError(f"{self.path}: version {self.header['version']} is newer than {VERSION}")
        self._file = open(self.path / FRAMES, "rb")
        self._size = os.fstat(self._file.fileno()).st_size
        self.entries: list[Entry] = []
        self._scan()

    def _record_end(self, offset: int) -> tuple[int, int] | None:
        """(end offset, frame id) of a whole, valid record at ``offset``; None otherwise."""
        if offset + RECORD.size > self._size:
            return None
        self._file.seek(offset)
        fields = RECORD.unpack(self._file.read(RECORD.size))
        if fields[0] != MAGIC:
            return None
        payload, meta, crc = fields[13], fields[14], fields[15]
        end = offset + RECORD.size + payload + meta
        if end > self._size or zlib.crc32(self._file.read(payload + meta)) != crc:
            return None
        return end, fields[4]

    def _scan(self) -> None:
        index = b""
        try:
            index = (self.path / INDEX_FILE).read_bytes()
        except OSError:
            pass
        offset = 0
        for start in range(0, len(index) - INDEX.size + 1, INDEX.size):
            entry = Entry(*INDEX.unpack_from(index, start))
            found = self._record_end(offset) if entry.offset == offset else None
            if found is None:
                break
            self.entries.append(entry)
            offset = found[0]
        while (found := self._record_end(offset)) is not None:  # written, not yet indexed
            self._file.seek(offset + 8)
            frame_id, host_ts = struct.unpack("<qq", self._file.read(16))
            self.entries.append(Entry(offset, frame_id, host_ts))
            offset = found[0]
        self.truncated_bytes = self._size - offset

    @property
    def complete(self) -> bool:
        return bool(self.header.get("complete"))

    @property
    def truncated(self) -> bool:
        """True when a write was cut short: trailing bytes, or fewer frames than the header says."""
        return self.truncated_bytes > 0 or len(self.entries) < self.header.get("frames", 0)

    @property
    def source_stats(self) -> dict | None:
        return self.header.get("source_stats")

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> Frame:
        entry = self.entries[i]
        self._file.seek(entry.offset)
        (_, _, ndim, _, frame_id, host_ts, device_ts, pixel_format, *rest) = RECORD.unpack(
            self._file.read(RECORD.size))
        shape, dtype, payload, meta_bytes = rest[:ndim], rest[4], rest[5], rest[6]
        data = np.frombuffer(self._file.read(payload), dtype=np.dtype(dtype.rstrip(b"\0").decode()))
        meta = json.loads(self._file.read(meta_bytes)) if meta_bytes else {}
        return Frame(data=data.reshape(shape).copy(), frame_id=frame_id, host_timestamp_ns=host_ts,
                     device_timestamp_ns=None if device_ts == NO_TIMESTAMP else device_ts,
                     pixel_format=pixel_format.rstrip(b"\0").decode(),
                     source=self.header.get("source") or "", meta=meta)

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self[i]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "Recording":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
