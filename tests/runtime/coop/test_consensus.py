"""Maximum consensus: recovers an injected pose error despite outlier correspondences."""
from __future__ import annotations

import numpy as np
import pytest

from sdk.errors import InputError
from sdk.runtime.coop.consensus import (LANDMARK_LABEL, ConsensusConfig, keypoints, max_consensus, se2_apply,
                                        se2_compose, se2_inverse, wrap_angle)
from sdk.runtime.coop.messages import CPM, DetectedObject, Landmark, Pose2D


def test_se2_algebra(rng):
    a, b = np.array([1.0, -2.0, 0.7]), np.array([-0.5, 3.0, -2.9])
    p = rng.normal(0, 5, (6, 2))
    np.testing.assert_allclose(se2_apply(se2_compose(a, b), p), se2_apply(a, se2_apply(b, p)), atol=1e-12)
    np.testing.assert_allclose(se2_compose(a, se2_inverse(a)), 0.0, atol=1e-12)
    assert wrap_angle(3 * np.pi) == pytest.approx(-np.pi)


def _scene(rng, n_shared=25, n_outliers=10, noise=0.05):
    """Keypoints of one scene seen by a reference device and a source device, plus keypoints only
    one of them has (the outlier correspondences). Returns ref pts/labels, src pts/labels, the
    true pose of src in ref."""
    truth = np.array([6.0, -3.0, np.radians(35.0)])
    world = rng.uniform(-15, 15, (n_shared, 2))
    labels = rng.choice([LANDMARK_LABEL, LANDMARK_LABEL, 1, 2], n_shared)
    ref = world + rng.normal(0, noise, world.shape)
    src = se2_apply(se2_inverse(truth), world) + rng.normal(0, noise, world.shape)
    ref = np.concatenate([ref, rng.uniform(-15, 15, (n_outliers, 2))])
    src = np.concatenate([src, rng.uniform(-15, 15, (n_outliers, 2))])
    ref_lab = np.concatenate([labels, rng.choice([LANDMARK_LABEL, 1], n_outliers)])
    src_lab = np.concatenate([labels, rng.choice([LANDMARK_LABEL, 1], n_outliers)])
    perm = rng.permutation(len(src))
    return ref, ref_lab, src[perm], src_lab[perm], truth


@pytest.mark.parametrize("error", [(0.7, -0.4, 3.7), (-0.9, 0.8, -5.5), (0.2, 0.1, 0.4), (0.0, 0.0, 0.0)])
def test_recovers_injected_error(rng, error):
    ref, ref_lab, src, src_lab, truth = _scene(rng)
    # the error enters as the source device's localization error in the reference frame
    initial = truth + np.array([error[0], error[1], np.radians(error[2])])
    res = max_consensus(ref, ref_lab, src, src_lab, initial)
    assert res.success
    assert np.hypot(*(res.relative_pose[:2] - truth[:2])) < 0.1
    assert abs(np.degrees(wrap_angle(res.relative_pose[2] - truth[2]))) < 0.5
    assert res.inliers >= 20 and res.rms_m < 0.2
    np.testing.assert_allclose(res.initial_pose, initial)


def test_error_beyond_search_range_is_rejected(rng):
    """3 m off, 20 deg off: outside the paper's grid; the chance alignments must not pass."""
    ref, ref_lab, src, src_lab, truth = _scene(rng)
    initial = truth + np.array([3.0, -3.0, np.radians(20.0)])
    res = max_consensus(ref, ref_lab, src, src_lab, initial)
    assert not res.success
    np.testing.assert_allclose(res.relative_pose, initial)


def test_unrelated_scenes_fail(rng):
    ref = rng.uniform(-15, 15, (30, 2))
    src = rng.uniform(-15, 15, (30, 2))
    lab = np.full(30, LANDMARK_LABEL)
    assert not max_consensus(ref, lab, src, lab, np.zeros(3)).success
    assert not max_consensus(ref[:2], lab[:2], src[:2], lab[:2], np.zeros(3)).success


def test_labels_must_agree(rng):
    """Object centres only match objects of the same class."""
    ref, ref_lab, src, src_lab, truth = _scene(rng, n_outliers=0)
    res = max_consensus(ref, ref_lab, src, np.where(src_lab == LANDMARK_LABEL, 1, LANDMARK_LABEL), truth)
    assert res.inliers < 10


def test_grid_matches_the_paper():
    grid = ConsensusConfig().grid()
    assert len(grid) == 3 * 3 * 13
    assert grid[:, :2].min() == -1.0 and grid[:, :2].max() == 1.0
    assert np.degrees(grid[:, 2]).max() == pytest.approx(6.0)


def test_keypoints_of_a_cpm_skip_non_finite():
    cpm = CPM(1, 1, 0, Pose2D(0, 0, 0), objects=[DetectedObject(2, 1.0, 2.0, 1, 1, 0, 0.9),
                                                DetectedObject(2, float("nan"), 2.0, 1, 1, 0, 0.9)],
              landmarks=[Landmark(3.0, 4.0), Landmark(float("inf"), 0.0)])
    pts, lab = keypoints(cpm)
    np.testing.assert_array_equal(pts, [[3.0, 4.0], [1.0, 2.0]])
    np.testing.assert_array_equal(lab, [LANDMARK_LABEL, 2])


def test_bad_input_names_the_problem():
    with pytest.raises(InputError, match="initial_pose"):
        max_consensus(np.zeros((3, 2)), np.zeros(3), np.zeros((3, 2)), np.zeros(3), np.array([0, np.nan, 0]))
    with pytest.raises(InputError, match="labels"):
        max_consensus(np.zeros((3, 2)), np.zeros(2), np.zeros((3, 2)), np.zeros(3), np.zeros(3))
