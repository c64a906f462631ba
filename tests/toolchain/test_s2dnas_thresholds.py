"""Exit simulation, reward (Eq. 2) and threshold grid search, on hand-made confidences."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk.errors import InputError
from sdk.toolchain.s2dnas.thresholds import ExitProfile, choose_thresholds, reward, threshold_table, tradeoff_curve


def _profile():
    # 4 samples, 3 stages. Stage MACs 1, 3, 10 (cumulative); static 10.
    conf = np.array([[0.99, 0.6, 0.95, 0.4],
                     [0.99, 0.9, 0.97, 0.5],
                     [0.99, 0.99, 0.99, 0.9]])
    correct = np.array([[1, 0, 0, 0],
                        [1, 1, 1, 0],
                        [1, 1, 1, 1]], bool)
    return ExitProfile(conf, correct, np.array([1.0, 3.0, 10.0]), 10)


def test_exits_follow_the_first_confident_stage():
    p = _profile()
    np.testing.assert_array_equal(p.exit_stages([0.9, 0.9]), [0, 1, 0, 2])
    o = p.outcome([0.9, 0.9])
    assert o.accuracy == 0.75                                  # only sample 2 (stage 1) wrong
    assert o.mean_cost == (1 + 3 + 1 + 10) / 4
    assert o.exit_fractions == [0.5, 0.25, 0.25]
    assert o.stage_accuracy == [0.5, 1.0, 1.0]
    assert o.reward == pytest.approx((3.75 / 10) ** -0.06 * 0.75)  # Eq. 2, cost relative to static


def test_threshold_one_sends_everything_on_and_zero_stops_at_stage_one():
    p = _profile()
    assert p.outcome([0.0, 0.0]).exit_fractions == [1.0, 0.0, 0.0]
    assert p.outcome([1.0, 1.0]).exit_fractions == [0.0, 0.0, 1.0]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_vectorised_grid_matches_one_by_one(seed):
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.1, 1.0, (3, 50))
    p = ExitProfile(conf, rng.random((3, 50)) < 0.8, np.array([2.0, 5.0, 9.0]), 10)
    table = rng.choice(np.linspace(0, 1, 11), (7, 2))
    acc, macs = p.evaluate_many(table, chunk=3)
    for t, a, m in zip(table, acc, macs):
        o = p.outcome(t)
        assert a == pytest.approx(o.accuracy) and m == pytest.approx(o.mean_cost)


def test_objectives():
    p = _profile()
    best = choose_thresholds(p)
    table = threshold_table(3)
    acc, macs = p.evaluate_many(table)
    assert best.reward == pytest.approx(reward(macs / 10, acc).max())
    full = choose_thresholds(p, target_accuracy=1.0)          # all right: samples 1-3 must go on
    assert full.met and full.accuracy == 1.0 and full.mean_cost == min(macs[acc == 1.0])
    cheap = choose_thresholds(p, max_cost=1.0)                # only "everyone exits at stage 1"
    assert cheap.met and cheap.mean_cost == 1.0 and cheap.accuracy == 0.25
    miss = choose_thresholds(p, max_cost=0.5)
    assert miss.met is False and miss.mean_cost == 1.0


def test_bad_targets():
    with pytest.raises(InputError, match="target_accuracy is a fraction"):
        choose_thresholds(_profile(), target_accuracy=98.5)
    with pytest.raises(InputError, match="not both"):
        choose_thresholds(_profile(), target_accuracy=0.9, max_cost=5)


def test_pareto_front_is_monotone():
    c = tradeoff_curve(_profile())
    f = c["front"]
    assert np.all(np.diff(c["mean_cost"][f]) >= 0) and np.all(np.diff(c["accuracy"][f]) > 0)


def test_grid_is_thinned_for_many_stages():
    assert len(threshold_table(5)) <= 20000 and threshold_table(5).shape[1] == 4
