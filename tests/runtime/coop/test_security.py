"""Fleet keys, Ed25519 signing, and the receive guard's drop reasons."""
from __future__ import annotations

import math
import os
import stat

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk.runtime.coop import wire
from sdk.runtime.coop.messages import CPM, DetectedObject, Landmark, Pose2D
from sdk.runtime.coop.security import (SIGNATURE_BYTES, FleetKeys, GuardConfig, MessageGuard,
                                       NoPrivateKeyError, SecurityError, generate_fleet,
                                       value_problem)

T0 = 1_800_000_000_000_000_000  # receiver clock in the tests, ns


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fleet")
    assert generate_fleet(3, directory) == [0, 1, 2]
    return directory


def _cpm(sender: int = 1, seq: int = 1, t: int = T0, n_obj: int = 4, n_lm: int = 3) -> CPM:
    rng = np.random.default_rng(seq)
    objs = [DetectedObject(1, *rng.uniform(-50, 50, 2), 4.0, 1.8, 0.3, 0.9) for _ in range(n_obj)]
    lms = [Landmark(*rng.uniform(-50, 50, 2)) for _ in range(n_lm)]
    return CPM(sender, seq, t, Pose2D(100.0, -20.0, 0.5), objects=objs, landmarks=lms)


def test_generate_and_load_fleet(fleet_dir):
    names = sorted(p.name for p in fleet_dir.iterdir())
    assert names == [f"device_{i}.{k}.pem" for i in range(3) for k in ("key", "pub")]
    assert stat.S_IMODE(os.stat(fleet_dir / "device_0.key.pem").st_mode) == 0o600
    keys = FleetKeys.load(fleet_dir, device_id=2)
    assert keys.can_sign and sorted(keys.public_keys) == [0, 1, 2]
    with pytest.raises(FileExistsError):
        generate_fleet(1, fleet_dir)


def test_raw_key_files_load(tmp_path):
    key = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization as ser
    (tmp_path / "device_7.key").write_bytes(key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw,
                                                               ser.NoEncryption()))
    os.chmod(tmp_path / "device_7.key", 0o600)
    (tmp_path / "device_7.pub").write_bytes(key.public_key().public_bytes(ser.Encoding.Raw,
                                                                         ser.PublicFormat.Raw))
    keys = FleetKeys.load(tmp_path, device_id=7)
    signed = keys.sign(wire.encode(_cpm(sender=7)))
    assert keys.verify(signed) == signed[:-SIGNATURE_BYTES]


def test_missing_private_key_is_a_clear_error(fleet_dir):
    with pytest.raises(NoPrivateKeyError, match="no private key for device 9"):
        FleetKeys.load(fleet_dir, device_id=9)
    listen_only = FleetKeys.load(fleet_dir)
    assert not listen_only.can_sign
    with pytest.raises(NoPrivateKeyError, match="cannot sign"):
        listen_only.sign(wire.encode(_cpm()))


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_flipping_any_byte_is_detected(fleet_dir, data):
    sender = FleetKeys.load(fleet_dir, device_id=1)
    signed = bytearray(sender.sign(wire.encode(_cpm())))
    pos = data.draw(st.integers(0, len(signed) - 1))
    signed[pos] ^= data.draw(st.integers(1, 255))
    guard = MessageGuard(FleetKeys.load(fleet_dir), clock_ns=lambda: T0)
    assert guard.admit(bytes(signed)) is None
    (reason, n), = guard.dropped.items()
    assert n == 1 and reason in {"bad_signature", "bad_magic", "unknown_version", "unknown_flags",
                                 "unknown_sender", "truncated", "bad_length", "unsigned"}


