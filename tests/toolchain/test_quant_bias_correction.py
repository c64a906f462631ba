"""Per-channel bias correction kept as an affine map a * w_hat + c."""
import numpy as np
import pytest

from sdk.toolchain.quant.bias_correction import bias_correction
from sdk.toolchain.quant.pwlq import quantize_pwlq
from sdk.toolchain.quant.uniform import quantize_uniform
from sdk.toolchain.quant.weights import quantize_weight

W = np.random.default_rng(0).normal(0.02, 1.0, size=(16, 3, 3, 3))


@pytest.mark.parametrize("quantizer", [lambda w: quantize_uniform(w, 4), lambda w: quantize_pwlq(w, 4)])
def test_affine_form_equals_the_paper_formula(quantizer):
    wq = quantizer(W).dequantize()
    a, c = bias_correction(W, wq)
    w, q = W.reshape(16, -1), wq.reshape(16, -1)
    paper = (q + w.mean(1, keepdims=True) - q.mean(1, keepdims=True)) * (w.std(1) / q.std(1))[:, None]
    np.testing.assert_allclose(a[:, None] * q + c[:, None], paper, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose((a[:, None] * q + c[:, None]).std(1), w.std(1), rtol=1e-10)  # std restored


def test_integer_kernel_identity():
    """<X, a w_hat + c> = a <X, w_hat> + c sum(X): what the integer export computes."""
    wq = quantize_pwlq(W, 4).dequantize().reshape(16, -1)
    a, c = bias_correction(W, wq)
    x = np.random.default_rng(1).uniform(0, 2, size=27)
    np.testing.assert_allclose((a[:, None] * wq + c[:, None]) @ x, a * (wq @ x) + c * x.sum(), rtol=1e-12)


def test_constant_quantized_channel_keeps_unit_scale():
    w = np.array([[0.01, -0.01, 0.02, 5.0]])
    wq = np.zeros_like(w)  # every weight quantized to 0
    a, c = bias_correction(w, wq)
    assert a[0] == 1.0 and np.isclose(c[0], w.mean())


def test_disabled_correction_is_identity_and_mse_is_reported_for_both_schemes():
    lw = quantize_weight(W, "pwlq", 4, 1, "gaussian_closed", True, correct_bias=False)
    assert np.all(lw.bc_scale == 1) and np.all(lw.bc_shift == 0)
    np.testing.assert_allclose(lw.corrected(), lw.quantized.dequantize())
    assert set(lw.mse) == {"uniform", "pwlq"} and lw.mse["pwlq"] < lw.mse["uniform"]
