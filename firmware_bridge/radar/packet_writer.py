"""Encoding of SDK 3.x out-of-box demo packets (40-byte header, float32 points), as an xWR16xx/
xWR68xx running SDK 3.x sends them: what the simulated radar emits."""
from __future__ import annotations

import struct

import numpy as np

from .framing import MAGIC_WORD

__all__ = ["SDK3_VERSION", "PLATFORM_XWR16XX", "encode_packet", "encode_tlv"]

SDK3_VERSION = 0x03060000   # SDK 3.6.0.0
PLATFORM_XWR16XX = 0xA1642
_HEADER = struct.Struct("<8I")


def encode_tlv(tlv_type: int, payload: bytes) -> bytes:
    """uint32 type, uint32 payload length (TLV header not counted), payload."""
    return struct.pack("<2I", tlv_type, len(payload)) + payload


def encode_packet(frame_number: int, points: np.ndarray, snr_db=None, noise_db=None,
                  range_profile_db=None, stats: tuple[int, ...] | None = None,
                  extra_tlvs: list[tuple[int, bytes]] = (), time_cpu_cycles: int = 0,
                  version: int = SDK3_VERSION, platform: int = PLATFORM_XWR16XX) -> bytes:
    """One packet padded to a multiple of 32 bytes.

    points: (N, 4) x, y, z (m), v (m/s) -> TLV 1; snr_db/noise_db: (N,) dB -> TLV 7 (0.1 dB
    steps); range_profile_db: (range_bins,) dB -> TLV 2 (log2 Q9); stats: 6 uint32 -> TLV 6;
    extra_tlvs: (type, payload) appended as they are.
    """
    points = np.ascontiguousarray(points, dtype="<f4").reshape(-1, 4)
    tlvs = [encode_tlv(1, points.tobytes())] if len(points) else []
    if snr_db is not None:
        side = np.stack([np.round(np.asarray(snr_db) * 10), np.round(np.asarray(noise_db) * 10)], 1)
        tlvs.append(encode_tlv(7, np.clip(side, -32768, 32767).astype("<i2").tobytes()))
    if range_profile_db is not None:
        q9 = np.round(np.asarray(range_profile_db) / (20 * np.log10(2.0)) * 512)
        tlvs.append(encode_tlv(2, np.clip(q9, 0, 65535).astype("<u2").tobytes()))
    if stats is not None:
        tlvs.append(encode_tlv(6, struct.pack("<6I", *stats)))
    tlvs += [encode_tlv(t, p) for t, p in extra_tlvs]
    body = b"".join(tlvs)
    total = 40 + len(body)
    total += -total % 32
    header = MAGIC_WORD + _HEADER.pack(version, total, platform, frame_number, time_cpu_cycles,
                                       len(points), len(tlvs), 0)
    return (header + body).ljust(total, b"\x00")
