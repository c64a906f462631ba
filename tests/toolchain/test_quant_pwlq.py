"""PWLQ weight scheme (Eq. 3): codes, regions, reference form, multi-breakpoint, MSE vs uniform."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sdk.toolchain.quant.breakpoints import METHODS
from sdk.toolchain.quant.core import magnitude_levels, quantize_with_edges
from sdk.toolchain.quant.pwlq import pw, quantize_pwlq
from sdk.toolchain.quant.uniform import quantize_uniform

RNG = np.random.default_rng(0)
GAUSS = RNG.normal(size=(32, 576))
LAPLACE = RNG.laplace(size=(32, 576))


def mse(q, w):
    return float(np.mean((q.dequantize() - w) ** 2))


def test_one_breakpoint_scales_and_offsets_follow_eq3():
    q = quantize_pwlq(GAUSS, 4)
    m = np.abs(GAUSS).max(axis=1)
    p = q.breakpoints[:, 0].astype(np.float64)
    assert q.scales.shape == (32, 2) and np.all(q.offsets[:, 0] == 0)
    assert np.all((p > 0) & (p <= m / 2 + 1e-6))
    np.testing.assert_allclose(q.scales[:, 0], p / 7, rtol=1e-6)
    np.testing.assert_allclose(q.scales[:, 1], (m - p) / 7, rtol=1e-5)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_dequantized_values_equal_the_paper_reference_form(bits):
    q = quantize_pwlq(GAUSS, bits)
    m = np.abs(GAUSS).max(axis=1)
    for c in range(0, 32, 7):
        p = float(q.breakpoints[c, 0])
        ref = pw(GAUSS[c], bits, float(np.float32(m[c])), p)
        np.testing.assert_allclose(q.dequantize()[c], ref, rtol=1e-5, atol=1e-6 * m[c])


@pytest.mark.parametrize("breakpoints", [1, 2, 3])
def test_codes_in_range_tail_codes_nonzero_and_regions_match_magnitude(breakpoints):
    q = quantize_pwlq(LAPLACE, 4, breakpoints, "gaussian_expected")
    assert np.abs(q.codes.astype(int)).max() <= 7
    assert q.regions.max() <= breakpoints
    assert np.all(q.codes[q.regions > 0] != 0)  # the sign of every tail weight is in its code
    assert np.all(np.diff(q.offsets, axis=1) > 0)
    deq = np.abs(q.dequantize())
    r = q.regions.astype(int)
    lo = np.take_along_axis(q.offsets.astype(np.float64), r, axis=1)
    assert np.all(deq >= lo - 1e-9)


@pytest.mark.parametrize("breakpoints", [1, 2, 3])
def test_round_trip_requantizing_gives_the_same_codes(breakpoints):
    q = quantize_pwlq(GAUSS, 4, breakpoints, "gaussian_expected")
    m = np.abs(GAUSS).max(axis=1)
    edges = np.concatenate([q.offsets.astype(np.float64), m[:, None]], axis=1)
    again = quantize_with_edges(q.dequantize(), edges, 4)
    np.testing.assert_array_equal(again.codes, q.codes)
    np.testing.assert_array_equal(again.regions, q.regions)


def test_error_is_at_most_half_a_region_step():
    q = quantize_pwlq(GAUSS, 4)
    in_tail = np.abs(GAUSS) > q.breakpoints.astype(np.float64)  # by magnitude, before canonical moves
    step = np.where(in_tail, q.scales[:, 1:2], q.scales[:, 0:1]).astype(np.float64)
    assert np.all(np.abs(q.dequantize() - GAUSS) <= step / 2 + 1e-7)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("data", ["gauss", "laplace"])
def test_pwlq_mse_below_uniform_at_4_bits_on_bell_shaped_data(method, data):
    w = GAUSS if data == "gauss" else LAPLACE
    ratio = mse(quantize_pwlq(w, 4, 1, method), w) / mse(quantize_uniform(w, 4), w)
    assert ratio < 0.35, ratio


def test_breakpoint_at_half_range_is_a_uniform_grid():
    """p = m/2: four pieces with equal ranges and bits, i.e. one uniform grid of step m/(2^b - 2)."""
    bits, w = 4, GAUSS[:4]
    m = np.abs(w).max(axis=1)
    edges = np.stack([np.zeros(4), m / 2, m], axis=1)
    q = quantize_with_edges(w, edges, bits)
    step = (m / (2 ** bits - 2))[:, None]
    np.testing.assert_allclose(q.scales, np.repeat(step, 2, axis=1), rtol=1e-6)
    np.testing.assert_allclose(q.dequantize(), np.round(w / step) * step, rtol=1e-5, atol=1e-6)


def test_more_breakpoints_lower_the_error():
    errs = [mse(quantize_pwlq(GAUSS, 3, nb, "empirical"), GAUSS) for nb in (1, 2, 3)]
    assert errs[0] > errs[1] > errs[2]


def test_empirical_breakpoints_are_the_lowest_mse():
    errs = {m: mse(quantize_pwlq(GAUSS, 4, 1, m), GAUSS) for m in METHODS}
    assert errs["empirical"] <= min(errs.values()) + 1e-12


def test_per_layer_mode_shares_one_breakpoint():
    w = GAUSS * np.linspace(0.5, 2, 32)[:, None]
    q = quantize_pwlq(w, 4, per_channel=False)
    assert np.all(q.breakpoints == q.breakpoints[0]) and np.all(q.scales == q.scales[0])


def test_degenerate_channels():
    w = np.zeros((3, 9))
    w[1] = 0.5  # constant: std 0
    w[2, 4] = -2.0  # a single non-zero weight
    q = quantize_pwlq(w, 4)
    assert np.all(np.isfinite(q.scales)) and np.all(q.codes[0] == 0)
    np.testing.assert_allclose(q.dequantize(), w, atol=1e-6)
    one = quantize_pwlq(np.array([[0.3], [-1.0]]), 4)  # one weight per channel
    np.testing.assert_allclose(one.dequantize().ravel(), [0.3, -1.0], rtol=1e-6)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (2, 33), elements=st.floats(-100, 100)), st.integers(2, 8), st.integers(1, 3))
def test_property_codes_within_range(w, bits, breakpoints):
    q = quantize_pwlq(w, bits, breakpoints, "gaussian_expected")
    assert np.abs(q.codes.astype(int)).max() <= magnitude_levels(bits)
    assert np.all(q.codes[q.regions > 0] != 0)
    assert np.all(np.isfinite(q.dequantize()))
    assert np.abs(q.dequantize()).max() <= np.abs(w).max() * (1 + 1e-6) + 1e-30


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
@pytest.mark.parametrize("breakpoints", [1, 2, 3])
def test_offsets_are_q_times_cumulative_steps_exactly_so_the_sign_term_folds(bits, breakpoints):
    """offset_r = Q·(s_0 + ... + s_{r-1}) holds exactly (rational arithmetic on the stored
    float32 steps), so sign·(s_r·q + offset_r) = Σ_j s_j·folded_j for every weight, exactly."""
    from fractions import Fraction

    from sdk.formats.layer_table import folded_codes

    w = LAPLACE * np.geomspace(1e-3, 10, 32)[:, None]
    q = quantize_pwlq(w, bits, breakpoints, "gaussian_expected")
    qm = magnitude_levels(bits)
    assert q.scales.dtype == np.float32 and q.offsets.dtype == np.float64
    for c in range(32):
        steps = [Fraction(float(s)) for s in q.scales[c]]
        for r in range(q.scales.shape[1]):
            assert Fraction(float(q.offsets[c, r])) == qm * sum(steps[:r])
    folded = [folded_codes(q.codes, q.regions, r, bits).astype(np.int64) for r in range(breakpoints + 1)]
    assert max(np.abs(f).max() for f in folded) <= qm <= 127
    for c in range(0, 32, 5):
        for k in range(0, w.shape[1], 37):
            r, code = int(q.regions[c, k]), int(q.codes[c, k])
            sign = (code > 0) - (code < 0)
            paper = sign * (Fraction(float(q.scales[c, r])) * abs(code) + Fraction(float(q.offsets[c, r])))
            assert paper == sum(Fraction(float(q.scales[c, j])) * int(folded[j][c, k])
                                for j in range(breakpoints + 1))


@settings(max_examples=30, deadline=None)
@given(st.floats(1e-30, 1e30), st.lists(st.floats(1e-7, 1.0), min_size=1, max_size=3), st.integers(2, 8))
def test_property_steps_on_one_grid_any_edges(m, cuts, bits):
    """Any edges (even regions 2^20 times narrower than the widest) give steps that are float32
    values on one grid, so the offsets Q·cumsum are exact float64; zero-width regions get 0."""
    from sdk.formats.layer_table import check_steps_on_grid

    fr = np.cumsum(cuts) / (np.sum(cuts) + cuts[0])
    edges = np.concatenate([[0.0], fr * m, [m]])[None, :]
    edges = np.concatenate([edges, np.array([[0.0] * (len(cuts) + 1) + [m]])])  # zero-width regions
    w = np.linspace(-m, m, 41)[None, :].repeat(2, axis=0)
    q = quantize_with_edges(w, edges, bits)
    check_steps_on_grid(q.scales)
    assert np.all(q.scales[1, :-1] == 0) and np.all(q.offsets[1] == 0) and q.scales[1, -1] > 0
    np.testing.assert_allclose(q.dequantize(), w, atol=m * 1.01 / magnitude_levels(bits))
