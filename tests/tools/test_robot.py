"""The robot example end to end (Viky camera + simulated UDP radar → two engines → fusion), its
fault marks, SIGINT shutdown, and the time fusion's pairing rules."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tools.robot import CameraResult, RadarResult, TimeFuser, main, radar_features, train_radar_bundle

MS = 1_000_000


# -- fusion rules (no sensors) ----------------------------------------------------------------
def _cam(t_ms: float, frame_id: int = 0) -> CameraResult:
    return CameraResult(int(t_ms * MS), frame_id, label=3, score=0.9)


def _radar(t_ms: float, n: int, marks=()) -> RadarResult:
    return RadarResult(int(t_ms * MS), n, range_m=5.0, cfar_range_m=5.1, truth_m=5.0, marks=list(marks))


def test_fusion_pairs_nearest_in_window_and_counts_the_rest():
    f = TimeFuser(window_ms=20, max_wait_ms=100)
    for n, t in enumerate((0, 50, 100, 150)):
        f.add_radar(_radar(t, n, marks=["radar_recovered"] if n == 2 else []))
    f.add_camera(_cam(45, 1), now_ns=60 * MS)     # nearest: 50 (5 ms)
    f.add_camera(_cam(75, 2), now_ns=90 * MS)     # 50 and 100 are 25 ms away: outside the window
    f.add_camera(_cam(108, 3), now_ns=120 * MS)   # 100 (8 ms), carries the radar's mark
    assert f.poll(now_ns=130 * MS) == 3           # radar has reported past every window
    assert [r["camera"]["frame_id"] for r in f.out] == [1, 2, 3]
    assert [r["radar"]["frame_number"] if r["radar"] else None for r in f.out] == [1, None, 2]
    assert f.out[0]["dt_ms"] == pytest.approx(5.0) and f.out[2]["dt_ms"] == pytest.approx(-8.0)
    assert f.out[1]["marks"] == ["radar_missing"] and f.out[2]["marks"] == ["radar_recovered"]
    f.add_radar(_radar(60, 9))                    # arrives after every camera result it could pair with
    f.poll(now_ns=200 * MS, flush=True)
    c = f.counts
    assert (c["fused"], c["matched"], c["radar_missing"], c["radar_late"]) == (3, 2, 1, 1)
    assert c["radar_unused"] == 2                 # radar at 0 and 150 ms were never chosen


def test_fusion_waits_for_radar_then_gives_up_after_max_wait():
    f = TimeFuser(window_ms=20, max_wait_ms=100)
    f.add_camera(_cam(0), now_ns=10 * MS)
    f.add_radar(_radar(15, 0))
    assert f.poll(now_ns=30 * MS) == 0            # radar not past the window yet, wait not over
    assert f.poll(now_ns=121 * MS) == 1           # 0 + 20 + 100 ms: decided with what there is
    assert f.out[0]["radar"]["frame_number"] == 0
    f.add_camera(_cam(200), now_ns=400 * MS)      # arrives after its wait ran out
    f.poll(now_ns=400 * MS)
    assert f.counts["camera_late"] == 1 and f.out[1]["marks"] == ["late", "radar_missing"]


def test_radar_features_standardise_and_refuse_bad_shapes():
    x = radar_features(np.linspace(10, 40, 128))
    assert x.shape == (1, 128) and x.dtype == np.float32
    assert abs(float(x.mean())) < 1e-5 and float(x.std()) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match=r"range profile.*\(2, 64\)"):
        radar_features(np.zeros((2, 64)))


# -- end to end with the Viky camera and the UDP radar ----------------------------------------
@pytest.fixture(scope="module")
def viky() -> str:
    """The Viky GenTL producer of the genicam wheel (the camera the program opens)."""
    pytest.importorskip("harvesters.core", reason="harvesters is not installed: the genicam:// camera cannot open")
    genicam = pytest.importorskip("genicam", reason="genicam is not installed: no Viky virtual camera")
    path = os.path.join(os.path.dirname(genicam.__file__), "viky.cti")
    if not os.path.exists(path):
        pytest.skip(f"the genicam wheel has no Viky producer at {path}")
    return path


@pytest.fixture(scope="module")
def radar_bundle(tmp_path_factory):
    """A range model trained on few profiles (the program's default trains on more)."""
    return train_radar_bundle(tmp_path_factory.mktemp("robot") / "radar.prism", samples=300, epochs=200)


def test_radar_range_model_learns_range(radar_bundle):
    meta = json.loads((radar_bundle / "manifest.json").read_text())["metadata"]
    assert meta["heldout_rmse_m"] < 1.0  # ranges span 1–11 m: guessing the mean gives ~2.9 m


def test_end_to_end_with_faults_marks_the_affected_outputs(viky, tiny_bundle, radar_bundle, tmp_path):
    out = tmp_path / "robot"
    assert main(["--seconds", "6", "--out", str(out), "--cti", viky, "--camera-bundle", str(tiny_bundle.path),
                 "--radar-bundle", str(radar_bundle), "--fault", "both"]) == 0
    s = json.loads((out / "summary.json").read_text())
    fused = [json.loads(line) for line in (out / "fused.jsonl").read_text().splitlines()]
    assert (out / "timeline.png").stat().st_size > 10_000
    cam, radar, fusion = s["camera"], s["radar"], s["fusion"]
    pipe = cam["pipeline"]
    # every camera frame accounted for; every delivered one fused exactly once
    assert pipe["accounted"] and pipe["delivered"] > 20
    assert fusion["camera_results"] == fusion["fused"] == pipe["delivered"] == len(fused)
    assert cam["drops_seen_by_callback"] == pipe["dropped"]
    assert fusion["matched"] + fusion["radar_missing"] == fusion["fused"]
    assert fusion["matched"] > fusion["fused"] // 2
    assert all(abs(r["dt_ms"]) <= s["window_ms"] for r in fused if r["radar"] is not None)
    # engines: stats agree with what went through them
    assert cam["engine"]["calls"] == pipe["stages"]["infer"]["frames"] and cam["engine"]["errors"] == 0
    assert radar["engine"]["calls"] == radar["frames"] == fusion["radar_results"]
    # radar fault: 1 s of packets lost, counted by the source and seen as a gap, outputs marked
    assert radar["lost_by_simulator"] == 20
    assert radar["lost_frames_seen"] == radar["source"]["missing"] == 20
    assert fusion["marks"].get("radar_missing", 0) >= 5
    assert any(e["event"] == "radar_recovered" and e["lost_frames"] == 20 for e in s["events"])
    # camera fault: acquisition process killed, device reopened, the next outputs marked
    assert any(e["event"] == "camera_fault_injected" and e["killed"] for e in s["events"])
    assert pipe["source"]["reconnects"] == 1
    assert any("camera_recovered" in r["marks"] for r in fused)
    # the range model tracks the simulated target (sweep 2–10 m) about as trained
    assert radar["range_rmse_m"]["model"] < 1.0 and radar["range_rmse_m"]["cfar"] < 0.3


def test_sigint_stops_the_program_and_still_writes_the_summary(viky, tiny_bundle, radar_bundle, tmp_path):
    out = tmp_path / "robot"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.robot", "--seconds", "120", "--out", str(out), "--cti", viky,
         "--camera-bundle", str(tiny_bundle.path), "--radar-bundle", str(radar_bundle)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    try:
        for line in proc.stdout:  # the first live report: both sensors and the loop are running
            if line.startswith("[") and " s] camera " in line:
                break
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    assert time.monotonic() - t0 < 30
    s = json.loads((out / "summary.json").read_text())
    assert s["interrupted"] and s["wall_s"] < 60
    assert s["camera"]["pipeline"]["accounted"]
    assert s["camera"]["engine"]["in_flight"] == 0 and s["radar"]["engine"]["in_flight"] == 0
