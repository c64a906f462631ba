"""Line-sensor preprocessing for diffraction line imaging (Sheinin et al., §3.2 and §4).

A *scan* is one read-out of the line sensor: uint8 ``(R, h, Q, 3)`` — R ROIs (sensor column
bands, §4), h rows per ROI (8 in the paper), Q pixels along y (2056 in the paper), RGB. A batch
of N scans is ``(N, R, h, Q, 3)``. Every function accepts one scan or a batch and returns batch
shapes (N = 1 for a single scan).

Two implementations with one meaning: the public functions run the C++ kernels
(``kernels/src/line_decode*.cpp``, one SIMD path per instruction set chosen at run time, GIL
released); the ``*_reference`` functions are their NumPy twins, which the tests compare against.
Integer parts agree bit for bit; the float parts perform the same float32 operations in the
same order (the kernels are built with ``-ffp-contract=off``), so they agree bit for bit too.

Definitions (float32 throughout, DN = sensor digital numbers):

- **ROI mean** ``u^r_y``: the h rows of ROI r at pixel y summed in integers, then one multiply
  by ``float32(1/h)``.
- **Validity** (Eq. 14's set A): ROI r is valid at y iff ``max(u) > t`` (``intensity_threshold``)
  and at least two channels are ``> channel_floor`` (``||u||_0 > 1``); y is valid iff any ROI is
  (§4).
- **Flags** per y (bitmask, uint8): :data:`DARK` no ROI has ``max(u) > t``; :data:`SINGLE_CHANNEL`
  not dark, but the brightest ROI (largest ``max(u)``, ties to the lowest index) has fewer than
  two channels above the floor (the rainbow's deep-red / deep-blue ends); :data:`SATURATED` some
  channel of some pixel read at y (any ROI, any row) is ``>= saturation_level``; :data:`NO_LUT`
  (set by :mod:`sdk.lines.lut` only) y is valid but no valid ROI has LUT support.
- **Features** (Eq. 14 with §4's concatenation): per ROI ``u^r / ||u^r||_2`` (norm
  ``sqrt((r*r + g*g) + b*b)``), zeros where ROI r is invalid, then ``y / (Q - 1)``
  (0 when Q = 1): a ``3R + 1`` vector per y.
- **Gray profile**: the mean over ROIs, rows and channels (integer sum times
  ``float32(1/(3 R h))``), the signal whose peaks locate sparse point sources (§3.2).
- **Peaks**: local maxima of the profile above ``peak_threshold`` (``p[y] >= p[y-1]`` and
  ``p[y] > p[y+1]``, out-of-range neighbours count as -inf), non-maximum suppression strongest
  first (ties to the lower y) keeping peaks at least ``peak_min_distance`` apart, returned in
  ascending y with parabolic sub-pixel refinement ``y + 0.5 (a - c) / (a - 2b + c)`` where the
  denominator is negative (else ``y``).
- **Patches** (§3.2 and footnote 4): per peak the ``h × patch_width`` window centred at the
  peak from every ROI, concatenated along the width in ROI order, channels first, divided by
  the patch's maximum over all pixels and channels (``float32(v) / float32(max)``; an all-zero
  patch stays zero); pixels past the sensor ends are zeros and mark the patch not in bounds.

Memory rule: a C-contiguous uint8 array is read in place; a non-contiguous one is copied once
with ``np.ascontiguousarray``. Other dtypes are rejected, never cast.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from ..errors import InputError

__all__ = ["DARK", "SINGLE_CHANNEL", "SATURATED", "NO_LUT", "PreprocessConfig", "as_scan_batch",
           "roi_means", "validity", "line_features", "gray_profile", "find_peaks",
           "extract_patches", "roi_means_reference", "validity_reference",
           "line_features_reference", "gray_profile_reference", "find_peaks_reference",
           "extract_patches_reference", "line_paths", "line_best_path"]

DARK = 1
SINGLE_CHANNEL = 2
SATURATED = 4
NO_LUT = 8


def _number(name: str, value, *, minimum: float | None = None) -> float:
    if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value):
        raise InputError(f"PreprocessConfig.{name}: expected a finite number, received {value!r}")
    if minimum is not None and value < minimum:
        raise InputError(f"PreprocessConfig.{name}: expected >= {minimum}, received {value!r}")
    return float(value)


def _integer(name: str, value, low: int, high: int) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool) or not low <= value <= high:
        raise InputError(f"PreprocessConfig.{name}: expected an int in [{low}, {high}], "
                         f"received {value!r}")
    return int(value)


@dataclass(frozen=True)
class PreprocessConfig:
    """Thresholds of the line preprocessing (all intensities in DN of the 8-bit sensor).

    Attributes:
        intensity_threshold: t of Eq. 14; a ROI needs ``max(u) > t`` (its row-mean's brightest
            channel) to be valid.
        channel_floor: a channel counts as non-zero for ``||u||_0`` if its row mean is above this.
        saturation_level: a pixel channel ``>=`` this is saturated (flag :data:`SATURATED`).
        peak_threshold: a gray-profile peak must exceed this (DN) to be a point source.
        peak_min_distance: peaks closer than this (pixels along y) are suppressed, weaker first.
        patch_width: width of each ROI's patch around a peak (odd; 9 in the paper).
    """

    intensity_threshold: float = 20.0
    channel_floor: float = 4.0
    saturation_level: int = 255
    peak_threshold: float = 10.0
    peak_min_distance: int = 5
    patch_width: int = 9

    def __post_init__(self) -> None:
        object.__setattr__(self, "intensity_threshold",
                           _number("intensity_threshold", self.intensity_threshold, minimum=0.0))
        object.__setattr__(self, "channel_floor",
                           _number("channel_floor", self.channel_floor, minimum=0.0))
        object.__setattr__(self, "saturation_level",
                           _integer("saturation_level", self.saturation_level, 1, 255))
        object.__setattr__(self, "peak_threshold",
                           _number("peak_threshold", self.peak_threshold))
        object.__setattr__(self, "peak_min_distance",
                           _integer("peak_min_distance", self.peak_min_distance, 1, 1 << 30))
        width = _integer("patch_width", self.patch_width, 1, 1 << 15)
        if width % 2 == 0:
            raise InputError(f"PreprocessConfig.patch_width: expected an odd width (the patch is "
                             f"centred on the peak), received {width}")
        object.__setattr__(self, "patch_width", width)

    def to_dict(self) -> dict:
        """JSON-ready dict, the inverse of ``PreprocessConfig(**d)``."""
        return {"intensity_threshold": self.intensity_threshold,
                "channel_floor": self.channel_floor, "saturation_level": self.saturation_level,
                "peak_threshold": self.peak_threshold,
                "peak_min_distance": self.peak_min_distance, "patch_width": self.patch_width}


def _check_config(cfg) -> PreprocessConfig:
    if cfg is None:
        return PreprocessConfig()
    if not isinstance(cfg, PreprocessConfig):
        raise InputError(f"cfg: expected a PreprocessConfig or None, received {type(cfg).__name__}")
    return cfg


def as_scan_batch(scans, name: str = "scans") -> np.ndarray:
    """``scans`` as a C-contiguous uint8 ``(N, R, h, Q, 3)`` array (a view when possible).

    Accepts one scan ``(R, h, Q, 3)`` or a batch ``(N, R, h, Q, 3)`` with R, h, Q >= 1. A
    non-contiguous array is copied once. Raises InputError naming ``name`` and its shape.
    """
    if not isinstance(scans, np.ndarray):
        raise InputError(f"{name}: expected a numpy.ndarray uint8 (R, h, Q, 3) or (N, R, h, Q, 3), "
                         f"received {type(scans).__name__}")
    if scans.dtype != np.uint8:
        raise InputError(f"{name}: expected dtype uint8, received {scans.dtype} with shape "
                         f"{scans.shape} (scans are never cast)")
    if scans.ndim == 4:
        scans = scans[None]
    if scans.ndim != 5 or scans.shape[-1] != 3:
        raise InputError(f"{name}: expected shape (R, h, Q, 3) or (N, R, h, Q, 3), received "
                         f"{scans.shape}")
    if min(scans.shape[1:4]) == 0:
        raise InputError(f"{name}: R, h and Q must be >= 1, received shape {scans.shape}")
    return scans if scans.flags.c_contiguous else np.ascontiguousarray(scans)


def _check_means(means) -> np.ndarray:
    if not isinstance(means, np.ndarray) or means.dtype != np.float32 or means.ndim != 4 \
            or means.shape[-1] != 3 or min(means.shape[1:3]) == 0:
        shape = getattr(means, "shape", None)
        dtype = getattr(means, "dtype", type(means).__name__)
        raise InputError(f"means: expected float32 (N, R, Q, 3) with R, Q >= 1 (from roi_means), "
                         f"received {dtype} {shape}")
    return means if means.flags.c_contiguous else np.ascontiguousarray(means)


# ------------------------------------------------------------------------------ NumPy twins --

def roi_means_reference(scans: np.ndarray) -> np.ndarray:
    """NumPy twin of :func:`roi_means`: float32 ``(N, R, Q, 3)`` row means of every ROI."""
    s = as_scan_batch(scans)
    inv_h = np.float32(1.0 / s.shape[2])
    return s.sum(axis=2, dtype=np.int64).astype(np.float32) * inv_h


def _roi_stats(means: np.ndarray, cfg: PreprocessConfig):
    """Per ROI and y: max channel (N,R,Q) and the count of channels above the floor."""
    peak = means.max(axis=-1)
    count = (means > np.float32(cfg.channel_floor)).sum(axis=-1)
    return peak, count


def validity_reference(means: np.ndarray, cfg: PreprocessConfig | None = None):
    """NumPy twin of :func:`validity`: ``(valid (N,R,Q) bool, flags (N,Q) uint8)``."""
    cfg = _check_config(cfg)
    means = _check_means(means)
    peak, count = _roi_stats(means, cfg)
    t = np.float32(cfg.intensity_threshold)
    valid = (peak > t) & (count >= 2)
    brightest = peak.argmax(axis=1)  # first maximum: ties go to the lowest ROI index
    top = np.take_along_axis(peak, brightest[:, None], axis=1)[:, 0]
    top_count = np.take_along_axis(count, brightest[:, None], axis=1)[:, 0]
    dark = ~(top > t)
    flags = np.where(dark, DARK, 0) | np.where(~dark & (top_count < 2), SINGLE_CHANNEL, 0)
    return valid, flags.astype(np.uint8)


def _saturated(s: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    return (s.max(axis=(1, 2, 4)) >= cfg.saturation_level)  # (N, Q)


def line_features_reference(scans: np.ndarray, cfg: PreprocessConfig | None = None):
    """NumPy twin of :func:`line_features`: ``(features, valid, flags)``."""
    cfg = _check_config(cfg)
    s = as_scan_batch(scans)
    n, r, _, q, _ = s.shape
    means = roi_means_reference(s)
    roi_valid, flags = validity_reference(means, cfg)
    flags = flags | np.where(_saturated(s, cfg), SATURATED, 0).astype(np.uint8)
    m = means
    norm = np.sqrt((m[..., 0] * m[..., 0] + m[..., 1] * m[..., 1]) + m[..., 2] * m[..., 2])
    safe = np.where(roi_valid, norm, np.float32(1))[..., None]
    unit = np.where(roi_valid[..., None], m / safe, np.float32(0))       # (N, R, Q, 3)
    features = np.empty((n, q, 3 * r + 1), dtype=np.float32)
    features[..., :3 * r] = unit.transpose(0, 2, 1, 3).reshape(n, q, 3 * r)
    ys = np.arange(q, dtype=np.float32)
    features[..., 3 * r] = ys / np.float32(q - 1) if q > 1 else np.float32(0)
    return features, roi_valid.any(axis=1), flags


def gray_profile_reference(scans: np.ndarray) -> np.ndarray:
    """NumPy twin of :func:`gray_profile`: float32 ``(N, Q)``."""
    s = as_scan_batch(scans)
    _, r, h, _, _ = s.shape
    inv = np.float32(1.0 / (3 * r * h))
    return s.sum(axis=(1, 2, 4), dtype=np.int64).astype(np.float32) * inv


def _check_profile(profile) -> np.ndarray:
    if not isinstance(profile, np.ndarray) or profile.dtype != np.float32 or profile.ndim != 1:
        shape = getattr(profile, "shape", None)
        dtype = getattr(profile, "dtype", type(profile).__name__)
        raise InputError(f"profile: expected a float32 (Q,) gray profile (one row of "
                         f"gray_profile), received {dtype} {shape}")
    return np.ascontiguousarray(profile)


def find_peaks_reference(profile: np.ndarray, cfg: PreprocessConfig | None = None):
    """NumPy twin of :func:`find_peaks`: ``(y_int int64 (K,), y_sub float32 (K,), value (K,))``."""
    cfg = _check_config(cfg)
    p = _check_profile(profile)
    q = p.shape[0]
    neg = np.float32(-np.inf)
    left = np.concatenate([[neg], p[:-1]]).astype(np.float32)
    right = np.concatenate([p[1:], [neg]]).astype(np.float32)
    cand = np.nonzero((p > np.float32(cfg.peak_threshold)) & (p >= left) & (p > right))[0]
    order = cand[np.argsort(-p[cand], kind="stable")]  # strongest first, ties to lower y
    kept: list[int] = []
    taken = np.zeros(q, dtype=bool)
    d = cfg.peak_min_distance
    for y in order:
        if not taken[max(0, y - d + 1):y + d].any():
            kept.append(int(y))
            taken[y] = True
    y_int = np.array(sorted(kept), dtype=np.int64)
    y_sub = y_int.astype(np.float32)
    inner = (y_int > 0) & (y_int < q - 1)
    yi = y_int[inner]
    a, b, c = p[yi - 1], p[yi], p[yi + 1]
    den = (a - np.float32(2) * b) + c
    off = np.where(den < 0, (np.float32(0.5) * (a - c)) / np.where(den < 0, den, np.float32(1)),
                   np.float32(0))
    y_sub[inner] = yi.astype(np.float32) + off
    return y_int, y_sub.astype(np.float32), p[y_int].astype(np.float32)


def _check_scan(scan) -> np.ndarray:
    if not isinstance(scan, np.ndarray) or scan.dtype != np.uint8 or scan.ndim != 4 \
            or scan.shape[-1] != 3 or min(scan.shape[:3]) == 0:
        shape = getattr(scan, "shape", None)
        dtype = getattr(scan, "dtype", type(scan).__name__)
        raise InputError(f"scan: expected one uint8 scan (R, h, Q, 3) with R, h, Q >= 1, "
                         f"received {dtype} {shape}")
    return scan if scan.flags.c_contiguous else np.ascontiguousarray(scan)


def _check_y_int(y_int, q: int) -> np.ndarray:
    y = np.asarray(y_int)
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.size == 0):
        raise InputError(f"y_int: expected a 1-D integer array of peak positions, received "
                         f"{y.dtype} {y.shape}")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= q):
        raise InputError(f"y_int: peak positions must lie in [0, {q - 1}] (Q = {q}), received "
                         f"min {y.min()} max {y.max()}")
    return np.ascontiguousarray(y)


def extract_patches_reference(scan: np.ndarray, y_int, cfg: PreprocessConfig | None = None):
    """NumPy twin of :func:`extract_patches`: ``(patches (K,3,h,W R) float32, in_bounds (K,))``."""
    cfg = _check_config(cfg)
    s = _check_scan(scan)
    r, h, q, _ = s.shape
    y = _check_y_int(y_int, q)
    w = cfg.patch_width
    half = w // 2
    cols = y[:, None] + np.arange(-half, half + 1)[None, :]             # (K, W)
    inside = (cols >= 0) & (cols < q)
    gathered = s[:, :, np.clip(cols, 0, q - 1), :]                       # (R, h, K, W, 3)
    gathered = np.where(inside[None, None, :, :, None], gathered, 0).astype(np.uint8)
    patches = gathered.transpose(2, 4, 1, 0, 3).reshape(len(y), 3, h, r * w)
    peak = patches.reshape(len(y), -1).max(axis=1, initial=0).astype(np.float32)
    out = patches.astype(np.float32)
    nz = peak > 0
    out[nz] = out[nz] / peak[nz, None, None, None]
    return out, inside.all(axis=1)


# ----------------------------------------------------------------------------- C++ kernels --

def _kernels():
    from .. import _kernels as k
    return k


def line_paths() -> dict[str, str]:
    """``{path: '' if the line kernels run on it here, else why not}`` (scalar, avx2, ...)."""
    return dict(_kernels().line_paths())


def line_best_path() -> str:
    """The SIMD path ``"auto"`` resolves to on this CPU."""
    return _kernels().line_best_path()


def _check_threads(num_threads) -> int:
    if not isinstance(num_threads, Integral) or isinstance(num_threads, bool) or num_threads < 0:
        raise InputError(f"num_threads: expected an int >= 0 (0: all cores), received "
                         f"{num_threads!r}")
    return int(num_threads)


def roi_means(scans: np.ndarray, *, path: str = "auto", num_threads: int = 1) -> np.ndarray:
    """Row means of every ROI with the C++ kernel.

    Args:
        scans: uint8 ``(R, h, Q, 3)`` or ``(N, R, h, Q, 3)``.
        path: SIMD path (``"auto"``, ``"scalar"``, ``"avx2"``, ``"avx512"``, ``"neon"``).
        num_threads: threads over the N scans (1 by default: the speed goal is per core; 0 uses
            every core).

    Returns:
        float32 ``(N, R, Q, 3)`` in DN.
    """
    s = as_scan_batch(scans)
    n, r, _, q, _ = s.shape
    out = np.empty((n, r, q, 3), dtype=np.float32)
    _kernels().line_roi_means(s, out, path, _check_threads(num_threads))
    return out


def validity(means: np.ndarray, cfg: PreprocessConfig | None = None):
    """Eq. 14's validity set A per ROI and §4's per-y validity, with flags, in C++.

    Args:
        means: float32 ``(N, R, Q, 3)`` from :func:`roi_means`.
        cfg: thresholds; ``None`` means the defaults.

    Returns:
        ``valid`` bool ``(N, R, Q)`` (ROI r valid at y) and ``flags`` uint8 ``(N, Q)`` with
        :data:`DARK` and :data:`SINGLE_CHANNEL` (saturation needs the pixels: see
        :func:`line_features`).
    """
    cfg = _check_config(cfg)
    m = _check_means(means)
    n, r, q, _ = m.shape
    valid = np.empty((n, r, q), dtype=np.bool_)
    flags = np.empty((n, q), dtype=np.uint8)
    _kernels().line_validity(m, valid.view(np.uint8), flags, cfg.intensity_threshold,
                             cfg.channel_floor)
    return valid, flags


def line_features(scans: np.ndarray, cfg: PreprocessConfig | None = None, *,
                  path: str = "auto", num_threads: int = 1):
    """The MLP input of Eq. 14 with §4's ROI concatenation, in C++.

    Args:
        scans: uint8 ``(R, h, Q, 3)`` or ``(N, R, h, Q, 3)``.
        cfg: thresholds; ``None`` means the defaults.

    Returns:
        ``features`` float32 ``(N, Q, 3R + 1)`` (per ROI ``u/||u||_2`` or zeros where the ROI
        is invalid, then ``y/(Q-1)``), ``valid`` bool ``(N, Q)`` and ``flags`` uint8 ``(N, Q)``.
    """
    cfg = _check_config(cfg)
    s = as_scan_batch(scans)
    n, r, _, q, _ = s.shape
    features = np.empty((n, q, 3 * r + 1), dtype=np.float32)
    valid = np.empty((n, q), dtype=np.bool_)
    flags = np.empty((n, q), dtype=np.uint8)
    _kernels().line_features(s, features, valid.view(np.uint8), flags, cfg.intensity_threshold,
                             cfg.channel_floor, cfg.saturation_level, path,
                             _check_threads(num_threads))
    return features, valid, flags


def gray_profile(scans: np.ndarray, *, path: str = "auto", num_threads: int = 1) -> np.ndarray:
    """Mean over ROIs, rows and channels per y, in C++: float32 ``(N, Q)`` in DN."""
    s = as_scan_batch(scans)
    n, _, _, q, _ = s.shape
    out = np.empty((n, q), dtype=np.float32)
    _kernels().line_gray_profile(s, out, path, _check_threads(num_threads))
    return out


def find_peaks(profile: np.ndarray, cfg: PreprocessConfig | None = None):
    """Point-source peaks of one gray profile (Q,), in C++ (semantics in the module docstring).

    Returns:
        ``y_int`` int64 ``(K,)`` ascending, ``y_sub`` float32 ``(K,)`` sub-pixel positions and
        ``value`` float32 ``(K,)`` profile values at ``y_int``.
    """
    cfg = _check_config(cfg)
    p = _check_profile(profile)
    y_int, y_sub = _kernels().line_find_peaks(p, cfg.peak_threshold, cfg.peak_min_distance)
    y_int = np.asarray(y_int, dtype=np.int64)
    return y_int, np.asarray(y_sub, dtype=np.float32), p[y_int]


def extract_patches(scan: np.ndarray, y_int, cfg: PreprocessConfig | None = None):
    """The L∞-normalised ``h × patch_width R`` patches of §3.2/§4 around peaks, in C++.

    Args:
        scan: one uint8 scan ``(R, h, Q, 3)``.
        y_int: integer peak positions ``(K,)`` in ``[0, Q)``.

    Returns:
        ``patches`` float32 ``(K, 3, h, patch_width * R)`` and ``in_bounds`` bool ``(K,)``
        (False where the window crosses a sensor end and was zero-padded).
    """
    cfg = _check_config(cfg)
    s = _check_scan(scan)
    r, h, q, _ = s.shape
    y = _check_y_int(y_int, q)
    patches = np.empty((y.shape[0], 3, h, cfg.patch_width * r), dtype=np.float32)
    in_bounds = np.empty(y.shape[0], dtype=np.bool_)
    _kernels().line_extract_patches(s, y, patches, in_bounds.view(np.uint8), cfg.patch_width)
    return patches, in_bounds
