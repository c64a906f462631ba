"""Decoders of the TLV payloads, in a registry keyed by TLV type: a new type is one entry.

Each decoder gets the payload (a read-only uint8 view of the packet, no copy) and the
RadarFrame being filled, checks the payload's length, and sets its fields with np.frombuffer
views where no conversion is needed. A payload that does not fit its type raises MalformedTLV,
which the stream counts as a malformed packet.

Layouts (all little-endian), as found on the real recordings in ../shared/data/radar:
    1  detected points  SDK 3.x: N x float32 (x, y, z, v), N = numDetectedObj
                        SDK 1.x/2.x: uint16 numDetectedObj, uint16 xyzQFormat, then N x int16
                        (rangeIdx, dopplerIdx, peakVal, x, y, z), x/y/z in Q(xyzQFormat) m
    2  range profile    uint16 per range bin, log2 magnitude in Q9
    3  noise profile    as 2
    4  azimuth static heatmap   complex int16 (imag, real) per range bin x virtual antenna
    5  range-Doppler heatmap    uint16 log2 magnitude Q9 per range bin x Doppler bin
    6  stats            6 x uint32 (times in us, CPU loads in %)
    7  point side info  N x int16 (snr, noise) in 0.1 dB
    8  azimuth/elevation static heatmap   as 4
    9  temperature      int32 reportValid, uint32 time (ms), 10 x uint16 sensor temperatures
The TLV length field counts the payload only, without the 8-byte TLV header, in SDK 2.1 (both
IWR1443 and AWR1642) and SDK 3.4/3.6 recordings alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .frame import PacketHeader, RadarFrame

__all__ = ["MalformedTLV", "DecodeOptions", "TLV_DECODERS", "tlv_decoder", "decode_packet",
           "TLV_NAMES"]

# log2 magnitude in Q9 -> dB: 20 log10(2) / 2**9
_Q9_LOG2_TO_DB = 20.0 * math.log10(2.0) / 512.0


class MalformedTLV(ValueError):
    """A TLV payload whose length or content does not fit its type."""

    def __init__(self, tlv_type: int, why: str):
        super().__init__(tlv_type, why)
        self.tlv_type, self.why = tlv_type, why

    def __str__(self) -> str:
        return f"TLV type {self.tlv_type} ({TLV_NAMES.get(self.tlv_type, 'unknown')}): {self.why}"


@dataclass(frozen=True)
class DecodeOptions:
    """What the packets do not say, from the chirp configuration (both optional)."""

    doppler_resolution_mps: float | None = None
    """m/s per Doppler bin, to give SDK 2.x points a velocity (else NaN)."""
    range_bins: int | None = None
    """Range bins, to shape heatmaps when the packet carries no range profile."""


Decoder = Callable[[np.ndarray, RadarFrame, DecodeOptions], None]
TLV_DECODERS: dict[int, Decoder] = {}
TLV_NAMES: dict[int, str] = {}


def tlv_decoder(tlv_type: int, name: str) -> Callable[[Decoder], Decoder]:
    """Register ``fn(payload, frame, options)`` as the decoder of ``tlv_type``."""
    def register(fn: Decoder) -> Decoder:
        TLV_DECODERS[tlv_type] = fn
        TLV_NAMES[tlv_type] = name
        return fn
    return register


def _whole(payload: np.ndarray, item: int, tlv_type: int) -> int:
    if payload.size % item:
        raise MalformedTLV(tlv_type, f"{payload.size} bytes is not a multiple of {item}")
    return payload.size // item


@tlv_decoder(1, "detected points")
def _points(payload, frame, options):
    n_expected = frame.header.num_detected_obj
    if frame.header.sdk_major >= 3:
        n = _whole(payload, 16, 1)
        if n != n_expected:
            raise MalformedTLV(1, f"{n} points, header says numDetectedObj={n_expected}")
        frame.points = payload.view("<f4").reshape(n, 4)
        return
    if payload.size < 4:
        raise MalformedTLV(1, f"{payload.size} bytes, shorter than the 4-byte descriptor")
    n, q = (int(x) for x in payload[:4].view("<u2"))
    if n != n_expected or payload.size != 4 + 12 * n:
        raise MalformedTLV(1, f"descriptor says {n} points in {payload.size} bytes, header says "
                              f"numDetectedObj={n_expected}")
    if q > 15:
        raise MalformedTLV(1, f"xyzQFormat={q} is above 15")
    obj = payload[4:].view("<i2").reshape(n, 6)
    points = np.empty((n, 4), np.float32)
    points[:, :3] = obj[:, 3:6] / np.float32(1 << q)
    frame.doppler_index = obj[:, 1].copy()
    res = options.doppler_resolution_mps
    points[:, 3] = np.nan if res is None else frame.doppler_index * np.float32(res)
    frame.points = points
    frame.range_index = obj[:, 0].view("<u2").copy()
    frame.peak_value = obj[:, 2].view("<u2").copy()


def _log_profile(payload, tlv_type):
    _whole(payload, 2, tlv_type)
    return payload.view("<u2") * np.float32(_Q9_LOG2_TO_DB)


@tlv_decoder(2, "range profile")
def _range_profile(payload, frame, options):
    frame.range_profile = _log_profile(payload, 2)


@tlv_decoder(3, "noise profile")
def _noise_profile(payload, frame, options):
    frame.noise_profile = _log_profile(payload, 3)


def _complex_heatmap(payload, tlv_type):
    _whole(payload, 4, tlv_type)
    iq = payload.view("<i2").reshape(-1, 2)   # TI's cmplx16ImRe_t: imaginary first
    return (iq[:, 1] + 1j * iq[:, 0]).astype(np.complex64)


@tlv_decoder(4, "azimuth static heatmap")
def _azimuth_heatmap(payload, frame, options):
    frame.azimuth_heatmap = _complex_heatmap(payload, 4)


@tlv_decoder(5, "range-Doppler heatmap")
def _range_doppler(payload, frame, options):
    frame.range_doppler_heatmap = _log_profile(payload, 5)


_STATS_FIELDS = ("interframe_processing_time_us", "transmit_output_time_us",
                 "interframe_processing_margin_us", "interchirp_processing_margin_us",
                 "active_frame_cpu_load_pct", "interframe_cpu_load_pct")


@tlv_decoder(6, "stats")
def _stats(payload, frame, options):
    if payload.size != 24:
        raise MalformedTLV(6, f"{payload.size} bytes, expected 24")
    frame.stats = dict(zip(_STATS_FIELDS, (int(x) for x in payload.view("<u4"))))


@tlv_decoder(7, "point side info")
def _side_info(payload, frame, options):
    n = _whole(payload, 4, 7)
    if n != frame.header.num_detected_obj:
        raise MalformedTLV(7, f"{n} entries, header says numDetectedObj={frame.header.num_detected_obj}")
    sn = payload.view("<i2").reshape(n, 2) * np.float32(0.1)
    frame.snr_db, frame.noise_db = sn[:, 0], sn[:, 1]


@tlv_decoder(8, "azimuth/elevation static heatmap")
def _azimuth_elevation(payload, frame, options):
    frame.azimuth_elevation_heatmap = _complex_heatmap(payload, 8)


_TEMPERATURE_SENSORS = ("rx0", "rx1", "rx2", "rx3", "tx0", "tx1", "tx2", "pm", "dig0", "dig1")


@tlv_decoder(9, "temperature")
def _temperature(payload, frame, options):
    if payload.size != 28:
        raise MalformedTLV(9, f"{payload.size} bytes, expected 28")
    valid, time_ms = payload[:4].view("<i4")[0], payload[4:8].view("<u4")[0]
    sensors = payload[8:].view("<i2")
    frame.temperature = {"report_valid": int(valid), "time_ms": int(time_ms),
                         **{k: int(v) for k, v in zip(_TEMPERATURE_SENSORS, sensors)}}


def _shape_by_range(flat: np.ndarray | None, range_bins: int | None) -> np.ndarray | None:
    if flat is None or not range_bins or flat.size % range_bins:
        return flat
    return flat.reshape(range_bins, -1)


def decode_packet(packet: bytes, header_size: int, tlvs, base: int = 0,
                  options: DecodeOptions = DecodeOptions()) -> RadarFrame:
    """The RadarFrame of one validated packet.

    packet: bytes holding the packet at ``base`` (the scanner's buffer, or the packet alone with
    base = its offset in that buffer); tlvs: the scanner's (type, payload offset, length) rows,
    offsets relative to the same buffer as ``base``. Raises MalformedTLV.
    """
    data = np.frombuffer(packet, dtype=np.uint8)
    frame = RadarFrame(header=PacketHeader.unpack(packet, 0, header_size))
    for tlv_type, offset, length in np.asarray(tlvs, dtype=np.int64).reshape(-1, 3).tolist():
        payload = data[offset - base: offset - base + length]
        decoder = TLV_DECODERS.get(tlv_type)
        if decoder is None:
            frame.unknown_tlvs[tlv_type] = payload.tobytes()
        else:
            decoder(payload, frame, options)
    range_bins = options.range_bins or (frame.range_profile.size if frame.range_profile is not None
                                        else None)
    frame.azimuth_heatmap = _shape_by_range(frame.azimuth_heatmap, range_bins)
    frame.azimuth_elevation_heatmap = _shape_by_range(frame.azimuth_elevation_heatmap, range_bins)
    frame.range_doppler_heatmap = _shape_by_range(frame.range_doppler_heatmap, range_bins)
    return frame
