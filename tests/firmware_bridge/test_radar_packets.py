"""TI mmWave packet framing and TLV decoding: the five real recordings, resync, truncation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.radar import _tlv
from firmware_bridge.radar.framing import MAGIC_WORD
from firmware_bridge.radar.packet import Reason, Status, scan_packet, split_packets
from firmware_bridge.radar.packet_reference import scan_packet_reference, split_packets_reference
from firmware_bridge.radar.packet_writer import encode_packet, encode_tlv
from firmware_bridge.radar.stream import PacketStream, read_recording
from firmware_bridge.radar.tlv import MalformedTLV, TLV_DECODERS, decode_packet
from sdk.errors import InputError

DATA = Path(__file__).resolve().parents[2].parent / "shared/data/radar"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real TI recordings not found at {DATA} "
                                                          "(CI keeps ../shared beside the checkout)")

# file: (header size, SDK major, TLV types, packets, truncated at the end, first/last frameNumber)
RECORDINGS = {
    "iwr1443_sdk2.1_scatter.bin": (36, 2, {1}, 70, 0, (19, 88)),
    "iwr1443_sdk2.1_heatmap.bin": (36, 2, {1, 4}, 17, 0, (110, 126)),
    "awr1642_sdk2.1_capture1.bin": (40, 2, {1, 2, 6}, 99, 1, (167, 265)),
    "awr1642_sdk3.6_capture1.bin": (40, 3, {1, 2, 6, 7, 9}, 100, 1, (69, 168)),
    "iwr1642_sdk3.4_capture1.bin": (40, 3, {1, 7}, 102, 0, (104, 205)),
}


def test_scanner_is_compiled():
    assert _tlv.__file__.endswith((".so", ".pyd")), _tlv.__file__


@needs_data
@pytest.mark.parametrize("name", sorted(RECORDINGS))
def test_real_recording(name):
    header_size, sdk_major, types, n_packets, truncated, (first, last) = RECORDINGS[name]
    data = (DATA / name).read_bytes()
    frames, counts = read_recording(DATA / name, chunk_size=1000)
    assert (counts.packets, counts.malformed, counts.truncated) == (n_packets, 0, truncated)
    assert counts.missing_frames == 0
    numbers = [f.frame_number for f in frames]
    assert (numbers[0], numbers[-1]) == (first, last)
    assert np.all(np.diff(numbers) == 1)
    seen = set()
    for f in frames:
        h = f.header
        assert h.header_size == header_size and h.sdk_major == sdk_major
        assert h.total_packet_len % 32 == 0
        assert f.points.shape == (h.num_detected_obj, 4) and f.points.dtype == np.float32
        assert np.all(np.isfinite(f.points[:, :3]))
        assert np.all(np.abs(f.points[:, :3]) < 20.0)         # metres, indoor scenes
        if sdk_major >= 3:
            assert np.all(np.abs(f.points[:, 3]) < 10.0)      # m/s
            assert f.snr_db.shape == (h.num_detected_obj,) and np.all(f.snr_db >= 0)
        else:
            assert np.all(np.isnan(f.points[:, 3]))           # SDK 2.x sends Doppler bins only
            assert f.doppler_index.shape == (h.num_detected_obj,)
        if f.stats is not None:
            assert 0 <= f.stats["active_frame_cpu_load_pct"] <= 100
        if f.temperature is not None:
            assert 0 < f.temperature["rx0"] < 125
        seen |= {1} | ({2} if f.range_profile is not None else set()) \
            | ({4} if f.azimuth_heatmap is not None else set()) \
            | ({6} if f.stats is not None else set()) | ({7} if f.snr_db is not None else set()) \
            | ({9} if f.temperature is not None else set())
        assert not f.unknown_tlvs
    assert seen == types
    if sdk_major < 3:
        # x, y, z (Q-format) and rangeIdx are decoded independently: |xyz| / rangeIdx is the
        # range resolution, the same for every point of a recording.
        r = np.concatenate([np.linalg.norm(f.points[:, :3], axis=1) for f in frames])
        idx = np.concatenate([f.range_index for f in frames]).astype(float)
        ratio = r[idx > 0] / idx[idx > 0]
        assert 0.02 < np.median(ratio) < 0.1 and np.ptp(ratio) < 0.02 * np.median(ratio)
    # The compiled scanner and its twin agree on every boundary of the whole file.
    assert split_packets(data) == split_packets_reference(data)


@needs_data
def test_azimuth_heatmap_is_shaped_by_range_bins():
    frames, _ = read_recording(DATA / "iwr1443_sdk2.1_heatmap.bin")
    assert frames[0].azimuth_heatmap.shape == (2048,) and frames[0].azimuth_heatmap.dtype == np.complex64
    frames, _ = read_recording(DATA / "iwr1443_sdk2.1_heatmap.bin", options=_options(range_bins=256))
    assert frames[0].azimuth_heatmap.shape == (256, 8)
    # 256 range bins x 8 virtual antennas: the heatmap is strongest at the points' range bins.
    for f in frames:
        strength = np.abs(f.azimuth_heatmap).sum(axis=1)
        assert strength[f.range_index].mean() > 3 * np.median(strength)


def _options(**kw):
    from firmware_bridge.radar.tlv import DecodeOptions
    return DecodeOptions(**kw)


def _packets(n=5, start=10):
    pts = np.array([[0.5, 2.0, 0.1, -0.25], [-1.0, 3.5, 0.0, 1.0]], np.float32)
    return [encode_packet(start + i, pts, snr_db=[20.0, 15.5], noise_db=[5.0, 6.0],
                          range_profile_db=np.linspace(10, 60, 64), stats=(1, 2, 3, 4, 5, 6))
            for i in range(n)]


def test_written_packets_round_trip():
    stream = PacketStream()
    frames = stream.feed(b"".join(_packets()))
    assert [f.frame_number for f in frames] == [10, 11, 12, 13, 14]
    f = frames[0]
    assert f.header.total_packet_len % 32 == 0 and f.header.sdk_version == (3, 6, 0, 0)
    np.testing.assert_array_equal(f.points, np.float32([[0.5, 2.0, 0.1, -0.25], [-1.0, 3.5, 0.0, 1.0]]))
    np.testing.assert_allclose(f.snr_db, [20.0, 15.5], atol=0.05)
    np.testing.assert_allclose(f.range_profile, np.linspace(10, 60, 64), atol=0.01)
    assert f.stats["interframe_cpu_load_pct"] == 6
    assert not f.points.flags.writeable                      # a view of the packet bytes


def test_resync_after_garbage():
    packets = _packets(5)
    garbage = [b"\x07\x02\x01\x04" * 9, MAGIC_WORD[:5], bytes(range(256)),
               MAGIC_WORD + b"\xff" * 40,             # a magic word with an absurd length
               packets[0][:60]]                      # the start of a packet, then lost bytes
    data = b"".join(g + p for g, p in zip(garbage, packets))
    stream = PacketStream()
    frames = [f for i in range(0, len(data), 37) for f in stream.feed(data[i:i + 37])]
    stream.finish()
    assert [f.frame_number for f in frames] == [10, 11, 12, 13, 14]
    assert stream.counts.malformed == 2 and stream.counts.truncated == 0
    assert stream.counts.reasons == {"BAD_LENGTH": 1, "CUT_SHORT": 1}
    assert stream.pending == 0
    assert stream.counts.skipped_bytes == sum(map(len, garbage))


def test_truncated_packets_are_counted_not_decoded():
    a, b, c = _packets(3)
    data = a + b[:100] + c + b[:50]                  # lost bytes mid-stream, cut off at the end
    stream = PacketStream()
    frames = stream.feed(data)
    stream.finish()
    assert [f.frame_number for f in frames] == [10, 12]
    assert stream.counts.malformed == 1 and stream.counts.reasons["CUT_SHORT"] == 1
    assert stream.counts.truncated == 1 and stream.counts.missing_frames == 1


@pytest.mark.parametrize("field_offset, value, reason", [
    (12, 20, Reason.BAD_LENGTH),          # totalPacketLen below the header
    (12, 1 << 30, Reason.BAD_LENGTH),     # above max_packet_len
    (32, 1000, Reason.TOO_MANY_TLVS),
    (44, 10_000, Reason.TLV_OVERRUN),     # first TLV's length
    (12, None, Reason.BAD_PADDING),       # 64 bytes more than the padded length
])
def test_each_malformation(field_offset, value, reason):
    packet = bytearray(_packets(1)[0]) + bytes(64)
    value = len(packet) if value is None else value
    packet[field_offset:field_offset + 4] = value.to_bytes(4, "little")
    r = scan_packet(packet)
    assert (r.status, r.reason) == (Status.MALFORMED, reason)
    assert r == scan_packet_reference(packet)


def test_incomplete_packet_waits():
    packet = _packets(1)[0]
    for cut in (0, 7, 8, 15, 16, 19, 20, 39, 40, 47, 100, len(packet) - 1):
        r = scan_packet(packet[:cut])
        want = Status.NO_MAGIC if cut < 8 else Status.NEED_MORE
        assert r.status == want and r == scan_packet_reference(packet[:cut]), cut
    assert scan_packet(packet).status == Status.PACKET


def test_decode_errors_are_counted_as_malformed():
    bad = encode_packet(1, np.zeros((2, 4)), extra_tlvs=[(6, b"\x00" * 10)])   # stats: 10 bytes
    with pytest.raises(MalformedTLV, match="stats"):
        r = scan_packet(bad)
        decode_packet(bad, r.header_size, r.tlvs)
    stream = PacketStream()
    assert stream.feed(bad + _packets(1)[0])[0].frame_number == 10
    assert stream.counts.reasons["TLV"] == 1


def test_unknown_tlv_types_are_kept_and_registry_is_keyed_by_type():
    assert set(TLV_DECODERS) == set(range(1, 10))
    packet = encode_packet(3, np.zeros((0, 4)), extra_tlvs=[(1020, b"abcd")])
    frame = PacketStream().feed(packet)[0]
    assert frame.unknown_tlvs == {1020: b"abcd"} and frame.points.shape == (0, 4)
    assert encode_tlv(2, b"xy") == b"\x02\x00\x00\x00\x02\x00\x00\x00xy"


def test_bad_arguments():
    with pytest.raises(InputError, match="header_size"):
        scan_packet(b"", header_size=38)
    with pytest.raises(InputError, match="start"):
        split_packets(b"", start=-1)
    with pytest.raises(InputError, match="str"):
        scan_packet("abc")
