"""LUT line decoder: the C++ kernel against decode_reference on every SIMD path, interpolation
exactness at grid nodes, NaN (no support) handling, from_function, save/load and input errors."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdk.errors import InputError
from sdk.lines import (DARK, NO_LUT, LineLUT, PreprocessConfig, line_features, line_paths)
from tests.lines.test_line_preprocess import KINDS, make_scans

PATHS = [pytest.param(p, marks=pytest.mark.skipif(bool(why), reason=why or "available"))
         for p, why in line_paths().items()]


def random_lut(rng, r, ny, nc, combine, nan_fraction, q, config=None):
    table = rng.uniform(-50, 900, (r, ny, nc, nc)).astype(np.float32)
    table[rng.random(table.shape) < nan_fraction] = np.nan
    return LineLUT(table=table, y0=float(rng.uniform(-5, 5)), dy=float(rng.uniform(0.5, q + 1)),
                   nc=nc, combine=combine, config=config or PreprocessConfig())


def random_config(rng):
    """Thresholds that move every validity decision and flag (0 included: any lit channel)."""
    return PreprocessConfig(intensity_threshold=float(rng.choice([0.0, 20.0, 60.5])),
                            channel_floor=float(rng.choice([0.0, 4.0, 30.0])),
                            saturation_level=int(rng.choice([1, 200, 255])))


def same(a, b):
    return (np.array_equal(a.xv, b.xv, equal_nan=True) and np.array_equal(a.roi, b.roi)
            and np.array_equal(a.flags, b.flags) and a.counts == b.counts
            and a.xv.dtype == np.float32 and a.roi.dtype == np.int8 and a.flags.dtype == np.uint8)


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 9),
                        st.integers(1, 70), st.sampled_from(KINDS), st.integers(1, 6),
                        st.integers(2, 9), st.sampled_from(["best", "weighted"]),
                        st.sampled_from([0.0, 0.05, 0.5, 1.0]), st.integers(0, 2**31 - 1)))
def test_decode_matches_reference(path, params):
    n, r, h, q, kind, ny, nc, combine, nan_fraction, seed = params
    rng = np.random.default_rng(seed)
    scans = make_scans(rng, n, r, h, q, kind)
    lut = random_lut(rng, r, ny, nc, combine, nan_fraction, q, random_config(rng))
    got, want = lut.decode(scans, path=path), lut.decode_reference(scans)
    assert same(got, want)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("rows", [257, 258])
def test_tall_rois_take_the_32_bit_sums(path, rows, rng):
    """Up to 257 rows a ROI's sums fit 16 bits; above, the decoder sums in 32 bits. Both
    against the twin, bright enough that the 16-bit sums would wrap, over two chunks of y."""
    scans = make_scans(rng, 1, 2, rows, 300, "random")
    scans[..., :40, :] = 255  # saturated stretch: sums of 255 * rows
    lut = random_lut(rng, 2, 5, 9, "weighted", 0.05, 300)
    assert same(lut.decode(scans, path=path), lut.decode_reference(scans))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("combine", ["best", "weighted"])
def test_full_size_lines(path, combine, rng):
    """The paper's geometry (3 ROIs x 8 x 2056), several chunks of y, a mid-size LUT."""
    scans = make_scans(rng, 3, 3, 8, 2056, "sparse")
    lut = random_lut(rng, 3, 33, 64, combine, 0.1, 2056)
    assert same(lut.decode(scans, path=path), lut.decode_reference(scans))
    assert same(lut.decode(scans, path=path, num_threads=2), lut.decode_reference(scans))


