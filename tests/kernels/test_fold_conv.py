"""sdk.fold_conv: the fused Fold → dilated conv → Unfold kernels against PyTorch's unfused
sequence and their NumPy twins (FP32 within 1e-4, integer bit for bit), the channel order of
ONNX SpaceToDepth, and the wrappers' input rules."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sdk import fold_conv as fc
from sdk.errors import InputError

torch = pytest.importorskip("torch")
F = torch.nn.functional

FP32_PATHS = [p for p, why in fc.available_paths().items() if why is None]
INT_PATHS = [p for p, why in fc.available_paths(integer=True).items() if why is None]


def torch_unfused(x, w, b, dilation, padding, relu=False):
    """PyTorch's pixel_unshuffle → conv2d(dilation) → pixel_shuffle (the definition)."""
    with torch.no_grad():
        y = F.pixel_shuffle(F.conv2d(F.pixel_unshuffle(torch.from_numpy(x), 2),
                                     torch.from_numpy(w),
                                     None if b is None else torch.from_numpy(b),
                                     padding=padding, dilation=dilation), 2)
        return (F.relu(y) if relu else y).numpy()


def random_fp32(rng, n, c_in, c_out, h, w, k):
    x = rng.standard_normal((n, c_in, h, w), dtype=np.float32)
    # Unit-variance outputs, as trained layers have (1e-4 is then a relative bound too).
    weight = (rng.standard_normal((4 * c_out, 4 * c_in, k, k)) / np.sqrt(4 * c_in * k * k))
    bias = rng.standard_normal(4 * c_out).astype(np.float32)
    return x, weight.astype(np.float32), bias


def random_codes(rng, shape, with_tail, bits=None):
    """Int8 codes ``(W, None)`` of ``bits`` b (4 or 8, drawn when None: |code| ≤ Q =
    2^(b−1) − 1; 4-bit codes take the AVX2 path's int16 runs, 8-bit ones its split form), or
    folded PWLQ codes ``(W0, W1)`` (~10 % tail weights, some with a zero tail code): W0 holds the
    center codes and ``Q·sign`` at every tail weight."""
    q = 2 ** ((bits or int(rng.choice([4, 8]))) - 1) - 1
    center = rng.integers(-q, q + 1, shape).astype(np.int8)
    if not with_tail:
        return center, None
    in_tail = rng.random(shape) < 0.1
    sign = np.where(in_tail, np.where(rng.random(shape) < 0.5, -1, 1), 0).astype(np.int8)
    tail = (sign * rng.integers(0, min(q, 63) + 1, shape)).astype(np.int8)
    return np.where(in_tail, q * sign, center).astype(np.int8), tail


# Shapes: odd channel counts, C_out across the 6-channel weight block, widths across one and
# several 16/32-pixel vectors, batch 1 and several; K = 1 and 3, dilations 1/2/4/6, padding that
# keeps the size (as ASPP uses) or an explicit one.
shapes = st.fixed_dictionaries({
    "n": st.integers(1, 3), "c_in": st.integers(1, 7), "c_out": st.integers(1, 13),
    "h": st.integers(1, 10).map(lambda v: 2 * v), "w": st.integers(1, 22).map(lambda v: 2 * v),
    "k": st.sampled_from([1, 3]), "dilation": st.sampled_from([1, 2, 4, 6]),
    "padding": st.one_of(st.just("same"), st.integers(0, 7)),
})


def _padding(s) -> int:
    return fc.same_padding(s["k"], s["dilation"]) if s["padding"] == "same" else s["padding"]


