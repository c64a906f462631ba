"""Uniform weight scheme (Eq. 1, restricted symmetric) and the shared region-code core."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sdk.toolchain.quant.core import magnitude_levels, quantize_with_edges
from sdk.toolchain.quant.uniform import error_constant, quantize_uniform, uni


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_codes_use_the_restricted_symmetric_range(bits):
    w = np.random.default_rng(0).normal(size=(8, 3, 3, 3))
    q = quantize_uniform(w, bits)
    q_max = 2 ** (bits - 1) - 1
    assert q.codes.dtype == np.int8 and q.regions.dtype == np.uint8
    assert q.codes.min() == -q_max and q.codes.max() == q_max  # never -2^(b-1)
    assert np.all(q.regions == 0) and q.scales.shape == (8, 1) and np.all(q.offsets == 0)


def test_per_channel_scale_is_channel_max_over_levels():
    w = np.random.default_rng(1).normal(size=(5, 20)) * np.arange(1, 6)[:, None]
    q = quantize_uniform(w, 4)
    np.testing.assert_allclose(q.scales[:, 0], np.abs(w).max(axis=1) / 7, rtol=1e-6)
    layer = quantize_uniform(w, 4, per_channel=False)
    np.testing.assert_allclose(layer.scales[:, 0], np.abs(w).max() / 7, rtol=1e-6)


def test_error_is_at_most_half_a_step_and_extremes_are_exact():
    w = np.random.default_rng(2).normal(size=(16, 64))
    q = quantize_uniform(w, 4)
    err = np.abs(q.dequantize() - w)
    assert np.all(err <= q.scales[:, :1] / 2 + 1e-7)
    top = np.abs(w).argmax(axis=1)
    np.testing.assert_allclose(np.abs(q.dequantize()[np.arange(16), top]), np.abs(w).max(axis=1), rtol=1e-6)


def test_per_channel_beats_per_layer_when_channel_ranges_differ():
    w = np.random.default_rng(3).normal(size=(8, 64)) * np.geomspace(0.01, 1, 8)[:, None]
    mse = lambda q: np.mean((q.dequantize() - w) ** 2)
    assert mse(quantize_uniform(w, 4)) < mse(quantize_uniform(w, 4, per_channel=False))


def test_zero_channel_quantizes_to_zero():
    w = np.zeros((2, 9))
    w[1] = np.linspace(-1, 1, 9)
    q = quantize_uniform(w, 4)
    assert np.all(q.codes[0] == 0) and np.all(np.isfinite(q.scales))
    assert np.all(q.dequantize()[0] == 0)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (3, 17), elements=st.floats(-1e3, 1e3)), st.integers(2, 8))
def test_property_codes_in_range_and_requantization_is_idempotent(w, bits):
    q = quantize_uniform(w, bits)
    assert np.abs(q.codes.astype(int)).max() <= magnitude_levels(bits)
    edges = np.concatenate([np.zeros((3, 1)), q.scales.astype(np.float64) * magnitude_levels(bits)], axis=1)
    again = quantize_with_edges(q.dequantize(), edges, bits)
    np.testing.assert_array_equal(again.codes, q.codes)


def test_paper_eq1_affine_form_covers_the_range_with_2b_levels():
    r = np.linspace(-1, 1, 10001)
    rhat = uni(r, 3, -1.0, 1.0, -1.0, signed=False)
    assert len(np.unique(np.round(rhat, 12))) == 8
    assert np.abs(rhat - r).max() <= (2 / 7) / 2 + 1e-12
    # Eq. 2: mean squared error of uniform data = C(b) * (ru - rl)^2
    np.testing.assert_allclose(np.mean((rhat - r) ** 2), error_constant(3) * 4, rtol=0.01)


def test_subnormal_channel_quantizes_as_zero():
    # found by hypothesis: a float32 subnormal max|w| gives a step that underflows
    w = np.zeros((2, 5))
    w[0, 0] = 1.4e-45
    w[1] = [0.5, -0.25, 0.1, 0.0, 0.3]
    q = quantize_uniform(w, 4)
    assert np.all(q.codes[0] == 0) and np.all(q.dequantize()[0] == 0)
    edges = np.concatenate([np.zeros((2, 1)), q.scales.astype(np.float64) * magnitude_levels(4)], axis=1)
    np.testing.assert_array_equal(quantize_with_edges(q.dequantize(), edges, 4).codes, q.codes)


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
@pytest.mark.parametrize("scale", [1.0, 31.0, 127.0, 128.0, 1e3])
def test_channel_whose_step_would_be_subnormal_quantizes_as_zero(bits, scale):
    # found by hypothesis: max|w| = float32's smallest normal number, 6 bits. The step m / 31 is
    # subnormal and inexact, so dequantizing and quantizing again moved every code 31 -> 0. A
    # channel is zero exactly when its step would be subnormal, and requantization is idempotent.
    tiny = float(np.finfo(np.float32).tiny)
    w = np.full((3, 17), scale * tiny)
    q = quantize_uniform(w, bits)
    levels = magnitude_levels(bits)
    assert np.all(q.codes == 0) == (np.float32(scale * tiny) < levels * tiny)
    edges = np.concatenate([np.zeros((3, 1)), q.scales.astype(np.float64) * levels], axis=1)
    np.testing.assert_array_equal(quantize_with_edges(q.dequantize(), edges, bits).codes, q.codes)
