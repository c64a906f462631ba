"""The simulated world: deterministic, sensors see what they should, pose noise as specified."""
from __future__ import annotations

import numpy as np
import pytest

from sdk.errors import InputError
from sdk.runtime.coop.consensus import se2_apply
from sdk.runtime.coop.messages import ObjectClass
from sdk.runtime.coop.world import NOISE_STD_XY_M, World, WorldConfig, boxes_to_local, to_local


def _snapshots(seed: int, frames: int, **kw):
    world = World(WorldConfig(**kw), seed=seed)
    return world, [world.step() for _ in range(frames)]


def test_same_seed_same_world():
    _, a = _snapshots(3, 3, robots=2)
    _, b = _snapshots(3, 3, robots=2)
    for sa, sb in zip(a, b):
        np.testing.assert_array_equal(sa.true_poses, sb.true_poses)
        assert [c.pose for c in sa.cpms] == [c.pose for c in sb.cpms]
        assert [c.objects for c in sa.cpms] == [c.objects for c in sb.cpms]
        assert [c.landmarks for c in sa.cpms] == [c.landmarks for c in sb.cpms]
    _, c = _snapshots(4, 1, robots=2)
    assert not np.array_equal(c[0].true_poses, a[0].true_poses)


def test_noise_scale_changes_only_reported_poses():
    _, clean = _snapshots(5, 2, robots=3, pose_noise_scale=0.0)
    _, noisy = _snapshots(5, 2, robots=3, pose_noise_scale=1.0)
    for sc, sn in zip(clean, noisy):
        np.testing.assert_array_equal(sc.true_poses, sn.true_poses)
        assert [c.objects for c in sc.cpms] == [c.objects for c in sn.cpms]
        for r, c in enumerate(sc.cpms):
            np.testing.assert_allclose(c.pose.as_array(), sc.true_poses[r], atol=1e-9)


def test_pose_noise_matches_the_paper():
    world = World(WorldConfig(robots=5, objects=0, poles=0, interior_walls=0, radar_heads_deg=()), seed=1)
    errs = []
    for _ in range(60):
        s = world.step()
        for r, c in enumerate(s.cpms):
            d = c.pose.as_array() - s.true_poses[r]
            errs.append([d[0], d[1], np.angle(np.exp(1j * d[2]))])
    std = np.std(errs, axis=0)
    assert std[0] == pytest.approx(NOISE_STD_XY_M, rel=0.2)
    assert std[1] == pytest.approx(NOISE_STD_XY_M, rel=0.2)
    assert np.degrees(std[2]) == pytest.approx(4.0, rel=0.2)


def test_radar_landmarks_lie_on_poles_or_objects():
    """The FMCW path (range FFT, CFAR, angle FFT) puts each detection near a real reflector."""
    world, snaps = _snapshots(2, 2, robots=2)
    s = snaps[-1]
    for r, cpm in enumerate(s.cpms):
        assert len(cpm.landmarks) >= 5
        pts = se2_apply(s.true_poses[r], np.array([[lm.x, lm.y] for lm in cpm.landmarks]))
        refl = np.concatenate([world.poles, s.gt_boxes[:, :2]])
        d = np.hypot(pts[:, None, 0] - refl[None, :, 0], pts[:, None, 1] - refl[None, :, 1]).min(axis=1)
        assert np.median(d) < 0.3
        assert all(0.0 <= lm.strength <= 1.0 for lm in cpm.landmarks)


def test_camera_respects_fov_range_and_walls():
    cfg = WorldConfig(robots=2, camera_false_positives=0.0)
    world, snaps = _snapshots(8, 4, **cfg.__dict__)
    for s in snaps:
        for r, cpm in enumerate(s.cpms):
            for o in cpm.objects:
                assert np.hypot(o.x, o.y) <= cfg.camera_range_m + 1.0
                assert abs(np.degrees(np.arctan2(o.y, o.x))) <= cfg.camera_fov_deg / 2 + 5
                assert o.cls in ObjectClass.NAMES
    # a wall between the robot and everything: nothing is seen
    world = World(WorldConfig(robots=1, camera_false_positives=0.0), seed=0)
    world.robot_pose[0] = (20.0, 20.0, 0.0)
    world.walls = (np.array([[21.0, -100.0]]), np.array([[21.0, 100.0]]))
    boxes, cls, owner = world._all_boxes()
    boxes[:, :2] = (25.0, 20.0)
    assert world._camera(0, boxes, cls, owner) == []


def test_ground_truth_in_ego_frame():
    _, snaps = _snapshots(1, 1, robots=3)
    s = snaps[0]
    gt, cls = s.ground_truth(0, 20.0)
    assert len(gt) == len(cls) > 0
    assert np.all(np.hypot(gt[:, 0], gt[:, 1]) <= 20.0)
    # robot 1 appears in robot 0's ground truth at its relative position
    rel = to_local(s.true_poses[1:2, :2], s.true_poses[0])[0]
    if np.hypot(*rel) <= 20.0:
        assert np.min(np.hypot(gt[:, 0] - rel[0], gt[:, 1] - rel[1])) < 1e-9
    np.testing.assert_allclose(boxes_to_local(s.gt_boxes, np.zeros(3)), s.gt_boxes)


def test_faulty_device_bias_and_bad_config():
    _, snaps = _snapshots(0, 1, robots=2, pose_noise_scale=0.0, faulty=((1, 3.0, 0.0, 0.0),))
    s = snaps[0]
    assert s.cpms[1].pose.x - s.true_poses[1, 0] == pytest.approx(3.0)
    with pytest.raises(InputError, match="faulty"):
        World(WorldConfig(robots=2, faulty=((5, 1.0, 0.0, 0.0),)))
    with pytest.raises(InputError, match="robots"):
        World(WorldConfig(robots=0))