def _fits(s) -> bool:
    reach = s["dilation"] * (s["k"] - 1)
    return all(v // 2 + 2 * _padding(s) - reach > 0 for v in (s["h"], s["w"]))


# ------------------------------------------------------------------------------------- FP32 --

@settings(max_examples=60, deadline=None)
@given(s=shapes, seed=st.integers(0, 2**32 - 1))
def test_fp32_matches_torch_and_twin(s, seed):
    assume(_fits(s))
    rng = np.random.default_rng(seed)
    x, w, b = random_fp32(rng, s["n"], s["c_in"], s["c_out"], s["h"], s["w"], s["k"])
    pad = _padding(s)
    want = torch_unfused(x, w, b, s["dilation"], pad)
    twin = fc.fold_conv2d_reference(x, w, b, dilation=s["dilation"], padding=s["padding"])
    np.testing.assert_allclose(twin, want, rtol=0, atol=1e-4)
    packed = fc.pack_fold_weights(w, b)
    for path in FP32_PATHS:
        got = fc.fold_conv2d(x, packed, dilation=s["dilation"], padding=s["padding"], path=path)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4, err_msg=path)
        np.testing.assert_allclose(got, twin, rtol=0, atol=1e-4, err_msg=path)


@pytest.mark.parametrize("path", FP32_PATHS)
def test_fp32_aspp_shapes_relu_and_threads(path):
    """The benchmark's layer shapes (C = 64, same padding, dilations 2/4/6), fused ReLU, and
    results that do not depend on the thread count (each output tile has one owner)."""
    rng = np.random.default_rng(7)
    for h, d in ((28, 2), (28, 6), (56, 4)):
        x, w, b = random_fp32(rng, 1, 64, 64, h, h, 3)
        want = torch_unfused(x, w, b, d, d, relu=True)
        packed = fc.pack_fold_weights(w, b)
        outs = [fc.fold_conv2d(x, packed, dilation=d, relu=True, path=path, num_threads=t)
                for t in (1, 2, 3)]
        np.testing.assert_allclose(outs[0], want, rtol=0, atol=1e-4)
        for other in outs[1:]:
            np.testing.assert_array_equal(other, outs[0])


WINOGRAD_ISAS = [isa for isa in ("avx512", "avx2") if isa + "_winograd4" in FP32_PATHS]
# The automatic FP32 algorithm on the benchmark's maps (64 channels, same padding) by the cost
# model: F(4×4) from 4 vectors of tiles (from one on AVX2), F(2×2) elsewhere (at 28×28 d=6 since
# the model counts the direct kernel's 32 columns per 28-column row).
AUTO_ALGORITHM = {
    "avx512": {(56, 2): "avx512_winograd4", (56, 4): "avx512_winograd4",
               (56, 6): "avx512_winograd", (28, 2): "avx512_winograd",
               (28, 4): "avx512_winograd", (28, 6): "avx512_winograd"},
    "avx2": {(56, 2): "avx2_winograd4", (56, 4): "avx2_winograd4", (56, 6): "avx2_winograd",
             (28, 2): "avx2_winograd4", (28, 4): "avx2_winograd4", (28, 6): "avx2_winograd"},
}


@pytest.mark.parametrize("isa", WINOGRAD_ISAS)
def test_fp32_algorithm_follows_the_cost_model(isa):
    """Auto's choices on one ISA (capped by PRISM_MAX_ISA in a fresh process: the cap is read
    once per process)."""
    code = ("import numpy as np; from sdk import fold_conv as fc\n"
            "w = np.zeros((256, 256, 3, 3), np.float32)\n"
            "for h, d in ((56, 2), (56, 4), (56, 6), (28, 2), (28, 4), (28, 6)):\n"
            "    print(h, d, fc.fp32_algorithm((1, 64, h, h), w, dilation=d))\n")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PRISM_MAX_ISA": isa},
                         capture_output=True, text=True, check=True).stdout.split("\n")
    got = {(int(h), int(d)): a for h, d, a in (line.split() for line in out if line)}
    assert got == AUTO_ALGORITHM[isa]


