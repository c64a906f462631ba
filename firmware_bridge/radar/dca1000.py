"""Raw ADC capture through a TI DCA1000EVM: its UDP packet format and the complex sample order.

Each UDP datagram of the data port (4098) is

    uint32   sequence number, from 1, +1 per datagram
    uint48   byte count: payload bytes sent before this datagram
    payload  up to 1456 bytes of the raw LVDS stream

and the raw stream holds int16 samples. For complex capture (xWR16xx/18xx/68xx, 2 LVDS lanes)
they come in groups of four, ``I0 I1 Q0 Q1``: samples 0 and 1 are I0 + jQ0 and I1 + jQ1. A
frame is chirps x receive channels x samples in that order (time-multiplexed transmitters
appear as consecutive chirps).
"""
from __future__ import annotations

import struct

import numpy as np

from sdk.errors import InputError

__all__ = ["MAX_PAYLOAD", "encode_iiqq", "decode_iiqq", "packetize", "reassemble"]

MAX_PAYLOAD = 1456
_HEADER = struct.Struct("<I6s")


def encode_iiqq(cube: np.ndarray) -> bytes:
    """(chirps, rx, samples) complex -> the raw int16 stream (samples even; values rounded and
    clipped to int16)."""
    cube = np.asarray(cube)
    if cube.ndim != 3 or cube.shape[-1] % 2:
        raise InputError(f"cube: expected (chirps, rx, samples) with an even number of samples, "
                         f"received shape {cube.shape}")
    pairs = cube.reshape(-1, 2)
    groups = np.stack([pairs.real[:, 0], pairs.real[:, 1], pairs.imag[:, 0], pairs.imag[:, 1]], 1)
    return np.clip(np.round(groups), -32768, 32767).astype("<i2").tobytes()


def decode_iiqq(raw, rx: int, samples: int) -> np.ndarray:
    """The raw int16 stream -> (chirps, rx, samples) complex64; len(raw) must hold whole chirps."""
    data = np.frombuffer(raw, dtype="<i2")
    per_chirp = 2 * rx * samples
    if samples % 2 or data.size % per_chirp:
        raise InputError(f"raw: {data.size} int16 values do not hold whole chirps of {rx} x "
                         f"{samples} complex samples (samples must be even)")
    g = data.reshape(-1, 4).astype(np.float32)
    out = np.empty((g.shape[0], 2), np.complex64)
    out[:, 0] = g[:, 0] + 1j * g[:, 2]
    out[:, 1] = g[:, 1] + 1j * g[:, 3]
    return out.reshape(-1, rx, samples)


def packetize(raw: bytes, first_seq: int = 1, payload: int = MAX_PAYLOAD) -> list[bytes]:
    """The DCA1000 datagrams carrying ``raw`` (payload bytes each, the last one shorter)."""
    out = []
    for i, start in enumerate(range(0, len(raw), payload)):
        head = _HEADER.pack((first_seq + i) & 0xFFFFFFFF, start.to_bytes(6, "little"))
        out.append(head + raw[start:start + payload])
    return out


def reassemble(datagrams) -> tuple[bytes, int]:
    """(raw stream, lost payload bytes) from datagrams in any order: each payload goes where its
    byte count says; bytes of lost datagrams are zero-filled and counted. Duplicates are ignored.
    """
    pieces = {}
    for d in datagrams:
        if len(d) < _HEADER.size:
            raise InputError(f"datagram of {len(d)} bytes is shorter than the 10-byte header")
        _, count = _HEADER.unpack_from(d)
        pieces.setdefault(int.from_bytes(count, "little"), bytes(d[_HEADER.size:]))
    if not pieces:
        return b"", 0
    first = min(pieces)
    end = max(k + len(v) for k, v in pieces.items())
    out = bytearray(end - first)
    covered = 0
    for k, v in sorted(pieces.items()):
        out[k - first:k - first + len(v)] = v
        covered += len(v)
    return bytes(out), max(0, len(out) - covered)
