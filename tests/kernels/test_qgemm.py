"""sdk.kernels_int GEMM: every available SIMD path against the NumPy twin (integers and float
output bit-exact), the twin against the exact formula, requantization, threads, and the input
rules of the wrapper and the bindings."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdk import _kernels
from sdk import kernels_int as ki
from sdk.errors import InputError

AVAILABLE = ki.available_paths()
# Every path is a test parameter; one that cannot run here is skipped with the reason.
PATH_PARAMS = [pytest.param(p, marks=pytest.mark.skipif(AVAILABLE[p] is not None,
                                                        reason=str(AVAILABLE[p])))
               for p in ki.PATHS]
RUNNABLE = [p for p in ki.PATHS if AVAILABLE[p] is None]
FORMS = list(ki.TAIL_FORMS)


def pwlq_codes(rng, n, k, *, max_code=7, tail=0.1):
    """Random folded PWLQ code tensors (W0, W1) with a tail fraction ``tail`` (None: uniform):
    W0 holds the center codes and max_code·sign at every tail weight (Q = max_code)."""
    if tail is None:
        return rng.integers(-max_code, max_code + 1, (n, k)).astype(np.int8), None
    in_tail = rng.random((n, k)) < tail
    sign = np.where(in_tail, rng.choice(np.array([-1, 1], np.int8), (n, k)), 0).astype(np.int8)
    # |t| may be 0: a tail weight exactly at the breakpoint (then W0 alone carries it).
    tail_codes = (sign * rng.integers(0, max_code + 1, (n, k))).astype(np.int8)
    center = np.where(in_tail, max_code * sign,
                      rng.integers(-max_code, max_code + 1, (n, k))).astype(np.int8)
    return center, tail_codes


def epilogue_params(rng, n):
    return dict(s1=rng.uniform(1e-3, 0.05, n), s2=rng.uniform(1e-3, 0.05, n),
                a=rng.uniform(0.9, 1.1, n), c=rng.uniform(-0.05, 0.05, n),
                bias=rng.uniform(-1, 1, n))


def exact_output(X, packed, sx, zx, s1, s2, a, c, bias):
    """The paper's formula (folded: w = s1·W0 + s2·W1) in float64 and the magnitude of its
    terms (for tolerances)."""
    w0, w1 = (w.astype(np.float64) for w in packed.codes_2d())
    x = X.astype(np.float64) - zx
    terms = [sx * s1 * (x @ w0.T) * a, sx * s2 * (x @ w1.T) * a,
             (c * sx) * x.sum(axis=1, keepdims=True)]
    y = sum(terms) + bias
    scale = sum(np.abs(t) for t in terms) + np.abs(bias)
    return y, scale


def assert_accumulators_equal(got, want):
    assert len(got) == len(want) == 3
    for name, g, w in zip(("A_c", "A_t", "R"), got, want):
        assert g.dtype == np.int32, name
        np.testing.assert_array_equal(g, w, err_msg=name)


# ------------------------------------------------------------------------- kernel vs twin --

@pytest.mark.parametrize("path", PATH_PARAMS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (1, 9, 16), (3, 5, 7), (17, 63, 8), (49, 576, 64),
                                   (50, 144, 16), (100, 27, 33), (130, 65, 9), (7, 1000, 3)])
def test_kernel_matches_twin(path, form, m, k, n):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    packed = ki.pack_pwlq_weights(*pwlq_codes(rng, n, k), tail_form=form)
    X = rng.integers(0, 256, (m, k), dtype=np.uint8)
    assert_accumulators_equal(ki.qgemm_accumulators(X, packed, path=path),
                              ki.qgemm_accumulators_reference(X, packed))
    params = dict(sx=0.02, zx=int(rng.integers(0, 256)), **epilogue_params(rng, n))
    layer = ki.PwlqGemm(packed, **params)
    y = layer(X, path=path)
    assert y.dtype == np.float32 and y.shape == (m, n) and y.flags.c_contiguous
    # Same float32 operations in the same order: bit for bit.
    np.testing.assert_array_equal(y, layer.reference(X))
    rq = ki.PwlqGemm(packed, **params, out_scale=0.03, out_zero_point=100, relu=True)
    np.testing.assert_array_equal(rq(X, path=path), rq.reference(X))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=st.integers(1, 70), k=st.integers(1, 300), n=st.integers(1, 40),
       tail=st.sampled_from([None, 0.0, 0.1, 0.5, 1.0]), max_code=st.sampled_from([1, 7, 64, 127]),
       zx=st.sampled_from([0, 1, 128, 255]), form=st.sampled_from(FORMS),
       seed=st.integers(0, 2**32 - 1))
def test_random_shapes_all_paths_bit_exact(m, k, n, tail, max_code, zx, form, seed):
    rng = np.random.default_rng(seed)
    packed = ki.pack_pwlq_weights(*pwlq_codes(rng, n, k, max_code=max_code, tail=tail),
                                  tail_form=form)
    X = rng.integers(0, 256, (m, k), dtype=np.uint8)
    want_acc = ki.qgemm_accumulators_reference(X, packed)
    layer = ki.PwlqGemm(packed, 0.05, zx, **epilogue_params(rng, n))
    want_y = layer.reference(X)
    for path in RUNNABLE:
        assert_accumulators_equal(ki.qgemm_accumulators(X, packed, path=path), want_acc)
        np.testing.assert_array_equal(layer(X, path=path), want_y, err_msg=path)


@pytest.mark.parametrize("path", PATH_PARAMS)
@pytest.mark.parametrize("x_value", [0, 255])
@pytest.mark.parametrize("zx", [0, 255])
@pytest.mark.parametrize("weights", ["max codes", "min codes", "all tail", "no tail"])
def test_extreme_values(path, x_value, zx, weights):
    n, k, m = 9, 131, 21
    if weights == "max codes":
        codes = (np.full((n, k), 127, np.int8), None)
    elif weights == "min codes":  # -128 is not a PWLQ code, but every int8 is exact
        codes = (np.full((n, k), -128, np.int8), None)
    elif weights == "all tail":  # 8-bit PWLQ: W0 = 127·sign, W1 = ±127 everywhere
        sign = np.where(np.arange(n * k).reshape(n, k) % 2, 1, -1).astype(np.int8)
        codes = ((sign * 127).astype(np.int8), (sign * 127).astype(np.int8))
    else:
        codes = (np.full((n, k), -127, np.int8), np.zeros((n, k), np.int8))
    X = np.full((m, k), x_value, np.uint8)
    for form in FORMS:
        packed = ki.pack_pwlq_weights(*codes, tail_form=form)
        assert_accumulators_equal(ki.qgemm_accumulators(X, packed, path=path),
                                  ki.qgemm_accumulators_reference(X, packed))
        layer = ki.PwlqGemm(packed, 0.1, zx, 0.01, 0.02, out_scale=0.5, out_zero_point=zx)
        np.testing.assert_array_equal(layer(X, path=path), layer.reference(X))


@pytest.mark.parametrize("path", PATH_PARAMS)
@pytest.mark.parametrize("code", [7, -7, 9, -9, 32, -33, 64, 65, 127, -64, -65, -127, -128])
def test_avx2_saturation_boundary(path, code):
    """vpmaddubsw adds two u8·s8 products into a saturating int16: 255·(|w0| + |w1|) must stay
    below 32768. Codes up to ±64 take the direct sequence, larger ones the split one; both
    must give the exact sum (and every other path trivially does). Narrow codes also sum runs
    of 32767 // (510·max|code|) k-blocks in int16 (9 for ±7, 7 for ±9, 2 for ±32): all-255
    activations against all-±max codes reach each run's bound."""
    k = 64
    packed = ki.pack_pwlq_weights(np.full((3, k), code, np.int8))
    X = np.full((5, k), 255, np.uint8)
    a_c, *_ = ki.qgemm_accumulators(X, packed, path=path)
    assert (a_c == 255 * code * k).all()
    # The same in the sparse tail pass, with W0 = W1 (folded 8-bit codes overlap the tail).
    full = np.full((3, k), code, np.int8)
    packed = ki.pack_pwlq_weights(full, full)
    a_c, a_t, _ = ki.qgemm_accumulators(X, packed, path=path)
    assert (a_t == 255 * code * k).all() and (a_c == 255 * code * k).all()