@pytest.mark.skipif(not WINOGRAD_ISAS, reason="no AVX2/AVX-512 Winograd path on this CPU")
def test_fp32_algorithm_is_the_path_auto_runs():
    """``fp32_algorithm`` names the path ``fold_conv2d`` runs: auto's output is bit-identical to
    that path's; a Winograd path runs its ISA's direct kernel for K ≠ 3."""
    rng = np.random.default_rng(11)
    isa = fc.simd_path().split("_")[0]
    for h, d in ((56, 4), (56, 6), (28, 2), (28, 6)):
        x, w, b = random_fp32(rng, 1, 16, 16, h, h, 3)
        algo = fc.fp32_algorithm(x.shape, w, dilation=d)
        assert algo.startswith(isa)
        packed = fc.pack_fold_weights(w, b)
        np.testing.assert_array_equal(fc.fold_conv2d(x, packed, dilation=d),
                                      fc.fold_conv2d(x, packed, dilation=d, path=algo))
        for forced in (isa, isa + "_winograd", isa + "_winograd4"):
            assert fc.fp32_algorithm(x.shape, packed, dilation=d, path=forced) == forced
    w1 = rng.standard_normal((64, 64, 1, 1)).astype(np.float32)
    assert fc.fp32_algorithm((1, 16, 28, 28), w1) == isa
    assert fc.fp32_algorithm((1, 16, 28, 28), w1, path=isa + "_winograd4") == isa
    with pytest.raises(InputError, match="x_shape"):
        fc.fp32_algorithm((1, 15, 28, 28), w)
    with pytest.raises(InputError, match="does not fit the folded input"):
        fc.fp32_algorithm((1, 16, 4, 4), w, dilation=6, padding=0)


@pytest.mark.parametrize("isa", WINOGRAD_ISAS)
def test_fp32_winograd_forms_agree_with_direct_on_wide_layers(isa):
    """F(4×4, 3×3) uses points 0, ±1, ½, −2: on 256 folded input channels its error against the
    direct kernel stays at F(2×2)'s level (Lavin's 0, ±1, ±2 gave 4× F(2×2)'s)."""
    rng = np.random.default_rng(5)
    x, w, b = random_fp32(rng, 1, 64, 64, 56, 56, 3)
    packed = fc.pack_fold_weights(w, b)
    direct = fc.fold_conv2d(x, packed, dilation=4, path=isa)
    err = {tile: float(np.abs(fc.fold_conv2d(x, packed, dilation=4, path=f"{isa}_winograd{tile}")
                              - direct).max()) for tile in ("", "4")}
    assert err[""] < 5e-5 and err["4"] < 5e-5, err


@pytest.mark.parametrize("path", [p for p in FP32_PATHS if "winograd" in p])
def test_fp32_winograd_batch_is_per_image(path):
    """A batch goes through Winograd in groups of images (one GEMM over the group's tile
    vectors, the weights read once): every image's output is bit-identical to its own call,
    for batches that split into groups unevenly, with ReLU and two threads."""
    rng = np.random.default_rng(4)
    for h, d, n in ((28, 2, 11), (12, 4, 3), (56, 6, 2)):
        x, w, b = random_fp32(rng, n, 8, 5, h, h, 3)
        packed = fc.pack_fold_weights(w, b)
        got = fc.fold_conv2d(x, packed, dilation=d, relu=True, path=path, num_threads=2)
        for i in range(n):
            np.testing.assert_array_equal(
                got[i], fc.fold_conv2d(x[i:i + 1], packed, dilation=d, relu=True, path=path)[0],
                err_msg=f"{path} {h}x{h} d={d} image {i} of {n}")


def test_packed_size_counts_the_winograd_forms():
    """3×3 weights carry their F(2×2) and F(4×4) forms (16/9 and 36/9 the plain size, 12-channel
    blocks) only where a Winograd path runs; other kernel sizes never."""
    rng = np.random.default_rng(2)
    w3 = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    w1 = rng.standard_normal((24, 16, 1, 1)).astype(np.float32)
    plain3, plain1 = (fc.pack_fold_weights(w).native.nbytes for w in (w3, w1))
    assert plain1 == (1 * 2 * 4 * 48 + 24) * 4  # 1 block of 6 channels: taps × 2·C_in × 48, bias
    forms = 4 * (16 + 36) * 16 * 24 + 4 * 24  # ξ × 4·C_in × 4·C_out (2 full blocks), folded bias
    assert plain3 == (9 * 2 * 4 * 48 + 24) * 4 + (forms if WINOGRAD_ISAS else 0)


