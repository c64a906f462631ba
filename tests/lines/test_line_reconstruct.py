"""Structured-light reconstruction helpers (sdk.lines.reconstruct): correspondence map,
triangulation through a rig, depth error, PLY round trip and bad input."""
from __future__ import annotations

import numpy as np
import pytest

from sdk.errors import InputError
from sdk.lines.reconstruct import (correspondence_map, depth_error, read_ply, triangulate_lines,
                                   write_ply)


class PlaneRig:
    """A pinhole at the origin (focal f px, centre c) and the light plane X = baseline - k Z."""

    def __init__(self, f=500.0, c=(64.0, 32.0), baseline=100.0, k=0.5):
        self.f, self.c, self.b, self.k = f, c, baseline, k

    def triangulate(self, xv, yv):
        dx, dy = (np.asarray(xv) - self.c[0]) / self.f, (np.asarray(yv) - self.c[1]) / self.f
        z = self.b / (dx + self.k)          # ray (dx z, dy z, z) meets X = b - k Z
        return dx * z, dy * z, z

    def project(self, x, y, z):
        return self.f * x / z + self.c[0], self.f * y / z + self.c[1]


def test_triangulation_recovers_the_plane_and_counts_failures():
    rig = PlaneRig()
    xv = np.array([[10.0, 20.0, np.nan], [30.0, 40.0, 50.0]])
    yv = np.array([0.0, 10.0, 20.0])
    res = triangulate_lines(xv, yv, rig)
    ok = np.isfinite(xv)
    x, z = res.points[..., 0][ok], res.points[..., 2][ok]
    np.testing.assert_allclose(x, 100.0 - 0.5 * z, rtol=1e-12)
    np.testing.assert_allclose(res.depth, res.points[..., 2], equal_nan=True)
    # reprojection gives the pixels back
    px, py = rig.project(*(res.points[ok].T))
    np.testing.assert_allclose(px, xv[ok], atol=1e-9)
    np.testing.assert_allclose(py, np.broadcast_to(yv, xv.shape)[ok], atol=1e-9)
    assert res.counts == {"rows": 6, "decoded": 5, "triangulated": 5, "failed": 0}
    assert res.cloud().shape == (5, 3)


def test_one_rig_per_scan_for_a_projector_sweep():
    rigs = [PlaneRig(baseline=100.0), PlaneRig(baseline=200.0)]
    xv = np.array([[30.0, 40.0], [30.0, 40.0]])
    res = triangulate_lines(xv, np.array([5.0, 6.0]), rigs)
    np.testing.assert_allclose(res.points[1, :, 2], 2 * res.points[0, :, 2])   # Z scales with b
    with pytest.raises(InputError, match="2 rigs for 3 scans"):
        triangulate_lines(np.zeros((3, 2)), np.zeros(2), rigs)


def test_correspondence_map_interpolates_between_lines_and_leaves_gaps():
    # 5 lines at xv = 10, 20, 30, 40, 90 on every sensor row (the last after a big gap)
    q = 4
    xv = np.array([[10.0] * q, [20.0] * q, [30.0] * q, [40.0] * q, [90.0] * q])
    yv = np.arange(q) * 2.0
    cmap = correspondence_map(xv, yv, width=100, height=8)
    assert cmap[0, 15] == pytest.approx(0.5) and cmap[2, 35] == pytest.approx(2.5)
    assert np.isnan(cmap[0, 60])        # 40 -> 90 is more than 4x the median spacing
    assert np.isnan(cmap[0, 5]) and np.isnan(cmap[1, 15])   # outside; row 1 has no sensor row
    assert cmap[0, 90] == pytest.approx(4.0)


def test_depth_error_counts_and_values():
    est = np.array([[1.0, 2.0, np.nan], [4.0, np.nan, 6.5]])
    truth = np.array([[1.5, 2.0, 3.0], [np.nan, np.nan, 6.0]])
    err = depth_error(est, truth)
    assert err.mae == pytest.approx((0.5 + 0.0 + 0.5) / 3)
    assert err.counts == {"both": 3, "truth_only": 1, "estimate_only": 1}
    with pytest.raises(InputError, match="differ in shape"):
        depth_error(est, truth[:1])


@pytest.mark.parametrize("fmt", ["ascii", "binary"])
def test_ply_round_trip(tmp_path, fmt, rng):
    pts = rng.normal(size=(50, 3)) * 100
    cols = rng.integers(0, 256, size=(50, 3), dtype=np.uint8)
    path = write_ply(tmp_path / f"c_{fmt}.ply", pts, cols, fmt=fmt)
    assert path.read_bytes().startswith(b"ply\nformat ")
    got, got_c = read_ply(path)
    np.testing.assert_allclose(got, pts.astype(np.float32), rtol=1e-6)
    np.testing.assert_array_equal(got_c, cols)
    path = write_ply(tmp_path / "plain.ply", pts, fmt=fmt)
    got, got_c = read_ply(path)
    assert got_c is None and got.shape == (50, 3)


def test_ply_bad_input(tmp_path):
    with pytest.raises(InputError, match="non-finite"):
        write_ply(tmp_path / "x.ply", np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(InputError, match="shape"):
        write_ply(tmp_path / "x.ply", np.zeros((3, 2)))
    with pytest.raises(InputError, match="fmt"):
        write_ply(tmp_path / "x.ply", np.zeros((3, 3)), fmt="xyz")
    (tmp_path / "bad.ply").write_bytes(b"not a ply")
    with pytest.raises(InputError, match="not a PLY"):
        read_ply(tmp_path / "bad.ply")
    path = write_ply(tmp_path / "t.ply", np.zeros((4, 3)))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(InputError, match="truncated"):
        read_ply(path)
    with pytest.raises(InputError, match="no such PLY"):
        read_ply(tmp_path / "missing.ply")


def test_bad_line_inputs():
    with pytest.raises(InputError, match=r"xv: expected decoded lines \(N, Q\)"):
        triangulate_lines(np.zeros(5), np.zeros(5), PlaneRig())
    with pytest.raises(InputError, match="yv"):
        triangulate_lines(np.zeros((2, 5)), np.zeros(4), PlaneRig())
    with pytest.raises(InputError, match="triangulate"):
        triangulate_lines(np.zeros((2, 5)), np.zeros(5), object())
