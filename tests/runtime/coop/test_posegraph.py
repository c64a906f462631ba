"""Robust pose graph: cycles made consistent, outlier edges and devices down-weighted."""
from __future__ import annotations

import numpy as np
import pytest

from sdk.errors import InputError
from sdk.runtime.coop.consensus import se2_compose, se2_inverse, wrap_angle
from sdk.runtime.coop.posegraph import Edge, consistent_relative_poses, solve_pose_graph
from sdk.runtime.coop.world import World, WorldConfig

TRUTH = {0: np.array([0.0, 0.0, 0.0]), 1: np.array([8.0, 1.0, 0.5]), 2: np.array([3.0, 7.0, -1.0])}
PRIOR_COV = np.diag([0.16, 0.16, np.radians(4.0) ** 2])
EDGE_INFO = np.diag([400.0, 400.0, 4000.0])   # 5 cm, ~0.9 deg


def _rel(i, j, poses=TRUTH):
    return se2_compose(se2_inverse(poses[i]), poses[j])


def _priors(rng):
    noise = {d: rng.normal(0, [0.4, 0.4, np.radians(4.0)]) for d in TRUTH}
    return {d: (TRUTH[d] + noise[d], PRIOR_COV) for d in TRUTH}


def _err(a, b):
    return np.hypot(*(a[:2] - b[:2])), abs(np.degrees(wrap_angle(a[2] - b[2])))


def test_three_cycle_becomes_consistent(rng):
    """Slightly inconsistent pairwise measurements (each with its own error): the solved poses
    close the cycle and every relative pose lands near the truth, far better than the priors."""
    edges = [Edge(i, j, _rel(i, j) + rng.normal(0, [0.05, 0.05, 0.01]), EDGE_INFO) for i, j in ((0, 1), (1, 2), (0, 2))]
    cycle_before = se2_compose(se2_compose(edges[0].measurement, edges[1].measurement),
                               se2_inverse(edges[2].measurement))
    assert np.abs(cycle_before).max() > 0.01
    priors = _priors(rng)
    poses, weights, _, _, _ = solve_pose_graph(priors, edges)
    solved = {d: _rel(0, d, poses) for d in TRUTH}
    cycle = se2_compose(se2_compose(_rel(0, 1, poses), _rel(1, 2, poses)), se2_inverse(_rel(0, 2, poses)))
    np.testing.assert_allclose(cycle, 0.0, atol=1e-9)
    for d in (1, 2):
        t, h = _err(solved[d], _rel(0, d))
        assert t < 0.15 and h < 1.0
    assert min(weights.values()) > 0.5


def test_outlier_edge_is_down_weighted(rng):
    edges = [Edge(0, 1, _rel(0, 1), EDGE_INFO), Edge(1, 2, _rel(1, 2), EDGE_INFO),
             Edge(0, 2, _rel(0, 2) + np.array([2.0, -1.5, 0.3]), EDGE_INFO)]
    poses, weights, _, _, _ = solve_pose_graph(_priors(rng), edges)
    assert weights[(0, 2)] < 0.1 < 0.5 < weights[(0, 1)]
    t, h = _err(_rel(0, 2, poses), _rel(0, 2))
    assert t < 0.1 and h < 0.5


def test_faulty_device_is_down_weighted_and_reported():
    """The paper's outlier case on the simulated world: device 4's reported pose is 3 m / 20 deg off
    (beyond the consensus grid). It is reported; the healthy devices are not, mostly."""
    world = World(WorldConfig(robots=5, pose_noise_scale=1.0, faulty=((4, 3.0, -3.0, 20.0),)), seed=21)
    faulty_reports, healthy_reports, weights = 0, 0, []
    frames = 4
    for _ in range(frames):
        snap = world.step()
        res = consistent_relative_poses(snap.cpms, ego=0)
        faulty_reports += 4 in res.outliers
        healthy_reports += len([d for d in res.outliers if d != 4])
        weights.append(res.device_weights)
        assert res.device_weights[0] == 1.0
    assert faulty_reports >= frames - 1
    assert healthy_reports <= 1
    assert np.mean([w[4] for w in weights]) < 0.3 < np.mean([w[1] for w in weights])


def test_consistency_improves_on_reported_poses():
    world = World(WorldConfig(robots=3, pose_noise_scale=1.0), seed=4)
    before, after = [], []
    for _ in range(5):
        snap = world.step()
        res = consistent_relative_poses(snap.cpms, ego=0)
        for j in (1, 2):
            truth = _rel(0, j, {d: snap.true_poses[d] for d in range(3)})
            reported = se2_compose(se2_inverse(snap.cpms[0].pose.as_array()), snap.cpms[j].pose.as_array())
            before.append(_err(reported, truth)[0])
            after.append(_err(res.relative(0, j), truth)[0])
    assert np.median(after) < 0.5 * np.median(before)


def test_bad_input():
    with pytest.raises(InputError, match="edge"):
        solve_pose_graph({0: (np.zeros(3), PRIOR_COV)}, [Edge(0, 7, np.zeros(3), EDGE_INFO)])
    world = World(WorldConfig(robots=2), seed=0)
    snap = world.step()
    with pytest.raises(InputError, match="ego"):
        consistent_relative_poses(snap.cpms, ego=9)
    with pytest.raises(InputError, match="duplicate"):
        consistent_relative_poses([snap.cpms[0], snap.cpms[0]], ego=0)