def test_unpacked_weights_and_bias_none():
    rng = np.random.default_rng(3)
    x, w, _ = random_fp32(rng, 2, 3, 5, 6, 8, 3)
    np.testing.assert_allclose(fc.fold_conv2d(x, w, dilation=2),
                               torch_unfused(x, w, None, 2, 2), rtol=0, atol=1e-4)


def test_zero_batch():
    rng = np.random.default_rng(0)
    _, w, b = random_fp32(rng, 1, 2, 3, 4, 4, 3)
    y = fc.fold_conv2d(np.zeros((0, 2, 4, 4), np.float32), w, b)
    assert y.shape == (0, 3, 4, 4)


# ---------------------------------------------------------------------------------- integer --

@settings(max_examples=60, deadline=None)
@given(s=shapes, seed=st.integers(0, 2**32 - 1), with_tail=st.booleans())
def test_integer_bit_exact_with_twin(s, seed, with_tail):
    assume(_fits(s))
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (s["n"], s["c_in"], s["h"], s["w"]), dtype=np.uint8)
    codes = random_codes(rng, (4 * s["c_out"], 4 * s["c_in"], s["k"], s["k"]), with_tail)
    packed = fc.pack_fold_qweights(*codes)
    zx = int(rng.integers(0, 256))
    geo = dict(dilation=s["dilation"], padding=s["padding"])
    n = 4 * s["c_out"]
    params = dict(s1=rng.uniform(0.005, 0.02, n), s2=rng.uniform(0.01, 0.05, n),
                  a=rng.uniform(0.8, 1.2, n),
                  c=rng.uniform(-1e-3, 1e-3, n), bias=rng.standard_normal(n))
    requant = dict(out_scale=0.07, out_zero_point=int(rng.integers(0, 256)),
                   relu=bool(rng.integers(0, 2)))
    want_acc = fc.fold_qconv2d_accumulators_reference(X, packed, zx, **geo)
    want_y = fc.fold_qconv2d_reference(X, packed, 0.03, zx, **params, **geo)
    want_q = fc.fold_qconv2d_reference(X, packed, 0.03, zx, **params, **requant, **geo)
    for path in INT_PATHS:
        acc = fc.fold_qconv2d_accumulators(X, packed, zx, path=path, **geo)
        for got, want, name in zip(acc, want_acc, ("A_c", "A_t", "R")):
            assert got.dtype == np.int32
            np.testing.assert_array_equal(got, want, err_msg=f"{path} {name}")
        y = fc.fold_qconv2d(X, packed, 0.03, zx, **params, path=path, **geo)
        np.testing.assert_array_equal(y, want_y, err_msg=path)
        q = fc.fold_qconv2d(X, packed, 0.03, zx, **params, **requant, path=path, **geo)
        assert q.dtype == np.uint8
        np.testing.assert_array_equal(q, want_q, err_msg=path)


@pytest.mark.parametrize("path", INT_PATHS)
@pytest.mark.parametrize("max_code", [7, 9, 64, 65, 127])
def test_integer_extreme_values(path, max_code):
    """Every activation 255 (and 0) against every code ±max|code| on a deep window (4·C_in·K·K =
    576): the bounds of the AVX2 path's int16 runs (32767 // (510·max|code|) groups) and of its
    split form (codes beyond ±64), on every path."""
    geo = dict(dilation=2, padding=2)
    for value in (255, 0):
        X = np.full((1, 16, 12, 20), value, np.uint8)
        for sign in (1, -1):
            center = np.full((8, 64, 3, 3), sign * max_code, np.int8)
            tail = np.full_like(center, -sign * min(max_code, 127))
            for codes in ((center, None), (center, tail)):
                packed = fc.pack_fold_qweights(*codes)
                for zx in (0, 255):
                    want = fc.fold_qconv2d_accumulators_reference(X, packed, zx, **geo)
                    got = fc.fold_qconv2d_accumulators(X, packed, zx, path=path, **geo)
                    for g, w, name in zip(got, want, ("A_c", "A_t", "R")):
                        np.testing.assert_array_equal(g, w, err_msg=f"{name} x={value} zx={zx}")


