"""Point sources: the streak lands at y = G⁻¹(yv) with the colour of Eq. 8, overlaps add before
the sensor, datasets are deterministic with exact truth, and §5's cylindrical / double-axis
variants."""
from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.linescan.diffraction import (TRUTH_DTYPE, DiffractionCamera, DoubleAxisCamera, PointSource,
                                                  make_point_dataset, render_cylindrical, render_point_batch,
                                                  render_points, sample_point_sources, spectrum_names)

CAM = DiffractionCamera.paper_conditions().with_(Q=512)  # a shorter sensor keeps the tests quick
NOISELESS = CAM.with_(read_noise_e=0.0, photon_noise=False)


def _signal(scan: np.ndarray, cam: DiffractionCamera) -> np.ndarray:
    return scan.astype(float) - cam.dark_offset_dn


def test_streak_lands_at_g_inverse_of_yv_in_every_lit_roi():
    rng = np.random.default_rng(0)
    for yv in (500.0, 640.25, 811.7):
        src = PointSource(1100.0, yv, "daylight", 8.0)
        scan = render_points(NOISELESS, [src], rng)
        assert scan.shape == (CAM.rois, CAM.roi_rows, CAM.Q, 3) and scan.dtype == np.uint8
        profile = _signal(scan, NOISELESS).sum(axis=(0, 1, 3))  # (Q,)
        y = np.arange(CAM.Q)
        centroid = (profile * y).sum() / profile.sum()
        assert centroid == pytest.approx(float(CAM.G_inv(yv)), abs=0.1)
        assert np.count_nonzero(profile) <= 11  # a few pixels of PSF, nothing elsewhere


def test_streak_colour_is_eq8_for_each_rois_wavelength():
    src = PointSource(1000.0, 700.0, "white_led", 10.0)
    scan = _signal(render_points(NOISELESS, [src], np.random.default_rng(1)), NOISELESS)
    y = float(NOISELESS.G_inv(700.0))
    row = int(round(y))
    expected = NOISELESS.streak_electrons([1000.0], [y], [spectrum_names().index("white_led")], [10.0])[0]
    expected = expected * np.exp(-0.5 * ((row - y) / CAM.psf_sigma_px) ** 2) * CAM.gain_dn_per_e
    np.testing.assert_allclose(scan[:, :, row], np.clip(expected, None, 255 - CAM.dark_offset_dn), atol=0.51)
    # xv = 1000 lies in ROI 1's band only: ROI 0 sees < 420 nm, ROI 2 beyond the IR cut
    lam = CAM.wavelength_nm(1000.0, y, np.arange(3))
    assert lam[0] < 420 and 420 < lam[1] < 680 and lam[2] > 680
    assert scan[1].max() > 50 and scan[0].max() <= 1 and scan[2].max() <= 2
    # every ROI row holds the streak: the 8 × 9 patch is filled
    assert np.all(scan[1, :, row].max(axis=-1) > 20)


def test_overlapping_streaks_add_before_the_sensor():
    a = PointSource(600.0, 700.0, "white_led", 3.0)
    b = PointSource(1300.0, 701.0, "halogen", 3.0)
    rng = np.random.default_rng(2)
    both = _signal(render_points(NOISELESS, [a, b], rng), NOISELESS)
    alone = _signal(render_points(NOISELESS, [a], rng), NOISELESS) + _signal(render_points(NOISELESS, [b], rng),
                                                                             NOISELESS)
    assert np.abs(both - alone).max() <= 1.0  # linear up to rounding
    sat = render_points(CAM, [PointSource(1000.0, 700.0, "white_led", 60.0)] * 2, rng)
    assert sat.max() == 255  # overlaps that exceed the range clip


def test_darkness_and_noise():
    rng = np.random.default_rng(3)
    dark = render_points(CAM, [], rng)
    assert abs(dark.mean() - CAM.dark_offset_dn) < 0.05 and dark.max() <= CAM.dark_offset_dn + 3
    noisy = [render_points(CAM, [PointSource(1000.0, 700.0, "white_led", 5.0)], rng) for _ in range(2)]
    assert not np.array_equal(*noisy)  # photon + read noise differ per exposure


def test_point_dataset_is_deterministic_with_exact_truth():
    ds = make_point_dataset(CAM, 40, sources_per_scan=(1, 3), seed=5)
    again = make_point_dataset(CAM, 40, sources_per_scan=(1, 3), seed=5)
    other = make_point_dataset(CAM, 40, sources_per_scan=(1, 3), seed=6)
    assert ds.scans.shape == (40, CAM.rois, CAM.roi_rows, CAM.Q, 3) and ds.scans.dtype == np.uint8
    assert ds.truth.dtype == TRUTH_DTYPE and len(ds) == 40
    np.testing.assert_array_equal(ds.scans, again.scans)
    np.testing.assert_array_equal(ds.truth, again.truth)
    assert not np.array_equal(ds.scans, other.scans)
    counts = np.bincount(ds.truth["scan_index"], minlength=40)
    assert counts.min() >= 1 and counts.max() <= 3
    np.testing.assert_allclose(ds.truth["y_sensor"], CAM.G_inv(ds.truth["yv"].astype(float)), atol=1e-3)
    lo, hi = CAM.visible_yv_range()
    assert np.all((ds.truth["xv"] >= 0) & (ds.truth["xv"] < CAM.W))
    assert np.all((ds.truth["yv"] >= lo) & (ds.truth["yv"] <= hi))
    assert set(ds.truth["spectrum_id"]) <= set(range(len(spectrum_names())))
    # every source shows up at its row: a bright pixel within ±2 rows of y_sensor
    seen = []
    for t in ds.truth:
        y = int(round(float(t["y_sensor"])))
        window = ds.scans[t["scan_index"], :, :, max(0, y - 2):y + 3]
        seen.append(window.max() >= CAM.dark_offset_dn + 8)
    assert np.mean(seen) > 0.95


