"""Ego fusion (merging, sources, bad input) and the BEV metrics it is judged by."""
from __future__ import annotations

import time

import numpy as np
import pytest

from sdk.errors import InputError
from sdk.runtime.coop.fusion import (MODES, CooperativePerception, EgoFusion, FusionConfig, assign, greedy_assignment,
                                     objects_to_arrays)
from sdk.runtime.coop.messages import CPM, DetectedObject, Landmark, Pose2D
from sdk.runtime.coop.metrics import APAccumulator, average_precision, rotated_iou, within_range
from sdk.runtime.coop.world import World, WorldConfig

# -- metrics ------------------------------------------------------------------------------------


def test_rotated_iou_known_values():
    a = np.array([0.0, 0.0, 2.0, 1.0, 0.0])
    assert rotated_iou(a, a) == pytest.approx(1.0)
    assert rotated_iou(a, a + [1.0, 0, 0, 0, 0]) == pytest.approx(1 / 3)      # overlap 1 of union 3
    assert rotated_iou(a, a + [5.0, 0, 0, 0, 0]) == 0.0
    assert rotated_iou(a, a + [0, 0, 0, 0, np.pi]) == pytest.approx(1.0)
    sq = np.array([0.0, 0.0, 1.0, 1.0, 0.0])
    # a unit square and itself rotated 45 deg: intersection is the regular octagon, 2(sqrt2 - 1)
    inter = 2 * (np.sqrt(2) - 1)
    assert rotated_iou(sq, sq + [0, 0, 0, 0, np.pi / 4]) == pytest.approx(inter / (2 - inter))


def test_ap_perfect_is_one_and_empty_is_zero(rng):
    acc_perfect, acc_empty, acc_half = APAccumulator(), APAccumulator(), APAccumulator()
    for _ in range(5):
        gt = np.column_stack([rng.uniform(-20, 20, (6, 2)), np.full((6, 2), 1.0), rng.uniform(-3, 3, 6)])
        cls = rng.integers(1, 4, 6)
        acc_perfect.add(gt, rng.uniform(0.1, 1, 6), cls, gt, cls)
        acc_empty.add(np.zeros((0, 5)), np.zeros(0), np.zeros(0), gt, cls)
        acc_half.add(gt[:3], np.ones(3), cls[:3], gt, cls)
    assert all(v == pytest.approx(1.0) for v in acc_perfect.ap().values())
    assert all(v == 0.0 for v in acc_empty.ap().values())
    assert all(v == pytest.approx(0.5) for v in acc_half.ap().values())


def test_ap_ranks_by_score():
    """A false positive above every true positive costs more than one below them all."""
    hits = np.array([True, True, False])
    assert average_precision(np.array([0.9, 0.8, 0.1]), hits, 2) == pytest.approx(1.0)
    assert average_precision(np.array([0.5, 0.4, 0.9]), hits, 2) == pytest.approx(2 / 3)


def test_ap_rejects_bad_input():
    with pytest.raises(InputError, match="scores"):
        APAccumulator().add(np.zeros((2, 5)), np.zeros(3), np.zeros(2), np.zeros((0, 5)), np.zeros(0))
    with pytest.raises(InputError, match="NaN"):
        APAccumulator().add(np.full((1, 5), np.nan), np.zeros(1), np.zeros(1), np.zeros((0, 5)), np.zeros(0))


# -- fusion --------------------------------------------------------------------------------------

def _obj(x, y, score=0.8, cls=2, heading=0.0):
    return DetectedObject(cls, x, y, 1.0, 0.8, heading, score)


def test_duplicates_merge_and_keep_sources():
    fusion = EgoFusion(ego_id=0)
    ego = [_obj(5.0, 0.0, 0.6), _obj(-3.0, 2.0)]
    # device 1 sits at (2, 0) facing +y: its (a, b) is the ego's (2 - b, a), so (-0.1, -3) -> (5, -0.1)
    pose1 = np.array([2.0, 0.0, np.pi / 2])
    other = [_obj(-0.1, -3.0, 0.9, heading=-np.pi / 2 + np.pi), _obj(10.0, 10.0, 0.7)]
    fused = fusion.fuse(ego, [(1, other, pose1, 1.0)])
    assert len(fused) == 3
    merged = next(f for f in fused if len(f.sources) == 2)
    assert merged.sources == (0, 1)
    assert merged.score == pytest.approx(1 - 0.4 * 0.1)
    assert merged.x == pytest.approx(5.0, abs=0.01)
    # score-weighted mean: device 1's -0.1 m weighs 0.9 against the ego's 0 m at 0.6
    assert merged.y == pytest.approx(0.9 / 1.5 * -0.1, abs=1e-6)
    # the merged heading folds the pi-flipped box onto the stronger one's axis
    assert abs(np.sin(merged.heading)) < 1e-6
    alone = [f for f in fused if f.sources == (1,)]
    assert len(alone) == 1 and alone[0].x == pytest.approx(2.0 - 10.0) and alone[0].y == pytest.approx(10.0)


def test_different_classes_or_far_boxes_do_not_merge():
    fusion = EgoFusion(0, FusionConfig(match_gate_m=1.0))
    fused = fusion.fuse([_obj(3, 0, cls=1), _obj(5, 5)],
                        [(1, [_obj(3, 0, cls=2), _obj(6.5, 5)], np.zeros(3), 1.0)])
    assert len(fused) == 4


def test_the_ego_seen_by_others_is_not_an_object():
    fusion = EgoFusion(0)
    fused = fusion.fuse([_obj(4, 0)], [(1, [_obj(-5.2, 0.3, cls=1), _obj(-1, 0)], np.array([5.0, 0.0, 0.0]), 1.0)])
    assert [f.sources for f in fused] == [(0, 1)]
    assert fusion.counters == {"object_is_ego": 1}