def test_integer_accumulators_are_the_unfused_sequence():
    """A_c is pixel_shuffle(conv2d(pixel_unshuffle(X − 0), W0)) with zx padding: check it in
    exact integer arithmetic (float64 torch on small ints) for a zero point of 0."""
    rng = np.random.default_rng(11)
    X = rng.integers(0, 256, (2, 5, 12, 18), dtype=np.uint8)
    center, _ = random_codes(rng, (4 * 7, 4 * 5, 3, 3), False)
    packed = fc.pack_fold_qweights(center)
    a_c, _, r = fc.fold_qconv2d_accumulators(X, packed, 0, dilation=4)
    with torch.no_grad():
        want = F.pixel_shuffle(F.conv2d(F.pixel_unshuffle(torch.from_numpy(X).double(), 2),
                                        torch.from_numpy(center).double(), padding=4,
                                        dilation=4), 2).numpy()
        ones = torch.ones(1, 4 * 5, 3, 3, dtype=torch.float64)
        want_r = F.conv2d(F.pixel_unshuffle(torch.from_numpy(X).double(), 2), ones, padding=4,
                          dilation=4)[:, 0].numpy()
    np.testing.assert_array_equal(a_c, want.astype(np.int64))
    np.testing.assert_array_equal(r, want_r.astype(np.int64))


@pytest.mark.parametrize("with_tail", [False, True])
def test_integer_matches_kernels_int_on_the_folded_input(with_tail):
    """The epilogue is sdk.kernels_int's: qconv2d on the explicitly folded input, unfolded,
    gives the same bits (kernel and twin)."""
    ki = pytest.importorskip("sdk.kernels_int")
    rng = np.random.default_rng(5)
    X = rng.integers(0, 256, (2, 3, 14, 10), dtype=np.uint8)
    codes = random_codes(rng, (4 * 4, 4 * 3, 3, 3), with_tail, bits=8)
    n = 16
    params = dict(s1=rng.uniform(0.005, 0.02, n), s2=0.02, a=rng.uniform(0.8, 1.2, n),
                  c=1e-3, bias=rng.standard_normal(n))
    packed = fc.pack_fold_qweights(*codes)
    folded = np.ascontiguousarray(fc.fold_reference(X))
    theirs_packed = ki.pack_pwlq_weights(*codes)
    for requant in ({}, dict(out_scale=0.05, out_zero_point=30)):
        # Both take the same folded (W0, W1) codes.
        theirs = fc.unfold_reference(ki.qconv2d(folded, theirs_packed, 0.04, 17, **params,
                                                **requant, padding=2, dilation=2))
        for path in INT_PATHS:
            ours = fc.fold_qconv2d(X, packed, 0.04, 17, **params, **requant, dilation=2,
                                   path=path)
            np.testing.assert_array_equal(ours, theirs, err_msg=path)
        ref = fc.fold_qconv2d_reference(X, packed, 0.04, 17, **params, **requant, dilation=2)
        np.testing.assert_array_equal(ref, theirs)


