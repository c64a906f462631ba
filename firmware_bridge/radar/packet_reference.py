"""Pure-Python twin of the compiled packet scanner (``_tlv.pyx``), for tests: same arguments,
same results, written for reading rather than speed."""
from __future__ import annotations

import struct

from .framing import MAGIC_WORD, _as_byte_buffer
from .packet import DEFAULT_MAX_PACKET_LEN, DEFAULT_MAX_TLVS, Reason, ScanResult, Status

__all__ = ["scan_packet_reference", "split_packets_reference"]


def _u32(data: bytes, offset: int) -> int:
    return struct.unpack_from("<I", data, offset)[0]


def _check_packet(d: bytes, hint: int, max_len: int, max_tlvs: int):
    """(status, length, header_size, reason) of the packet at d[0] (d: the bytes from there on)."""
    avail = len(d)
    if avail < 16:
        return Status.NEED_MORE, 0, 0, Reason.OK
    total = _u32(d, 12)
    if total > max_len or total < 36:
        return Status.MALFORMED, total, 0, Reason.BAD_LENGTH
    if d.find(MAGIC_WORD, 8, min(avail, total)) >= 0:
        return Status.MALFORMED, total, 0, Reason.CUT_SHORT
    if avail < 20:
        return Status.NEED_MORE, total, 0, Reason.OK
    hs = hint or (36 if (_u32(d, 16) & 0xFF00) == 0x1400 else 40)
    if total < hs:
        return Status.MALFORMED, total, hs, Reason.BAD_LENGTH
    if avail < hs:
        return Status.NEED_MORE, total, hs, Reason.OK
    n = _u32(d, 32)
    if n > max_tlvs:
        return Status.MALFORMED, total, hs, Reason.TOO_MANY_TLVS
    p = hs
    for _ in range(n):
        if p + 8 > total:
            return Status.MALFORMED, total, hs, Reason.TLV_OVERRUN
        if p + 8 > avail:
            return Status.NEED_MORE, total, hs, Reason.OK
        tlv_len = _u32(d, p + 4)
        if tlv_len > total - p - 8:
            return Status.MALFORMED, total, hs, Reason.TLV_OVERRUN
        p += 8 + tlv_len
    if total - p >= 32:
        return Status.MALFORMED, total, hs, Reason.BAD_PADDING
    if avail < total:
        return Status.NEED_MORE, total, hs, Reason.OK
    return Status.PACKET, total, hs, Reason.OK


def scan_packet_reference(buf, start: int = 0, header_size: int = 0,
                          max_packet_len: int = DEFAULT_MAX_PACKET_LEN,
                          max_tlvs: int = DEFAULT_MAX_TLVS) -> ScanResult:
    data = bytes(_as_byte_buffer(buf))
    pos = data.find(MAGIC_WORD, start)
    if pos < 0:
        return ScanResult(Status.NO_MAGIC, max(min(start, len(data)), len(data) - 7), 0, 0,
                          Reason.OK, None)
    status, length, hs, reason = _check_packet(data[pos:], header_size, max_packet_len, max_tlvs)
    tlvs = None
    if status == Status.PACKET:
        tlvs, p = [], pos + hs
        for _ in range(_u32(data, pos + 32)):
            tlv_type, tlv_len = struct.unpack_from("<2I", data, p)
            tlvs.append((tlv_type, p + 8, tlv_len))
            p += 8 + tlv_len
    return ScanResult(status, pos, length, hs, reason, tlvs)


def split_packets_reference(buf, start: int = 0, header_size: int = 0,
                            max_packet_len: int = DEFAULT_MAX_PACKET_LEN,
                            max_tlvs: int = DEFAULT_MAX_TLVS):
    packets, malformed, pos = [], [], start
    while True:
        r = scan_packet_reference(buf, pos, header_size, max_packet_len, max_tlvs)
        if r.status == Status.PACKET:
            packets.append((r.offset, r.length))
            pos = r.offset + r.length
        elif r.status == Status.MALFORMED:
            malformed.append((r.offset, r.reason))
            pos = r.offset + 1
        else:
            return packets, malformed, r.offset
