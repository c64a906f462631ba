"""Structured-light reconstruction from decoded lines (Sheinin et al., §3.2 "Recovering a
Vertically Projected Line" and §7).

Each line scan ``n`` sees the projected light plane ``n`` (a projector sweep) or the fixed plane
while the object moves (a conveyor). Its decoded ``xv (Q,)`` per sensor row, with ``yv = G(y)``,
traces the line in the virtual image. From these:

* :func:`correspondence_map` — the virtual image ``(H, W)`` where each pixel holds the
  (fractional) index of the projected line seen there, interpolated along each virtual row
  between the decoded lines (§7: "the measurements from all lines are used to interpolate the
  final correspondence map"); NaN where no line pair brackets the pixel.
* :func:`triangulate_lines` — 3D points per (scan, y) by intersecting the pixel ray with the
  light plane, through a rig's ``triangulate(xv, yv) -> (X, Y, Z)`` (one fixed plane, e.g. a
  conveyor, or a sequence of rigs, one per scan, for a projector sweep).
* :func:`depth_error` — depth error against a ground-truth depth map, with the counts of
  pixels present in only one of the two.
* :func:`write_ply` / :func:`read_ply` — point clouds as PLY (ASCII or binary little-endian).

Units: image coordinates in virtual pixels; 3D coordinates in the rig's units (mm for the
simulator's ``LightPlaneRig``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["correspondence_map", "LinePoints", "triangulate_lines", "DepthError", "depth_error",
           "write_ply", "read_ply"]


def _lines(xv) -> np.ndarray:
    a = np.asarray(xv, np.float64)
    if a.ndim != 2:
        raise InputError(f"xv: expected decoded lines (N, Q) in virtual px (NaN = none), "
                         f"received shape {a.shape}")
    return a


def correspondence_map(xv, yv, *, width: int, height: int,
                       line_index: np.ndarray | None = None) -> np.ndarray:
    """The correspondence map: ``(height, width)`` float64 projected-line index per virtual pixel.

    Args:
        xv: ``(N, Q)`` decoded columns of N lines (px; NaN where not decoded).
        yv: ``(Q,)`` virtual row of each sensor row (``G(y)``, px).
        width, height: the virtual image size (px).
        line_index: ``(N,)`` projector line index of each scan (default ``0..N-1``).

    Each sensor row is rasterised at its nearest virtual row; along it the decoded points
    ``(xv_n, index_n)`` are sorted by ``xv`` and the index linearly interpolated between
    neighbouring points whose ``xv`` differ by at most 4x the median spacing (a larger gap is
    a depth discontinuity or missing lines: left NaN). Where several sensor rows land on one
    virtual row, the last wins.
    """
    x = _lines(xv)
    yv = np.asarray(yv, np.float64)
    if yv.shape != (x.shape[1],):
        raise InputError(f"yv: expected shape (Q,) = ({x.shape[1]},) to match xv, received {yv.shape}")
    if width < 1 or height < 1:
        raise InputError(f"width/height: expected positive sizes, received {width}x{height}")
    idx = np.arange(x.shape[0], dtype=np.float64) if line_index is None else \
        np.asarray(line_index, np.float64)
    if idx.shape != (x.shape[0],):
        raise InputError(f"line_index: expected shape ({x.shape[0]},), received {idx.shape}")
    out = np.full((height, width), np.nan)
    cols = np.arange(width, dtype=np.float64)
    for q in range(x.shape[1]):
        row = int(np.rint(yv[q]))
        if not 0 <= row < height or not np.isfinite(yv[q]):
            continue
        ok = np.isfinite(x[:, q])
        if ok.sum() < 2:
            continue
        xs, ks = x[ok, q], idx[ok]
        order = np.argsort(xs, kind="stable")
        xs, ks = xs[order], ks[order]
        gaps = np.diff(xs)
        limit = 4.0 * max(float(np.median(gaps)), 1e-9)
        vals = np.interp(cols, xs, ks, left=np.nan, right=np.nan)
        seg = np.searchsorted(xs, cols, side="right") - 1
        inside = (seg >= 0) & (seg < xs.size - 1)
        bad = np.ones(width, bool)
        bad[inside] = gaps[seg[inside]] > limit
        on_point = np.isin(cols, np.rint(xs))  # a decoded pixel keeps its value at any gap
        vals[bad & ~on_point] = np.nan
        out[row] = vals
    return out


@dataclass
class LinePoints:
    """Triangulated points of a stack of lines.

    ``points``: ``(N, Q, 3)`` float64 (X, Y, Z) per scan and sensor row, NaN where not decoded
    or the ray misses the plane; ``depth``: ``(N, Q)`` the Z component (the depth map: one row
    per scan); ``counts``: ``rows`` (N·Q), ``decoded`` (finite xv), ``triangulated`` (finite
    point), ``failed`` (decoded but not triangulated).
    """

    points: np.ndarray
    depth: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)

    def cloud(self) -> np.ndarray:
        """The finite points as ``(M, 3)``, scan-major."""
        p = self.points.reshape(-1, 3)
        return p[np.isfinite(p).all(axis=1)]


def triangulate_lines(xv, yv, rig) -> LinePoints:
    """3D points of decoded lines ``xv (N, Q)`` with virtual rows ``yv (Q,)`` through ``rig``.

    ``rig``: an object whose ``triangulate(xv, yv)`` (arrays of one shape, px) returns
    ``(X, Y, Z)`` arrays of that shape (e.g. ``LightPlaneRig``), or a sequence of N such rigs,
    scan n triangulated through ``rig[n]`` (a projector sweeping its plane). Non-finite results
    count as ``failed``.
    """
    x = _lines(xv)
    yv = np.asarray(yv, np.float64)
    if yv.shape != (x.shape[1],):
        raise InputError(f"yv: expected shape (Q,) = ({x.shape[1]},) to match xv, received {yv.shape}")
    rigs = list(rig) if isinstance(rig, (list, tuple)) else None
    if rigs is not None and len(rigs) != x.shape[0]:
        raise InputError(f"rig: a sequence of {len(rigs)} rigs for {x.shape[0]} scans")
    for r in rigs if rigs is not None else [rig]:
        if not callable(getattr(r, "triangulate", None)):
            raise InputError(f"rig: expected an object with triangulate(xv, yv), received "
                             f"{type(r).__name__}")
    ok = np.isfinite(x)
    pts = np.full(x.shape + (3,), np.nan)
    if rigs is not None:
        for n, r in enumerate(rigs):
            m = ok[n]
            if m.any():
                pts[n, m] = np.stack([np.asarray(c, np.float64) for c in
                                      r.triangulate(x[n, m], yv[m])], axis=-1)
    elif ok.any():
        yy = np.broadcast_to(yv, x.shape)
        pts[ok] = np.stack([np.asarray(c, np.float64) for c in rig.triangulate(x[ok], yy[ok])], axis=-1)
    good = np.isfinite(pts).all(axis=-1)
    pts[~good] = np.nan
    counts = {"rows": int(x.size), "decoded": int(ok.sum()), "triangulated": int(good.sum()),
              "failed": int((ok & ~good).sum())}
    return LinePoints(pts, pts[..., 2].copy(), counts)


@dataclass
class DepthError:
    """Depth error over pixels where both maps are finite: ``mae``, ``rmse``, ``median``,
    ``p95`` (rig units, mm for the simulator) and ``counts``: ``both``, ``truth_only``
    (surface not reconstructed), ``estimate_only`` (reconstructed where truth has none)."""

    mae: float
    rmse: float
    median: float
    p95: float
    counts: dict[str, int]
    errors: np.ndarray

    def to_dict(self) -> dict:
        return {"mae": self.mae, "rmse": self.rmse, "median": self.median, "p95": self.p95,
                "counts": self.counts}


def depth_error(estimate, truth) -> DepthError:
    """Compare two depth maps of one shape (NaN = no surface)."""
    e, t = np.asarray(estimate, np.float64), np.asarray(truth, np.float64)
    if e.shape != t.shape:
        raise InputError(f"estimate and truth depth maps differ in shape: {e.shape} vs {t.shape}")
    fe, ft = np.isfinite(e), np.isfinite(t)
    both = fe & ft
    err = np.abs(e[both] - t[both])
    counts = {"both": int(both.sum()), "truth_only": int((ft & ~fe).sum()),
              "estimate_only": int((fe & ~ft).sum())}
    if err.size == 0:
        nan = float("nan")
        return DepthError(nan, nan, nan, nan, counts, err)
    return DepthError(float(err.mean()), float(np.sqrt((err ** 2).mean())), float(np.median(err)),
                      float(np.percentile(err, 95)), counts, err)


_PLY_FORMATS = {"ascii": "ascii 1.0", "binary": "binary_little_endian 1.0"}


def write_ply(path: str | os.PathLike, points, colors=None, *, fmt: str = "binary") -> Path:
    """Write a point cloud: ``points (M, 3)`` float (written as float32 x, y, z), optional
    ``colors (M, 3)`` uint8 (red, green, blue); ``fmt`` "ascii" or "binary" (little-endian).
    Non-finite points are rejected (filter with ``LinePoints.cloud()`` first)."""
    if fmt not in _PLY_FORMATS:
        raise InputError(f"fmt: expected 'ascii' or 'binary', received {fmt!r}")
    p = np.asarray(points, np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise InputError(f"points: expected shape (M, 3), received {p.shape}")
    if not np.isfinite(p).all():
        raise InputError(f"points: {int((~np.isfinite(p).all(axis=1)).sum())} non-finite points; "
                         f"PLY needs finite coordinates")
    c = None
    if colors is not None:
        c = np.asarray(colors)
        if c.shape != p.shape or c.dtype != np.uint8:
            raise InputError(f"colors: expected uint8 {p.shape}, received {c.dtype} {c.shape}")
    header = ["ply", f"format {_PLY_FORMATS[fmt]}", "comment written by prism sdk.lines.reconstruct",
              f"element vertex {p.shape[0]}", "property float x", "property float y", "property float z"]
    if c is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header.append("end_header")
    path = Path(path)
    dtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + \
        ([("red", "u1"), ("green", "u1"), ("blue", "u1")] if c is not None else [])
    rec = np.empty(p.shape[0], dtype=dtype)
    rec["x"], rec["y"], rec["z"] = p[:, 0], p[:, 1], p[:, 2]
    if c is not None:
        rec["red"], rec["green"], rec["blue"] = c[:, 0], c[:, 1], c[:, 2]
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        if fmt == "binary":
            f.write(rec.tobytes())
        else:
            for row in rec:
                f.write((" ".join(repr(float(v)) if isinstance(v, np.floating) else str(int(v))
                                  for v in row) + "\n").encode("ascii"))
    return path


_PLY_TYPES = {"float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
              "uchar": "u1", "uint8": "u1", "char": "i1", "int8": "i1", "short": "<i2",
              "ushort": "<u2", "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4"}


def read_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a vertex-only PLY (ASCII or binary little-endian) → ``(points (M, 3) float64,
    colors (M, 3) uint8 or None)``. Raises InputError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such PLY file")
    data = path.read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise InputError(f"{path}: not a PLY file (missing 'ply' magic or 'end_header')")
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    fmt, count, props = None, None, []
    for line in lines[1:]:
        parts = line.split()
        if not parts or parts[0] == "comment":
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            if parts[1] != "vertex" or count is not None:
                raise InputError(f"{path}: only a single 'vertex' element is supported, found "
                                 f"'{line}'")
            count = int(parts[2])
        elif parts[0] == "property":
            if parts[1] == "list" or parts[1] not in _PLY_TYPES:
                raise InputError(f"{path}: unsupported property '{line}'")
            props.append((parts[2], _PLY_TYPES[parts[1]]))
    if fmt not in ("ascii", "binary_little_endian") or count is None:
        raise InputError(f"{path}: header needs 'format ascii|binary_little_endian' and "
                         f"'element vertex N' (format {fmt!r}, count {count!r})")
    names = [n for n, _ in props]
    for need in ("x", "y", "z"):
        if need not in names:
            raise InputError(f"{path}: vertex has no property '{need}' (properties {names})")
    body = data[end + len(b"end_header\n"):]
    dtype = np.dtype(props)
    if fmt == "binary_little_endian":
        if len(body) < count * dtype.itemsize:
            raise InputError(f"{path}: truncated: {len(body)} bytes of vertex data for {count} "
                             f"vertices of {dtype.itemsize} bytes")
        rec = np.frombuffer(body, dtype=dtype, count=count)
    else:
        rows = body.decode("ascii").split("\n")
        rows = [r for r in rows if r.strip()]
        if len(rows) < count:
            raise InputError(f"{path}: truncated: {len(rows)} vertex lines for {count} vertices")
        vals = np.array([r.split() for r in rows[:count]], dtype=np.float64).reshape(count, len(props))
        rec = np.empty(count, dtype=dtype)
        for k, n in enumerate(names):
            rec[n] = vals[:, k]
    pts = np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float64)
    colors = None
    if all(n in names for n in ("red", "green", "blue")):
        colors = np.stack([rec["red"], rec["green"], rec["blue"]], axis=1).astype(np.uint8)
    return pts, colors