def test_uniform_is_pwlq_without_tail():
    rng = np.random.default_rng(3)
    wc, _ = pwlq_codes(rng, 12, 40, tail=None)
    X = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    zeros = np.zeros_like(wc)
    y_uniform = ki.qgemm(X, ki.pack_pwlq_weights(wc), 0.1, 7, 0.02, bias=0.5)
    y_pwlq = ki.qgemm(X, ki.pack_pwlq_weights(wc, zeros), 0.1, 7, 0.02, 0.03, bias=0.5)
    np.testing.assert_array_equal(y_uniform, y_pwlq)


# ------------------------------------------------------------------ twin vs the arithmetic --

@pytest.mark.parametrize("seed", range(5))
def test_twin_matches_the_exact_formula(seed):
    """float32 rounding only: the per-channel constants and int32 -> float32 conversions are
    each rounded once (≤ 2^-24 relative), three products and three sums add a few ulp; so the
    error is bounded by a small multiple of 2^-24 times the magnitude of the terms."""
    rng = np.random.default_rng(seed)
    n, k, m = 24, 300, 40
    packed = ki.pack_pwlq_weights(*pwlq_codes(rng, n, k))
    X = rng.integers(0, 256, (m, k), dtype=np.uint8)
    params = epilogue_params(rng, n)
    f32 = {key: v.astype(np.float32).astype(np.float64) for key, v in params.items()}
    sx, zx = float(np.float32(0.037)), 101
    y = ki.qgemm(X, packed, sx, zx, **params)
    want, scale = exact_output(X, packed, sx, zx, **f32)
    assert np.all(np.abs(y - want) <= 1e-5 * scale)


