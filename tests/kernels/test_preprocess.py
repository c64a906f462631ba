"""sdk.preprocess: the C++ kernel against its NumPy twin, the twin against PyTorch, and the
wrapper's input rules (zero copy, no casting, errors that name what was expected)."""
from __future__ import annotations

import json
import re
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk.errors import InputError
from sdk.preprocess import (
    OUTPUT_CHANNELS,
    PIXEL_FORMATS,
    PreprocessRecipe,
    _frames_as_nhwc,
    preprocess,
    preprocess_reference,
)

FORMATS = list(PIXEL_FORMATS)
CHANNELS = list(OUTPUT_CHANNELS)
# The kernel and the twin do the same float32 operations in the same order: bit-exact on x86-64,
# a few ulp apart where the compiler fuses multiply-adds.
TWIN = dict(rtol=1e-5, atol=1e-5)


def random_frames(seed: int, n: int | None, h: int, w: int, pixel_format: str) -> np.ndarray:
    c = PIXEL_FORMATS[pixel_format]
    shape = (h, w, c) if n is None else (n, h, w, c)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def assert_kernel_matches_twin(frames, **recipe):
    got = preprocess(frames, **recipe)
    want = preprocess_reference(frames, **recipe)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **TWIN)
    return got


# ---- kernel vs twin -------------------------------------------------------------------------

normalisations = st.sampled_from([
    dict(),
    dict(scale=1.0),
    dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    dict(mean=0.5, std=0.25),
    dict(scale=2 / 255, mean=(1.0,), std=(-0.5,)),
])


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("pixel_format", FORMATS)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3), in_h=st.integers(1, 19),
       in_w=st.integers(1, 19), out_h=st.integers(1, 27), out_w=st.integers(1, 27),
       norm=normalisations)
def test_kernel_matches_twin(pixel_format, channels, seed, n, in_h, in_w, out_h, out_w, norm):
    if channels == "gray" and "mean" in norm and len(np.atleast_1d(norm["mean"])) == 3:
        norm = dict(mean=norm["mean"][:1], std=norm["std"][:1])
    frames = random_frames(seed, n, in_h, in_w, pixel_format)
    out = assert_kernel_matches_twin(frames, pixel_format=pixel_format, channels=channels,
                                     size=(out_h, out_w), **norm)
    assert out.shape == (n, OUTPUT_CHANNELS[channels], out_h, out_w)


@pytest.mark.parametrize("value", [0, 255])
@pytest.mark.parametrize("pixel_format", FORMATS)
def test_constant_extreme_frames(pixel_format, value):
    frames = np.full((2, 9, 13, PIXEL_FORMATS[pixel_format]), value, dtype=np.uint8)
    for channels in CHANNELS:
        out = assert_kernel_matches_twin(frames, pixel_format=pixel_format, channels=channels,
                                         size=(20, 6))
        np.testing.assert_allclose(out, value / 255, rtol=0, atol=1e-6)


def test_checkerboard_of_0_and_255():
    frames = (np.indices((31, 17)).sum(axis=0) % 2 * 255).astype(np.uint8)
    for size in [(31, 17), (7, 5), (62, 34), (1, 1)]:
        out = assert_kernel_matches_twin(frames, size=size, scale=1.0)
        assert out.min() >= 0 and out.max() <= 255