def test_dataset_matches_single_renders_without_noise():
    ds = make_point_dataset(NOISELESS, 6, sources_per_scan=(2, 2), seed=9)
    for k in range(6):
        rows = ds.truth[ds.truth["scan_index"] == k]
        sources = [PointSource(float(r["xv"]), float(r["yv"]), spectrum_names()[r["spectrum_id"]], float(r["flux"]))
                   for r in rows]
        np.testing.assert_array_equal(ds.scans[k], render_points(NOISELESS, sources, np.random.default_rng(0)))


def test_sample_point_sources_respects_the_field_of_view():
    rng = np.random.default_rng(4)
    sources = sample_point_sources(rng, 200, CAM, spectra=["warm_led"], flux_range=(2.0, 3.0))
    lo, hi = CAM.visible_yv_range()
    assert all(0 <= s.xv < CAM.W and lo <= s.yv <= hi and s.spectrum == "warm_led" and 2 <= s.flux <= 3
               for s in sources)


def test_cylindrical_sensor_sees_white_streaks_at_xv_whatever_yv():
    rng = np.random.default_rng(5)
    a = render_cylindrical(NOISELESS, [PointSource(400.3, 100.0, "white_led", 5.0)], rng)
    b = render_cylindrical(NOISELESS, [PointSource(400.3, 1400.0, "white_led", 5.0)], rng)
    assert a.shape == (CAM.W, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)  # no yv information
    assert int(a.sum(axis=1).argmax()) == 400
    assert np.all(a[400] > NOISELESS.dark_offset_dn + 5)  # white: every channel lit


def test_double_axis_camera_swaps_the_roles_of_xv_and_yv():
    rig = DoubleAxisCamera(NOISELESS)
    h = rig.horizontal
    assert (h.W, h.H_v) == (CAM.H_v, CAM.W)
    assert h.roi_xv_band(0)[0] <= 0 and h.roi_xv_band(h.rois - 1)[1] >= h.W  # bands re-tiled for 1542 px
    sources = [PointSource(900.0, 700.0, "daylight", 8.0), PointSource(1100.0, 700.0, "daylight", 8.0)]
    vertical, horizontal = rig.render(sources, np.random.default_rng(6))
    positions = rig.sensor_positions(sources)
    # same yv: one streak row on the vertical sensor; different xv: two on the horizontal one
    assert positions[0, 0] == positions[1, 0] and positions[0, 1] != positions[1, 1]
    profile = _signal(horizontal, h).sum(axis=(0, 1, 3))
    for p in positions[:, 1]:
        assert profile[int(round(p)) - 1:int(round(p)) + 2].sum() > 0.3 * profile.max()
    assert _signal(vertical, NOISELESS).sum(axis=(0, 1, 3)).argmax() == int(round(positions[0, 0]))


def test_render_point_batch_places_sources_in_their_scans():
    xv, yv = np.array([800.0, 1200.0]), np.array([600.0, 900.0])
    scans = render_point_batch(NOISELESS, np.array([1, 3]), xv, yv, np.array([0, 0]), np.array([8.0, 8.0]), 4,
                               np.random.default_rng(7))
    lit = (_signal(scans, NOISELESS) > 0).reshape(4, -1).any(axis=1)
    assert list(lit) == [False, True, False, True]


@pytest.mark.parametrize("call, match", [
    (lambda: PointSource(1.0, 2.0, "neon", 1.0), "spectrum"),
    (lambda: PointSource(1.0, float("nan"), "daylight", 1.0), "yv"),
    (lambda: PointSource(1.0, 2.0, "daylight", -1.0), "flux"),
    (lambda: make_point_dataset(CAM, 2, sources_per_scan=(3, 1)), "sources_per_scan"),
    (lambda: make_point_dataset(CAM, 2, flux_range=(5.0, 1.0)), "flux_range"),
    (lambda: make_point_dataset(CAM, 2, spectra=["neon"]), "spectra"),
    (lambda: sample_point_sources(np.random.default_rng(0), -1, CAM), "n must"),
    (lambda: render_point_batch(CAM, np.array([0, 1]), np.ones(2), np.ones(2), np.zeros(2, int), np.ones(1), 2,
                                np.random.default_rng(0)), "flux 1"),
    (lambda: render_point_batch(CAM, np.array([2]), np.ones(1), np.ones(1), np.zeros(1, int), np.ones(1), 2,
                                np.random.default_rng(0)), "scan_index"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