def test_paper_example_by_hand():
    """One center weight, two tail weights (one at the breakpoint, |t| = 0) and the row sum,
    by hand. 4 bits: Q = 7, s1 = 0.25, s2 = 0.125, so the tail offset is p = 7·s1 = 1.75 and the
    weights are (3·0.25, +(0·0.125 + 1.75), −(2·0.125 + 1.75)) = (0.75, 1.75, −2)."""
    w0 = np.array([[3, 7, -7]], np.int8)   # center code, then Q·sign of the two tail weights
    w1 = np.array([[0, 0, -2]], np.int8)   # tail codes
    X = np.array([[10, 20, 30]], np.uint8)
    packed = ki.pack_pwlq_weights(w0, w1)
    a_c, a_t, r = ki.qgemm_accumulators(X, packed)
    assert (a_c[0, 0], a_t[0, 0], r[0]) == (30 + 140 - 210, -60, 60)
    # zx = 10: ac = -40 - 30, at = -60 + 20, r = 60 - 30.
    # y = 0.5 * (0.25*(-70) + 0.125*(-40)) * 2 + 0.1 * 0.5 * 30 + 1 = -22.5 + 1.5 + 1, which is
    # sx·a·Σ w·(x − zx) = 0.5·2·(0.75·0 + 1.75·10 − 2·20) + c·sx·r + bias.
    y = ki.qgemm(X, packed, 0.5, 10, 0.25, 0.125, a=2.0, c=0.1, bias=1.0)
    assert y[0, 0] == np.float32(-20.0)


# ------------------------------------------------------------------------- requantization --

@pytest.mark.parametrize("path", PATH_PARAMS)
def test_requantization_rounds_half_to_even_and_clamps(path):
    # One weight 1, s1 = 0.5, sx = 1, zx = 0: y = x / 2, so x = 1, 3, 5, 7 give 0.5, 1.5, 2.5,
    # 3.5 -> 0, 2, 2, 4; x = 255 -> 127.5 -> 128, plus zo; negative weight for the lower clamp.
    X = np.array([[1], [3], [5], [7], [255]], np.uint8)
    packed = ki.pack_pwlq_weights(np.array([[1], [-1]], np.int8))
    q = ki.qgemm(X, packed, 1.0, 0, 0.5, out_scale=1.0, out_zero_point=200, path=path)
    np.testing.assert_array_equal(q[:, 0], [200, 202, 202, 204, 255])
    np.testing.assert_array_equal(q[:, 1], [200, 198, 198, 196, 72])
    relu = ki.qgemm(X, packed, 1.0, 0, 0.5, out_scale=1.0, out_zero_point=200, relu=True,
                    path=path)
    np.testing.assert_array_equal(relu[:, 1], [200] * 5)
    assert q.dtype == np.uint8