@pytest.mark.parametrize("in_size,out_size", [
    ((480, 640), (224, 224)),   # camera frame to a classifier input: downscale
    ((7, 5), (64, 48)),         # strong upscale
    ((5, 300), (40, 3)),        # up in one axis, down in the other
])
def test_upscaling_and_downscaling(in_size, out_size):
    frames = random_frames(1, 2, *in_size, "BGR8")
    assert_kernel_matches_twin(frames, pixel_format="BGR8", channels="rgb", size=out_size,
                               mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def test_large_batch_runs_threaded_and_matches_twin():
    # 16 x 3 x 96 x 96 outputs is far above the kernel's one-thread threshold.
    frames = random_frames(2, 16, 64, 80, "RGBa8")
    assert_kernel_matches_twin(frames, pixel_format="RGBa8", channels="bgr", size=(96, 96))


@pytest.mark.parametrize("pixel_format", FORMATS)
def test_one_by_one_input_and_output(pixel_format):
    pixel = random_frames(3, 4, 1, 1, pixel_format)
    out = assert_kernel_matches_twin(pixel, pixel_format=pixel_format, channels="rgb",
                                     size=(5, 3), scale=1.0)
    assert (out == out[:, :, :1, :1]).all(), "a 1x1 frame resizes to a constant image"
    frames = random_frames(4, 3, 11, 8, pixel_format)
    assert_kernel_matches_twin(frames, pixel_format=pixel_format, channels="gray", size=(1, 1))


def test_empty_batch():
    frames = np.zeros((0, 10, 10, 3), dtype=np.uint8)
    out = preprocess(frames, pixel_format="RGB8", channels="rgb", size=(4, 4))
    assert out.shape == (0, 3, 4, 4)
    assert preprocess_reference(frames, pixel_format="RGB8", channels="rgb",
                                size=(4, 4)).shape == (0, 3, 4, 4)


# ---- semantics --------------------------------------------------------------------------------

@pytest.mark.parametrize("pixel_format,channels,order", [
    ("Mono8", "gray", [0]), ("Mono8", "rgb", [0, 0, 0]), ("RGB8", "rgb", [0, 1, 2]),
    ("RGB8", "bgr", [2, 1, 0]), ("BGR8", "rgb", [2, 1, 0]), ("BGR8", "bgr", [0, 1, 2]),
    ("RGBa8", "rgb", [0, 1, 2]), ("BGRa8", "rgb", [2, 1, 0]),
])
def test_same_size_is_an_exact_copy(pixel_format, channels, order):
    frames = random_frames(5, 2, 13, 21, pixel_format)
    expected = frames[..., order].transpose(0, 3, 1, 2).astype(np.float32)
    for fn in (preprocess, preprocess_reference):
        out = fn(frames, pixel_format=pixel_format, channels=channels, size=(13, 21), scale=1.0)
        np.testing.assert_array_equal(out, expected)


def test_colour_to_gray_is_bt601_luma_of_the_resized_channels():
    frames = random_frames(6, 2, 15, 9, "RGB8")
    rgb = preprocess(frames, pixel_format="RGB8", channels="rgb", size=(8, 12))
    gray = preprocess(frames, pixel_format="RGB8", channels="gray", size=(8, 12))
    luma = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    np.testing.assert_allclose(gray[:, 0], luma, rtol=1e-6, atol=1e-6)


def test_alpha_is_ignored():
    rgba = random_frames(7, 2, 10, 10, "RGBa8")
    other_alpha = rgba.copy()
    other_alpha[..., 3] = 255 - other_alpha[..., 3]
    a = preprocess(rgba, pixel_format="RGBa8", channels="rgb", size=(6, 14))
    np.testing.assert_array_equal(a, preprocess(other_alpha, pixel_format="RGBa8", channels="rgb",
                                                size=(6, 14)))
    np.testing.assert_array_equal(a, preprocess(np.ascontiguousarray(rgba[..., :3]),
                                                pixel_format="RGB8", channels="rgb", size=(6, 14)))


def test_normalisation_is_per_output_channel():
    frames = np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)  # (1, 2, 3): one frame
    out = preprocess(frames, pixel_format="RGB8", channels="rgb", size=(1, 2),
                     mean=(0.0, 0.5, 1.0), std=(1.0, 0.5, 0.25))
    np.testing.assert_allclose(out[0, :, 0], [[0, 1], [-1, 1], [-4, 0]], atol=1e-6)


def test_mono8_layouts_agree():
    batch = np.random.default_rng(8).integers(0, 256, size=(3, 12, 10), dtype=np.uint8)
    want = preprocess(batch, size=(5, 5))
    assert want.shape == (3, 1, 5, 5)
    np.testing.assert_array_equal(preprocess(batch[..., None], size=(5, 5)), want)
    np.testing.assert_array_equal(preprocess(batch[1], size=(5, 5)), want[1:2])
    np.testing.assert_array_equal(preprocess(batch[1][..., None], size=(5, 5)), want[1:2])


torch_shapes = st.tuples(st.integers(1, 24), st.integers(1, 24), st.integers(1, 40),
                         st.integers(1, 40))


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=torch_shapes)
def test_twin_resize_matches_torch_interpolate(seed, shape):
    torch = pytest.importorskip("torch")
    in_h, in_w, out_h, out_w = shape
    frames = random_frames(seed, 2, in_h, in_w, "RGB8")
    want = torch.nn.functional.interpolate(
        torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=(out_h, out_w),
        mode="bilinear", align_corners=False, antialias=False).numpy()
    got = preprocess_reference(frames, pixel_format="RGB8", channels="rgb", size=(out_h, out_w),
                               scale=1.0)
    # PyTorch computes the source coordinate in float32, the twin in float64: about 1e-3 of a
    # grey level apart at most.
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-3)


