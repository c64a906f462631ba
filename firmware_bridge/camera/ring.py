"""A ring of fixed-size frame slots in shared memory between two processes.

One producer (the acquisition process) writes frames, one consumer (the reading process) takes
them in order. The shared memory holds, in this order:

    header  int64[16]          counters the producer writes, the last sequence number, wait flags
    table   int64[slots, 8]    per slot: state, sequence number, frame id, host / device timestamp
    data    slots x slot_bytes frame bytes, each slot 64-byte aligned

Slot states go FREE -> WRITING -> READY -> READING -> FREE. A cross-process lock guards only the
state changes (never a copy). Metadata lives beside the slot rather than in a pipe: with
newest-wins a READY slot may be overwritten, and a message already sent about it could not be
taken back (the pipe would also fill and block the producer while the reader lags).
Wake-ups use two semaphores, released only when the other side flagged that it waits, so their
counts stay bounded however far the reader falls behind.
"""
from __future__ import annotations

import contextlib
import enum
import os
import secrets
import time
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

FREE, WRITING, READY, READING = 0, 1, 2, 3
_STATE, _SEQ, _FRAME_ID, _HOST_TS, _DEVICE_TS = range(5)
_TABLE_COLUMNS = 8
_HEADER_FIELDS = 16
_ALIGN = 64
NO_TIMESTAMP = -1
LOCK_TIMEOUT_S = 2.0
SHM_PREFIX = "prism-ring-"


class Counter(enum.IntEnum):
    """Header fields the producer counts (single writer, so no lock)."""

    ACQUIRED = 0   # frames that reached the host
    DROPPED = 1    # overwritten unread, or refused because the reader held every slot
    MISSING = 2    # gaps in device frame ids
    TIMEOUTS = 3   # timeout periods without a frame
    ERRORS = 4     # incomplete / undecodable buffers


_LAST_SEQ, _READER_WAITS, _WRITER_WAITS = 8, 9, 10


class RingStalled(RuntimeError):
    """The ring's lock stayed held: the other process died holding it."""


@dataclass(frozen=True)
class RingSpec:
    """What the other process needs to attach: the segment name and its geometry."""

    name: str
    slots: int
    slot_bytes: int


@dataclass(frozen=True)
class SlotMeta:
    index: int
    seq: int
    frame_id: int
    host_timestamp_ns: int
    device_timestamp_ns: int | None


class RingSync:
    """The lock and the two wake-up semaphores. Created before the producer process is spawned
    and passed to it at spawn (multiprocessing locks can only be shared by inheritance)."""

    def __init__(self, ctx):
        self.lock = ctx.Lock()
        self.frame_ready = ctx.Semaphore(0)
        self.slot_freed = ctx.Semaphore(0)


class _Segment(shared_memory.SharedMemory):
    """SharedMemory whose close() does not fail while arrays still view the segment.

    mmap refuses to unmap under a live export (BufferError), which keeps a reader of a lent
    read_view() frame safe; the mapping is then left to those arrays (the last one to go
    unmaps it) and the file descriptor is closed now, instead of raising here and again in
    __del__.
    """

    def close(self) -> None:
        try:
            super().close()
        except BufferError:
            self._buf = self._mmap = None
            if getattr(self, "_fd", -1) >= 0:
                os.close(self._fd)
                self._fd = -1


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