@settings(max_examples=25, deadline=None)
@given(so=st.floats(1e-3, 10.0), zo=st.integers(0, 255), relu=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_requantization_matches_twin(so, zo, relu, seed):
    rng = np.random.default_rng(seed)
    packed = ki.pack_pwlq_weights(*pwlq_codes(rng, 11, 37))
    X = rng.integers(0, 256, (19, 37), dtype=np.uint8)
    layer = ki.PwlqGemm(packed, 0.02, 128, **epilogue_params(rng, 11), out_scale=so,
                        out_zero_point=zo, relu=relu)
    want = layer.reference(X)
    for path in RUNNABLE:
        np.testing.assert_array_equal(layer(X, path=path), want)


# ---------------------------------------------------------------------------------- threads --

@pytest.mark.parametrize("path", PATH_PARAMS)
@pytest.mark.parametrize("m", [5, 49, 1000])
def test_thread_count_does_not_change_results(path, m):
    rng = np.random.default_rng(m)
    packed = ki.pack_pwlq_weights(*pwlq_codes(rng, 64, 288))
    X = rng.integers(0, 256, (m, 288), dtype=np.uint8)
    layer = ki.PwlqGemm(packed, 0.02, 3, **epilogue_params(rng, 64))
    one = layer(X, path=path, num_threads=1)
    for threads in (2, 3, 8):
        np.testing.assert_array_equal(layer(X, path=path, num_threads=threads), one)
    np.testing.assert_array_equal(layer(X, path=path), one)


def test_concurrent_calls_from_python_threads():
    import threading

    rng = np.random.default_rng(5)
    packed = ki.pack_pwlq_weights(*pwlq_codes(rng, 32, 144))
    layer = ki.PwlqGemm(packed, 0.02, 128, 0.01, 0.02)
    inputs = [rng.integers(0, 256, (200, 144), dtype=np.uint8) for _ in range(4)]
    want = [layer.reference(x) for x in inputs]
    errors = []

    def work(i):
        try:
            for _ in range(20):
                np.testing.assert_array_equal(layer(inputs[i], num_threads=2), want[i])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


# ------------------------------------------------------------------------------------ paths --

def test_simd_path_is_available_and_honours_disable_simd():
    assert ki.simd_path() in ki.PATHS
    assert AVAILABLE[ki.simd_path()] is None and AVAILABLE["scalar"] is None
    env = dict(os.environ, PRISM_DISABLE_SIMD="1")
    out = subprocess.run([sys.executable, "-c", "from sdk import kernels_int as k; "
                          "print(k.simd_path(), k.available_paths()['avx2'] is None)"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["scalar", "False"]


def test_unavailable_path_is_a_clear_error():
    packed = ki.pack_pwlq_weights(np.ones((2, 3), np.int8))
    X = np.zeros((1, 3), np.uint8)
    missing = [p for p in ki.PATHS if AVAILABLE[p] is not None]
    if not missing:
        pytest.skip("every path runs on this machine")
    with pytest.raises(InputError, match=f"'{missing[0]}' cannot run here: {missing[0]}: "):
        ki.qgemm(X, packed, 1.0, 0, 1.0, path=missing[0])
    with pytest.raises(InputError, match="path: expected"):
        ki.qgemm(X, packed, 1.0, 0, 1.0, path="sse2")


# ------------------------------------------------------------------------------ input rules --

@pytest.mark.parametrize("dtype", [np.int8, np.float32, np.int32, np.uint16])
def test_wrong_dtype_input_is_rejected_not_cast(dtype):
    packed = ki.pack_pwlq_weights(np.ones((2, 3), np.int8))
    X = np.zeros((4, 3), dtype)
    with pytest.raises(InputError, match=r"X: expected dtype uint8 .*received .* \(4, 3\)"):
        ki.qgemm(X, packed, 1.0, 0, 1.0)
    with pytest.raises(ValueError):  # InputError is a ValueError
        ki.qgemm_accumulators(X, packed)


def test_wrong_shape_input_is_rejected():
    packed = ki.pack_pwlq_weights(np.ones((2, 3), np.int8))
    with pytest.raises(InputError, match=r"X: expected shape \(M, 3\).*received \(4, 5\)"):
        ki.qgemm(np.zeros((4, 5), np.uint8), packed, 1.0, 0, 1.0)
    with pytest.raises(InputError, match=r"X: expected shape \(M, 3\), received \(3,\)"):
        ki.qgemm(np.zeros(3, np.uint8), packed, 1.0, 0, 1.0)
    with pytest.raises(InputError, match="X: expected a numpy.ndarray"):
        ki.qgemm([[1, 2, 3]], packed, 1.0, 0, 1.0)


@pytest.mark.parametrize("view", ["transposed", "strided", "negative"])
def test_non_contiguous_input_is_copied_once_and_equals_contiguous(view):
    rng = np.random.default_rng(0)
    packed = ki.pack_pwlq_weights(*pwlq_codes(rng, 8, 20))
    base = rng.integers(0, 256, (40, 40), dtype=np.uint8)
    X = {"transposed": base.T[:, :20], "strided": base[::2, ::2], "negative": base[::-1, :20]}[view]
    assert not X.flags.c_contiguous
    np.testing.assert_array_equal(ki.qgemm(X, packed, 0.1, 3, 0.01, 0.02),
                                  ki.qgemm(np.ascontiguousarray(X), packed, 0.1, 3, 0.01, 0.02))


def test_binding_rejects_what_the_wrapper_would_copy_or_refuse():
    """The binding takes arrays with noconvert(): no silent cast, no silent copy."""
    packed = ki.pack_pwlq_weights(np.ones((2, 4), np.int8))
    params = _kernels.PwlqEpilogueArrays(*(np.ones(2, np.float32) for _ in range(5)))
    y = np.empty((3, 2), np.float32)
    for bad in (np.zeros((3, 4), np.float32), np.zeros((6, 4), np.uint8)[::2]):
        with pytest.raises(TypeError):
            _kernels.qgemm(bad, packed.native, 1.0, 0, params, y, None, 1.0, 0, False, "auto", 0)
    with pytest.raises(ValueError, match="x must be"):
        _kernels.qgemm(np.zeros((3, 5), np.uint8), packed.native, 1.0, 0, params, y, None, 1.0,
                       0, False, "auto", 0)


def test_sign_tensor_is_gone():
    """The folded form has no sign tensor: a third code tensor is an error, not ignored."""
    w = np.ones((2, 3), np.int8)
    with pytest.raises(TypeError):
        ki.pack_pwlq_weights(w, w, w)


def test_packing_argument_errors():
    w = np.ones((2, 3), np.int8)
    with pytest.raises(InputError, match="center: expected dtype int8"):
        ki.pack_pwlq_weights(w.astype(np.int16))
    with pytest.raises(InputError, match="tail: expected dtype int8"):
        ki.pack_pwlq_weights(w, w.astype(np.uint8))
    with pytest.raises(InputError, match=r"tail: expected the shape of center \(2, 3\)"):
        ki.pack_pwlq_weights(w, np.zeros((3, 2), np.int8))
    with pytest.raises(InputError, match="tail_form"):
        ki.pack_pwlq_weights(w, w * 0, tail_form="csr")
    with pytest.raises(InputError, match="K=65537 exceeds"):
        ki.pack_pwlq_weights(np.zeros((1, 65537), np.int8))
    with pytest.raises(InputError, match="groups=1"):
        ki.pack_pwlq_weights(w, groups=2)


def test_epilogue_argument_errors():
    packed = ki.pack_pwlq_weights(np.ones((2, 3), np.int8))
    X = np.zeros((1, 3), np.uint8)
    with pytest.raises(InputError, match="zx: expected an int zero point in 0..255"):
        ki.qgemm(X, packed, 1.0, 256, 1.0)
    with pytest.raises(InputError, match="sx: expected"):
        ki.qgemm(X, packed, 0.0, 0, 1.0)
    with pytest.raises(InputError, match=r"s2: expected a real number or a \(2,\) vector"):
        ki.qgemm(X, packed, 1.0, 0, 1.0, s2=[1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="give both"):
        ki.qgemm(X, packed, 1.0, 0, 1.0, out_scale=0.1)
    with pytest.raises(InputError, match="relu"):
        ki.qgemm(X, packed, 1.0, 0, 1.0, relu=True)
    with pytest.raises(InputError, match="num_threads"):
        ki.qgemm(X, packed, 1.0, 0, 1.0, num_threads=0)
    with pytest.raises(InputError, match="qgemm needs"):
        ki.qgemm(X, ki.pack_pwlq_weights(np.ones((2, 1, 1, 3), np.int8)), 1.0, 0, 1.0)


def test_empty_batch():
    packed = ki.pack_pwlq_weights(np.ones((2, 3), np.int8))
    assert ki.qgemm(np.zeros((0, 3), np.uint8), packed, 1.0, 0, 1.0).shape == (0, 2)
    a_c, _, r = ki.qgemm_accumulators(np.zeros((0, 3), np.uint8), packed)
    assert a_c.shape == (0, 2) and r.shape == (0,)


def test_packed_weights_describe_themselves():
    rng = np.random.default_rng(1)
    packed = ki.pack_pwlq_weights(*pwlq_codes(rng, 16, 144))
    assert (packed.channels, packed.depth, packed.groups, packed.tail_form) == (16, 144, 1,
                                                                                "sparse")
    # Blocks with a non-zero tail code: 1 - (1 - 0.1·7/8)**4 ≈ 0.31 of the 4-deep blocks.
    assert 0.2 < packed.tail_block_density < 0.45
    # Quads: each channel's non-zero tail codes in fours, the last one padded.
    _, tail = packed.codes_2d()
    quads = ((tail != 0).sum(axis=1) + 3) // 4
    assert packed.tail_quad_density == pytest.approx(quads.sum() / (16 * 144 // 4))
    assert not packed.center.flags.writeable
    assert ki.pack_pwlq_weights(packed.center).tail_form == "none"


@pytest.mark.parametrize("path", PATH_PARAMS)
@pytest.mark.parametrize("tail_blocks", [1, 2, 3])
def test_odd_and_even_tail_block_counts(path, tail_blocks):
    """Odd and even block counts (and quads padded with zero codes on AVX-512 VNNI); the
    density counts the blocks with a code. Channel 0 has `tail_blocks` tail blocks, channel 1 one
    fewer, the last block of each at the last k-block."""
    k = 40  # 10 k-blocks
    center = np.ones((2, k), np.int8)
    tail = np.zeros((2, k), np.int8)
    for ch, count in ((0, tail_blocks), (1, tail_blocks - 1)):
        for i in range(count):
            kb = 9 - 3 * i
            tail[ch, 4 * kb + (i % 4)] = 5 - 11 * (i % 2)
            center[ch, 4 * kb + (i % 4)] = 7 if tail[ch, 4 * kb + (i % 4)] > 0 else -7
    packed = ki.pack_pwlq_weights(center, tail)
    assert packed.tail_block_density == pytest.approx((2 * tail_blocks - 1) / 20)
    X = np.random.default_rng(tail_blocks).integers(0, 256, (37, k), dtype=np.uint8)
    a_c, a_t, r = ki.qgemm_accumulators(X, packed, path=path)
    np.testing.assert_array_equal(a_t, X.astype(np.int64) @ tail.T.astype(np.int64))
    np.testing.assert_array_equal(a_c, X.astype(np.int64) @ center.T.astype(np.int64))
    layer = ki.PwlqGemm(packed, 0.05, 7, 0.01, 0.03)
    np.testing.assert_array_equal(layer(X, path=path), layer.reference(X))


@pytest.mark.parametrize("path", PATH_PARAMS)
@pytest.mark.parametrize("m", [49, 64, 65, 112, 196, 784])
@pytest.mark.parametrize("threads", [1, 2])
def test_row_blocks_of_three_and_four_groups(path, m, threads):
    """Row counts whose 16-row groups split into blocks of 3 and 4 (AVX-512 has a 4-group
    tile: 49 and 64 rows are one block of 4, 196 rows 3 + 3 + 3 + 4), with every tail form,
    bit-exact with the twin at one and two threads."""
    rng = np.random.default_rng(m)
    X = rng.integers(0, 256, (m, 200), dtype=np.uint8)
    codes = pwlq_codes(rng, 24, 200)
    for form in FORMS:
        packed = ki.pack_pwlq_weights(*codes, tail_form=form)
        got = ki.qgemm_accumulators(X, packed, path=path, num_threads=threads)
        want = ki.qgemm_accumulators_reference(X, packed)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        layer = ki.PwlqGemm(packed, 0.05, 3, **epilogue_params(rng, 24))
        np.testing.assert_array_equal(layer(X, path=path, num_threads=threads), layer.reference(X))
