# cython: language_level=3, boundscheck=False, wraparound=False
"""Packet framing of the TI mmWave out-of-box demo stream (compiled; use radar.packet).

A packet is the 8-byte magic word, a header of little-endian uint32 fields, then numTLVs TLVs
(uint32 type, uint32 length of the payload that follows, payload), padded to a multiple of 32:

    off  field             36-byte header (xWR14xx)   40-byte header (xWR16xx/18xx/68xx)
     0   magic word        yes                        yes
     8   version           yes                        yes
    12   totalPacketLen    yes                        yes
    16   platform          0xA14xx                    0xA16xx, 0xA18xx, 0xA68xx, ...
    20   frameNumber       yes                        yes
    24   timeCpuCycles     yes                        yes
    28   numDetectedObj    yes                        yes
    32   numTLVs           yes                        yes
    36   subFrameNumber    -                          yes

scan_packet finds the next magic word and validates the packet there without copying it:
totalPacketLen within [36, max_packet_len], no other magic word inside the packet (a second one
means bytes were lost and the packet was cut short), numTLVs <= max_tlvs, every TLV inside
totalPacketLen, and fewer than 32 bytes of padding after the last TLV. It reads only the bytes
it is given; a packet that is valid so far but not yet complete is NEED_MORE.
"""
import numpy as np

from libc.stdint cimport uint32_t

from firmware_bridge.radar._framing cimport find_magic_in

cpdef enum Status:
    PACKET = 0      # a complete, valid packet at offset, `length` bytes
    NEED_MORE = 1   # a packet starts at offset and is valid so far; wait for more bytes
    MALFORMED = 2   # the packet at offset is invalid (reason); search again from offset + 1
    NO_MAGIC = 3    # no magic word; offset is where the search must resume once bytes arrive

cpdef enum Reason:
    OK = 0
    BAD_LENGTH = 1     # totalPacketLen below the header size or above max_packet_len
    CUT_SHORT = 2      # another magic word inside the packet: bytes were lost
    TOO_MANY_TLVS = 3  # numTLVs above max_tlvs
    TLV_OVERRUN = 4    # a TLV runs past totalPacketLen
    BAD_PADDING = 5    # 32 bytes or more between the last TLV and totalPacketLen

cdef enum:
    MAGIC_LEN = 8
    MIN_HEADER = 36
    PAD_ALIGN = 32

DEFAULT_MAX_PACKET_LEN = 1 << 20
DEFAULT_MAX_TLVS = 64


cdef inline Py_ssize_t rd32(const unsigned char* p) noexcept nogil:
    return <Py_ssize_t>(p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24))


cdef inline int header_size_of(const unsigned char* d, int hint) noexcept nogil:
    """36 for xWR14xx (platform 0xA14xx), else 40; `hint` (36 or 40) overrides."""
    if hint:
        return hint
    return 36 if (rd32(d + 16) & 0xFF00) == 0x1400 else 40


cdef int check_packet(const unsigned char* d, Py_ssize_t avail, int hint, Py_ssize_t max_len,
                      Py_ssize_t max_tlvs, Py_ssize_t* length, int* hsize, Py_ssize_t* ntlv,
                      int* reason) noexcept nogil:
    """Validate the packet at d (magic word already matched), reading only d[0:avail]."""
    cdef Py_ssize_t total, limit, p, n, i, tlv_len
    cdef int hs
    reason[0] = OK
    if avail < 16:
        return NEED_MORE
    total = rd32(d + 12)
    length[0] = total
    if total > max_len or total < MIN_HEADER:
        reason[0] = BAD_LENGTH
        return MALFORMED
    limit = avail if avail < total else total
    if limit >= 2 * MAGIC_LEN and find_magic_in(d, limit, MAGIC_LEN) >= 0:
        reason[0] = CUT_SHORT
        return MALFORMED
    if avail < 20:
        return NEED_MORE
    hs = header_size_of(d, hint)
    hsize[0] = hs
    if total < hs:
        reason[0] = BAD_LENGTH
        return MALFORMED
    if avail < hs:
        return NEED_MORE
    n = rd32(d + 32)
    ntlv[0] = n
    if n > max_tlvs:
        reason[0] = TOO_MANY_TLVS
        return MALFORMED
    p = hs
    for i in range(n):
        if p + 8 > total:
            reason[0] = TLV_OVERRUN
            return MALFORMED
        if p + 8 > avail:
            return NEED_MORE
        tlv_len = rd32(d + p + 4)
        if tlv_len > total - p - 8:
            reason[0] = TLV_OVERRUN
            return MALFORMED
        p += 8 + tlv_len
    if total - p >= PAD_ALIGN:
        reason[0] = BAD_PADDING
        return MALFORMED
    if avail < total:
        return NEED_MORE
    return PACKET


