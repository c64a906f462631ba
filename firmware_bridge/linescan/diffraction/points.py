"""Sparse point sources (§3.2 "Recovering sparse point sources", §5 hardware variants).

A point source at virtual pixel (xv, yv) makes a horizontal rainbow streak on the line camera
that crosses the sensor at y = G⁻¹(yv) (Eq. 4): every row of every ROI sees the colour of Eq. 8
for its own exit angle, spread vertically by the lens PSF (Gaussian σ = ``psf_sigma_px``, peak 1
at the streak centre) so an 8 × 9 patch around the peak holds the whole streak. Overlapping
streaks add their photo-electrons before the sensor's noise and saturation (the linear colour
mixture of §8). ``flux`` is the peak photo-electron rate, e⁻/µs at quantum efficiency 1.

§5 variants with ground truth: ``render_cylindrical`` (§5.1: the zeroth order through a
cylindrical lens on a horizontal line sensor — a white streak at each source's xv, no yv) and
``DoubleAxisCamera`` (§5.2: a second, horizontally diffracting line sensor whose streak position
encodes xv and whose colour encodes yv — the same renderer on the transposed geometry).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from firmware_bridge.linescan.diffraction.optics import DiffractionCamera
from firmware_bridge.linescan.diffraction.spectra import SPECTRA, spectrum_names

__all__ = ["PointSource", "PointDataset", "TRUTH_DTYPE", "sample_point_sources", "render_points",
           "render_point_batch", "make_point_dataset", "render_cylindrical", "DoubleAxisCamera"]

TRUTH_DTYPE = np.dtype([("scan_index", np.int32), ("xv", np.float32), ("yv", np.float32),
                        ("y_sensor", np.float32), ("spectrum_id", np.int16), ("flux", np.float32)])
"""One row per source: its scan, virtual position (px), streak row on the sensor (px, float),
index into ``spectrum_names()`` and peak flux (e⁻/µs)."""

_DEFAULT_FLUX = (1.0, 10.0)  # e⁻/µs: at 300 µs and 0.1 DN/e⁻ from ≈ 20 DN to just saturating
_CHUNK_SCANS = 256


@dataclass
class PointSource:
    """A light source on the virtual image plane: position (pixels), spectrum name, peak flux (e⁻/µs)."""

    xv: float
    yv: float
    spectrum: str
    flux: float

    def __post_init__(self) -> None:
        if self.spectrum not in SPECTRA:
            raise ValueError(f"PointSource.spectrum {self.spectrum!r} unknown; known: {', '.join(SPECTRA)}")
        for name in ("xv", "yv", "flux"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"PointSource.{name} must be finite, got {getattr(self, name)!r}")
        if self.flux < 0:
            raise ValueError(f"PointSource.flux must be >= 0, got {self.flux!r}")


@dataclass
class PointDataset:
    """``scans`` (N, R, h, Q, 3) uint8 and ``truth`` (one TRUTH_DTYPE row per source)."""

    scans: np.ndarray
    truth: np.ndarray
    camera: DiffractionCamera
    spectrum_names: tuple[str, ...] = field(default_factory=spectrum_names)

    def __len__(self) -> int:
        return len(self.scans)


def _spectrum_ids(names: Sequence[str] | None) -> np.ndarray:
    known = spectrum_names()
    names = known if names is None else tuple(names)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"spectra {unknown or names!r} not usable; known: {', '.join(known)}")
    return np.array([known.index(n) for n in names], dtype=np.int16)


def _check_flux_range(flux_range: tuple[float, float]) -> None:
    lo, hi = flux_range
    if not (0 <= lo <= hi and math.isfinite(hi)):
        raise ValueError(f"flux_range must be 0 <= low <= high, got {flux_range!r}")


def sample_point_sources(rng: np.random.Generator, n: int, camera: DiffractionCamera,
                         spectra: Sequence[str] | None = None,
                         flux_range: tuple[float, float] = _DEFAULT_FLUX) -> list[PointSource]:
    """``n`` sources uniform over xv ∈ [0, W) and the virtual rows both cameras see, with a
    spectrum drawn from ``spectra`` (default all) and flux uniform in ``flux_range`` (e⁻/µs)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    _check_flux_range(flux_range)
    ids = _spectrum_ids(spectra)
    lo, hi = camera.visible_yv_range()
    names = spectrum_names()
    return [PointSource(float(x), float(y), names[int(s)], float(f)) for x, y, s, f in zip(
        rng.uniform(0, camera.W, n), rng.uniform(lo, hi, n), rng.choice(ids, n), rng.uniform(*flux_range, n))]