def test_exact_at_grid_nodes():
    """With nc - 1 and dy powers of two every node is hit exactly and returns its table value."""
    rng = np.random.default_rng(3)
    r, ny, nc, dy = 2, 3, 5, 4.0
    table = rng.uniform(0, 100, (r, ny, nc, nc)).astype(np.float32)
    lut = LineLUT(table=table, y0=0.0, dy=dy, nc=nc)
    for k in range(ny):
        for i in range(nc):
            for j in range(nc):
                got = lut.lookup_reference(1, np.float32([k * dy]), np.float32([i / (nc - 1)]),
                                           np.float32([j / (nc - 1)]))
                assert got[0] == table[1, k, i, j]
    # Through the decoder: a colour (i, j, 4 - i - j) * 40 sits on node (i, j) at y = k * dy.
    q = int((ny - 1) * dy) + 1
    scans = np.zeros((1, r, 1, q, 3), np.uint8)
    nodes = {0: (1, 2), 4: (2, 1), 8: (3, 1)}  # y -> (i, j); b = 4 - i - j > 0 keeps 3 channels
    for y, (i, j) in nodes.items():
        scans[0, 0, 0, y] = (40 * i, 40 * j, 40 * (4 - i - j))
    lut.combine = "best"
    res = lut.decode(scans)
    for y, (i, j) in nodes.items():
        assert res.xv[0, y] == table[0, y // 4, i, j] and res.roi[0, y] == 0


def test_clamped_outside_the_grid():
    table = np.arange(2 * 2 * 2, dtype=np.float32).reshape(1, 2, 2, 2)
    lut = LineLUT(table=table, y0=10.0, dy=5.0, nc=2)
    below = lut.lookup_reference(0, np.float32([0.0]), np.float32([0.0]), np.float32([0.0]))
    above = lut.lookup_reference(0, np.float32([99.0]), np.float32([1.0]), np.float32([1.0]))
    assert below[0] == table[0, 0, 0, 0] and above[0] == table[0, 1, 1, 1]


def test_nan_support_and_counts(rng):
    scans = make_scans(rng, 4, 3, 8, 300, "sparse")
    _, valid, _ = line_features(scans)
    table = np.full((3, 4, 6, 6), np.nan, dtype=np.float32)
    empty = LineLUT(table=table, y0=0.0, dy=100.0, nc=6)
    res = empty.decode(scans)
    assert np.isnan(res.xv).all() and (res.roi == -1).all()
    assert np.array_equal((res.flags & NO_LUT) != 0, valid)
    assert res.counts["no_lut"] == res.counts["y_valid"] == int(valid.sum())
    assert res.counts["decoded"] == 0 and res.counts["y_total"] == 4 * 300
    # Only ROI 1 has support: every decoded y uses ROI 1, the rest is accounted for.
    table[1] = 7.0
    partial = LineLUT(table=table, y0=0.0, dy=100.0, nc=6, combine="weighted").decode(scans)
    decoded = np.isfinite(partial.xv)
    assert set(np.unique(partial.roi[decoded])) <= {1}
    assert np.allclose(partial.xv[decoded], 7.0, rtol=1e-6)
    c = partial.counts
    assert c["decoded"] + c["no_lut"] == c["y_valid"] == int(valid.sum())
    assert c["dark"] == int(np.count_nonzero(partial.flags & DARK))


def test_from_function_fills_the_triangle_and_honours_support():
    seen = {}

    def fn(roi, y, u):
        assert u.shape == (y.shape[0], 3)
        np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-12)
        seen[roi] = y.shape[0]
        return 1000.0 * roi + y + 10.0 * u[:, 0] / u.sum(axis=1)

    def support(roi, y, u):
        return y < 50.0

    nc, ny, q = 9, 5, 101
    lut = LineLUT.from_function(fn, rois=2, Q=q, ny=ny, nc=nc, support=support,
                                config=PreprocessConfig(intensity_threshold=10.0))
    assert lut.table.shape == (2, ny, nc, nc) and lut.dy == 25.0 and lut.y0 == 0.0
    assert set(seen) == {0, 1}
    c = np.arange(nc) / (nc - 1)
    for k in range(ny):
        for i in range(nc):
            for j in range(nc):
                v = lut.table[1, k, i, j]
                if k * 25.0 >= 50.0 or i + j > nc + 1:  # no support, or beyond the ring
                    assert np.isnan(v)
                elif i + j <= nc - 1:                 # inside the triangle: fn at the node
                    assert v == np.float32(1000.0 + k * 25.0 + 10.0 * c[i])
                else:                                 # ring: fn at the node scaled onto b = 0
                    assert v == np.float32(1000.0 + k * 25.0 + 10.0 * i / (i + j))
    with pytest.raises(InputError, match="fn returned 3 values"):
        LineLUT.from_function(lambda r, y, u: np.zeros(3), rois=1, Q=10, ny=2, nc=3)


