"""Where packets are in a byte stream, and what TLVs they hold (compiled core: ``_tlv.pyx``).

    result = scan_packet(buf)            # the first packet at or after an offset
    packets, malformed, resume = split_packets(buf)   # every boundary in a buffer

Both read the buffer in place and never past its end. ``packet_reference`` is their pure-Python
twin; the tests check that the two agree on every boundary.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _tlv
from .framing import _as_byte_buffer
from sdk.errors import InputError

__all__ = ["Status", "Reason", "ScanResult", "scan_packet", "split_packets",
           "DEFAULT_MAX_PACKET_LEN", "DEFAULT_MAX_TLVS"]

Status = _tlv.Status
Reason = _tlv.Reason
DEFAULT_MAX_PACKET_LEN = _tlv.DEFAULT_MAX_PACKET_LEN
DEFAULT_MAX_TLVS = _tlv.DEFAULT_MAX_TLVS


class ScanResult(NamedTuple):
    status: int
    """Status.PACKET, NEED_MORE, MALFORMED or NO_MAGIC."""
    offset: int
    """Where the packet's magic word is (NO_MAGIC: where the bytes to keep begin)."""
    length: int
    """totalPacketLen, 0 while unknown."""
    header_size: int
    """36 or 40, 0 while unknown."""
    reason: int
    """Reason.OK, or why the packet is MALFORMED."""
    tlvs: np.ndarray | None
    """PACKET only: (numTLVs, 3) int64 rows of (type, payload offset in buf, payload length)."""


def _check(start: int, header_size: int) -> None:
    if start < 0:
        raise InputError(f"start: expected an offset >= 0, received {start}")
    if header_size not in (0, 36, 40):
        raise InputError(f"header_size: expected 0 (from the platform field), 36 or 40, "
                         f"received {header_size}")


def scan_packet(buf, start: int = 0, header_size: int = 0,
                max_packet_len: int = DEFAULT_MAX_PACKET_LEN,
                max_tlvs: int = DEFAULT_MAX_TLVS) -> ScanResult:
    """The next packet at or after ``start``; see ScanResult.

    buf: bytes, bytearray, 1-D byte memoryview or uint8 array. header_size: 0 chooses by the
    platform field (36 bytes for xWR14xx, else 40). Packets longer than max_packet_len bytes or
    with more than max_tlvs TLVs are MALFORMED.
    """
    _check(start, header_size)
    return ScanResult(*_tlv.scan_packet(_as_byte_buffer(buf), start, header_size,
                                        max_packet_len, max_tlvs))


def split_packets(buf, start: int = 0, header_size: int = 0,
                  max_packet_len: int = DEFAULT_MAX_PACKET_LEN, max_tlvs: int = DEFAULT_MAX_TLVS
                  ) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
    """(packets, malformed, resume): [(offset, length)] of the complete valid packets in
    buf[start:], [(offset, reason)] of the malformed ones, and the offset from which bytes must
    be kept until more arrive (an incomplete packet, or the last 7 bytes)."""
    _check(start, header_size)
    return _tlv.split_packets(_as_byte_buffer(buf), start, header_size, max_packet_len, max_tlvs)
