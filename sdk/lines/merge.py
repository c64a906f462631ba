"""Merging a diffraction sensor's points with a second sensor's (Sheinin et al., §5).

* §5.1 **cylindrical lens**: a horizontal line sensor behind a cylindrical lens sees each source
  as a white streak, giving a precise ``xv`` but no ``yv``. For each diffraction point
  ``(xv_n, yv_n)`` the nearest cylindrical coordinate ``x~_k`` within ``max_distance`` (4 px in the
  paper) replaces ``xv_n``; a point with none is discarded as an inaccurate measurement.
* §5.2 **double-axis grating**: the vertical line sensor (the usual one: position along the
  sensor gives a precise ``yv``, colour gives ``xv``) and a horizontal one (position gives a
  precise ``xv``, colour gives ``yv``) each yield ``(xv, yv)`` points. Points of the two sets
  closer than ``max_distance`` in the virtual image are the same source and merge into
  ``(xv from the horizontal sensor, yv from the vertical sensor)``. Pairing is one-to-one,
  closest pairs first.

Both functions are pure NumPy and count what they drop (``MergeResult.counts``), so nothing is
lost silently. Coordinates are virtual-image pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

__all__ = ["MergeResult", "merge_cylindrical", "merge_double_axis", "CYLINDRICAL_MAX_DISTANCE_PX"]

CYLINDRICAL_MAX_DISTANCE_PX = 4.0  # §5.1: "e.g. below four pixels"


@dataclass
class MergeResult:
    """Merged points and what happened to every input point.

    ``xv``, ``yv``: ``(M,)`` float64 merged coordinates (px). ``source``: ``(M,)`` int8 — for
    :func:`merge_cylindrical` always 0 (a replaced point); for :func:`merge_double_axis` 0 = a
    merged pair, 1 = an unpaired vertical-sensor point, 2 = an unpaired horizontal-sensor point
    (kept only with ``keep_unpaired``). ``index_a``/``index_b``: ``(M,)`` int64 indices of the
    input points each output came from (-1 where none). ``counts``: totals — ``inputs_a``,
    ``inputs_b``, ``merged``, ``discarded_a``, ``discarded_b``, ``invalid_a``, ``invalid_b``
    (non-finite inputs, dropped).
    """

    xv: np.ndarray
    yv: np.ndarray
    source: np.ndarray
    index_a: np.ndarray
    index_b: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)


def _coords(name: str, values, ndim: int = 1) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != ndim:
        raise InputError(f"{name}: expected a {ndim}-D array of pixel coordinates, received shape "
                         f"{a.shape}")
    return a


def _pair_shapes(xname: str, x: np.ndarray, yname: str, y: np.ndarray) -> None:
    if x.shape != y.shape:
        raise InputError(f"{xname} and {yname} must have the same shape, received {x.shape} and "
                         f"{y.shape}")


def _check_distance(max_distance: float) -> float:
    if not np.isfinite(max_distance) or max_distance <= 0:
        raise InputError(f"max_distance: expected a positive number of pixels, received "
                         f"{max_distance!r}")
    return float(max_distance)


def merge_cylindrical(xv, yv, cylindrical_xv, *,
                      max_distance: float = CYLINDRICAL_MAX_DISTANCE_PX) -> MergeResult:
    """§5.1: replace each point's ``xv`` by the nearest cylindrical ``x~`` within ``max_distance``.

    Args:
        xv, yv: ``(N,)`` diffraction-sensor points (px); non-finite points are dropped
            (``counts["invalid_a"]``).
        cylindrical_xv: ``(K,)`` white-streak positions of the cylindrical-lens sensor (px);
            non-finite entries are dropped (``counts["invalid_b"]``). One streak may serve
            several points (sources in the same column share it).
        max_distance: largest ``|xv - x~|`` (px) accepted; points farther from every streak are
            discarded (``counts["discarded_a"]``).
    """
    xv, yv = _coords("xv", xv), _coords("yv", yv)
    _pair_shapes("xv", xv, "yv", yv)
    cyl = _coords("cylindrical_xv", cylindrical_xv)
    max_distance = _check_distance(max_distance)
    ok = np.isfinite(xv) & np.isfinite(yv)
    cyl_ok = np.isfinite(cyl)
    cyl_f = cyl[cyl_ok]
    idx = np.nonzero(ok)[0]
    if cyl_f.size and idx.size:
        d = np.abs(xv[idx, None] - cyl_f[None, :])
        nearest = d.argmin(axis=1)
        close = d[np.arange(idx.size), nearest] <= max_distance
    else:
        nearest = np.zeros(idx.size, np.int64)
        close = np.zeros(idx.size, bool)
    kept = idx[close]
    cyl_index = np.nonzero(cyl_ok)[0][nearest[close]] if kept.size else np.zeros(0, np.int64)
    counts = {"inputs_a": int(xv.size), "inputs_b": int(cyl.size), "merged": int(kept.size),
              "discarded_a": int(idx.size - kept.size), "discarded_b": 0,
              "invalid_a": int((~ok).sum()), "invalid_b": int((~cyl_ok).sum())}
    return MergeResult(xv=cyl[cyl_index].astype(np.float64), yv=yv[kept].copy(),
                       source=np.zeros(kept.size, np.int8), index_a=kept.astype(np.int64),
                       index_b=cyl_index.astype(np.int64), counts=counts)


def merge_double_axis(vertical_xv, vertical_yv, horizontal_xv, horizontal_yv, *,
                      max_distance: float = CYLINDRICAL_MAX_DISTANCE_PX,
                      keep_unpaired: bool = False) -> MergeResult:
    """§5.2: pair the two sensors' points and take ``yv`` from the vertical, ``xv`` from the
    horizontal sensor.

    Args:
        vertical_xv, vertical_yv: ``(N,)`` points of the vertical line sensor (precise ``yv``).
        horizontal_xv, horizontal_yv: ``(K,)`` points of the horizontal line sensor (precise ``xv``).
        max_distance: largest Euclidean distance (px) between two points of a pair.
        keep_unpaired: also return points that found no partner, unchanged (``source`` 1 or 2);
            otherwise they are discarded (``counts["discarded_a"/"discarded_b"]``).

    Pairs are formed one-to-one, the closest first (greedy matching); non-finite points are
    dropped and counted (``invalid_a``/``invalid_b``).
    """
    vx, vy = _coords("vertical_xv", vertical_xv), _coords("vertical_yv", vertical_yv)
    hx, hy = _coords("horizontal_xv", horizontal_xv), _coords("horizontal_yv", horizontal_yv)
    _pair_shapes("vertical_xv", vx, "vertical_yv", vy)
    _pair_shapes("horizontal_xv", hx, "horizontal_yv", hy)
    max_distance = _check_distance(max_distance)
    ok_v = np.isfinite(vx) & np.isfinite(vy)
    ok_h = np.isfinite(hx) & np.isfinite(hy)
    iv, ih = np.nonzero(ok_v)[0], np.nonzero(ok_h)[0]
    pairs: list[tuple[int, int]] = []
    if iv.size and ih.size:
        d = np.hypot(vx[iv, None] - hx[None, ih], vy[iv, None] - hy[None, ih])
        cand = np.argwhere(d <= max_distance)
        order = np.argsort(d[cand[:, 0], cand[:, 1]], kind="stable")
        used_v, used_h = set(), set()
        for a, b in cand[order]:
            if a in used_v or b in used_h:
                continue
            used_v.add(int(a))
            used_h.add(int(b))
            pairs.append((int(iv[a]), int(ih[b])))
    pa = np.array([p[0] for p in pairs], np.int64)
    pb = np.array([p[1] for p in pairs], np.int64)
    xs, ys = [hx[pb]], [vy[pa]]
    src, ia, ib = [np.zeros(pa.size, np.int8)], [pa], [pb]
    lone_v = np.setdiff1d(iv, pa)
    lone_h = np.setdiff1d(ih, pb)
    if keep_unpaired:
        xs += [vx[lone_v], hx[lone_h]]
        ys += [vy[lone_v], hy[lone_h]]
        src += [np.ones(lone_v.size, np.int8), np.full(lone_h.size, 2, np.int8)]
        ia += [lone_v, np.full(lone_h.size, -1, np.int64)]
        ib += [np.full(lone_v.size, -1, np.int64), lone_h]
    counts = {"inputs_a": int(vx.size), "inputs_b": int(hx.size), "merged": int(pa.size),
              "discarded_a": 0 if keep_unpaired else int(lone_v.size),
              "discarded_b": 0 if keep_unpaired else int(lone_h.size),
              "invalid_a": int((~ok_v).sum()), "invalid_b": int((~ok_h).sum())}
    return MergeResult(xv=np.concatenate(xs), yv=np.concatenate(ys), source=np.concatenate(src),
                       index_a=np.concatenate(ia), index_b=np.concatenate(ib), counts=counts)
