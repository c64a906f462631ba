"""Look-up-table decoder of a projected vertical line (Eq. 14 distilled into a table).

The line decoder of §3.2 maps each valid y's normalised ROI colour and y to the horizontal
coordinate xv. A :class:`LineLUT` tabulates that map per ROI on a grid over (y, chromaticity), so
that decoding a scan is one pass over its pixels with a trilinear lookup per valid ROI — fast
enough for the line rate on one CPU core (the C++ kernel in ``kernels/src/line_decode*.cpp``).

Lookup, in float32 and in this order (the C++ kernel and :meth:`LineLUT.decode_reference` agree
bit for bit):

- chromaticity of ROI r at y from its row mean ``(r, g, b)``: ``s = (r + g) + b``,
  ``c1 = r / s``, ``c2 = g / s`` (a valid ROI has ``s > 0``);
- grid coordinates ``fy = (float32(y) - y0) / dy``, ``f1 = c1 * (nc - 1)``, ``f2 = c2 * (nc - 1)``,
  each clamped to ``[0, n - 1]``; cell ``i = min(int(f), n - 2)`` (0 when n = 1), fraction
  ``t = f - i``;
- ``lerp(a, b, t) = a * (1 - t) + b * t`` over c2, then c1, then y (8 corners); a NaN corner
  makes the ROI's value NaN (no support there).

Combination of the valid ROIs whose value is not NaN (§4): ``"best"`` takes the one with the
largest ``max(u)`` (ties to the lowest index); ``"weighted"`` averages them weighted by
``max(u)``, accumulating ``num += w * v``, ``den += w`` in ROI order, ``xv = num / den``. The
reported ROI is the one with the largest ``max(u)`` among those used (-1 where none). A valid y
with no usable ROI gets flag :data:`~sdk.lines.preprocess.NO_LUT` and xv NaN.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path

import numpy as np

from ..errors import InputError
from .preprocess import (DARK, NO_LUT, SATURATED, SINGLE_CHANNEL, PreprocessConfig,
                         _check_threads, as_scan_batch, line_features_reference,
                         roi_means_reference)

__all__ = ["LUT_FORMAT_VERSION", "COMBINE_MODES", "LineDecodeResult", "LineLUT"]

LUT_FORMAT_VERSION = 1
COMBINE_MODES = ("best", "weighted")


@dataclass
class LineDecodeResult:
    """Decoded xv per line and y.

    Attributes:
        xv: float32 ``(N, Q)`` horizontal coordinate in the LUT's xv units, NaN where y is not
            valid or has no LUT support.
        roi: int8 ``(N, Q)`` the ROI with the largest ``max(u)`` among those used, -1 where none.
        flags: uint8 ``(N, Q)`` bitmask (DARK, SINGLE_CHANNEL, SATURATED, NO_LUT).
        counts: ``lines`` (N), ``y_total`` (N·Q), ``y_valid`` (y in the validity set A),
            ``decoded`` (finite xv), ``dark``, ``single_channel``, ``saturated``, ``no_lut``
            (y's carrying each flag): every y not decoded is accounted for by a flag.
    """

    xv: np.ndarray
    roi: np.ndarray
    flags: np.ndarray
    counts: dict = field(default_factory=dict)


def _out_array(name: str, a, dtype, shape: tuple[int, int]) -> np.ndarray:
    if not (isinstance(a, np.ndarray) and a.dtype == dtype and a.shape == shape
            and a.flags.c_contiguous and a.flags.writeable):
        raise InputError(f"{name}: expected a writeable C-contiguous {np.dtype(dtype)} array of "
                         f"shape {shape}, received {getattr(a, 'dtype', type(a).__name__)} "
                         f"{getattr(a, 'shape', '')}")
    return a


def _count_dict(n: int, q: int, decoded: int, dark: int, single: int, saturated: int,
                no_lut: int) -> dict:
    # A valid y either decodes or carries NO_LUT, so the validity set A has decoded + no_lut.
    return {"lines": int(n), "y_total": int(n * q), "y_valid": int(decoded + no_lut),
            "decoded": int(decoded), "dark": int(dark), "single_channel": int(single),
            "saturated": int(saturated), "no_lut": int(no_lut)}


def _counts(xv: np.ndarray, flags: np.ndarray) -> dict:
    """The counts from the outputs (the twin's way; the C++ decoder counts as it writes)."""
    n, q = flags.shape
    return _count_dict(n, q, np.count_nonzero(np.isfinite(xv)),
                       np.count_nonzero(flags & DARK), np.count_nonzero(flags & SINGLE_CHANNEL),
                       np.count_nonzero(flags & SATURATED), np.count_nonzero(flags & NO_LUT))


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a * (np.float32(1) - t) + b * t


def _axis(f: np.ndarray, n: int):
    """Clamped cell index and fraction of float32 grid coordinates ``f`` on an n-node axis."""
    f = np.minimum(np.maximum(f, np.float32(0)), np.float32(n - 1))
    i = np.minimum(f.astype(np.int64), max(n - 2, 0))
    return i, (f - i.astype(np.float32)).astype(np.float32), np.minimum(i + 1, n - 1)


@dataclass
class LineLUT:
    """Per-ROI table of xv over (y, chromaticity c1 = r/(r+g+b), c2 = g/(r+g+b)).

    Attributes:
        table: float32 ``(R, ny, nc, nc)``, ``table[r, k, i, j]`` is xv of ROI r at
            ``y = y0 + k dy`` (sensor pixels), ``c1 = i/(nc-1)``, ``c2 = j/(nc-1)``; NaN where
            there is no support.
        y0, dy: the y grid in sensor pixels (used as float32), ``dy > 0``.
        nc: chromaticity nodes per axis on [0, 1] (>= 2).
        config: the preprocessing thresholds (validity, saturation).
        combine: ``"best"`` or ``"weighted"`` (see the module docstring).
        meta: free-form JSON-serialisable provenance (model, training set, ...).
    """

    table: np.ndarray
    y0: float
    dy: float
    nc: int
    config: PreprocessConfig = field(default_factory=PreprocessConfig)
    combine: str = "weighted"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = self.table
        if not isinstance(t, np.ndarray) or t.dtype != np.float32 or t.ndim != 4:
            raise InputError(f"LineLUT.table: expected float32 (R, ny, nc, nc), received "
                             f"{getattr(t, 'dtype', type(t).__name__)} {getattr(t, 'shape', None)}")
        if not isinstance(self.nc, Integral) or self.nc < 2 or t.shape[2:] != (self.nc, self.nc):
            raise InputError(f"LineLUT.table: expected shape (R, ny, {self.nc}, {self.nc}) with "
                             f"nc >= 2, received {t.shape}")
        if min(t.shape[:2]) == 0:
            raise InputError(f"LineLUT.table: R and ny must be >= 1, received {t.shape}")
        if np.isinf(t).any():
            raise InputError("LineLUT.table: infinite entries; use NaN for 'no support'")
        for name in ("y0", "dy"):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise InputError(f"LineLUT.{name}: expected a finite number, received {v!r}")
            setattr(self, name, float(v))
        if self.dy <= 0:
            raise InputError(f"LineLUT.dy: expected > 0 pixels, received {self.dy}")
        if self.combine not in COMBINE_MODES:
            raise InputError(f"LineLUT.combine: expected one of {COMBINE_MODES}, received "
                             f"{self.combine!r}")
        if not isinstance(self.config, PreprocessConfig):
            raise InputError(f"LineLUT.config: expected a PreprocessConfig, received "
                             f"{type(self.config).__name__}")
        self.table = np.ascontiguousarray(t)
        self.nc = int(self.nc)

    @property
    def rois(self) -> int:
        """R, the number of ROIs the table covers."""
        return int(self.table.shape[0])

    @property
    def ny(self) -> int:
        """Nodes of the y grid."""
        return int(self.table.shape[1])

    # ----------------------------------------------------------------------------- building --

    @classmethod
    def from_function(cls, fn: Callable[[int, np.ndarray, np.ndarray], np.ndarray], rois: int,
                      Q: int, ny: int = 33, nc: int = 64,
                      config: PreprocessConfig | None = None,
                      support: Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None = None,
                      combine: str = "weighted", meta: dict | None = None) -> LineLUT:
        """Tabulate ``fn(roi, y (M,), u (M, 3)) -> xv (M,)`` on the grid (e.g. a trained MLP).

        The y grid spans the sensor, ``y0 = 0``, ``dy = (Q - 1)/(ny - 1)``. ``u`` is the
        L2-normalised colour of chromaticity node ``(c1, c2, 1 - c1 - c2)``. Nodes outside the
        chromaticity triangle are NaN, except the ring ``1 < c1 + c2 <= 1 + 2/(nc - 1)``: those
        take the value at the node's chromaticity scaled back onto the hypotenuse (b = 0). A
        trilinear cell that touches the hypotenuse reads such nodes, so without the ring every
        colour with little blue (the yellow/orange part of the rainbow) would decode as NaN.
        ``support(roi, y, u) -> bool (M,)``
        optionally marks nodes without training support, which become NaN.
        """
        for name, v, low in (("rois", rois, 1), ("Q", Q, 1), ("ny", ny, 1), ("nc", nc, 2)):
            if not isinstance(v, Integral) or isinstance(v, bool) or v < low:
                raise InputError(f"LineLUT.from_function: {name} must be an int >= {low}, "
                                 f"received {v!r}")
        ys = np.arange(ny, dtype=np.float64) * ((Q - 1) / (ny - 1) if ny > 1 else 0.0)
        c = np.arange(nc, dtype=np.float64) / (nc - 1)
        c1, c2 = np.meshgrid(c, c, indexing="ij")
        total = c1 + c2
        ring = total <= 1.0 + 2.0 / (nc - 1) + 1e-12
        scale = np.where(total > 1.0, 1.0 / np.maximum(total, 1e-300), 1.0)
        k1, k2 = (c1 * scale)[ring], (c2 * scale)[ring]
        colour = np.stack([k1, k2, np.maximum(1.0 - k1 - k2, 0.0)], axis=-1)
        colour /= np.linalg.norm(colour, axis=-1, keepdims=True)
        m = colour.shape[0]
        table = np.full((rois, ny, nc, nc), np.nan, dtype=np.float32)
        for r in range(rois):
            y_all = np.repeat(ys, m)
            u_all = np.tile(colour, (ny, 1))
            xv = np.asarray(fn(r, y_all, u_all), dtype=np.float64).reshape(-1)
            if xv.shape[0] != ny * m:
                raise InputError(f"LineLUT.from_function: fn returned {xv.shape[0]} values for "
                                 f"{ny * m} grid nodes (roi {r})")
            if support is not None:
                ok = np.asarray(support(r, y_all, u_all), dtype=bool).reshape(-1)
                if ok.shape[0] != ny * m:
                    raise InputError(f"LineLUT.from_function: support returned {ok.shape[0]} "
                                     f"values for {ny * m} grid nodes (roi {r})")
                xv = np.where(ok, xv, np.nan)
            xv = np.where(np.isfinite(xv), xv, np.nan)
            table[r][:, ring] = xv.reshape(ny, m).astype(np.float32)
        return cls(table=table, y0=0.0, dy=float(ys[1] - ys[0]) if ny > 1 else 1.0, nc=nc,
                   config=config or PreprocessConfig(), combine=combine, meta=dict(meta or {}))

    # ---------------------------------------------------------------------------- decoding --

    def _check_scans(self, scans) -> np.ndarray:
        s = as_scan_batch(scans)
        if s.shape[1] != self.rois:
            raise InputError(f"scans: shape {s.shape} has {s.shape[1]} ROIs, the LUT has "
                             f"{self.rois}")
        return s

    def decode(self, scans: np.ndarray, *, path: str = "auto", num_threads: int = 1,
               out: LineDecodeResult | None = None) -> LineDecodeResult:
        """Decode xv for every y of every scan with the C++ kernel (one pass per scan).

        Args:
            scans: uint8 ``(R, h, Q, 3)`` or ``(N, R, h, Q, 3)`` with the LUT's R.
            path: SIMD path (``"auto"``, ``"scalar"``, ``"avx2"``, ``"avx512"``, ``"neon"``).
            num_threads: threads over the N scans (1 by default; 0 uses every core).
            out: a previous result whose arrays (C-contiguous, ``(N, Q)`` of this call) are
                written again, as a streaming pipeline reuses its buffers: fresh arrays of a
                full batch cost page faults and zeroing on every call (~5 % at 512 lines).
                The returned result holds the same arrays and this call's counts.
        """
        from .. import _kernels

        s = self._check_scans(scans)
        n, _, _, q, _ = s.shape
        if out is None:
            xv = np.empty((n, q), dtype=np.float32)
            roi = np.empty((n, q), dtype=np.int8)
            flags = np.empty((n, q), dtype=np.uint8)
        else:
            xv, roi, flags = (_out_array(f"out.{name}", getattr(out, name), dtype, (n, q))
                              for name, dtype in (("xv", np.float32), ("roi", np.int8),
                                                  ("flags", np.uint8)))
        cfg = self.config
        counted = _kernels.line_lut_decode(s, self.table, self.y0, self.dy,
                                           self.combine == "weighted", cfg.intensity_threshold,
                                           cfg.channel_floor, cfg.saturation_level, xv, roi,
                                           flags, path, _check_threads(num_threads))
        return LineDecodeResult(xv, roi, flags, _count_dict(n, q, *counted))

    def lookup_reference(self, roi: int, y: np.ndarray, c1: np.ndarray,
                         c2: np.ndarray) -> np.ndarray:
        """Trilinear value of ROI ``roi``'s table at float32 y, c1, c2 (arrays of one shape)."""
        t = self.table[roi]
        ny, nc = self.ny, self.nc
        fy = (y.astype(np.float32) - np.float32(self.y0)) / np.float32(self.dy)
        iy, ty, iy1 = _axis(fy, ny)
        ia, ta, ia1 = _axis(c1.astype(np.float32) * np.float32(nc - 1), nc)
        ib, tb, ib1 = _axis(c2.astype(np.float32) * np.float32(nc - 1), nc)

        def plane(k):
            e0 = _lerp(t[k, ia, ib], t[k, ia, ib1], tb)
            e1 = _lerp(t[k, ia1, ib], t[k, ia1, ib1], tb)
            return _lerp(e0, e1, ta)

        return _lerp(plane(iy), plane(iy1), ty).astype(np.float32)

    def decode_reference(self, scans: np.ndarray) -> LineDecodeResult:
        """NumPy twin of :meth:`decode`: same result, bit for bit."""
        s = self._check_scans(scans)
        n, r_count, _, q, _ = s.shape
        cfg = self.config
        means = roi_means_reference(s)                                  # (N, R, Q, 3)
        _, valid_y, flags = line_features_reference(s, cfg)
        peak = means.max(axis=-1)
        count = (means > np.float32(cfg.channel_floor)).sum(axis=-1)
        roi_valid = (peak > np.float32(cfg.intensity_threshold)) & (count >= 2)
        ys = np.broadcast_to(np.arange(q, dtype=np.float32), (n, q))
        num = np.zeros((n, q), dtype=np.float32)
        den = np.zeros((n, q), dtype=np.float32)
        best_w = np.full((n, q), -1.0, dtype=np.float32)
        best_v = np.full((n, q), np.nan, dtype=np.float32)
        roi = np.full((n, q), -1, dtype=np.int8)
        for r in range(r_count):
            m = means[:, r]
            ssum = (m[..., 0] + m[..., 1]) + m[..., 2]
            safe = np.where(roi_valid[:, r], ssum, np.float32(1))
            v = self.lookup_reference(r, ys, m[..., 0] / safe, m[..., 1] / safe)
            use = roi_valid[:, r] & ~np.isnan(v)
            w = peak[:, r]
            num = np.where(use, num + w * v, num)
            den = np.where(use, den + w, den)
            better = use & (w > best_w)
            best_w = np.where(better, w, best_w)
            best_v = np.where(better, v, best_v)
            roi = np.where(better, np.int8(r), roi)
        any_used = roi >= 0
        if self.combine == "weighted":
            xv = np.where(any_used, num / np.where(any_used, den, np.float32(1)), np.nan)
        else:
            xv = best_v
        xv = xv.astype(np.float32)
        flags = flags | np.where(valid_y & ~any_used, NO_LUT, 0).astype(np.uint8)
        return LineDecodeResult(xv, roi, flags, _counts(xv, flags))

    # -------------------------------------------------------------------------- save / load --

    def save(self, path: str | Path) -> Path:
        """Write the LUT as a ``.npz`` (table, grid, config, combine, meta, format version)."""
        path = Path(path)
        header = {"format": "prism.line_lut", "version": LUT_FORMAT_VERSION, "y0": self.y0,
                  "dy": self.dy, "nc": self.nc, "combine": self.combine,
                  "config": self.config.to_dict(), "meta": self.meta}
        try:
            text = json.dumps(header)
        except TypeError as e:
            raise InputError(f"LineLUT.meta: not JSON-serialisable ({e})") from None
        with open(path, "wb") as f:
            np.savez(f, table=self.table, header=np.frombuffer(text.encode(), dtype=np.uint8))
        return path

    @classmethod
    def load(cls, path: str | Path) -> LineLUT:
        """Read a LUT written by :meth:`save`; raises InputError naming the file and the problem."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                if "table" not in z or "header" not in z:
                    raise InputError(f"{path}: not a Prism line LUT (arrays {sorted(z.files)}; "
                                     f"expected 'table' and 'header')")
                table = z["table"]
                header = json.loads(z["header"].tobytes().decode())
        except InputError:
            raise
        except FileNotFoundError:
            raise InputError(f"{path}: no such LUT file") from None
        except Exception as e:  # zip, pickle and JSON errors of a damaged file
            raise InputError(f"{path}: corrupt or unreadable LUT file ({type(e).__name__}: {e})") \
                from None
        if not isinstance(header, dict) or header.get("format") != "prism.line_lut":
            raise InputError(f"{path}: not a Prism line LUT (header format "
                             f"{header.get('format') if isinstance(header, dict) else header!r})")
        if header.get("version") != LUT_FORMAT_VERSION:
            raise InputError(f"{path}: LUT format version {header.get('version')!r}, this Prism "
                             f"reads version {LUT_FORMAT_VERSION}")
        try:
            return cls(table=table, y0=header["y0"], dy=header["dy"], nc=header["nc"],
                       config=PreprocessConfig(**header["config"]), combine=header["combine"],
                       meta=header["meta"])
        except (KeyError, TypeError) as e:
            raise InputError(f"{path}: LUT header is missing or has a bad field ({e})") from None