def render_point_batch(camera: DiffractionCamera, scan_index: np.ndarray, xv: np.ndarray, yv: np.ndarray,
                       spectrum_id: np.ndarray, flux: np.ndarray, n_scans: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Vectorised Eq. 8 for many scans: sources given as (M,) arrays (``scan_index`` in
    [0, n_scans)) -> (n_scans, R, h, Q, 3) uint8."""
    scan_index = np.asarray(scan_index, np.int64)
    lengths = {len(a) for a in (scan_index, xv, yv, spectrum_id, flux)}
    if len(lengths) != 1:
        raise ValueError(f"source arrays differ in length: scan_index {len(scan_index)}, xv {len(xv)}, "
                         f"yv {len(yv)}, spectrum_id {len(spectrum_id)}, flux {len(flux)}")
    if len(scan_index) and (scan_index.min() < 0 or scan_index.max() >= n_scans):
        raise ValueError(f"scan_index must lie in [0, n_scans={n_scans}), got {scan_index.min()}..{scan_index.max()}")
    Q, psf = camera.Q, camera.psf_sigma_px
    electrons = np.zeros((n_scans, Q, camera.rois, camera.roi_rows, 3), np.float32)
    if len(xv):
        y = camera.G_inv(yv)
        colour = camera.streak_electrons(xv, y, spectrum_id, flux)  # (M, R, h, 3)
        reach = int(math.ceil(4 * psf))
        rows = np.rint(y).astype(np.int64)[:, None] + np.arange(-reach, reach + 1)  # (M, taps)
        profile = np.exp(-0.5 * ((rows - y[:, None]) / psf) ** 2).astype(np.float32)
        on_sensor = (rows >= 0) & (rows < Q)
        scans = np.broadcast_to(scan_index[:, None], rows.shape)
        contrib = profile[on_sensor][:, None, None, None] * colour[np.nonzero(on_sensor)[0]]
        np.add.at(electrons, (scans[on_sensor], rows[on_sensor]), contrib)
    return camera.expose(electrons, rng).transpose(0, 2, 3, 1, 4)


def _arrays(sources: Sequence[PointSource]):
    names = spectrum_names()
    return (np.array([s.xv for s in sources], np.float64), np.array([s.yv for s in sources], np.float64),
            np.array([names.index(s.spectrum) for s in sources], np.intp),
            np.array([s.flux for s in sources], np.float64))


def render_points(camera: DiffractionCamera, sources: Sequence[PointSource],
                  rng: np.random.Generator) -> np.ndarray:
    """One exposure of ``sources``: (R, h, Q, 3) uint8 (each a rainbow streak at y = G⁻¹(yv))."""
    xv, yv, ids, flux = _arrays(sources)
    return render_point_batch(camera, np.zeros(len(xv), np.int64), xv, yv, ids, flux, 1, rng)[0]


def make_point_dataset(camera: DiffractionCamera, n_scans: int, sources_per_scan: tuple[int, int] = (1, 3),
                       seed: int = 0, spectra: Sequence[str] | None = None,
                       flux_range: tuple[float, float] = _DEFAULT_FLUX, progress: bool = False) -> PointDataset:
    """``n_scans`` exposures of ``sources_per_scan`` (inclusive range) random sources each — the
    paper's training set of Eq. 12 with exact ground truth. Deterministic in ``seed``; rendered in
    chunks of 256 scans (``progress``: a tqdm bar over them)."""
    lo, hi = sources_per_scan
    if n_scans < 0 or not 0 <= lo <= hi:
        raise ValueError(f"need n_scans >= 0 and sources_per_scan = (low, high) with 0 <= low <= high, "
                         f"got n_scans={n_scans}, sources_per_scan={sources_per_scan}")
    _check_flux_range(flux_range)
    ids = _spectrum_ids(spectra)
    rng = np.random.default_rng(seed)
    counts = rng.integers(lo, hi + 1, n_scans)
    m = int(counts.sum())
    ylo, yhi = camera.visible_yv_range()
    truth = np.zeros(m, TRUTH_DTYPE)
    truth["scan_index"] = np.repeat(np.arange(n_scans), counts)
    truth["xv"] = rng.uniform(0, camera.W, m)
    truth["yv"] = rng.uniform(ylo, yhi, m)
    truth["y_sensor"] = camera.G_inv(truth["yv"].astype(np.float64))
    truth["spectrum_id"] = rng.choice(ids, m)
    truth["flux"] = rng.uniform(*flux_range, m)
    scans = np.empty((n_scans, camera.rois, camera.roi_rows, camera.Q, 3), np.uint8)
    starts = range(0, n_scans, _CHUNK_SCANS)
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc="point scans", unit="chunk")
    for start in starts:
        stop = min(start + _CHUNK_SCANS, n_scans)
        rows = truth[(truth["scan_index"] >= start) & (truth["scan_index"] < stop)]
        scans[start:stop] = render_point_batch(
            camera, rows["scan_index"] - start, rows["xv"].astype(np.float64), rows["yv"].astype(np.float64),
            rows["spectrum_id"], rows["flux"], stop - start, rng)
    return PointDataset(scans=scans, truth=truth, camera=camera)


def render_cylindrical(camera: DiffractionCamera, sources: Sequence[PointSource],
                       rng: np.random.Generator) -> np.ndarray:
    """§5.1: the helper camera's horizontal line behind a cylindrical lens, imaging the zeroth
    order: each source is a white (spectrally integrated) streak at column xv, whatever its yv.
    (W, 3) uint8; a source's colour is its flux × mean c_σ·s over 400–700 nm, horizontal PSF σ =
    ``psf_sigma_px``, same sensor model as the diffraction camera."""
    electrons = np.zeros((camera.W, 3), np.float32)
    cols = np.arange(camera.W)
    for s in sources:
        colour = camera.broadband_electrons_per_us(s.spectrum) * np.float32(s.flux * camera.exposure_us)
        profile = np.exp(-0.5 * ((cols - s.xv) / camera.psf_sigma_px) ** 2).astype(np.float32)
        electrons += profile[:, None] * colour
    return camera.expose(electrons, rng)


@dataclass(frozen=True)
class DoubleAxisCamera:
    """§5.2: a double-axis grating seen by two line sensors. ``vertical`` is the usual camera
    (streak row -> yv, colour -> xv); ``horizontal`` is the same design turned by 90° (its sensor
    along the virtual x axis: streak position -> xv, colour -> yv), its exit angles re-tiled for
    the virtual height."""

    vertical: DiffractionCamera

    @property
    def horizontal(self) -> DiffractionCamera:
        v = self.vertical
        return v.with_(W=v.H_v, H_v=v.W)

    @staticmethod
    def transpose(sources: Sequence[PointSource]) -> list[PointSource]:
        """Sources in the horizontal sensor's frame (xv and yv swapped)."""
        return [PointSource(s.yv, s.xv, s.spectrum, s.flux) for s in sources]

    def render(self, sources: Sequence[PointSource], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(vertical scan, horizontal scan), each (R, h, Q, 3) uint8."""
        return (render_points(self.vertical, sources, rng),
                render_points(self.horizontal, self.transpose(sources), rng))

    def sensor_positions(self, sources: Sequence[PointSource]) -> np.ndarray:
        """Ground truth: where each source's streak crosses each sensor, (n, 2) float pixels
        [vertical sensor y = G⁻¹(yv), horizontal sensor position = G_h⁻¹(xv)]."""
        xv, yv, _, _ = _arrays(sources)
        return np.stack([self.vertical.G_inv(yv), self.horizontal.G_inv(xv)], axis=-1)
