"""Structured light and the conveyor: triangulation geometry, line truth against geometry (wall,
box, cylinder, defects), the rendered stripe where the truth says, the §6 calibration dataset."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from firmware_bridge.linescan.diffraction import (VISIBLE_BAND_NM, Box, ConveyorScene, Cylinder, Defect,
                                                  DiffractionCamera, HeightField, LightPlaneRig, Wall,
                                                  make_line_dataset, random_conveyor_scene, render_line_scan)

CAM = DiffractionCamera.paper_conditions().with_(Q=512)


def test_triangulate_and_project_round_trip():
    rig = LightPlaneRig(CAM, baseline_m=0.3, roll_rad=0.01).aimed_at(900.0, 0.8)
    rng = np.random.default_rng(0)
    xv, yv = rng.uniform(0, CAM.W, 500), rng.uniform(0, CAM.H_v, 500)
    X, Y, Z = rig.triangulate(xv, yv)
    front = np.isfinite(Z)  # rays that meet the plane in front of the camera
    assert front.mean() > 0.5 and np.all(Z[front] > 0)
    X, Y, Z, xv, yv = X[front], Y[front], Z[front], xv[front], yv[front]
    back = rig.project(X, Y, Z)
    np.testing.assert_allclose(back[0], xv, atol=1e-9)
    np.testing.assert_allclose(back[1], yv, atol=1e-9)
    n, c = rig.plane()
    np.testing.assert_allclose(n[0] * X + n[1] * Y + n[2] * Z, c, atol=1e-12)  # on the light plane
    assert np.linalg.norm(n) == pytest.approx(1.0)
    # the aimed plane passes through the point at 0.8 m on pixel (900, H_v/2)'s ray
    assert rig.triangulate(900.0, CAM.H_v / 2)[2] == pytest.approx(0.8)
    assert np.isnan(rig.project(1.0, 0.0, -1.0)[0])


def test_wall_truth_matches_geometry_and_the_stripe_is_where_the_truth_says():
    rig = dataclasses.replace(LightPlaneRig(CAM), roll_rad=0.02).aimed_at(1000.0, 1.2)
    scan, truth = render_line_scan(CAM, rig, Wall(depth_m=1.2), np.random.default_rng(1))
    assert scan.shape == (CAM.rois, CAM.roi_rows, CAM.Q, 3) and scan.dtype == np.uint8
    valid = np.isfinite(truth.xv)
    yv = CAM.G(np.arange(CAM.Q))
    assert np.array_equal(valid, (yv >= 0) & (yv < CAM.H_v))  # every row inside the helper image
    np.testing.assert_allclose(truth.depth[valid], 1.2, atol=1e-6)
    assert np.all(truth.object_id == -1) and not truth.defect.any()
    X, Y, Z = rig.triangulate(truth.xv[valid], yv[valid])
    np.testing.assert_allclose(Z, 1.2, atol=1e-5)  # truth xv triangulates back onto the wall
    slope = np.polyfit(yv[valid], truth.xv[valid], 1)[0]
    assert abs(slope) > 0.005  # the rolled plane draws a slanted line (yv = c·xv + d)
    # the ROI whose band holds each row's wavelength is the brightest
    lam = CAM.wavelength_nm(truth.xv[:, None], np.arange(CAM.Q)[:, None], np.arange(CAM.rois)[None])
    in_band = (lam > VISIBLE_BAND_NM[0] + 20) & (lam < VISIBLE_BAND_NM[1] - 20)
    brightness = scan.astype(float).sum(axis=(1, 3)).T  # (Q, R)
    rows = valid & in_band.any(axis=1)
    assert rows.sum() > 100
    assert np.all(in_band[rows, brightness[rows].argmax(axis=1)])


def test_a_height_field_scene_gives_its_depth_back():
    def ramp(X, Y):  # a wedge rising 10 cm over 20 cm of Y, flat elsewhere
        return np.clip((Y + 0.1) * 0.5, 0.0, 0.1)
    rig = LightPlaneRig(CAM).aimed_at(800.0, 1.0)
    _, truth = render_line_scan(CAM, rig, HeightField(ramp, base_depth_m=1.0, max_height_m=0.12),
                                np.random.default_rng(6))
    valid = np.isfinite(truth.xv)
    yv = CAM.G(np.arange(CAM.Q))
    X, Y, Z = rig.triangulate(truth.xv[valid], yv[valid])
    np.testing.assert_allclose(Z, truth.depth[valid], atol=1e-6)
    np.testing.assert_allclose(truth.depth[valid], 1.0 - ramp(X, Y), atol=2e-4)
    assert (truth.object_id[valid] == 0).any() and (truth.object_id[valid] == -1).any()


def test_albedo_scales_the_stripe_and_ambient_lifts_the_floor():
    rig = LightPlaneRig(CAM).aimed_at(1000.0, 1.0)
    dark_wall = render_line_scan(CAM, rig, Wall(), np.random.default_rng(2), albedo=0.2, ambient_e_per_us=0.0)[0]
    bright_wall = render_line_scan(CAM, rig, Wall(), np.random.default_rng(2), albedo=0.8,
                                   ambient_e_per_us=0.0)[0]
    signal = lambda s: (s.astype(float) - CAM.dark_offset_dn).clip(0).sum()  # noqa: E731
    assert signal(bright_wall) == pytest.approx(4 * signal(dark_wall), rel=0.05)
    lifted = render_line_scan(CAM, rig, Wall(), np.random.default_rng(2), albedo=0.0, ambient_e_per_us=0.5)[0]
    assert np.all(lifted.astype(float).mean(axis=(0, 1, 2)) > CAM.dark_offset_dn + 2)


def _single(shape, speed=0.5) -> ConveyorScene:
    return ConveyorScene((shape,), speed_m_s=speed, camera=CAM)


def _scan_over(scene: ConveyorScene, u_m: float, height_m: float) -> int:
    return int(round(float(scene.scan_index_under_plane(u_m, height_m))))


def test_box_depth_and_disparity_match_the_geometry():
    box = Box(u_m=0.3, v_m=-0.05, length_m=0.1, width_m=0.1, height_m=0.08, albedo=0.9)
    scene = _single(box)
    k = _scan_over(scene, 0.35, 0.08)
    scan, truth = scene.scan(k, np.random.default_rng(3))
    on_box = truth.object_id == 0
    assert on_box.sum() > 20
    np.testing.assert_allclose(truth.depth[on_box], scene.belt_depth_m - 0.08, atol=1e-6)
    belt = (truth.object_id == -1) & np.isfinite(truth.xv)
    np.testing.assert_allclose(truth.depth[belt], scene.belt_depth_m, atol=1e-6)
    yv = CAM.G(np.arange(CAM.Q))
    Y = (yv - CAM.H_v / 2) / CAM.f_px * truth.depth
    assert np.all((Y[on_box] >= -0.05) & (Y[on_box] < 0.05))  # the box's rows are its width
    _, _, Z = scene.rig.triangulate(truth.xv, yv)  # decoding xv + triangulating gives the depth back
    np.testing.assert_allclose(Z[np.isfinite(truth.xv)], truth.depth[np.isfinite(truth.xv)], atol=1e-6)
    assert np.nanmean(truth.xv[on_box]) > np.nanmean(truth.xv[belt]) + 100  # height shifts the stripe
    # before the box arrives the plane lies on the empty belt
    _, empty = scene.scan(0, np.random.default_rng(3))
    assert np.all(empty.object_id == -1)


def test_cylinder_profile_is_round():
    cyl = Cylinder(u_m=0.2, v_m=0.0, length_m=0.15, radius_m=0.05, albedo=0.7)
    scene = _single(cyl)
    _, truth = scene.scan(_scan_over(scene, 0.27, 0.1), np.random.default_rng(4))
    on = truth.object_id == 0
    yv = CAM.G(np.arange(CAM.Q))
    Y = (yv - CAM.H_v / 2) / CAM.f_px * truth.depth
    height = scene.belt_depth_m - truth.depth[on]
    expected = 0.05 + np.sqrt(np.clip(0.05 ** 2 - Y[on] ** 2, 0, None))
    assert on.sum() > 20
    np.testing.assert_allclose(height, expected, atol=2e-3)  # 48 samples along each row, linear refinement
    assert height.max() == pytest.approx(0.1, abs=2e-3)


@pytest.mark.parametrize("defect, u, height", [
    (Defect("dent", u_m=0.05, v_m=0.05, size_m=0.03, depth_m=0.03), 0.35, 0.05),
    (Defect("notch", u_m=0.05, v_m=0.0, size_m=0.06, depth_m=0.02), 0.35, 0.06),
    (Defect("missing_corner", u_m=0.1, v_m=0.0, size_m=0.04, depth_m=0.03), 0.39, 0.05),
])
def test_defects_lower_the_surface_and_are_flagged(defect, u, height):
    box = Box(u_m=0.3, v_m=0.0, length_m=0.1, width_m=0.1, height_m=0.08, defects=(defect,))
    scene = _single(box)
    _, truth = scene.scan(_scan_over(scene, u, height), np.random.default_rng(5))  # the plane on the flaw
    flagged = truth.defect
    assert flagged.any() and np.all(truth.object_id[flagged] == 0)
    assert np.all(truth.depth[flagged] > scene.belt_depth_m - 0.08 + 1e-4)  # lower than the top
    assert np.nanmax(truth.depth[flagged]) <= scene.belt_depth_m - 0.08 + defect.depth_m + 1e-3
    intact = (truth.object_id == 0) & ~flagged  # the top, or the end face the plane slices
    assert np.all(truth.depth[intact] >= scene.belt_depth_m - 0.08 - 1e-3)


def test_belt_clock_and_encoder():
    scene = random_conveyor_scene(3, camera=CAM, speed_m_s=0.5, line_rate_hz=1000.0)
    assert scene.position_m(1000) == pytest.approx(0.5)
    assert scene.position_from_encoder(40000) == pytest.approx(1.0)
    assert scene.scan_index_at(0.25) == pytest.approx(500.0)
    # the plane meets the belt at xv = 0.3·W: belt point u is under it once it has travelled there
    x_belt = scene.rig.triangulate(0.3 * CAM.W, CAM.H_v / 2)[0]
    assert scene.scan_index_under_plane(0.2) == pytest.approx(float(scene.scan_index_at(0.2 - x_belt)))
    assert scene.scan_index_under_plane(0.2, 0.1) < scene.scan_index_under_plane(0.2)  # a tall point arrives first
    again = random_conveyor_scene(3, camera=CAM, speed_m_s=0.5, line_rate_hz=1000.0)
    assert again.objects == scene.objects and len(scene.objects) == 6
    flawed = random_conveyor_scene(4, n_objects=20, defect_rate=1.0, camera=CAM)
    assert all(o.defects for o in flawed.objects)
    u = [o.u_extent for o in flawed.objects]
    assert all(a[1] < b[0] for a, b in zip(u, u[1:]))  # in a row, not overlapping


def test_a_pass_over_a_random_scene_sees_every_object():
    scene = random_conveyor_scene(7, n_objects=3, camera=CAM, speed_m_s=2.0, line_rate_hz=200.0)
    end = scene.objects[-1].u_extent[1] + 0.3
    seen = set()
    for k in range(0, int(scene.scan_index_at(end)), 2):
        _, truth = scene.scan(k, np.random.default_rng(k))
        seen |= set(truth.object_id[truth.object_id >= 0].tolist())
    assert seen == {0, 1, 2}


def test_line_dataset_is_the_wall_calibration_sweep():
    ds = make_line_dataset(CAM, 24, seed=3, albedo_range=(0.2, 1.0))
    assert ds.scans.shape == (24, CAM.rois, CAM.roi_rows, CAM.Q, 3) and ds.scans.dtype == np.uint8
    assert ds.xv.shape == ds.depth.shape == (24, CAM.Q) and ds.xv.dtype == np.float32
    finite = np.isfinite(ds.xv)
    assert finite.mean() > 0.8
    np.testing.assert_allclose(ds.depth[finite], 1.0, atol=1e-5)
    assert np.all(np.isnan(ds.depth[~finite]))
    centre = np.array([row[np.isfinite(row)].mean() for row in ds.xv if np.isfinite(row).any()])
    assert centre.min() < 0.25 * CAM.W and centre.max() > 0.75 * CAM.W  # positions spread over xv
    assert np.all((ds.albedo >= 0.2) & (ds.albedo <= 1.0))
    again = make_line_dataset(CAM, 24, seed=3)
    np.testing.assert_array_equal(ds.scans, again.scans)
    np.testing.assert_array_equal(ds.xv, again.xv)


def test_line_dataset_objects_variant_has_objects():
    ds = make_line_dataset(CAM, 12, seed=1, scene="objects", depth_m=0.6)
    assert (ds.object_id >= 0).any()
    assert np.nanmin(ds.depth) < 0.6 - 0.01


@pytest.mark.parametrize("call, match", [
    (lambda: LightPlaneRig(CAM, plane_angle_rad=2.0), "plane_angle_rad"),
    (lambda: LightPlaneRig(CAM, baseline_m=math.inf), "baseline_m"),
    (lambda: Wall(albedo=1.5), "albedo"),
    (lambda: Box(0.0, 0.0, -0.1, 0.1, 0.1), "length_m"),
    (lambda: Cylinder(0.0, 0.0, 0.1, 0.0), "radius_m"),
    (lambda: Defect("crack", 0.0, 0.0, 0.01, 0.01), "kind"),
    (lambda: ConveyorScene((Wall(),), camera=CAM), "objects"),
    (lambda: ConveyorScene((Box(0, 0, 0.1, 0.1, 0.55),), camera=CAM), "reaches the camera"),
    (lambda: make_line_dataset(CAM, 2, scene="moon"), "scene"),
    (lambda: make_line_dataset(CAM, 2, albedo_range=(0.5, 0.1)), "albedo_range"),
    (lambda: render_line_scan(CAM, LightPlaneRig(CAM), Wall(), np.random.default_rng(0), albedo=2.0), "albedo"),
    (lambda: random_conveyor_scene(0, defect_rate=2.0), "defect_rate"),
    (lambda: _single(Box(0, 0, 0.1, 0.1, 0.1)).scan(-1, np.random.default_rng(0)), "scan index"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
