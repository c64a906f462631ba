# cython: language_level=3, boundscheck=False, wraparound=False
"""Byte-level framing of the TI mmWave UART stream (compiled; use firmware_bridge.radar.framing).

Every frame of the mmWave demo output starts with the 8-byte magic word 02 01 04 03 06 05 08 07.
find_magic is the resync step of the TLV parser: after garbage or a lost byte, skip to the next
magic word.
"""
from libc.string cimport memchr, memcmp

cdef const unsigned char* MAGIC = b"\x02\x01\x04\x03\x06\x05\x08\x07"
cdef enum:
    MAGIC_LEN = 8


cdef Py_ssize_t find_magic_in(const unsigned char* data, Py_ssize_t size,
                              Py_ssize_t start) noexcept nogil:
    """Offset of the first magic word at or after start in data[0:size], or -1.

    Reads only data[start:size]: a candidate is compared only when all 8 bytes are in range.
    """
    cdef const unsigned char* hit
    cdef Py_ssize_t i = start
    while i <= size - MAGIC_LEN:
        # memchr finds the first byte quickly; candidates past the last full window are skipped.
        hit = <const unsigned char*>memchr(data + i, MAGIC[0], <size_t>(size - MAGIC_LEN + 1 - i))
        if hit == NULL:
            return -1
        i = hit - data
        if memcmp(hit, MAGIC, MAGIC_LEN) == 0:
            return i
        i += 1
    return -1


def find_magic(const unsigned char[::1] buf, Py_ssize_t start=0):
    """Offset of the first magic word 02 01 04 03 06 05 08 07 at or after `start` in `buf`, or -1.

    buf: a C-contiguous buffer of bytes (bytes, bytearray, memoryview, uint8 array); it is not
    copied and never read past its end. start: offset where the search begins, >= 0 (past the
    end gives -1).
    """
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    cdef Py_ssize_t size = buf.shape[0]
    if size - start < MAGIC_LEN:
        return -1
    cdef Py_ssize_t found
    with nogil:
        found = find_magic_in(&buf[0], size, start)
    return found
