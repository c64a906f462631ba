"""Distil a trained line decoder (the MLP of Eq. 14) into a per-ROI :class:`LineLUT`.

The LUT asks one ROI at a time: "ROI r saw the L2-normalised colour u at sensor row y — which
xv?". The MLP answers that when fed the ``3R + 1`` feature with only ROI r's block set (the
others zero, exactly how invalid ROIs look, and in the training distribution thanks to ROI
dropout; ``sdk.models.line_decoders``). The LUT then combines the per-ROI answers of the valid
ROIs (``combine``: max(u)-weighted mean or brightest ROI).

Support: grid nodes whose chromaticity never occurred in training for that ROI near that y are
extrapolation; :func:`colour_support` builds the mask from the training features so those nodes
become NaN (decoded as ``NO_LUT``, counted) instead of an invented xv.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import InputError
from .lut import COMBINE_MODES, LineLUT
from .preprocess import PreprocessConfig, as_scan_batch, roi_means, validity

__all__ = ["single_roi_features", "colour_support", "distill_line_lut", "per_roi_decode"]

Predict = Callable[[np.ndarray], np.ndarray]


def single_roi_features(roi: int, rois: int, y: np.ndarray, u: np.ndarray, q: int) -> np.ndarray:
    """The ``(M, 3R + 1)`` float32 features of a one-ROI query: ROI ``roi``'s block = ``u``
    (``(M, 3)``, L2-normalised), other ROIs zero, last entry ``y / (Q - 1)`` (``y`` in px)."""
    y = np.asarray(y, np.float64).reshape(-1)
    u = np.asarray(u, np.float64)
    if u.shape != (y.shape[0], 3):
        raise InputError(f"u: expected shape ({y.shape[0]}, 3) to match y, received {u.shape}")
    if not 0 <= roi < rois:
        raise InputError(f"roi: expected an index in [0, {rois}), received {roi}")
    f = np.zeros((y.shape[0], 3 * rois + 1), np.float32)
    f[:, 3 * roi:3 * roi + 3] = u
    f[:, -1] = y / max(q - 1, 1)
    return f


def colour_support(features: np.ndarray, valid: np.ndarray, *, q: int, ny: int, nc: int,
                   dilate_y: int = 2, dilate_c: int = 3) -> Callable[[int, np.ndarray, np.ndarray], np.ndarray]:
    """A ``support(roi, y, u) -> bool`` mask from training features.

    ``features``: ``(..., 3R + 1)`` line features (``line_features`` layout) of the training
    set; ``valid``: the matching ``(...)`` mask of rows to use (valid y with a finite xv
    target). A ROI's colour at a row counts where its block is non-zero. The occupied
    ``(y node, c1 node, c2 node)`` cells of the LUT grid are dilated by ``dilate_y`` nodes along y
    and ``dilate_c`` along each chromaticity axis (the LUT interpolates between nodes, so a
    sample supports its neighbours, and a calibration sweep samples the colour locus only at
    its lines' positions).
    """
    f = np.asarray(features, np.float32)
    mask = np.asarray(valid, bool)
    if f.shape[:-1] != mask.shape or (f.shape[-1] - 1) % 3:
        raise InputError(f"features/valid: expected (..., 3R+1) features and a (...) mask, "
                         f"received {f.shape} and {mask.shape}")
    rois = (f.shape[-1] - 1) // 3
    f = f[mask]
    dy = (q - 1) / (ny - 1) if ny > 1 else 1.0
    occupied = np.zeros((rois, ny, nc, nc), bool)
    yk = np.clip(np.rint(f[:, -1] * (q - 1) / dy), 0, ny - 1).astype(np.int64)
    for r in range(rois):
        u = f[:, 3 * r:3 * r + 3]
        on = np.abs(u).sum(axis=1) > 0
        s = u[on].sum(axis=1)
        i = np.clip(np.rint(u[on, 0] / s * (nc - 1)), 0, nc - 1).astype(np.int64)
        j = np.clip(np.rint(u[on, 1] / s * (nc - 1)), 0, nc - 1).astype(np.int64)
        occupied[r, yk[on], i, j] = True
    # dilation by a box of +-dilate nodes, one axis at a time
    for axis, dilate in ((1, dilate_y), (2, dilate_c), (3, dilate_c)):
        grown = occupied.copy()
        for d in range(1, dilate + 1):
            grown |= np.roll(occupied, d, axis=axis) & _not_wrapped(occupied.shape, axis, d)
            grown |= np.roll(occupied, -d, axis=axis) & _not_wrapped(occupied.shape, axis, -d)
        occupied = grown

    def support(roi: int, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, np.float64)
        s = u.sum(axis=1)
        k = np.clip(np.rint(np.asarray(y, np.float64) / dy), 0, ny - 1).astype(np.int64)
        i = np.clip(np.rint(u[:, 0] / s * (nc - 1)), 0, nc - 1).astype(np.int64)
        j = np.clip(np.rint(u[:, 1] / s * (nc - 1)), 0, nc - 1).astype(np.int64)
        return occupied[roi, k, i, j]

    return support


def _not_wrapped(shape: tuple[int, ...], axis: int, shift: int) -> np.ndarray:
    """Mask that removes the entries ``np.roll`` wrapped around along ``axis``."""
    n = shape[axis]
    idx = np.arange(n)
    ok = (idx >= shift) if shift > 0 else (idx < n + shift)
    view = [1] * len(shape)
    view[axis] = n
    return ok.reshape(view)


def distill_line_lut(predict: Predict, *, rois: int, q: int, ny: int = 65, nc: int = 96,
                     config: PreprocessConfig | None = None,
                     support: Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None = None,
                     combine: str = "weighted", meta: dict | None = None,
                     batch: int = 65536) -> LineLUT:
    """Tabulate ``predict`` (features ``(M, 3R+1)`` float32 → xv ``(M,)`` px) into a LineLUT.

    ``predict`` is any MLP runner: ``LineDecoder.predict_features`` (ONNX Runtime, from a
    bundle) or a PyTorch model wrapped by the caller. Queries are single-ROI features
    (:func:`single_roi_features`), run in batches of ``batch`` rows.
    """
    def fn(roi: int, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        feats = single_roi_features(roi, rois, y, u, q)
        out = np.empty(feats.shape[0], np.float64)
        for start in range(0, feats.shape[0], batch):
            chunk = np.asarray(predict(feats[start:start + batch]), np.float64).reshape(-1)
            if chunk.shape[0] != min(batch, feats.shape[0] - start):
                raise InputError(f"predict returned {chunk.shape[0]} values for "
                                 f"{min(batch, feats.shape[0] - start)} feature rows")
            out[start:start + batch] = chunk
        return out

    return LineLUT.from_function(fn, rois, q, ny=ny, nc=nc, config=config, support=support,
                                 combine=combine, meta=meta)


def per_roi_decode(predict: Predict, scans: np.ndarray, *, config: PreprocessConfig | None = None,
                   combine: str = "weighted") -> np.ndarray:
    """What a LUT distilled from ``predict`` approximates, computed with ``predict`` itself.

    For every scan and y, each valid ROI is asked alone (:func:`single_roi_features`) and the
    answers are combined as :class:`LineLUT` combines its per-ROI values (``"weighted"``: mean
    weighted by the ROI's ``max(u)``; ``"best"``: the brightest ROI). Returns xv ``(N, Q)``
    float64, NaN where no ROI is valid. ``|LUT − per_roi_decode|`` is the distillation error
    alone (the table's resolution and support), separate from how the MLP would answer all ROIs
    jointly.
    """
    if combine not in COMBINE_MODES:
        raise InputError(f"combine: expected one of {COMBINE_MODES}, received {combine!r}")
    s = as_scan_batch(scans)
    n, rois, _, q, _ = s.shape
    means = roi_means(s)                                               # (N, R, Q, 3)
    valid, _ = validity(means, config or PreprocessConfig())
    peak = means.max(axis=-1)
    num = np.zeros((n, q))
    den = np.zeros((n, q))
    best_w = np.full((n, q), -1.0)
    best_v = np.full((n, q), np.nan)
    ys = np.broadcast_to(np.arange(q, dtype=np.float64), (n, q))
    for r in range(rois):
        m = valid[:, r]
        if not m.any():
            continue
        u = means[:, r][m].astype(np.float64)
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        v = np.full((n, q), np.nan)
        v[m] = np.asarray(predict(single_roi_features(r, rois, ys[m], u, q)), np.float64).reshape(-1)
        w = np.where(m, peak[:, r], 0.0)
        num += np.where(m, w * np.nan_to_num(v), 0.0)
        den += w
        better = m & (w > best_w)
        best_w = np.where(better, w, best_w)
        best_v = np.where(better, v, best_v)
    if combine == "best":
        return best_v
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
