"""Fuzzing the packet scanner and the stream parser (hypothesis): random bytes and mutated real
and written packets. No exception escapes, nothing past the buffer is read, and the compiled
scanner agrees with its pure-Python twin on every packet boundary."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge.radar.framing import MAGIC_WORD
from firmware_bridge.radar.packet import Status, scan_packet, split_packets
from firmware_bridge.radar.packet_reference import scan_packet_reference, split_packets_reference
from firmware_bridge.radar.packet_writer import encode_packet
from firmware_bridge.radar.stream import PacketStream

DATA = Path(__file__).resolve().parents[2].parent / "shared/data/radar"


def _seed_packets() -> list[bytes]:
    """A few real packets of every recording (when ../shared is there) and written ones."""
    seeds = [encode_packet(7, np.float32([[1, 2, 0, 0.5]] * 3), snr_db=[10] * 3, noise_db=[1] * 3,
                           range_profile_db=np.full(16, 40.0), stats=(1,) * 6)]
    if DATA.is_dir():
        for path in sorted(DATA.glob("*.bin")):
            data = path.read_bytes()
            packets, _, _ = split_packets(data)
            seeds += [data[o:o + n] for o, n in packets[:3] if n <= 1024]
    return seeds


SEEDS = _seed_packets()


@st.composite
def mutated_streams(draw):
    """Seed packets, some with flipped bytes, overwritten uint32 fields, cuts and insertions."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        p = bytearray(draw(st.sampled_from(SEEDS)))
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(["flip", "u32", "cut", "insert"]))
            at = draw(st.integers(0, max(0, len(p) - 1)))
            if kind == "flip" and p:
                p[at] ^= draw(st.integers(1, 255))
            elif kind == "u32":
                at = draw(st.sampled_from([12, 16, 32, 40, 44, at]))
                p[at:at + 4] = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "little")
            elif kind == "cut":
                del p[at:at + draw(st.integers(1, 64))]
            else:
                p[at:at] = draw(st.sampled_from([MAGIC_WORD, MAGIC_WORD[:4], b"\x00" * 8]))
        out.append(bytes(p) + draw(st.binary(max_size=12)))
    return b"".join(out)


byte_streams = st.one_of(st.binary(max_size=300), mutated_streams())


def _same(a, b):
    assert a[:5] == b[:5]
    assert (a.tlvs is None) == (b.tlvs is None)
    if a.tlvs is not None:
        assert a.tlvs.tolist() == [list(t) for t in b.tlvs]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=byte_streams, start=st.integers(0, 64), header_size=st.sampled_from([0, 0, 36, 40]))
def test_compiled_and_reference_agree(data, start, header_size):
    assert split_packets(data, start, header_size) == split_packets_reference(data, start, header_size)
    _same(scan_packet(data, start, header_size), scan_packet_reference(data, start, header_size))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=byte_streams, chunk=st.integers(1, 97))
def test_stream_never_raises_and_counts_everything(data, chunk):
    stream = PacketStream()
    frames = [f for i in range(0, len(data), chunk) for f in stream.feed(data[i:i + chunk])]
    assert stream.pending <= len(data)
    stream.finish()
    c = stream.counts
    assert c.packets == len(frames) and stream.pending == 0
    # Fed in one piece, the same frames and counts come out.
    whole = PacketStream()
    assert [f.frame_number for f in whole.feed(data)] == [f.frame_number for f in frames]
    whole.finish()
    # Reasons may differ: a packet cut short is caught by whichever check sees it first.
    assert sum(whole.counts.reasons.values()) == sum(c.reasons.values()) == c.malformed
    whole.counts.reasons = c.reasons
    assert whole.counts == c
    for f in frames:   # no points TLV is fine: the demo can be told not to send points
        assert f.points.shape[1] == 4 and len(f.points) in (0, f.header.num_detected_obj)


@settings(max_examples=100, deadline=None)
@given(seed=st.sampled_from(SEEDS), data=st.data())
def test_never_reads_past_the_end_of_a_view(seed, data):
    # A view ending anywhere inside a valid packet must not be taken for the whole packet,
    # even though the bytes after the view's end complete it.
    cut = data.draw(st.integers(0, len(seed) - 1))
    backing = np.frombuffer(seed, dtype=np.uint8)
    for view in (memoryview(seed)[:cut], backing[:cut]):
        r = scan_packet(view)
        assert r.status in (Status.NEED_MORE, Status.NO_MAGIC)
        assert split_packets(view)[0] == []
    assert scan_packet(seed).status == Status.PACKET
