"""§5 merging rules on constructed cases (sdk.lines.merge)."""
from __future__ import annotations

import numpy as np
import pytest

from sdk.errors import InputError
from sdk.lines.merge import merge_cylindrical, merge_double_axis


def test_cylindrical_replaces_within_four_px_and_discards_the_rest():
    xv = np.array([100.0, 205.0, 400.0, np.nan])
    yv = np.array([10.0, 20.0, 30.0, 40.0])
    cyl = np.array([103.5, 201.0, 199.0, 900.0])
    res = merge_cylindrical(xv, yv, cyl)
    # 100 -> 103.5 (3.5 px); 205 -> 201 (4 px, the nearest, inclusive); 400 is 500 px from all
    np.testing.assert_allclose(res.xv, [103.5, 201.0])
    np.testing.assert_allclose(res.yv, [10.0, 20.0])
    np.testing.assert_array_equal(res.index_a, [0, 1])
    np.testing.assert_array_equal(res.index_b, [0, 1])
    assert res.counts == {"inputs_a": 4, "inputs_b": 4, "merged": 2, "discarded_a": 1,
                          "discarded_b": 0, "invalid_a": 1, "invalid_b": 0}


def test_cylindrical_threshold_and_shared_streak():
    # two sources in one column share the same streak; a tighter threshold drops one
    res = merge_cylindrical([50.0, 52.5], [5.0, 90.0], [51.0], max_distance=1.2)
    np.testing.assert_allclose(res.xv, [51.0])
    assert res.counts["discarded_a"] == 1
    res = merge_cylindrical([50.0, 52.5], [5.0, 90.0], [51.0])
    np.testing.assert_allclose(res.xv, [51.0, 51.0])


def test_cylindrical_without_streaks_discards_everything():
    res = merge_cylindrical([1.0, 2.0], [3.0, 4.0], np.zeros(0))
    assert res.xv.size == 0 and res.counts["discarded_a"] == 2


def test_double_axis_takes_y_from_vertical_and_x_from_horizontal():
    # vertical sensor: precise y, rough x; horizontal: precise x, rough y
    vx, vy = np.array([100.0, 300.0, 700.0]), np.array([50.0, 60.0, 500.0])
    hx, hy = np.array([302.0, 98.0, 1500.0]), np.array([63.0, 47.0, 10.0])
    res = merge_double_axis(vx, vy, hx, hy, max_distance=5.0)
    order = np.argsort(res.index_a)
    np.testing.assert_allclose(res.xv[order], [98.0, 302.0])
    np.testing.assert_allclose(res.yv[order], [50.0, 60.0])
    assert res.counts["merged"] == 2 and res.counts["discarded_a"] == 1
    assert res.counts["discarded_b"] == 1
    kept = merge_double_axis(vx, vy, hx, hy, max_distance=5.0, keep_unpaired=True)
    assert kept.xv.size == 4 and sorted(kept.source.tolist()) == [0, 0, 1, 2]


def test_double_axis_pairs_one_to_one_closest_first():
    # two vertical points near one horizontal point: only the closer one pairs
    res = merge_double_axis([10.0, 12.0], [10.0, 10.0], [11.6], [10.0], max_distance=3.0)
    np.testing.assert_array_equal(res.index_a, [1])
    assert res.counts["discarded_a"] == 1


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_bad_distance_is_refused(bad):
    with pytest.raises(InputError, match="max_distance"):
        merge_cylindrical([1.0], [1.0], [1.0], max_distance=bad)


def test_mismatched_shapes_are_refused():
    with pytest.raises(InputError, match="xv and yv"):
        merge_cylindrical([1.0, 2.0], [1.0], [1.0])
    with pytest.raises(InputError, match="horizontal_xv"):
        merge_double_axis([1.0], [1.0], [[1.0]], [1.0])