def test_integer_folded_codes_are_the_unfolded_pwlq_weights():
    """With p = Q·s1, s1·W0 + s2·W1 is the unfolded PWLQ weight sign·(s2·q + p) at a tail weight
    (W0 = Q·sign, W1 = sign·q) and s1·center elsewhere: the float output agrees with a float64
    convolution of those weights (to float32 rounding), and the tail pass visits exactly the
    4-byte groups with a non-zero tail code."""
    rng = np.random.default_rng(21)
    X = rng.integers(0, 256, (1, 3, 12, 16), dtype=np.uint8)
    shape = (4 * 5, 4 * 3, 3, 3)
    Q = 7  # 4 bits
    center = rng.integers(-Q, Q + 1, shape)
    in_tail = rng.random(shape) < 0.1
    sign = np.where(rng.random(shape) < 0.5, -1, 1)
    q = rng.integers(0, 8, shape)  # tail codes, some 0 (a tail weight of just the offset)
    w0 = np.where(in_tail, Q * sign, center).astype(np.int8)
    w1 = np.where(in_tail, sign * q, 0).astype(np.int8)
    s1, s2, sx, zx = 0.01, 0.004, 0.02, 9
    unfolded = np.where(in_tail, sign * (s2 * q + Q * s1), s1 * center)
    packed = fc.pack_fold_qweights(w0, w1)
    y = fc.fold_qconv2d(X, packed, sx, zx, s1, s2, dilation=2)
    xf = torch.from_numpy(sx * (X.astype(np.float64) - zx))
    want = F.pixel_shuffle(F.conv2d(F.pixel_unshuffle(xf, 2), torch.from_numpy(unfolded),
                                    padding=2, dilation=2), 2).numpy()
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-5 * np.abs(want).max())
    groups = (w1.reshape(shape[0], 3, 4, 3, 3) != 0).any(axis=2)
    assert packed.tail_group_density == pytest.approx(groups.mean())
    assert packed.tail_code_density == pytest.approx((w1 != 0).mean())
    # Quads: the non-zero codes of each (channel, kernel row) in fours, the last one padded.
    per_row = (w1 != 0).sum(axis=(1, 3))  # (channel, kh)
    assert packed.tail_quad_density == pytest.approx(((per_row + 3) // 4).sum() / groups.size)


@pytest.mark.parametrize("path", INT_PATHS)
def test_integer_threads_and_aspp_shapes(path):
    rng = np.random.default_rng(9)
    for h, d in ((28, 6), (56, 2)):
        X = rng.integers(0, 256, (1, 64, h, h), dtype=np.uint8)
        packed = fc.pack_fold_qweights(*random_codes(rng, (256, 256, 3, 3), True))
        outs = [fc.fold_qconv2d_accumulators(X, packed, 128, dilation=d, path=path,
                                             num_threads=t) for t in (1, 2, 5)]
        for other in outs[1:]:
            for a, b in zip(other, outs[0]):
                np.testing.assert_array_equal(a, b)
    want = fc.fold_qconv2d_accumulators_reference(X, packed, 128, dilation=d)
    for a, b in zip(outs[0], want):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------- channel order --

def test_onnx_space_to_depth_order_differs_from_pixel_unshuffle():
    """ONNX SpaceToDepth puts pixel (bh, bw) of channel c at (bh·2 + bw)·C + c; PyTorch's
    pixel_unshuffle at c·4 + bh·2 + bw. DepthToSpace mode CRD matches pixel_shuffle."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = np.arange(2 * 3 * 4 * 6, dtype=np.float32).reshape(2, 3, 4, 6)
    graph = helper.make_graph(
        [helper.make_node("SpaceToDepth", ["x"], ["s"], blocksize=2),
         helper.make_node("DepthToSpace", ["x4"], ["d"], blocksize=2, mode="CRD")],
        "orders", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 6]),
                   helper.make_tensor_value_info("x4", TensorProto.FLOAT, [2, 12, 2, 3])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, [2, 12, 2, 3]),
         helper.make_tensor_value_info("d", TensorProto.FLOAT, [2, 3, 4, 6])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    folded = fc.fold_reference(x)
    s2d, d2s = session.run(None, {"x": x, "x4": folded})
    assert not np.array_equal(s2d, folded)
    n, c = 2, 3
    dcr = folded.reshape(n, c, 4, 2, 3).transpose(0, 2, 1, 3, 4).reshape(n, 4 * c, 2, 3)
    np.testing.assert_array_equal(s2d, dcr)
    np.testing.assert_array_equal(fc.space_to_depth_reference(x), s2d)
    np.testing.assert_array_equal(fc.depth_to_space_reference(s2d, "DCR"), x)
    np.testing.assert_array_equal(d2s, x)  # CRD DepthToSpace undoes pixel_unshuffle
    np.testing.assert_array_equal(fc.depth_to_space_reference(folded, "CRD"), x)
    np.testing.assert_array_equal(fc.fold_reference(x),
                                  F.pixel_unshuffle(torch.from_numpy(x), 2).numpy())
    np.testing.assert_array_equal(fc.unfold_reference(folded),
                                  F.pixel_shuffle(torch.from_numpy(folded), 2).numpy())


def test_space_to_depth_graph_is_the_kernel_with_converted_weights():
    """SpaceToDepth → Conv(W) → DepthToSpace(CRD) in ONNX Runtime equals fold_conv2d with
    weight_from_space_to_depth(W)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    x, w, b = random_fp32(rng, 2, 3, 5, 12, 16, 3)
    graph = helper.make_graph(
        [helper.make_node("SpaceToDepth", ["x"], ["f"], blocksize=2),
         helper.make_node("Conv", ["f", "w", "b"], ["c"], pads=[4, 4, 4, 4], dilations=[4, 4]),
         helper.make_node("DepthToSpace", ["c"], ["y"], blocksize=2, mode="CRD")],
        "fold_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {"x": x})
    got = fc.fold_conv2d(x, fc.weight_from_space_to_depth(w), b, dilation=4)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    # Without the conversion the kernel computes something else.
    assert np.abs(fc.fold_conv2d(x, w, b, dilation=4) - want).max() > 1e-2


# ------------------------------------------------------------------------------ input rules --

@pytest.mark.parametrize("shape", [(1, 2, 5, 6), (1, 2, 6, 7), (2, 2, 3, 3)])
def test_odd_height_or_width_names_the_array_and_shape(shape):
    rng = np.random.default_rng(0)
    _, w, b = random_fp32(rng, 1, 2, 2, 4, 4, 3)
    with pytest.raises(ValueError, match=r"x: H and W must be even.*" + str(shape).replace(
            "(", r"\(").replace(")", r"\)")):
        fc.fold_conv2d(np.zeros(shape, np.float32), w, b)
    packed = fc.pack_fold_qweights(np.zeros((8, 8, 3, 3), np.int8))
    with pytest.raises(InputError, match=r"X: H and W must be even"):
        fc.fold_qconv2d_accumulators(np.zeros(shape, np.uint8), packed, 0)
    with pytest.raises(InputError, match=r"X: H and W must be even"):
        fc.fold_qconv2d_reference(np.zeros(shape, np.uint8), packed, 0.1, 0, 1.0)


def test_input_errors():
    rng = np.random.default_rng(0)
    x, w, b = random_fp32(rng, 1, 2, 3, 4, 6, 3)
    with pytest.raises(InputError, match="x: expected dtype float32"):
        fc.fold_conv2d(x.astype(np.float64), w, b)
    with pytest.raises(InputError, match=r"x: expected shape \(N, 2, H, W\)"):
        fc.fold_conv2d(np.zeros((1, 3, 4, 6), np.float32), w, b)
    with pytest.raises(InputError, match=r"weight: expected shape \(4\*C_out, 4\*C_in, K, K\)"):
        fc.fold_conv2d(x, w[:, :7], b)
    with pytest.raises(InputError, match=r"bias: expected shape \(12,\)"):
        fc.fold_conv2d(x, w, b[:5])
    with pytest.raises(InputError, match="does not fit"):
        fc.fold_conv2d(x, w, b, dilation=6, padding=0)
    with pytest.raises(InputError, match="'same' needs an even"):
        fc.fold_conv2d(x, w[..., :2, :2], b, dilation=1)
    with pytest.raises(InputError, match="carry their bias"):
        fc.fold_conv2d(x, fc.pack_fold_weights(w, b), b)
    with pytest.raises(InputError, match="path"):
        fc.fold_conv2d(x, w, b, path="avx512vnni")
    with pytest.raises(InputError, match="num_threads"):
        fc.fold_conv2d(x, w, b, num_threads=0)
    # A non-contiguous input is copied once, not refused.
    wide = np.zeros((1, 2, 4, 12), np.float32)
    wide[..., ::2] = x
    np.testing.assert_allclose(fc.fold_conv2d(wide[..., ::2], w, b), fc.fold_conv2d(x, w, b))


@pytest.mark.parametrize("path", INT_PATHS)
def test_prepared_layer_is_fold_qconv2d(path):
    """FoldQConvLayer gives fold_qconv2d's bits (float and requantized, padding 'same' and
    explicit, batch 0, 1 and 3, 1 and 2 threads) and checks X per call."""
    rng = np.random.default_rng(21)
    packed = fc.pack_fold_qweights(*random_codes(rng, (12, 8, 3, 3), True))
    n = 12
    params = dict(s1=rng.uniform(0.005, 0.02, n), s2=rng.uniform(0.01, 0.05, n),
                  a=rng.uniform(0.8, 1.2, n), c=rng.uniform(-1e-3, 1e-3, n),
                  bias=rng.standard_normal(n))
    requant = dict(out_scale=0.07, out_zero_point=9, relu=True)
    for geo in (dict(dilation=2), dict(dilation=3, padding=1)):
        for extra in ({}, requant):
            layer = fc.prepare_fold_qconv2d(packed, 0.03, 77, **params, **extra, **geo)
            assert layer.requantized == bool(extra)
            for batch in (0, 1, 3):
                X = rng.integers(0, 256, (batch, 2, 14, 22), dtype=np.uint8)
                want = fc.fold_qconv2d(X, packed, 0.03, 77, **params, **extra, **geo, path=path)
                for t in (1, 2):
                    got = layer(X, path=path, num_threads=t)
                    assert got.dtype == want.dtype and got.shape == want.shape
                    np.testing.assert_array_equal(got, want)
    with pytest.raises(InputError, match="X: expected dtype uint8"):
        layer(X.astype(np.int16))
    with pytest.raises(InputError, match=r"X: expected shape \(N, 2, H, W\)"):
        layer(X[:, :1])
    with pytest.raises(InputError, match="X: H and W must be even"):
        layer(X[..., :21])
    with pytest.raises(InputError, match="does not fit"):
        layer(X[..., :2, :2])
    with pytest.raises(InputError, match="num_threads"):
        layer(X, num_threads=0)
    with pytest.raises(InputError, match="s1"):
        fc.prepare_fold_qconv2d(packed, 0.03, 77, None)
    with pytest.raises(InputError, match="dilation"):
        fc.prepare_fold_qconv2d(packed, 0.03, 77, 1.0, dilation=0)
    even = fc.pack_fold_qweights(*random_codes(rng, (4, 4, 2, 2), True))  # K = 2
    with pytest.raises(InputError, match="'same' needs an even"):
        fc.prepare_fold_qconv2d(even, 0.03, 77, 1.0)
    with pytest.raises(InputError, match="packed"):
        fc.prepare_fold_qconv2d(object(), 0.03, 77, 1.0)


def test_integer_input_errors():
    rng = np.random.default_rng(0)
    center, tail = random_codes(rng, (8, 8, 3, 3), True)
    with pytest.raises(InputError, match="tail: expected the shape of center"):
        fc.pack_fold_qweights(center, tail[:, :, :1, :1])
    with pytest.raises(InputError, match="tail: expected dtype int8"):
        fc.pack_fold_qweights(center, tail.astype(np.int16))
    packed = fc.pack_fold_qweights(center, tail)
    X = rng.integers(0, 256, (1, 2, 4, 4), dtype=np.uint8)
    with pytest.raises(InputError, match="zx"):
        fc.fold_qconv2d_accumulators(X, packed, 256)
    with pytest.raises(InputError, match="s1"):
        fc.fold_qconv2d(X, packed, 0.1, 3, None)
    with pytest.raises(InputError, match=r"\(8,\) vector"):
        fc.fold_qconv2d(X, packed, 0.1, 3, np.ones(4))
    with pytest.raises(InputError, match="relu"):
        fc.fold_qconv2d(X, packed, 0.1, 3, 1.0, relu=True)
    with pytest.raises(InputError, match="X: expected dtype uint8"):
        fc.fold_qconv2d(X.astype(np.int8), packed, 0.1, 3, 1.0)
    with pytest.raises(InputError, match="path"):
        fc.fold_qconv2d(X, packed, 0.1, 3, 1.0, path="avx512")