def test_save_load_round_trip(tmp_path, rng):
    table = rng.uniform(0, 1, (2, 3, 4, 4)).astype(np.float32)
    table[0, 1, 2, 3] = np.nan
    lut = LineLUT(table=table, y0=1.5, dy=2.25, nc=4, combine="best",
                  config=PreprocessConfig(intensity_threshold=33.0, patch_width=5),
                  meta={"model": "mlp-4x300", "epochs": 3})
    back = LineLUT.load(lut.save(tmp_path / "lut.npz"))
    assert np.array_equal(back.table, table, equal_nan=True)
    assert (back.y0, back.dy, back.nc, back.combine, back.config, back.meta) == \
        (1.5, 2.25, 4, "best", lut.config, lut.meta)
    scans = make_scans(rng, 2, 2, 4, 20, "random")
    assert same(back.decode(scans), lut.decode(scans))


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="no such LUT file"):
        LineLUT.load(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(InputError, match="junk.npz: corrupt"):
        LineLUT.load(junk)
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(InputError, match="not a Prism line LUT"):
        LineLUT.load(other)
    lut = LineLUT(table=np.zeros((1, 1, 2, 2), np.float32), y0=0.0, dy=1.0, nc=2)
    path = lut.save(tmp_path / "v.npz")
    with zipfile.ZipFile(path) as z:
        header = json.loads(np.lib.format.read_array(z.open("header.npy")).tobytes())
    header["version"] = 99
    np.savez(tmp_path / "v99.npz", table=lut.table,
             header=np.frombuffer(json.dumps(header).encode(), np.uint8))
    with pytest.raises(InputError, match="format version 99"):
        LineLUT.load(tmp_path / "v99.npz")


def test_bad_inputs():
    lut = LineLUT(table=np.zeros((3, 2, 4, 4), np.float32), y0=0.0, dy=1.0, nc=4)
    with pytest.raises(InputError,
                       match=r"scans: shape \(1, 2, 8, 10, 3\) has 2 ROIs, the LUT has 3"):
        lut.decode(np.zeros((1, 2, 8, 10, 3), np.uint8))
    with pytest.raises(InputError, match=r"h and Q must be >= 1.*\(1, 3, 0, 10, 3\)"):
        lut.decode(np.zeros((1, 3, 0, 10, 3), np.uint8))
    with pytest.raises(InputError, match="dtype uint8"):
        lut.decode_reference(np.zeros((1, 3, 8, 10, 3), np.int16))
    with pytest.raises(InputError, match="LineLUT.table"):
        LineLUT(table=np.zeros((3, 2, 4, 4)), y0=0.0, dy=1.0, nc=4)
    with pytest.raises(InputError, match="LineLUT.table"):
        LineLUT(table=np.zeros((3, 2, 4, 5), np.float32), y0=0.0, dy=1.0, nc=4)
    with pytest.raises(InputError, match="LineLUT.dy"):
        LineLUT(table=np.zeros((3, 2, 4, 4), np.float32), y0=0.0, dy=0.0, nc=4)
    with pytest.raises(InputError, match="LineLUT.combine"):
        LineLUT(table=np.zeros((3, 2, 4, 4), np.float32), y0=0.0, dy=1.0, nc=4, combine="mean")
    for path, why in line_paths().items():
        if why:
            with pytest.raises(ValueError, match=path):
                lut.decode(np.zeros((1, 3, 1, 4, 3), np.uint8), path=path)


def test_decode_into_a_previous_result(rng):
    """out= writes the same values and counts into the caller's arrays; a wrong array is an
    InputError naming it, before anything is written."""
    lut = random_lut(rng, 3, 5, 9, "weighted", 0.05, 300)
    first = lut.decode(make_scans(rng, 4, 3, 8, 300, "sparse"))
    scans = make_scans(rng, 4, 3, 8, 300, "random")
    arrays = (first.xv, first.roi, first.flags)
    again = lut.decode(scans, out=first)
    assert all(a is b for a, b in zip((again.xv, again.roi, again.flags), arrays))
    assert same(again, lut.decode_reference(scans))
    with pytest.raises(InputError, match=r"out.xv: expected a writeable C-contiguous float32"):
        lut.decode(scans[:2], out=first)  # N = 2 against (4, 300) arrays
    bad = lut.decode(scans)
    bad.roi = bad.roi.astype(np.int16)
    with pytest.raises(InputError, match="out.roi"):
        lut.decode(scans, out=bad)
