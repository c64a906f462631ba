"""sdk.kernels_int convolution: every available SIMD path against the NumPy twin (bit-exact,
float and requantized), the twin against torch.nn.functional.conv2d on dequantized values, and
the geometry and input checks."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdk import kernels_int as ki
from sdk.errors import InputError

AVAILABLE = ki.available_paths()
PATH_PARAMS = [pytest.param(p, marks=pytest.mark.skipif(AVAILABLE[p] is not None,
                                                        reason=str(AVAILABLE[p])))
               for p in ki.PATHS]
RUNNABLE = [p for p in ki.PATHS if AVAILABLE[p] is None]


def pwlq_codes(rng, shape, *, max_code=7, tail=0.1):
    """Random folded PWLQ code tensors (W0, W1) of one shape (as in test_qgemm.py)."""
    in_tail = rng.random(shape) < tail
    sign = np.where(in_tail, rng.choice(np.array([-1, 1], np.int8), shape), 0).astype(np.int8)
    tail_codes = (sign * rng.integers(0, max_code + 1, shape)).astype(np.int8)
    center = np.where(in_tail, max_code * sign,
                      rng.integers(-max_code, max_code + 1, shape)).astype(np.int8)
    return center, tail_codes


def epilogue_params(rng, n):
    return dict(s1=rng.uniform(1e-3, 0.05, n), s2=rng.uniform(1e-3, 0.05, n),
                a=rng.uniform(0.9, 1.1, n), c=rng.uniform(-0.05, 0.05, n),
                bias=rng.uniform(-1, 1, n))


# (batch, C_in, H, W, C_out, kernel, stride, padding, dilation, groups)
CASES = [
    (1, 16, 28, 28, 16, (3, 3), 1, 1, 1, 1),     # ResNet-20 stage 1
    (1, 16, 28, 28, 32, (3, 3), 2, 1, 1, 1),     # stage transition, stride 2
    (1, 32, 14, 14, 64, (1, 1), 2, 0, 1, 1),     # 1x1 projection shortcut
    (2, 3, 9, 11, 5, (3, 3), 2, 1, 1, 1),        # odd sizes, batch 2
    (1, 4, 10, 9, 6, (3, 3), 1, 2, 2, 1),        # dilation 2
    (1, 8, 7, 7, 8, (3, 3), 1, 1, 1, 8),         # depthwise
    (1, 8, 6, 5, 16, (3, 3), (2, 1), (1, 0), 1, 4),  # groups, channel multiplier 4
    (1, 6, 5, 5, 10, (1, 1), 1, 0, 1, 2),        # grouped 1x1
    (1, 2, 12, 12, 3, (5, 5), 3, 2, 1, 1),       # 5x5, stride 3
    (1, 1, 4, 6, 2, (2, 3), (1, 2), (0, 1), (1, 2), 1),  # non-square everything
]


def make_case(rng, batch, c_in, h, w, c_out, kernel, stride, padding, dilation, groups, *,
              tail=0.1, form="sparse", requant=False):
    codes = pwlq_codes(rng, (c_out, c_in // groups, *kernel), tail=tail)
    packed = ki.pack_pwlq_weights(*codes, groups=groups, tail_form=form)
    extra = dict(out_scale=0.05, out_zero_point=90, relu=True) if requant else {}
    layer = ki.PwlqConv2d(packed, 0.03, int(rng.integers(0, 256)), **epilogue_params(rng, c_out),
                          **extra, stride=stride, padding=padding, dilation=dilation)
    X = rng.integers(0, 256, (batch, c_in, h, w), dtype=np.uint8)
    return layer, X


@pytest.mark.parametrize("path", PATH_PARAMS)
@pytest.mark.parametrize("form", ki.TAIL_FORMS)
@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_kernel_matches_twin(path, form, case):
    rng = np.random.default_rng(len(str(case)))
    layer, X = make_case(rng, *case, form=form)
    y = layer(X, path=path)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    np.testing.assert_array_equal(y, layer.reference(X))
    layer_q, _ = make_case(np.random.default_rng(1), *case, form=form, requant=True)
    np.testing.assert_array_equal(layer_q(X, path=path), layer_q.reference(X))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(1, 2), groups=st.sampled_from([1, 2, 3]),
       c_in_g=st.integers(1, 5), c_out_g=st.integers(1, 9), h=st.integers(1, 12),
       w=st.integers(1, 12), kh=st.integers(1, 4), kw=st.integers(1, 4),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       tail=st.sampled_from([0.0, 0.1, 1.0]), seed=st.integers(0, 2**32 - 1))
def test_random_geometry_all_paths_bit_exact(batch, groups, c_in_g, c_out_g, h, w, kh, kw, stride,
                                             padding, dilation, tail, seed):
    # Skip geometries whose dilated kernel does not fit (the error is tested below).
    if any(size + 2 * p - d * (k - 1) - 1 < 0 for size, p, d, k in
           zip((h, w), padding, dilation, (kh, kw))):
        return
    rng = np.random.default_rng(seed)
    layer, X = make_case(rng, batch, c_in_g * groups, h, w, c_out_g * groups, (kh, kw), stride,
                         padding, dilation, groups, tail=tail)
    want = layer.reference(X)
    for path in RUNNABLE:
        np.testing.assert_array_equal(layer(X, path=path), want, err_msg=path)


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_twin_matches_torch_conv2d_on_dequantized_values(case):
    """Zero-point padding is real zero padding after dequantization; (a, c) is the bias
    correction y = a·conv(x̂, ŵ) + c·conv(x̂, 1) + bias. float32 rounding only."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    layer, X = make_case(rng, *case)
    packed, f = layer.packed, layer.affine
    w0, w1 = (w.astype(np.float64) for w in (packed.center, packed.tail))
    per = lambda v: v.astype(np.float64)[:, None, None, None]  # noqa: E731
    w_hat = per(f.s1) * w0 + per(f.s2) * w1
    x_hat = torch.from_numpy(f.sx * (X.astype(np.float64) - f.zx))
    conv = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                groups=packed.groups)
    main = torch.nn.functional.conv2d(x_hat, torch.from_numpy(w_hat), **conv).numpy()
    window = torch.nn.functional.conv2d(x_hat, torch.ones(packed.shape, dtype=torch.float64),
                                        **conv).numpy()
    col = lambda v: v.astype(np.float64)[None, :, None, None]  # noqa: E731
    want = col(f.a) * main + col(f.c) * window + col(f.bias)
    y = layer.reference(X)
    # Tolerance: a few float32 ulp of the magnitude of the terms.
    abs_terms = torch.nn.functional.conv2d(x_hat.abs(), torch.from_numpy(np.abs(w_hat)),
                                           **conv).numpy()
    scale = col(f.a) * abs_terms + np.abs(col(f.c) * window) + np.abs(col(f.bias))
    assert np.all(np.abs(y - want) <= 1e-5 * scale + 1e-6)