def test_assignment_hungarian_and_greedy():
    cost = np.array([[1.0, 0.9], [0.8, 5.0]])
    # greedy takes the cheapest pair (1, 0) first, then (0, 1); optimal gives the same here
    assert sorted(greedy_assignment(cost, 2.0)) == sorted(assign(cost, 2.0)) == [(0, 1), (1, 0)]
    # a pair beyond the gate is never matched, and inf (class mismatch) is handled
    cost = np.array([[0.1, np.inf], [np.inf, 3.0]])
    assert greedy_assignment(cost, 2.0) == assign(cost, 2.0) == [(0, 0)]
    # where greedy is suboptimal, the optimal total is never worse
    cost = np.array([[1.0, 1.1], [1.05, 5.0]])
    total = lambda pairs: sum(cost[r, c] for r, c in pairs)  # noqa: E731
    assert len(assign(cost, 2.0)) == 2 and total(assign(cost, 2.0)) <= 2.15 + 1e-9
    assert greedy_assignment(cost, 2.0) == [(0, 0)]


def test_weight_scales_scores():
    fused = EgoFusion(0).fuse([], [(3, [_obj(1, 1, 0.8)], np.zeros(3), 0.25)])
    assert fused[0].score == pytest.approx(0.2) and fused[0].sources == (3,)


def test_bad_objects_are_dropped_and_counted():
    fusion = EgoFusion(0, FusionConfig(max_objects_per_message=4))
    bad = [_obj(float("nan"), 0), _obj(1e6, 0), DetectedObject(2, 1, 1, -1.0, 1, 0, 0.5),
           DetectedObject(2, 1, 1, 1, 1, 0, 7.0), _obj(1, 1), _obj(2, 2)]
    fused = fusion.fuse(bad, [])
    assert len(fused) == 0  # the two good ones are beyond the 4-object limit
    assert fusion.counters == {"object_over_limit": 2, "object_not_finite": 1, "object_absurd": 3}


def _cpm(sender, x=0.0, objects=(), seq=1):
    return CPM(sender, seq, 0, Pose2D(x, 0.0, 0.0), objects=list(objects))


def test_bad_messages_are_dropped_and_counted():
    coop = CooperativePerception(0, "none", fusion=FusionConfig(max_messages=4))
    good = _cpm(1, 2.0, [_obj(1, 0)])
    msgs = [_cpm(2, float("nan")), _cpm(3, 1e9), good, _cpm(1, 2.0, [_obj(9, 9)]), _cpm(0), _cpm(5)]
    msgs[0].pose.heading = float("inf")
    frame = coop.process(_cpm(0, 0.0, [_obj(3.0, 0.0, 0.5)]), msgs)
    assert len(frame.objects) == 1 and frame.objects[0].sources == (0, 1)
    assert coop.counters == {"message_over_limit": 2, "pose_not_finite": 1, "pose_absurd": 1,
                             "message_duplicate_sender": 1}
    # an ego without a usable pose still fuses its own objects and counts the others as dropped
    ego = _cpm(0, float("nan"), [_obj(1, 1)])
    assert len(coop.process(ego, [good]).objects) == 1
    assert coop.counters["message_no_ego_pose"] == 1
    with pytest.raises(InputError, match="mode"):
        CooperativePerception(0, "magic")
    with pytest.raises(InputError, match="sender_id"):
        coop.process(_cpm(4), [])


def test_garbage_never_crashes_or_stalls(rng):
    """Random garbage in every field: process() returns, quickly, every frame."""
    coop = CooperativePerception(0, "consistency")
    values = [0.0, 1.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e300, -1e300, 5.0]
    for _ in range(20):
        msgs = []
        for s in range(1, 5):
            objs = [DetectedObject(int(rng.integers(0, 5)), *(rng.choice(values) for _ in range(6)))
                    for _ in range(int(rng.integers(0, 5)))]
            c = _cpm(s, float(rng.choice(values)), objs)
            c.pose.heading = float(rng.choice(values))
            c.landmarks = [Landmark(float(rng.choice(values)), float(rng.choice(values)), 1, float(rng.choice(values)))
                           for _ in range(int(rng.integers(0, 8)))]
            msgs.append(c)
        t0 = time.perf_counter()
        frame = coop.process(_cpm(0, 0.0, [_obj(1, 1)]), msgs)
        assert time.perf_counter() - t0 < 5.0
        assert all(np.isfinite([o.x, o.y, o.score]).all() for o in frame.objects)
    assert {"object_not_finite", "object_absurd", "landmark_not_finite", "landmark_absurd",
            "pose_not_finite", "pose_absurd"} <= set(coop.counters)


def test_cooperation_beats_ego_at_paper_noise():
    """A small seeded world at the paper's pose noise: corrected cooperation has higher AP."""
    world = World(WorldConfig(robots=3, pose_noise_scale=1.0), seed=11)
    coops = {m: CooperativePerception(0, m) for m in MODES}
    acc = {m: APAccumulator() for m in MODES}
    for _ in range(6):
        snap = world.step()
        gt, gc = snap.ground_truth(0, 20.0)
        for m in MODES:
            frame = coops[m].process(snap.cpms[0], snap.cpms[1:])
            acc[m].add(*within_range(*objects_to_arrays(frame.objects), 20.0), gt, gc)
    ap = {m: acc[m].ap() for m in MODES}
    assert ap["consensus"][0.5] > ap["ego"][0.5]
    assert ap["consistency"][0.5] > ap["ego"][0.5]
    assert ap["consistency"][0.5] >= ap["none"][0.5]
