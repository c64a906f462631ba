"""gige+aravis:// against Aravis's GigE Vision fake camera on loopback: the real GVCP/GVSP protocol
over UDP, as a second peer next to Viky. Skipped where Aravis's bindings are not installed
(apt-get install gir1.2-aravis-0.8 python3-gi)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import firmware_bridge as fb
from firmware_bridge.gige.aravis import available
from firmware_bridge.gige.source import _gap
from firmware_bridge.recording import Recorder

pytestmark = pytest.mark.skipif(not available(), reason="Aravis GObject bindings are not installed")
URI = "gige+aravis://127.0.0.1?width=64&height=48&fps=100"


@pytest.fixture(scope="module")
def fake_camera():
    proc = subprocess.Popen([sys.executable, "-m", "firmware_bridge.gige.fake", "--seconds", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            pytest.skip(f"the Aravis fake camera did not start: {line!r}")
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_frames_over_gige_vision_from_the_fake_camera(fake_camera):
    with fb.open_source(URI) as cam:
        frames = [cam.read(timeout=3) for _ in range(6)]
        info, stats = cam.info, cam.stats
    assert info["model"] == "Fake" and info["transport"].startswith("GigE Vision")
    assert all(f.data.shape == (48, 64) and f.pixel_format == "Mono8" for f in frames)
    ids = [f.frame_id for f in frames]
    assert all(_gap(a, b) == 0 for a, b in zip(ids, ids[1:])), ids
    # The fake's pattern moves one grey level per frame.
    firsts = [int(f.data[0, 0]) for f in frames]
    assert all((b - a) % 256 == 1 for a, b in zip(firsts, firsts[1:])), firsts
    dts = np.diff([f.device_timestamp_ns for f in frames]) / 1e6
    assert (dts > 0).all() and 5 < np.median(dts) < 15  # 100 fps
    assert stats.delivered == 6 and stats.missing == 0 and stats.errors == 0


def test_recorded_gige_frames_replay_identically(fake_camera, tmp_path):
    with fb.open_source(URI) as cam, Recorder(tmp_path / "gige", source=cam) as rec:
        originals = [cam.read(timeout=3) for _ in range(5)]
        for f in originals:
            rec.write(f)
    with fb.open_source(f"file://{tmp_path / 'gige'}?rate=max") as replay:
        replayed = list(replay)
    assert [f.frame_id for f in replayed] == [f.frame_id for f in originals]
    for r, o in zip(replayed, originals):
        np.testing.assert_array_equal(r.data, o.data)
        assert r.device_timestamp_ns == o.device_timestamp_ns


def test_an_unknown_camera_lists_the_ones_found(fake_camera):
    with pytest.raises(fb.DeviceNotFound) as e:
        fb.open_source("gige+aravis://NoSuchCamera")
    assert any(d["model"] == "Fake" for d in e.value.available)


def test_block_id_gaps_wrap_at_65535():
    assert _gap(None, 7) == 0 and _gap(7, 8) == 0 and _gap(7, 10) == 2
    assert _gap(65535, 1) == 0 and _gap(65534, 2) == 2