@pytest.mark.parametrize("path", PATH_PARAMS)
def test_thread_count_does_not_change_results(path):
    rng = np.random.default_rng(2)
    layer, X = make_case(rng, 2, 16, 28, 28, 32, (3, 3), 1, 1, 1, 1)
    one = layer(X, path=path, num_threads=1)
    for threads in (2, 4):
        np.testing.assert_array_equal(layer(X, path=path, num_threads=threads), one)


def test_padding_is_the_zero_point():
    """A constant input equal to zx is the real value 0 everywhere, padding included."""
    packed = ki.pack_pwlq_weights(np.full((2, 3, 3, 3), 5, np.int8))
    y = ki.qconv2d(np.full((1, 3, 6, 6), 77, np.uint8), packed, 0.1, 77, 1.0, bias=0.25,
                   padding=2)
    assert y.shape == (1, 2, 8, 8) and (y == np.float32(0.25)).all()


def test_functional_form_equals_the_layer():
    rng = np.random.default_rng(4)
    layer, X = make_case(rng, 1, 4, 8, 8, 4, (3, 3), 1, 1, 1, 2)
    f = layer.affine
    y = ki.qconv2d(X, layer.packed, f.sx, f.zx, f.s1, f.s2, f.a, f.c, f.bias, padding=1)
    np.testing.assert_array_equal(y, layer(X))
    np.testing.assert_array_equal(
        ki.qconv2d_reference(X, layer.packed, f.sx, f.zx, f.s1, f.s2, f.a, f.c, f.bias,
                             padding=1), y)


def test_geometry_and_input_errors():
    packed = ki.pack_pwlq_weights(np.ones((4, 2, 3, 3), np.int8), groups=2)
    X = np.zeros((1, 4, 5, 5), np.uint8)
    with pytest.raises(InputError, match=r"X: expected shape \(B, 4, H, W\).*received \(1, 3, 5, 5\)"):
        ki.qconv2d(np.zeros((1, 3, 5, 5), np.uint8), packed, 1.0, 0, 1.0)
    with pytest.raises(InputError, match="does not fit"):
        ki.qconv2d(np.zeros((1, 4, 2, 2), np.uint8), packed, 1.0, 0, 1.0)
    with pytest.raises(InputError, match="X: expected dtype uint8"):
        ki.qconv2d(X.astype(np.float32), packed, 1.0, 0, 1.0)
    with pytest.raises(InputError, match=r"X: expected shape \(B, C_in, H, W\)"):
        ki.qconv2d(X[0], packed, 1.0, 0, 1.0)
    with pytest.raises(InputError, match="stride"):
        ki.qconv2d(X, packed, 1.0, 0, 1.0, stride=0)
    with pytest.raises(InputError, match="padding"):
        ki.qconv2d(X, packed, 1.0, 0, 1.0, padding=(1, -1))
    with pytest.raises(InputError, match="qconv2d needs"):
        ki.qconv2d(X, ki.pack_pwlq_weights(np.ones((4, 18), np.int8)), 1.0, 0, 1.0)
    with pytest.raises(InputError, match="groups"):
        ki.pack_pwlq_weights(np.ones((3, 2, 3, 3), np.int8), groups=2)
    # Non-contiguous input: copied once, same result.
    big = np.random.default_rng(0).integers(0, 256, (1, 4, 10, 10), dtype=np.uint8)
    np.testing.assert_array_equal(ki.qconv2d(big[:, :, ::2, ::2], packed, 1.0, 3, 0.5),
                                  ki.qconv2d(np.ascontiguousarray(big[:, :, ::2, ::2]), packed,
                                             1.0, 3, 0.5))