# ---- memory rules -----------------------------------------------------------------------------

def test_contiguous_input_reaches_the_kernel_without_a_copy():
    frames = random_frames(9, 2, 8, 8, "RGB8")
    assert np.shares_memory(_frames_as_nhwc(frames, "RGB8"), frames)
    single = random_frames(9, None, 8, 8, "BGRa8")
    assert np.shares_memory(_frames_as_nhwc(single, "BGRa8"), single)
    mono = np.zeros((8, 8), dtype=np.uint8)
    assert np.shares_memory(_frames_as_nhwc(mono, "Mono8"), mono)


@pytest.mark.parametrize("view", ["roi", "flipped", "fortran", "channel_stride"])
def test_non_contiguous_input_is_copied_once_and_equals_contiguous(view):
    full = random_frames(10, 2, 40, 50, "RGB8")
    frames = {
        "roi": full[:, 5:33, 7:41],
        "flipped": full[:, ::-1],
        "fortran": np.asfortranarray(full),
        "channel_stride": np.ascontiguousarray(np.repeat(full, 2, axis=-1))[..., ::2],
    }[view]
    assert not frames.flags.c_contiguous
    assert not np.shares_memory(_frames_as_nhwc(frames, "RGB8"), frames)
    recipe = PreprocessRecipe("RGB8", "rgb", (17, 23))
    want = preprocess(np.ascontiguousarray(frames), recipe)
    np.testing.assert_array_equal(preprocess(frames, recipe), want)
    np.testing.assert_allclose(preprocess_reference(frames, recipe), want, **TWIN)


def test_read_only_input_is_accepted():
    frames = random_frames(11, 1, 6, 6, "RGB8")
    frames.flags.writeable = False
    assert_kernel_matches_twin(frames, pixel_format="RGB8", channels="gray", size=(3, 3))


def test_out_buffer_is_filled_and_returned():
    frames = random_frames(12, 3, 20, 30, "BGR8")
    recipe = PreprocessRecipe("BGR8", "rgb", (10, 15))
    out = np.full((3, 3, 10, 15), np.nan, dtype=np.float32)
    result = preprocess(frames, recipe, out=out)
    assert result is out
    np.testing.assert_array_equal(out, preprocess(frames, recipe))


@pytest.mark.parametrize("bad,expected", [
    (np.zeros((3, 3, 10, 15), dtype=np.float64), "float32"),
    (np.zeros((3, 1, 10, 15), dtype=np.float32), r"\(3, 3, 10, 15\)"),
    (np.zeros((3, 3, 15, 10), dtype=np.float32), r"\(3, 3, 15, 10\)"),
    (np.zeros((3, 3, 15, 10), dtype=np.float32).transpose(0, 1, 3, 2), "not C-contiguous"),
    ([0.0] * 10, "list"),
])
def test_bad_out_buffer_is_rejected(bad, expected):
    frames = random_frames(13, 3, 20, 30, "BGR8")
    with pytest.raises(InputError, match=expected) as info:
        preprocess(frames, PreprocessRecipe("BGR8", "rgb", (10, 15)), out=bad)
    assert "out" in str(info.value)


def test_read_only_out_buffer_is_rejected():
    out = np.zeros((1, 1, 4, 4), dtype=np.float32)
    out.flags.writeable = False
    with pytest.raises(InputError, match="read-only"):
        preprocess(np.zeros((8, 8), np.uint8), size=(4, 4), out=out)


def test_concurrent_calls_from_python_threads():
    # The binding releases the GIL; calls from several threads must not interfere.
    frames = [random_frames(20 + i, 4, 60, 80, "RGB8") for i in range(4)]
    recipe = PreprocessRecipe("RGB8", "rgb", (32, 32))
    want = [preprocess_reference(f, recipe) for f in frames]
    got = [None] * len(frames)

    def work(i):
        for _ in range(5):
            got[i] = preprocess(frames[i], recipe)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(frames))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, **TWIN)


# ---- input errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.uint16, np.int64, bool])
def test_wrong_dtype_is_rejected_not_cast(dtype):
    frames = np.zeros((4, 4, 3), dtype=dtype)
    for fn in (preprocess, preprocess_reference):
        with pytest.raises(InputError, match="frames") as info:
            fn(frames, pixel_format="RGB8", channels="rgb")
        message = str(info.value)
        assert "uint8" in message and str(np.dtype(dtype)) in message


@pytest.mark.parametrize("pixel_format,shape", [
    ("RGB8", (4, 4, 4)), ("RGB8", (2, 4, 4, 1)), ("RGBa8", (4, 4, 3)), ("BGR8", (4, 4)),
    ("Mono8", (2, 4, 4, 3)),
])
def test_wrong_channel_count_is_rejected(pixel_format, shape):
    with pytest.raises(InputError) as info:
        preprocess(np.zeros(shape, np.uint8), pixel_format=pixel_format)
    message = str(info.value)
    c = PIXEL_FORMATS[pixel_format]
    assert "frames" in message and pixel_format in message
    assert f"(N, H, W, {c})" in message and str(shape) in message


@pytest.mark.parametrize("shape", [(16,), (1, 2, 4, 4, 3), ()])
def test_wrong_ndim_is_rejected(shape):
    with pytest.raises(InputError, match=r"expected shape .*received " + re.escape(str(shape))):
        preprocess(np.zeros(shape, np.uint8), pixel_format="RGB8", channels="rgb")


def test_zero_sized_frames_and_non_arrays_are_rejected():
    with pytest.raises(InputError, match="1x1"):
        preprocess(np.zeros((0, 4, 3), np.uint8), pixel_format="RGB8")
    with pytest.raises(InputError, match="numpy.ndarray.*received list"):
        preprocess([[0, 1], [2, 3]])


def test_input_error_is_a_value_error():
    with pytest.raises(ValueError):
        preprocess(np.zeros((4, 4), np.float32))


# ---- recipe -----------------------------------------------------------------------------------

def test_recipe_round_trips_through_json():
    recipe = PreprocessRecipe("BGRa8", "rgb", (224, 224), 1 / 255, (0.485, 0.456, 0.406),
                              (0.229, 0.224, 0.225))
    d = json.loads(json.dumps(recipe.to_dict()))
    assert PreprocessRecipe.from_dict(d) == recipe
    assert PreprocessRecipe.from_dict(PreprocessRecipe().to_dict()) == PreprocessRecipe()


def test_recipe_normalises_field_types():
    recipe = PreprocessRecipe(size=[32, np.int64(16)], mean=0.5, std=[0.25], scale=1)
    assert recipe.size == (32, 16) and recipe.mean == (0.5,) and recipe.std == (0.25,)
    assert isinstance(recipe.scale, float)


@pytest.mark.parametrize("field,value", [
    ("pixel_format", "YUV422"), ("pixel_format", "rgb8"), ("channels", "RGB"),
    ("size", (28,)), ("size", (0, 28)), ("size", (28.0, 28)), ("size", "28"),
    ("scale", 0), ("scale", float("nan")), ("scale", "1/255"),
    ("mean", (0.1, 0.2)), ("mean", "a"), ("std", (0.0,)), ("std", (1.0, float("inf"), 1.0)),
])
def test_recipe_errors_name_the_field(field, value):
    d = PreprocessRecipe(channels="rgb").to_dict()
    d[field] = value
    with pytest.raises(InputError, match=f"PreprocessRecipe.{field}"):
        PreprocessRecipe.from_dict(d)


def test_from_dict_rejects_unknown_and_missing_fields():
    d = PreprocessRecipe().to_dict()
    with pytest.raises(InputError, match="unknown field.*interpolation"):
        PreprocessRecipe.from_dict({**d, "interpolation": "bilinear"})
    del d["std"]
    with pytest.raises(InputError, match=r"missing field.*std"):
        PreprocessRecipe.from_dict(d)
    with pytest.raises(InputError, match="expected a dict"):
        PreprocessRecipe.from_dict([("size", (1, 1))])


def test_overrides_replace_recipe_fields():
    frames = random_frames(14, 1, 10, 10, "RGB8")
    recipe = PreprocessRecipe("RGB8", "rgb", (5, 5))
    np.testing.assert_array_equal(preprocess(frames, recipe, size=(3, 4)),
                                  preprocess(frames, PreprocessRecipe("RGB8", "rgb", (3, 4))))
    with pytest.raises(InputError, match="unknown recipe field.*colour"):
        preprocess(frames, recipe, colour="rgb")
    with pytest.raises(InputError, match="PreprocessRecipe.channels"):
        preprocess(frames, recipe, channels="hsv")
    with pytest.raises(InputError, match="recipe: expected a PreprocessRecipe"):
        preprocess(frames, recipe.to_dict())
