"""Framing of the TI mmWave UART stream: where frames start.

Each frame of the mmWave SDK demo output begins with the 8-byte magic word
``02 01 04 03 06 05 08 07``. :func:`find_magic` (compiled, ``_framing.pyx``) finds it; the TLV
parser uses it to resync after garbage or lost bytes. :func:`find_magic_reference` is its pure
Python twin for tests.
"""
from __future__ import annotations

import numpy as np

from sdk.errors import InputError

from . import _framing

__all__ = ["MAGIC_WORD", "find_magic", "find_magic_reference"]

MAGIC_WORD = bytes([2, 1, 4, 3, 6, 5, 8, 7])


def _as_byte_buffer(buf):
    """A C-contiguous 1-D unsigned-byte view of `buf`, copied only when it is not contiguous."""
    if isinstance(buf, (bytes, bytearray)):
        return buf
    if isinstance(buf, np.ndarray):
        if buf.dtype != np.uint8 or buf.ndim != 1:
            raise InputError(f"buf: expected a 1-D uint8 array, received {buf.dtype} {buf.shape}")
        return buf if buf.flags.c_contiguous else np.ascontiguousarray(buf)
    if isinstance(buf, memoryview):
        if buf.itemsize != 1 or buf.ndim != 1:
            raise InputError(f"buf: expected a 1-D memoryview of bytes, received format "
                             f"{buf.format!r} with {buf.ndim} dimension(s)")
        return buf.cast("B") if buf.c_contiguous else buf.tobytes()
    raise InputError(f"buf: expected bytes, bytearray, memoryview or a uint8 array, received "
                     f"{type(buf).__name__}")


def find_magic(buf, start: int = 0) -> int:
    """Offset of the first magic word at or after `start` in `buf`, or -1 if there is none.

    Args:
        buf: bytes, bytearray, 1-D byte memoryview or 1-D uint8 array (read in place when
            contiguous, never read past its end).
        start: offset in bytes where the search begins; must be >= 0. A start past the end
            gives -1.
    """
    if start < 0:
        raise InputError(f"start: expected an offset >= 0, received {start}")
    return _framing.find_magic(_as_byte_buffer(buf), start)


def find_magic_reference(buf, start: int = 0) -> int:
    """Pure-Python twin of :func:`find_magic` (``bytes.find``), same arguments and result."""
    if start < 0:
        raise InputError(f"start: expected an offset >= 0, received {start}")
    return bytes(_as_byte_buffer(buf)).find(MAGIC_WORD, start)