class FrameRing:
    """``slots`` frame slots of ``slot_bytes`` each. The creating side owns (and unlinks) it."""

    def __init__(self, shm: shared_memory.SharedMemory, spec: RingSpec, sync: RingSync, owner: bool):
        self._shm, self.spec, self._sync, self._owner = shm, spec, sync, owner
        table_at = _HEADER_FIELDS * 8
        data_at = _aligned(table_at + spec.slots * _TABLE_COLUMNS * 8)
        self._stride = _aligned(spec.slot_bytes)
        buf = shm.buf
        self._header = np.frombuffer(buf, np.int64, _HEADER_FIELDS, 0)
        self._table = np.frombuffer(buf, np.int64, spec.slots * _TABLE_COLUMNS, table_at) \
            .reshape(spec.slots, _TABLE_COLUMNS)
        self._data = np.frombuffer(buf, np.uint8, spec.slots * self._stride, data_at) \
            .reshape(spec.slots, self._stride)

    @staticmethod
    def nbytes(slots: int, slot_bytes: int) -> int:
        return _aligned(_HEADER_FIELDS * 8 + slots * _TABLE_COLUMNS * 8) + slots * _aligned(slot_bytes)

    @classmethod
    def create(cls, slots: int, slot_bytes: int, sync: RingSync) -> "FrameRing":
        if slots < 1 or slot_bytes < 1:
            raise ValueError(f"a ring needs at least one slot of at least one byte, got {slots} x {slot_bytes}")
        name = f"{SHM_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        # A new POSIX segment is zero-filled: every slot starts FREE, every counter at 0.
        shm = _Segment(name=name, create=True, size=cls.nbytes(slots, slot_bytes))
        return cls(shm, RingSpec(name, slots, slot_bytes), sync, owner=True)

    @classmethod
    def attach(cls, spec: RingSpec, sync: RingSync) -> "FrameRing":
        return cls(_Segment(name=spec.name), spec, sync, owner=False)

    @contextlib.contextmanager
    def _locked(self):
        if not self._sync.lock.acquire(timeout=LOCK_TIMEOUT_S):
            raise RingStalled(f"ring {self.spec.name} lock held for over {LOCK_TIMEOUT_S} s")
        try:
            yield
        finally:
            self._sync.lock.release()

    # -- producer side -------------------------------------------------------------------------
    def claim(self, block: bool, wait_s: float = 0.0) -> int | None:
        """A slot to write the next frame into.

        Newest-wins (``block=False``): a free slot, else the oldest unread one, whose frame counts
        as dropped; None (the new frame counts as dropped) only when the reader holds all slots.
        ``block=True``: a free slot, waiting up to ``wait_s`` for the reader to free one; None on
        timeout, counting nothing (the caller retries, or counts the frame it gives up on).
        """
        deadline = time.monotonic() + wait_s
        while True:
            with self._locked():
                states = self._table[:, _STATE]
                free = np.flatnonzero(states == FREE)
                if free.size:
                    return self._begin_write(int(free[0]))
                if not block:
                    ready = np.flatnonzero(states == READY)
                    self._header[Counter.DROPPED] += 1
                    if not ready.size:
                        return None
                    return self._begin_write(int(ready[np.argmin(self._table[ready, _SEQ])]))
                self._header[_WRITER_WAITS] = 1
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._sync.slot_freed.acquire(timeout=remaining):
                return None

    def _begin_write(self, index: int) -> int:
        self._table[index, _STATE] = WRITING
        return index

    def slot(self, index: int) -> np.ndarray:
        """The slot's bytes, (slot_bytes,) uint8, a view into shared memory."""
        return self._data[index, : self.spec.slot_bytes]

    def publish(self, index: int, frame_id: int, host_timestamp_ns: int,
                device_timestamp_ns: int | None) -> None:
        with self._locked():
            self._header[_LAST_SEQ] += 1
            row = self._table[index]
            row[_SEQ] = self._header[_LAST_SEQ]
            row[_FRAME_ID] = frame_id
            row[_HOST_TS] = host_timestamp_ns
            row[_DEVICE_TS] = NO_TIMESTAMP if device_timestamp_ns is None else device_timestamp_ns
            row[_STATE] = READY
            if self._header[_READER_WAITS]:
                self._header[_READER_WAITS] = 0
                self._sync.frame_ready.release()

    def count(self, counter: Counter, n: int = 1) -> None:
        self._header[counter] += n

    # -- consumer side -------------------------------------------------------------------------
    def take(self, timeout_s: float) -> SlotMeta | None:
        """The oldest unread frame, its slot now lent to the caller until release(); None on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._locked():
                states = self._table[:, _STATE]
                ready = np.flatnonzero(states == READY)
                if ready.size:
                    index = int(ready[np.argmin(self._table[ready, _SEQ])])
                    row = self._table[index]
                    row[_STATE] = READING
                    device_ts = int(row[_DEVICE_TS])
                    return SlotMeta(index, int(row[_SEQ]), int(row[_FRAME_ID]), int(row[_HOST_TS]),
                                    None if device_ts == NO_TIMESTAMP else device_ts)
                self._header[_READER_WAITS] = 1
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._sync.frame_ready.acquire(timeout=remaining):
                return None

    def release(self, index: int) -> None:
        with self._locked():
            self._table[index, _STATE] = FREE
            if self._header[_WRITER_WAITS]:
                self._header[_WRITER_WAITS] = 0
                self._sync.slot_freed.release()

    def discard_unread(self) -> int:
        """Free every unread slot (after the producer stopped); returns how many frames that drops."""
        with self._locked():
            states = self._table[:, _STATE]
            unread = states == READY
            states[unread | (states == WRITING)] = FREE
            return int(unread.sum())

    def wake_reader(self) -> None:
        """Make a take() waiting in another thread look again now (used by stop())."""
        self._sync.frame_ready.release()

    def counter(self, counter: Counter) -> int:
        return int(self._header[counter])

    def unread(self) -> int:
        return int((self._table[:, _STATE] == READY).sum())

    # -- teardown ------------------------------------------------------------------------------
    def close(self) -> None:
        """Unmap (once no read_view() frame still points into a slot) and, if ours, unlink."""
        self._header = self._table = self._data = None
        self._shm.close()
        if self._owner:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass
