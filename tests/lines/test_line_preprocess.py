"""Line preprocessing: the C++ kernels against their NumPy twins on every SIMD path, plus
hand-checked semantics and input errors (sdk/lines/preprocess.py)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdk.errors import InputError
from sdk.lines import preprocess as lp

PATHS = [pytest.param(p, marks=pytest.mark.skipif(bool(why), reason=why or "available"))
         for p, why in lp.line_paths().items()]
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
KINDS = ("random", "dark", "saturated", "single_channel", "sparse")


def make_scans(rng: np.random.Generator, n: int, r: int, h: int, q: int, kind: str) -> np.ndarray:
    """Scans (N, R, h, Q, 3) of one character: the edge cases of validity and flags."""
    shape = (n, r, h, q, 3)
    if kind == "random":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if kind == "dark":
        return rng.integers(0, 12, shape, dtype=np.uint8)
    if kind == "saturated":
        return np.full(shape, 255, dtype=np.uint8)
    scans = np.zeros(shape, dtype=np.uint8)
    if kind == "single_channel":
        scans[..., 0] = rng.integers(0, 256, shape[:-1], dtype=np.uint8)
        return scans
    # sparse: a few bright rainbow-like pixels over a dim background (realistic line scans)
    scans[...] = rng.integers(0, 6, shape, dtype=np.uint8)
    mask = rng.random((n, r, 1, q)) < 0.3
    colour = rng.integers(0, 256, (n, r, h, q, 3), dtype=np.uint8)
    return np.where(mask[..., None], colour, scans).astype(np.uint8)


scan_params = st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 9),
                        st.integers(1, 70), st.sampled_from(KINDS), st.integers(0, 2**31 - 1))


def _cfg(seed: int) -> lp.PreprocessConfig:
    rng = np.random.default_rng(seed)
    return lp.PreprocessConfig(intensity_threshold=float(rng.choice([0.0, 20.0, 60.5])),
                               channel_floor=float(rng.choice([0.0, 4.0, 30.0])),
                               saturation_level=int(rng.choice([200, 255])),
                               peak_threshold=float(rng.choice([5.0, 50.0])),
                               peak_min_distance=int(rng.integers(1, 8)),
                               patch_width=int(rng.choice([1, 3, 9])))


def _equal(a, b) -> bool:
    return all(np.array_equal(x, y, equal_nan=True) and x.dtype == y.dtype for x, y in zip(a, b))


@pytest.mark.parametrize("path", PATHS)
@SETTINGS
@given(params=scan_params)
def test_kernels_match_twins(path, params):
    n, r, h, q, kind, seed = params
    rng = np.random.default_rng(seed)
    scans = make_scans(rng, n, r, h, q, kind)
    cfg = _cfg(seed)
    means = lp.roi_means(scans, path=path)
    assert means.dtype == np.float32 and means.shape == (n, r, q, 3)
    assert np.array_equal(means, lp.roi_means_reference(scans))
    assert _equal(lp.validity(means, cfg), lp.validity_reference(means, cfg))
    assert _equal(lp.line_features(scans, cfg, path=path), lp.line_features_reference(scans, cfg))
    profile = lp.gray_profile(scans, path=path)
    assert np.array_equal(profile, lp.gray_profile_reference(scans))
    for i in range(n):
        peaks = lp.find_peaks(profile[i], cfg)
        assert _equal(peaks, lp.find_peaks_reference(profile[i], cfg))
        y_int = np.unique(np.concatenate([peaks[0], rng.integers(0, q, 3), [0, q - 1]]))
        assert _equal(lp.extract_patches(scans[i], y_int, cfg),
                      lp.extract_patches_reference(scans[i], y_int, cfg))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", [(40, 3, 8, 33), (2, 3, 8, 2056), (1, 2, 260, 20),
                                   (3, 5, 2, 257), (1, 1, 1, 1)])
def test_large_batches_long_lines_and_tall_rois(path, shape, rng):
    """Many lines, several chunks of y, h > 257 (u32 row sums), and the smallest scan."""
    scans = make_scans(rng, *shape, "sparse")
    cfg = lp.PreprocessConfig()
    assert np.array_equal(lp.roi_means(scans, path=path), lp.roi_means_reference(scans))
    assert _equal(lp.line_features(scans, cfg, path=path), lp.line_features_reference(scans, cfg))
    assert np.array_equal(lp.gray_profile(scans, path=path), lp.gray_profile_reference(scans))


def test_threads_do_not_change_results(rng):
    scans = make_scans(rng, 7, 3, 8, 100, "random")
    one = lp.line_features(scans, num_threads=1)
    assert _equal(one, lp.line_features(scans, num_threads=3))
    assert _equal(one, lp.line_features(scans, num_threads=0))


def test_semantics_by_hand():
    """One y per case: dark, valid, single-channel brightest ROI, saturation; Eq. 14 features."""
    scans = np.zeros((2, 2, 5, 3), dtype=np.uint8)      # R=2, h=2, Q=5
    scans[0, :, 1] = (30, 40, 0)                         # valid in ROI 0
    scans[0, :, 2] = (25, 25, 0)                         # ROI 0 valid ...
    scans[1, :, 2] = (200, 0, 0)                         # ... but ROI 1 is brightest, red only
    scans[1, 0, 3] = (255, 100, 0)                       # saturated byte, mean (255, 100, 0)/2
    scans[1, 1, 4] = (3, 3, 3)                           # dark
    features, valid, flags = lp.line_features(scans)
    assert valid[0].tolist() == [False, True, True, True, False]
    assert flags[0].tolist() == [lp.DARK, 0, lp.SINGLE_CHANNEL, lp.SATURATED, lp.DARK]
    np.testing.assert_array_equal(features[0, 1], np.float32([0.6, 0.8, 0, 0, 0, 0, 0.25]))
    assert features.shape == (1, 5, 7)
    means = lp.roi_means(scans)
    assert means[0, 1, 3].tolist() == [127.5, 50.0, 0.0]


def test_peaks_patches_by_hand():
    p = np.array([0, 5, 20, 10, 0, 0, 0, 30, 30, 0, 12, 0], dtype=np.float32)
    cfg = lp.PreprocessConfig(peak_threshold=8, peak_min_distance=3, patch_width=3)
    y_int, y_sub, value = lp.find_peaks(p, cfg)
    assert y_int.tolist() == [2, 8] and value.tolist() == [20, 30]
    assert y_sub[0] == np.float32(2.1)
    scan = np.zeros((2, 1, 4, 3), dtype=np.uint8)
    scan[0, 0, 0] = (10, 0, 0)
    scan[1, 0, 1] = (0, 40, 0)
    patches, in_bounds = lp.extract_patches(scan, [0, 1], cfg)
    assert patches.shape == (2, 3, 1, 6) and in_bounds.tolist() == [False, True]
    assert patches[0, 0, 0].tolist() == [0, 0.25, 0, 0, 0, 0]
    assert patches[0, 1, 0].tolist() == [0, 0, 0, 0, 0, 1]
    empty, ok = lp.extract_patches(np.zeros((1, 2, 5, 3), np.uint8), [2], cfg)
    assert not empty.any() and ok.tolist() == [True]  # an all-zero patch stays zero


def test_non_contiguous_scans_are_copied_once(rng):
    base = rng.integers(0, 256, (2, 3, 8, 64, 3), dtype=np.uint8)
    view = base[:, :, :, ::2]
    assert not view.flags.c_contiguous
    assert np.array_equal(lp.roi_means(view), lp.roi_means_reference(np.ascontiguousarray(view)))


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 8, 10, 3), np.float32), "dtype uint8"),
    (np.zeros((8, 10, 3), np.uint8), r"shape \(R, h, Q, 3\)"),
    (np.zeros((1, 2, 8, 10, 4), np.uint8), r"\(1, 2, 8, 10, 4\)"),
    (np.zeros((1, 2, 0, 10, 3), np.uint8), r"h and Q must be >= 1.*\(1, 2, 0, 10, 3\)"),
    ([[1, 2, 3]], "numpy.ndarray"),
])
def test_bad_scans_raise(bad, match):
    with pytest.raises(InputError, match=match):
        lp.roi_means(bad)
    with pytest.raises(ValueError, match=match):
        lp.line_features_reference(bad)


def test_bad_other_inputs_raise():
    with pytest.raises(InputError, match="means"):
        lp.validity(np.zeros((1, 2, 5, 3), np.float64))
    with pytest.raises(InputError, match="profile"):
        lp.find_peaks(np.zeros((2, 5), np.float32))
    with pytest.raises(InputError, match="y_int.*Q = 5"):
        lp.extract_patches(np.zeros((1, 2, 5, 3), np.uint8), [7])
    with pytest.raises(InputError, match="patch_width"):
        lp.PreprocessConfig(patch_width=8)
    with pytest.raises(InputError, match="intensity_threshold"):
        lp.PreprocessConfig(intensity_threshold=float("nan"))
    with pytest.raises(InputError, match="saturation_level"):
        lp.PreprocessConfig(saturation_level=0)
    with pytest.raises(ValueError, match="unknown line kernel path 'sse9'"):
        lp.roi_means(np.zeros((1, 1, 2, 3), np.uint8), path="sse9")
    with pytest.raises(InputError, match="num_threads"):
        lp.roi_means(np.zeros((1, 1, 2, 3), np.uint8), num_threads=-1)
