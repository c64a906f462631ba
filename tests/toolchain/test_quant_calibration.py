"""Activation calibrators (top-k median, percentile, min/max) and activation quantizers."""
import numpy as np
import pytest
import torch

from sdk.errors import InputError
from sdk.toolchain.quant.activation import PwlqActivation, UniformActivation, activation_quantizer
from sdk.toolchain.quant.calibration import CALIBRATORS, MinMax, Percentile, TopKMedian, create_calibrator

BATCHES = [np.random.default_rng(i).normal(size=(4, 8, 6, 6)) * (1 + i) for i in range(5)]


def test_topk_median_equals_sorting_everything():
    cal = TopKMedian(k=10)
    for b in BATCHES:
        cal.collect(b)
    x_sort = np.sort(np.concatenate([b.ravel() for b in BATCHES]))
    assert cal.compute_range() == (np.median(x_sort[:10]), np.median(x_sort[-10:]))


def test_topk_median_keeps_only_2k_values():
    cal = TopKMedian(k=10)
    for b in BATCHES:
        cal.collect(b)
    assert cal._smallest.size == 10 and cal._largest.size == 10


def test_topk_median_with_fewer_values_than_k():
    cal = TopKMedian(k=10)
    cal.collect(np.array([3.0, -1.0, 2.0]))
    assert cal.compute_range() == (2.0, 2.0)


def test_percentile_single_batch_equals_numpy():
    cal = Percentile(99.0)
    cal.collect(BATCHES[0])
    lo, hi = np.percentile(BATCHES[0], [1.0, 99.0])
    np.testing.assert_allclose(cal.compute_range(), (lo, hi))
    cal.collect(BATCHES[1])
    lo2, hi2 = np.percentile(BATCHES[1], [1.0, 99.0])
    np.testing.assert_allclose(cal.compute_range(), ((lo + lo2) / 2, (hi + hi2) / 2))


def test_minmax():
    cal = MinMax()
    for b in BATCHES:
        cal.collect(torch.from_numpy(b).float().numpy())
    all_x = np.concatenate([b.ravel() for b in BATCHES]).astype(np.float32)
    assert cal.compute_range() == (float(all_x.min()), float(all_x.max()))


def test_std_and_samples_are_collected():
    cal = create_calibrator("topk_median")
    for b in BATCHES:
        cal.collect(b)
    all_x = np.concatenate([b.ravel() for b in BATCHES])
    np.testing.assert_allclose(cal.std, all_x.std(), rtol=1e-9)
    assert 0 < cal.samples.size <= 65536 and np.isin(cal.samples, all_x).all()


def test_errors_name_the_allowed_values():
    with pytest.raises(InputError, match="allowed: topk_median, percentile, minmax"):
        create_calibrator("entropy")
    with pytest.raises(InputError, match="no activations"):
        MinMax().compute_range()
    with pytest.raises(InputError, match="percentile"):
        Percentile(120)
    assert set(CALIBRATORS) == {"topk_median", "percentile", "minmax"}


@pytest.mark.parametrize("rl,ru", [(0.0, 6.0), (0.5, 6.0), (-3.0, 1.0), (-4.0, -1.0), (-1.0, 2.5)])
def test_uniform_activation_range_includes_zero_and_zero_is_exact(rl, ru):
    act = UniformActivation.from_range(rl, ru, 8)
    assert 0 <= act.zero_point <= 255 and isinstance(act.zero_point, int)
    assert act.scale == float(np.float32(act.scale))
    np.testing.assert_allclose(act.scale, (max(ru, 0) - min(rl, 0)) / 255, rtol=1e-6)
    assert float(act.fake_quantize(torch.zeros(1))) == 0.0
    lo, hi = act.clip_range
    assert lo <= min(rl, 0) + act.scale and hi >= max(ru, 0) - act.scale


@pytest.mark.parametrize("bits", [4, 8])
def test_fake_quant_is_exactly_scale_times_code_minus_zero_point(bits):
    act = UniformActivation.from_range(-1.3, 4.2, bits)
    x = torch.from_numpy(np.random.default_rng(0).normal(1, 3, size=10000).astype(np.float32))
    q = act.quantize(x.numpy())
    assert q.max() <= 2**bits - 1
    expected = np.float32(act.scale) * (q.astype(np.float32) - np.float32(act.zero_point))
    np.testing.assert_array_equal(act.fake_quantize(x).numpy(), expected)


def test_pwlq_activation_from_calibrator():
    cal = TopKMedian()
    for b in BATCHES:
        cal.collect(b)
    for method in ("gaussian_closed", "laplacian_expected", "empirical"):
        act = activation_quantizer(cal, "pwlq", 4, method)
        assert isinstance(act, PwlqActivation) and 0 < act.breakpoint <= act.range_max / 2
        x = torch.linspace(-act.range_max, act.range_max, 1001)
        y = act.fake_quantize(x)
        assert len(torch.unique(y)) <= 2 * (2 * 7 + 1)  # two regions, (b-1)-bit + sign each
        assert float((y - x).abs().max()) <= max(act.scales) / 2 + 1e-6
    assert isinstance(activation_quantizer(cal, "uniform", 8, "gaussian_closed"), UniformActivation)
