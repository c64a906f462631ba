"""What one TI mmWave out-of-box demo packet says: its header and the decoded TLVs."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

__all__ = ["PacketHeader", "RadarFrame"]


@dataclass(frozen=True)
class PacketHeader:
    """The packet header (after the magic word), field names as in the TI demo's C struct."""

    version: int
    """SDK version, one byte each: 0x03060000 is SDK 3.6.0.0."""
    total_packet_len: int
    """Bytes in the packet, magic word and padding included."""
    platform: int
    """0xA1443, 0xA1642, 0xA6843, ..."""
    frame_number: int
    time_cpu_cycles: int
    num_detected_obj: int
    num_tlvs: int
    sub_frame_number: int | None
    """None in the 36-byte header of xWR14xx."""
    header_size: int
    """36 (xWR14xx) or 40 bytes, magic word included."""

    @classmethod
    def unpack(cls, buf, offset: int, header_size: int) -> "PacketHeader":
        """The header of the packet whose magic word is at buf[offset]; header_size 36 or 40."""
        fields = struct.unpack_from("<8I" if header_size == 40 else "<7I", buf, offset + 8)
        sub_frame = fields[7] if header_size == 40 else None
        return cls(*fields[:7], sub_frame_number=sub_frame, header_size=header_size)

    @property
    def sdk_version(self) -> tuple[int, int, int, int]:
        v = self.version
        return (v >> 24) & 0xFF, (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF

    @property
    def sdk_major(self) -> int:
        return (self.version >> 24) & 0xFF


@dataclass
class RadarFrame:
    """One decoded packet. Arrays are None when the packet had no such TLV.

    Arrays that need no conversion are read-only views of the packet bytes (no copy).
    """

    header: PacketHeader
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    """(N, 4) float32 x, y, z in m and radial velocity v in m/s (TLV 1). SDK 2.x sends only a
    Doppler bin index: v is NaN there unless the parser was given the Doppler resolution."""
    snr_db: np.ndarray | None = None
    """(N,) float32 SNR of each point in dB (SDK 3.x: TLV 7; SDK 2.x: none)."""
    noise_db: np.ndarray | None = None
    """(N,) float32 noise of each point in dB (TLV 7)."""
    range_index: np.ndarray | None = None
    """(N,) uint16 range bin of each point (SDK 2.x TLV 1 only)."""
    doppler_index: np.ndarray | None = None
    """(N,) int16 Doppler bin of each point, signed (SDK 2.x TLV 1 only)."""
    peak_value: np.ndarray | None = None
    """(N,) uint16 detection peak value (SDK 2.x TLV 1 only)."""
    range_profile: np.ndarray | None = None
    """(range_bins,) float32 log magnitude in dB of the zero-Doppler range profile (TLV 2),
    converted as TI documents it (log2 magnitude in Q9 x 20 log10 2); the absolute level depends
    on the SDK's internal scaling (the SDK 2.1 AWR1642 recording reads about 8 times the SDK 3.6
    values of the same board, as if in another Q format), so compare profiles of one device."""
    noise_profile: np.ndarray | None = None
    """(range_bins,) float32 noise floor in dB (TLV 3)."""
    azimuth_heatmap: np.ndarray | None = None
    """complex64 azimuth static heatmap (TLV 4): (range_bins, virtual_antennas) when the number
    of range bins is known (a range profile in the packet, or the range_bins option), else flat."""
    range_doppler_heatmap: np.ndarray | None = None
    """float32 dB (TLV 5): (range_bins, doppler_bins) when range bins are known, else flat."""
    azimuth_elevation_heatmap: np.ndarray | None = None
    """complex64 (TLV 8), shaped like azimuth_heatmap."""
    stats: dict | None = None
    """TLV 6: interframe_processing_time_us, transmit_output_time_us, ... (uint32 each)."""
    temperature: dict | None = None
    """TLV 9: report_valid, time_ms, and sensor temperatures in degrees C (rx0..3, tx0..2, pm, dig0..1)."""
    unknown_tlvs: dict[int, bytes] = field(default_factory=dict)
    """Payloads of TLV types without a decoder, by type."""

    @property
    def frame_number(self) -> int:
        return self.header.frame_number
