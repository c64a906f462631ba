"""CPM wire codec: round-trip error bounds, the size goal, and every malformed-input reason."""
from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk.runtime.coop import wire
from sdk.runtime.coop.messages import CPM, DetectedObject, Landmark, Pose2D
from sdk.runtime.coop.security import SIGNATURE_BYTES

_finite = dict(allow_nan=False, allow_infinity=False)

objects_st = st.builds(
    DetectedObject, cls=st.integers(0, 4), x=st.floats(-204.0, 204.0, **_finite),
    y=st.floats(-204.0, 204.0, **_finite), length=st.floats(0.1, 23.0, **_finite),
    width=st.floats(0.1, 23.0, **_finite), heading=st.floats(-10.0, 10.0, **_finite),
    score=st.floats(0.0, 1.0, **_finite))
landmarks_st = st.builds(
    Landmark, x=st.floats(-163.0, 163.0, **_finite), y=st.floats(-163.0, 163.0, **_finite),
    kind=st.integers(0, 1), strength=st.floats(0.0, 1.0, **_finite))


@st.composite
def cpms(draw) -> CPM:
    std = draw(st.lists(st.floats(0.01, 50.0, **_finite), min_size=2, max_size=2))
    std_h = draw(st.floats(0.001, 3.0, **_finite))
    rho = draw(st.floats(-0.95, 0.95, **_finite))
    s = np.array([std[0], std[1], std_h])
    corr = np.eye(3)
    corr[0, 1] = corr[1, 0] = rho
    return CPM(sender_id=draw(st.integers(0, 0xFFFF)), seq=draw(st.integers(0, 2**32 - 1)),
               timestamp_ns=draw(st.integers(0, 2**64 - 1)),
               pose=Pose2D(draw(st.floats(-1e5, 1e5, **_finite)), draw(st.floats(-1e5, 1e5, **_finite)),
                           draw(st.floats(-20.0, 20.0, **_finite))),
               pose_cov=corr * np.outer(s, s),
               objects=draw(st.lists(objects_st, max_size=25)),
               landmarks=draw(st.lists(landmarks_st, max_size=20)),
               keypoint_features=draw(st.none() | st.binary(max_size=64)))


def _angle_err(a: float, b: float) -> float:
    return abs((a - b + math.pi) % (2 * math.pi) - math.pi)


@settings(max_examples=150, deadline=None)
@given(cpms())
def test_round_trip_within_documented_bounds(cpm):
    data = wire.encode(cpm)
    assert len(data) == wire.encoded_size(len(cpm.objects), len(cpm.landmarks),
                                          None if cpm.keypoint_features is None
                                          else len(cpm.keypoint_features))
    assert wire.body_length(data) == len(data)
    out = wire.decode(data)
    assert (out.sender_id, out.seq, out.timestamp_ns) == (cpm.sender_id, cpm.seq, cpm.timestamp_ns)
    assert out.keypoint_features == cpm.keypoint_features
    assert abs(out.pose.x - cpm.pose.x) <= 0.0005 + 1e-9
    assert abs(out.pose.y - cpm.pose.y) <= 0.0005 + 1e-9
    assert _angle_err(out.pose.heading, cpm.pose.heading) <= math.pi / 65536 + 1e-9
    assert -math.pi <= out.pose.heading < math.pi
    s_in, s_out = np.sqrt(np.diag(cpm.pose_cov)), np.sqrt(np.diag(out.pose_cov))
    np.testing.assert_allclose(s_out, s_in, rtol=2 ** (1 / 32) - 1 + 1e-9)
    rho_in = cpm.pose_cov[0, 1] / (s_in[0] * s_in[1])
    assert abs(out.pose_cov[0, 1] / (s_out[0] * s_out[1]) - rho_in) <= 1 / 254 + 1e-9
    assert len(out.objects) == len(cpm.objects) and len(out.landmarks) == len(cpm.landmarks)
    for a, b in zip(cpm.objects, out.objects):
        assert b.cls == a.cls
        assert abs(b.x - a.x) <= 0.05 + 1e-9 and abs(b.y - a.y) <= 0.05 + 1e-9
        assert _angle_err(b.heading, a.heading) <= math.pi / 512 + 1e-9
        assert abs(b.length / a.length - 1) <= 2 ** (1 / 16) - 1 + 1e-9
        assert abs(b.width / a.width - 1) <= 2 ** (1 / 16) - 1 + 1e-9
        assert abs(b.score - a.score) <= 1 / 126 + 1e-9
    for a, b in zip(cpm.landmarks, out.landmarks):
        assert abs(b.x - a.x) <= 0.01 + 1e-9 and abs(b.y - a.y) <= 0.01 + 1e-9
        assert b.kind == a.kind and abs(b.strength - a.strength) <= 1 / 14 + 1e-9
    assert wire.encode(out) == data  # decoded values sit on the grid: re-encoding is exact


def _full_cpm(rng: np.random.Generator, n_obj: int = 20, n_lm: int = 16) -> CPM:
    objs = [DetectedObject(int(rng.integers(0, 5)), *rng.uniform(-150, 150, 2), *rng.uniform(0.3, 12, 2),
                           float(rng.uniform(-3, 3)), float(rng.uniform())) for _ in range(n_obj)]
    lms = [Landmark(*rng.uniform(-150, 150, 2), int(rng.integers(0, 2)), float(rng.uniform()))
           for _ in range(n_lm)]
    return CPM(5, 9, 1_700_000_000_000_000_000, Pose2D(812.3, -44.1, 1.2), objects=objs, landmarks=lms)


