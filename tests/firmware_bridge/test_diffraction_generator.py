"""DiffractionLineGenerator inside linescan+sim: frames carry the simulator's lines (ROIs side by
side, each ROI's rows averaged), reproducible per line id, with ground truth per line."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import firmware_bridge as fb
from firmware_bridge.linescan import split_rois
from firmware_bridge.linescan.diffraction import (DiffractionCamera, DiffractionLineGenerator, LightPlaneRig, Wall,
                                                  random_conveyor_scene)

CAM = DiffractionCamera.paper_conditions().with_(Q=1024)  # 3 × 1024 fits the sim's 4096-px sensor


@pytest.fixture(autouse=True)
def no_threads_left():
    yield
    assert not [t for t in threading.enumerate() if t.name == "prism-linescan-sim"]


@pytest.fixture(scope="module")
def conveyor():
    scene = random_conveyor_scene(2, n_objects=3, camera=CAM, speed_m_s=0.5, line_rate_hz=1743.0, start_m=0.0)
    return scene, DiffractionLineGenerator(CAM, scene.rig, scene, seed=11)


def test_generator_inside_the_linescan_sim_source(conveyor):
    scene, gen = conveyor
    uri = f"linescan+sim://?rate=400&rois={CAM.rois}&width={gen.width}&lines_per_frame=32"
    with fb.open_source(uri, line_generator=gen) as src:
        frames = [src.read(timeout=5) for _ in range(2)]
        stats = src.stats
    assert stats.lines_dropped == 0
    for frame in frames:
        assert frame.data.shape == (32, 3 * 1024, 3) and frame.data.dtype == np.uint8
        rois = split_rois(frame)
        assert [r.shape[1] for r in rois] == [1024] * 3
        ids = frame.meta["line_ids"]
        expected = gen(ids, frame.meta["line_timestamps_ns"], gen.width)
        np.testing.assert_array_equal(frame.data, expected)  # the same lines, whatever the batching
    k = int(frames[1].meta["line_ids"][7])
    full = gen.render(k)
    assert full.shape == (CAM.rois, CAM.roi_rows, CAM.Q, 3)
    averaged = np.rint(full.mean(axis=1)).astype(np.uint8)  # (R, Q, 3): each ROI's rows averaged
    np.testing.assert_array_equal(frames[1].data[7], averaged.reshape(-1, 3))
    truth = gen.truth(k)
    assert truth.xv.shape == (CAM.Q,) and np.isfinite(truth.xv).sum() > 0.5 * CAM.Q


def test_each_line_shows_the_stripe_where_its_truth_says(conveyor):
    scene, gen = conveyor
    for k in (0, 1500, 3000):
        row = gen(np.array([k]), np.array([0]), gen.width)[0].reshape(CAM.rois, CAM.Q, 3).astype(float)
        truth = gen.truth(k)
        lam = CAM.wavelength_nm(truth.xv[:, None], np.arange(CAM.Q)[:, None], np.arange(CAM.rois)[None])
        # rows whose lit point sits well inside one ROI's band (and on something bright enough)
        inside = (lam > 440) & (lam < 650)
        bright = row.sum(axis=-1).T  # (Q, R)
        rows = np.nonzero(inside.any(axis=1))[0]
        assert len(rows) > 100
        assert np.mean(inside[rows, bright[rows].argmax(axis=1)]) > 0.95


def test_lines_are_reproducible_per_id_and_differ_between_ids(conveyor):
    _, gen = conveyor
    ids = np.arange(100, 110)
    batch = gen(ids, np.zeros(10, np.int64), gen.width)
    singles = np.concatenate([gen(ids[k:k + 1], np.zeros(1, np.int64), gen.width) for k in range(10)])
    np.testing.assert_array_equal(batch, singles)
    assert not np.array_equal(batch[0], batch[1])  # fresh noise per line
    other = DiffractionLineGenerator(CAM, gen.rig, gen.scene, seed=12)
    assert not np.array_equal(other(ids, np.zeros(10, np.int64), gen.width), batch)


def test_prerendered_lines_are_the_same_lines(conveyor):
    scene, _ = conveyor
    fresh = DiffractionLineGenerator(CAM, scene.rig, scene, seed=11)
    expected = fresh(np.arange(40, 60), np.zeros(20, np.int64), fresh.width)
    fresh.prerender(45, 10)
    np.testing.assert_array_equal(fresh(np.arange(40, 60), np.zeros(20, np.int64), fresh.width), expected)
    np.testing.assert_array_equal(fresh(np.arange(46, 50), np.zeros(4, np.int64), fresh.width), expected[6:10])
    with pytest.raises(ValueError, match="prerender"):
        fresh.prerender(-1, 5)


def test_truth_follows_the_belt(conveyor):
    scene, gen = conveyor
    ids = range(0, int(scene.scan_index_at(scene.objects[-1].u_extent[1] + 0.4)), 25)
    seen = set()
    for k in ids:
        t = gen.truth(k)
        seen |= set(t.object_id[t.object_id >= 0].tolist())
        on = t.object_id >= 0
        assert np.all(t.depth[on] < scene.belt_depth_m)
    assert seen == set(range(len(scene.objects)))


def test_a_static_wall_gives_the_same_stripe_with_fresh_noise():
    rig = LightPlaneRig(CAM).aimed_at(1000.0, 1.0)
    gen = DiffractionLineGenerator(CAM, rig, Wall(), seed=0)
    rows = gen(np.arange(5), np.zeros(5, np.int64), gen.width).astype(float) - CAM.dark_offset_dn
    truth = [gen.truth(k) for k in range(5)]
    np.testing.assert_array_equal(truth[0].xv, truth[4].xv)
    totals = rows.sum(axis=(1, 2))
    assert np.ptp(totals) < 0.01 * totals.mean()  # same stripe ...
    assert not np.array_equal(rows[0], rows[1])  # ... different noise


def test_bad_input_raises(conveyor):
    scene, gen = conveyor
    with pytest.raises(ValueError, match="width 3000"):
        gen(np.arange(2), np.zeros(2, np.int64), 3000)
    with pytest.raises(ValueError, match="timestamps"):
        gen(np.arange(2), np.zeros(3, np.int64), gen.width)
    with pytest.raises(ValueError, match="line_ids"):
        gen.truth(-1)
    with pytest.raises(ValueError, match="multiple of 8"):
        odd = CAM.with_(Q=1020)
        DiffractionLineGenerator(odd, LightPlaneRig(odd), Wall())
    with pytest.raises(ValueError, match="rig.camera"):
        DiffractionLineGenerator(CAM, LightPlaneRig(CAM.with_(Q=512)), Wall())