def scan_packet(const unsigned char[::1] buf, Py_ssize_t start=0, int header_size=0,
                Py_ssize_t max_packet_len=DEFAULT_MAX_PACKET_LEN,
                Py_ssize_t max_tlvs=DEFAULT_MAX_TLVS):
    """The next packet at or after `start` in `buf`.

    Returns (status, offset, length, header_size, reason, tlvs):
      PACKET     packet at buf[offset:offset+length]; tlvs is an (numTLVs, 3) int64 array of
                 (type, payload offset in buf, payload length) — offsets, no copies
      NEED_MORE  a packet begins at offset; keep buf[offset:] and scan again with more bytes
      MALFORMED  the packet at offset is invalid for `reason`; scan again from offset + 1
      NO_MAGIC   no magic word; keep buf[offset:] (a magic word may begin in its last 7 bytes)
    length/header_size are 0 where not yet known; tlvs is None unless PACKET.
    header_size: 0 (from the platform field), 36 or 40.
    """
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if header_size not in (0, 36, 40):
        raise ValueError(f"header_size must be 0 (auto), 36 or 40, got {header_size}")
    cdef Py_ssize_t size = buf.shape[0]
    cdef Py_ssize_t pos = -1, length = 0, ntlv = 0, i, p
    cdef int hs = 0, reason = OK, status = NO_MAGIC
    cdef const unsigned char* d
    if start <= size - MAGIC_LEN:
        with nogil:
            pos = find_magic_in(&buf[0], size, start)
            if pos >= 0:
                status = check_packet(&buf[0] + pos, size - pos, header_size, max_packet_len,
                                      max_tlvs, &length, &hs, &ntlv, &reason)
    if pos < 0:
        keep = size - (MAGIC_LEN - 1)
        if keep < start:
            keep = start if start < size else size
        return NO_MAGIC, keep, 0, 0, OK, None
    if status != PACKET:
        return status, pos, length, hs, reason, None
    tlvs = np.empty((ntlv, 3), dtype=np.int64)
    cdef long long[:, ::1] table = tlvs
    d = &buf[0] + pos
    p = hs
    for i in range(ntlv):
        table[i, 0] = rd32(d + p)
        table[i, 1] = pos + p + 8
        table[i, 2] = rd32(d + p + 4)
        p += 8 + table[i, 2]
    return PACKET, pos, length, hs, OK, tlvs


def split_packets(const unsigned char[::1] buf, Py_ssize_t start=0, int header_size=0,
                  Py_ssize_t max_packet_len=DEFAULT_MAX_PACKET_LEN,
                  Py_ssize_t max_tlvs=DEFAULT_MAX_TLVS):
    """Every packet boundary in buf[start:]: (packets, malformed, resume).

    packets: [(offset, length)] of valid complete packets; malformed: [(offset, reason)];
    resume: offset from which bytes must be kept for the next call (an incomplete packet or a
    possible partial magic word).
    """
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if header_size not in (0, 36, 40):
        raise ValueError(f"header_size must be 0 (auto), 36 or 40, got {header_size}")
    cdef Py_ssize_t size = buf.shape[0]
    cdef Py_ssize_t pos = start, found, length, ntlv
    cdef int hs, reason, status
    packets, malformed = [], []
    while True:
        found = -1
        if pos <= size - MAGIC_LEN:
            with nogil:
                found = find_magic_in(&buf[0], size, pos)
                if found >= 0:
                    length = ntlv = 0
                    hs = 0
                    status = check_packet(&buf[0] + found, size - found, header_size,
                                          max_packet_len, max_tlvs, &length, &hs, &ntlv, &reason)
        if found < 0:
            keep = size - (MAGIC_LEN - 1)
            if keep < pos:
                keep = pos if pos < size else size
            return packets, malformed, keep
        if status == PACKET:
            packets.append((found, length))
            pos = found + length
        elif status == MALFORMED:
            malformed.append((found, reason))
            pos = found + 1
        else:
            return packets, malformed, found