def test_size_goal_20_objects_16_landmarks_signed_under_300_bytes(rng):
    data = wire.encode(_full_cpm(rng))
    assert len(data) == wire.encoded_size(20, 16) == 234
    assert len(data) + SIGNATURE_BYTES <= 300


def test_sub_step_sizes_clamp_to_smallest_step(rng):
    cpm = _full_cpm(rng, 1, 0)
    cpm.objects[0].length = 0.02
    assert wire.decode(wire.encode(cpm)).objects[0].length == pytest.approx(0.1)


@pytest.mark.parametrize("mutate, reason, field", [
    (lambda c: setattr(c.pose, "x", float("nan")), "bad_value", "pose"),
    (lambda c: setattr(c.objects[3], "y", float("inf")), "bad_value", "objects.y[3]"),
    (lambda c: setattr(c.objects[2], "x", 250.0), "out_of_range", "objects.x[2]"),
    (lambda c: setattr(c.landmarks[1], "y", -170.0), "out_of_range", "landmarks.y[1]"),
    (lambda c: setattr(c.objects[0], "score", 1.5), "out_of_range", "objects.score[0]"),
    (lambda c: setattr(c.objects[0], "length", -1.0), "bad_value", "objects.length[0]"),
    (lambda c: setattr(c.objects[0], "width", 40.0), "out_of_range", "objects.width[0]"),
    (lambda c: setattr(c.objects[4], "cls", 9), "bad_value", "objects.cls[4]"),
    (lambda c: setattr(c.landmarks[0], "kind", 2), "bad_value", "landmarks.kind[0]"),
    (lambda c: setattr(c, "sender_id", 70000), "out_of_range", "sender_id"),
    (lambda c: setattr(c, "seq", -1), "out_of_range", "seq"),
    (lambda c: setattr(c, "pose_cov", np.full((3, 3), np.nan)), "bad_value", "pose_cov"),
    (lambda c: setattr(c, "pose_cov", np.eye(2)), "bad_value", "pose_cov"),
    (lambda c: setattr(c, "landmarks", c.landmarks * 20), "too_many_items", "landmarks"),
])
def test_encode_rejects_unrepresentable_values_naming_the_field(rng, mutate, reason, field):
    cpm = _full_cpm(rng)
    mutate(cpm)
    with pytest.raises(wire.WireError) as err:
        wire.encode(cpm)
    assert err.value.reason == reason and field in str(err.value)


def test_decode_reasons_for_malformed_input(rng):
    data = wire.encode(_full_cpm(rng))
    cases = {
        "truncated": [data[:10], data[:wire.HEADER_BYTES], data[:-1], b""],
        "bad_magic": [b"\x00" + data[1:]],
        "unknown_version": [data[:1] + b"\x02" + data[2:], data[:1] + b"\xff" + data[2:]],
        "unknown_flags": [data[:2] + b"\x80" + data[3:]],
        "bad_length": [data + b"\x00"],
    }
    for reason, inputs in cases.items():
        for bad in inputs:
            with pytest.raises(wire.WireError) as err:
                wire.decode(bad)
            assert err.value.reason == reason, (reason, len(bad))
    # feature flag set but no feature block
    with pytest.raises(wire.WireError) as err:
        wire.decode(data[:2] + bytes([wire.FLAG_FEATURES]) + data[3:])
    assert err.value.reason == "truncated"
    # object class code 7 fits the 3 bits but names no class
    one = wire.encode(CPM(1, 1, 1, Pose2D(0, 0, 0), objects=[DetectedObject(0, 1, 1, 1, 1, 0, 0.5)]))
    patched = one[:wire.HEADER_BYTES] + bytes([one[wire.HEADER_BYTES] | 0xE0]) + one[wire.HEADER_BYTES + 1:]
    with pytest.raises(wire.WireError) as err:
        wire.decode(patched)
    assert err.value.reason == "bad_value"
    # non-zero padding after the last record (54 bits -> 7 bytes, 2 padding bits)
    with pytest.raises(wire.WireError) as err:
        wire.decode(one[:-1] + bytes([one[-1] | 1]))
    assert err.value.reason == "bad_value" and "padding" in str(err.value)
    # the -128 correlation code is outside the schema
    cov_at = struct.calcsize("!BBBHIQiiH3B")
    bad_cov = one[:cov_at] + b"\x80" + one[cov_at + 1:]
    with pytest.raises(wire.WireError) as err:
        wire.decode(bad_cov)
    assert err.value.reason == "bad_value"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_decode_random_bytes_only_ever_raises_wire_error(blob):
    try:
        wire.decode(blob)
    except wire.WireError as err:
        assert err.reason in {"truncated", "bad_magic", "unknown_version", "unknown_flags",
                              "bad_length", "bad_value"}


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 233), st.integers(1, 255), st.integers(0, 2**32))
def test_decode_mutated_messages_are_rejected_or_canonical(pos, xor, seed):
    data = bytearray(wire.encode(_full_cpm(np.random.default_rng(seed % 1000))))
    data[pos] ^= xor
    try:
        out = wire.decode(bytes(data))
    except wire.WireError:
        return
    assert wire.encode(out) == bytes(data)  # whatever decodes is a canonical schema-1 message