# ---- float32 input quantized inside the kernel (PwlqConv2d.prepare_float / from_float) -------

def float_input(rng, shape, sx):
    """Float activations with exact rounding ties (k + 0.5)·sx, values past both saturation
    ends and negative zeros mixed in, so QuantizeLinear's edge cases are all exercised."""
    X = (rng.standard_normal(shape) * 120 * sx).astype(np.float32)
    flat = X.reshape(-1)
    n = flat.size
    ties = rng.choice(n, size=max(1, n // 4), replace=False)
    flat[ties] = (rng.integers(-140, 140, ties.size) + np.float32(0.5)) * np.float32(sx)
    flat[rng.choice(n, size=max(1, n // 50), replace=False)] = -0.0
    flat[rng.choice(n, size=max(1, n // 50), replace=False)] = 1e6
    return X


def test_quantize_linear_twin_is_onnx_quantize_linear():
    x = np.array([-1e9, -0.5, -0.0, 0.0, 0.5, 1.5, 2.5, 3.49, 126.5, 127.5, 1e9], np.float32)
    # ONNX QuantizeLinear, uint8: saturate(round_half_to_even(x / 1) + 128)
    want = np.array([0, 128, 128, 128, 128, 130, 130, 131, 254, 255, 255], np.uint8)
    np.testing.assert_array_equal(ki.quantize_linear(x, 1.0, 128), want)
    np.testing.assert_array_equal(ki.quantize_linear(x, 1.0, 128, clip=(-2.0, 2.0)),
                                  [126, 128, 128, 128, 128, 130, 130, 130, 130, 130, 130])


@pytest.mark.parametrize("path", PATH_PARAMS)
@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_float_input_matches_quantize_then_twin(path, case):
    rng = np.random.default_rng(7 + len(str(case)))
    layer, X8 = make_case(rng, *case)
    f = layer.affine
    X = float_input(rng, X8.shape, f.sx)
    want = layer.reference(ki.quantize_linear(X, f.sx, f.zx))
    np.testing.assert_array_equal(layer.from_float(X, path=path).view(np.uint32),
                                  want.view(np.uint32))
    relu = layer.prepare_float(relu=True, path=path, num_threads=1)
    np.testing.assert_array_equal(relu(X).view(np.uint32),
                                  np.maximum(want, np.float32(0)).view(np.uint32))
    clip = (-20 * f.sx, 30 * f.sx)
    np.testing.assert_array_equal(
        layer.from_float(X, clip=clip, path=path),
        layer.reference(ki.quantize_linear(X, f.sx, f.zx, clip=clip)))
    layer_q, _ = make_case(np.random.default_rng(3), *case, requant=True)
    fq = layer_q.affine
    np.testing.assert_array_equal(layer_q.prepare_float(path=path)(X),
                                  layer_q.reference(ki.quantize_linear(X, fq.sx, fq.zx)))


def test_prepared_float_layer_checks_its_input():
    rng = np.random.default_rng(11)
    layer, X8 = make_case(rng, *CASES[0])
    run = layer.prepare_float()
    X = float_input(rng, X8.shape, layer.affine.sx)
    with pytest.raises(TypeError):
        run(X.astype(np.float64))  # never converted
    with pytest.raises(TypeError):
        run(np.asfortranarray(X))
    with pytest.raises(ValueError, match="in_channels|N="):
        run(X[:, :8].copy())
    with pytest.raises(ValueError, match=r"\(B, C_in, H, W\)"):
        run(X[0])
    with pytest.raises(InputError, match="X: expected dtype float32"):
        layer.from_float(X8)
    with pytest.raises(InputError, match="clip"):
        layer.prepare_float(clip=(1.0, -1.0))
    layer_q, _ = make_case(rng, *CASES[0], requant=True)
    with pytest.raises(InputError, match="relu"):
        layer_q.prepare_float(relu=True)
    assert run(np.empty((0, *X.shape[1:]), np.float32)).shape == (0, 16, 28, 28)