def test_each_drop_reason_is_counted(fleet_dir):
    keys = {i: FleetKeys.load(fleet_dir, device_id=i) for i in range(3)}
    guard = MessageGuard(FleetKeys.load(fleet_dir), GuardConfig(max_age_s=1.0, max_future_s=0.2,
                                                                 rate_hz=5.0, burst=3),
                         clock_ns=lambda: T0)
    sign = lambda cpm: keys[cpm.sender_id].sign(wire.encode(cpm))  # noqa: E731
    assert guard.admit(sign(_cpm(seq=10))) is not None
    assert guard.admit(sign(_cpm(seq=10))) is None                       # exact replay
    assert guard.admit(sign(_cpm(seq=9, t=T0 - 10**8))) is None           # older seq
    assert guard.admit(wire.encode(_cpm(seq=11))) is None                 # unsigned
    assert guard.admit(sign(_cpm(seq=12, t=T0 - 2 * 10**9))) is None      # stale
    assert guard.admit(sign(_cpm(seq=13, t=T0 + 10**9))) is None          # from the future
    later = sign(_cpm(seq=14))
    other = _cpm(sender=2, seq=1)
    other.pose = Pose2D(5e5, 0.0, 0.0)                                    # absurd pose
    assert guard.admit(sign(other)) is None
    forged = FleetKeys(2, keys[2].private_key, {}).sign(wire.encode(_cpm(sender=1, seq=15)))
    assert guard.admit(forged) is None                                    # device 2 signs as 1
    assert guard.admit(b"\xc9\x01") is None                               # malformed
    assert guard.admit(sign(_cpm(seq=16))[:1] + b"\x07" + sign(_cpm(seq=16))[2:]) is None
    stranger = FleetKeys(40, Ed25519PrivateKey.generate(), {})
    assert guard.admit(stranger.sign(wire.encode(_cpm(sender=40)))) is None
    assert guard.admit(later) is not None                               # still fine, seq 14
    assert guard.dropped == {"replay": 2, "unsigned": 1, "stale": 1, "future": 1, "bad_value": 1,
                             "bad_signature": 1, "truncated": 1, "unknown_version": 1,
                             "unknown_sender": 1}
    assert guard.stats() == {"received": 12, "accepted": 2, "restarts": 0, "dropped": guard.dropped}


def test_flood_is_rate_limited_per_sender(fleet_dir):
    now = [T0]
    k1, k2 = FleetKeys.load(fleet_dir, device_id=1), FleetKeys.load(fleet_dir, device_id=2)
    guard = MessageGuard(FleetKeys.load(fleet_dir), GuardConfig(rate_hz=10.0, burst=5),
                         clock_ns=lambda: now[0])
    accepted = [guard.admit(k1.sign(wire.encode(_cpm(1, s, now[0])))) is not None for s in range(50)]
    assert sum(accepted) == 5 and guard.dropped == {"flood": 45}
    assert guard.admit(k2.sign(wire.encode(_cpm(2, 1, now[0])))) is not None  # others unaffected
    now[0] += 10**9  # one second later: 10 tokens refilled, capped at the burst of 5
    accepted = [guard.admit(k1.sign(wire.encode(_cpm(1, 100 + s, now[0])))) is not None
                for s in range(8)]
    assert sum(accepted) == 5


def test_restarted_sender_resynchronises_but_replays_do_not(fleet_dir):
    now = [T0]
    k1 = FleetKeys.load(fleet_dir, device_id=1)
    guard = MessageGuard(FleetKeys.load(fleet_dir), GuardConfig(max_age_s=1.0), clock_ns=lambda: now[0])
    old = k1.sign(wire.encode(_cpm(1, 500, now[0])))
    assert guard.admit(old) is not None
    now[0] += 5 * 10**9
    reboot = k1.sign(wire.encode(_cpm(1, 0, now[0])))
    assert guard.admit(reboot) is not None and guard.restarts == 1
    assert guard.admit(reboot) is None and guard.dropped == {"replay": 1}
    assert guard.admit(old) is None and guard.dropped == {"replay": 1, "stale": 1}


def test_value_problem_finds_nan_and_absurd_values():
    cpm = _cpm()
    assert value_problem(cpm) is None
    cpm.objects[1].x = math.nan
    assert "object 1" in value_problem(cpm)
    cpm = _cpm()
    cpm.landmarks[0].x = 500.0
    assert "landmark 0" in value_problem(cpm, GuardConfig(max_range_m=200.0))
    cpm = _cpm()
    cpm.pose.heading = math.inf
    assert "pose" in value_problem(cpm)


def test_guard_config_validation():
    with pytest.raises(ValueError, match="max_age_s"):
        GuardConfig(max_age_s=math.nan)
    with pytest.raises(ValueError, match="burst"):
        GuardConfig(burst=0)


def test_security_error_carries_reason(fleet_dir):
    keys = FleetKeys.load(fleet_dir, device_id=0)
    with pytest.raises(SecurityError) as err:
        keys.verify(wire.encode(_cpm(sender=0)))
    assert err.value.reason == "unsigned"
