"""The diffraction line camera: grating + multi-ROI colour line sensor + virtual 2D camera (§3.1).

Geometry (paper Eqs. 1–7). A transmission grating with ``grooves_per_mm`` lines/mm (period
d = 10⁶/grooves nm) sits in front of a colour line camera rotated by 90°, so the sensor's long
axis (Q pixels, coordinate y) is vertical. A virtual pinhole camera (the paper's helper camera:
W × H_v pixels, focal length ``f_px``) defines the image plane the positions are reported in.
A ray from virtual pixel (xv, yv) has in-plane incidence angle θi = arctan((xv − W/2)/f) (Eq. 6)
and elevation ψ = arctan(b/√(1+a²)) with a = (xv − W/2)/f, b = (yv − H_v/2)/f. In direction
cosines the grating keeps the vertical cosine and shifts the horizontal one by λ/d (Harvey &
Vernold, the paper's ref. 10), so a sensor column whose in-plane exit angle is θ' sees

    λ = d · cos ψ · (sin θ' − sin θi)  =  d · (sin θ' · √(1+a²) − a) / √(1+a²+b²)

which is Eq. 7 on the centre row (ψ = 0) plus the conical-diffraction term the paper neglects:
at the top and bottom of the virtual FOV (ψ ≈ ±18°) the band shifts by ≈5 % towards the blue,
which is why H⁻¹ must take y as an input (§3.2). The vertical mapping is the affine G of Eq. 4:
yv = g_scale·(y − Q/2) + H_v/2 + g_shift_px with g_scale = f_px/line_f_px (same vertical
direction seen by both cameras) and a few pixels of mounting offset.

Multi-ROI FOV (§4). Each ROI r is ``roi_rows`` sensor columns (the 8 "rows" of a rotated ROI) at
its own exit angle θ'_r; by default the angles tile the visible band across the virtual width:
λ = 660 nm at xv = 0 in ROI 0, λ = 440 nm at xv = W in the last ROI, evenly spaced in sin θ'
between, so with the defaults each ROI's 420–680 nm band covers about a third of [0, W) and
neighbours overlap by ≈ 90 px (4 %); moving the ends inwards would need ROIs beyond the sensor.
``line_f_px`` (a 6 mm lens on 3.45 µm pixels) is short enough that these ROIs fit
on the rotated sensor's ``line_sensor_cols`` = 1542 columns; each row of an ROI sees its own
exit angle (one pixel = arctan(1/line_f_px)).

Radiometry (Eq. 8). A pixel collects ``exposure_us`` · flux · c_σ(λ) · s(λ) photo-electrons,
flux in e⁻/µs at quantum efficiency 1 and spectrum peak 1; c_σ are smooth R/G/B quantum
efficiency curves (``spectral_response``: peaks 610/535/460 nm, IR-cut at ≈ 680 nm). Sensor:
Poisson photon noise (Gaussian-approximated), read noise, clipping at the full well, gain to DN,
a black level, rounding and saturation at 255 (8-bit). ``paper_conditions()`` is the IDS
UI-3070CP (Sony IMX252: 10.5 ke⁻ full well) of §6 at 300 µs (§7's conveyor setting) with an
analog gain of 0.1 DN/e⁻, read noise 5 e⁻ (0.5 DN) and a black level of 4 DN — dark pixels read
3–5 DN and a bright LED saturates, as in real 8-bit line data.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from firmware_bridge.linescan.diffraction.spectra import SPECTRA, spectrum_names

__all__ = ["DiffractionCamera", "spectral_response", "VISIBLE_BAND_NM"]

VISIBLE_BAND_NM = (420.0, 680.0)
"""The band in which at least two colour channels respond: a streak outside it is undecodable."""

_GRID_START_NM, _GRID_STEP_NM, _GRID_SIZE = 300.0, 0.25, 2401  # 300–900 nm lookup tables
_TILE_EDGE_NM = (660.0, 440.0)  # λ at xv = 0 in the first ROI and at xv = W in the last
# (amplitude, centre nm, sigma below nm, sigma above nm) per channel R, G, B
_QE_CURVES = ((0.75, 610.0, 38.0, 55.0), (0.88, 535.0, 40.0, 40.0), (0.80, 460.0, 28.0, 38.0))
_QE_LEAK = 0.03  # colour-filter leakage: each channel keeps 3 % of its peak across the band
_QE_EDGES_NM = ((395.0, 8.0), (680.0, 10.0))  # (centre, width) of the UV roll-on and the IR-cut roll-off
_GEOMETRY_FIELDS = {"W", "f_px", "grooves_per_mm", "rois"}  # the auto exit angles depend on these


def spectral_response(lam_nm: np.ndarray) -> np.ndarray:
    """Quantum efficiency c_σ(λ) of the R, G, B channels: (...) nm -> (..., 3) in [0, 1].

    Asymmetric Gaussian colour filters (peaks 610/535/460 nm) with 3 % leakage, times a silicon
    envelope that rolls on near 395 nm and off at an IR-cut filter near 680 nm. The L2-normalised
    colour H(λ) (Eq. 9) is one-to-one over 420–680 nm; towards both ends one channel dominates,
    so it changes slowly there (the invalid single-channel region of Eq. 14)."""
    lam = np.asarray(lam_nm, dtype=np.float64)[..., None]
    amp, centre, below, above = (np.array(v) for v in zip(*_QE_CURVES))
    sigma = np.where(lam < centre, below, above)
    (uv, uv_width), (ir, ir_width) = _QE_EDGES_NM
    envelope = 1.0 / ((1.0 + np.exp(-(lam - uv) / uv_width)) * (1.0 + np.exp((lam - ir) / ir_width)))
    return envelope * amp * (np.exp(-0.5 * ((lam - centre) / sigma) ** 2) + _QE_LEAK)


@lru_cache(maxsize=None)
def _radiance_tables() -> tuple[np.ndarray, np.ndarray]:
    """c_σ(λ)·s(λ) for every spectrum of SPECTRA on the lookup grid and the step to the next grid
    point (for linear interpolation): two (n_spectra · grid, 3) f32 tables. The grid ends (300,
    900 nm) lie far outside the sensor's response, so clamping there reads zero."""
    grid = _GRID_START_NM + _GRID_STEP_NM * np.arange(_GRID_SIZE + 1)
    qe = spectral_response(grid)
    tables = np.stack([qe * SPECTRA[name](grid)[:, None] for name in spectrum_names()])  # (S, grid + 1, 3)
    return (np.ascontiguousarray(tables[:, :-1].reshape(-1, 3), np.float32),
            np.ascontiguousarray(np.diff(tables, axis=1).reshape(-1, 3), np.float32))


def _lookup(spectrum_ids: np.ndarray, lam_nm: np.ndarray) -> np.ndarray:
    """c_σ(λ)·s(λ) of spectrum ``spectrum_ids`` at ``lam_nm`` (broadcast), linearly interpolated;
    zero outside 300–900 nm (and for NaN): (..., 3) f32."""
    pos = np.clip(np.nan_to_num((lam_nm - _GRID_START_NM) / _GRID_STEP_NM, nan=0.0), 0.0, _GRID_SIZE - 1.0)
    i0 = pos.astype(np.intp)
    frac = (pos - i0).astype(np.float32)[..., None]
    values, steps = _radiance_tables()
    at = i0 + spectrum_ids * _GRID_SIZE
    out = np.take(steps, at, axis=0)  # contiguous tables: strided views would triple the cost
    out *= frac
    out += np.take(values, at, axis=0)
    return out


@lru_cache(maxsize=64)
def _background_lut(sigma_dn: float, offset_dn: float) -> np.ndarray:
    """Inverse CDF of a dark pixel, round(offset + N(0, σ²)) clipped to 0..255, on 65536 equally
    likely uint16 codes: drawing a dark pixel costs one random uint16 and one table lookup."""
    if sigma_dn <= 0:
        return np.full(65536, np.uint8(min(255, max(0, round(offset_dn)))), np.uint8)
    edges = (np.arange(256) + 0.5 - offset_dn) / (sigma_dn * math.sqrt(2.0))
    cdf = 0.5 * (1.0 + np.array([math.erf(e) for e in edges]))
    cdf[-1] = 1.0
    codes = (np.arange(65536) + 0.5) / 65536.0
    return np.searchsorted(cdf, codes, side="right").clip(0, 255).astype(np.uint8)


@dataclass(frozen=True)
class DiffractionCamera:
    """A diffraction line camera (§3.1, §4, §6): grating, R ROIs of ``roi_rows`` × Q RGB pixels,
    the virtual camera its positions are expressed in, and an 8-bit sensor model.

    Angles in degrees, focal lengths and positions in pixels, time in µs, charge in electrons.
    ``exit_angles_deg`` None: tile the visible band across [0, W) (module docstring); ``g_scale``
    None: f_px / line_f_px. ``with_`` recomputes both when the fields they derive from change.
    """

    grooves_per_mm: float = 1200.0
    W: int = 2056
    H_v: int = 1542
    Q: int = 2056
    rois: int = 3
    roi_rows: int = 8
    f_px: float = 2319.0
    """Virtual (helper) camera focal length: 8 mm lens / 3.45 µm pixels."""
    line_f_px: float = 1739.0
    """Line camera focal length: 6 mm lens / 3.45 µm pixels."""
    line_sensor_cols: int = 1542
    """Sensor columns across the dispersion direction where the ROIs can be placed."""
    exit_angles_deg: tuple[float, ...] | None = None
    """θ'_r: the in-plane exit angle seen by the centre of each ROI."""
    g_scale: float | None = None
    g_shift_px: float = 3.0
    exposure_us: float = 300.0
    full_well_e: float = 10500.0
    read_noise_e: float = 5.0
    gain_dn_per_e: float = 0.1
    dark_offset_dn: float = 4.0
    photon_noise: bool = True
    psf_sigma_px: float = 1.2
    """Vertical PSF of the line camera (σ, sensor pixels): a streak covers ≈ ±3 pixels."""

    def __post_init__(self) -> None:
        positive = ("grooves_per_mm", "f_px", "line_f_px", "exposure_us", "full_well_e",
                    "gain_dn_per_e", "psf_sigma_px")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"DiffractionCamera.{name} must be a positive finite number, got {value!r}")
        for name, low in (("W", 16), ("H_v", 16), ("Q", 16), ("rois", 1), ("roi_rows", 1),
                          ("line_sensor_cols", 1)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"DiffractionCamera.{name} must be an integer >= {low}, got {value!r}")
        if not (math.isfinite(self.read_noise_e) and self.read_noise_e >= 0):
            raise ValueError(f"DiffractionCamera.read_noise_e must be >= 0, got {self.read_noise_e!r}")
        if not 0 <= self.dark_offset_dn < 255:
            raise ValueError(f"DiffractionCamera.dark_offset_dn must be in [0, 255), got {self.dark_offset_dn!r}")
        if self.g_scale is None:
            object.__setattr__(self, "g_scale", self.f_px / self.line_f_px)
        elif not (math.isfinite(self.g_scale) and self.g_scale > 0):
            raise ValueError(f"DiffractionCamera.g_scale must be positive, got {self.g_scale!r}")
        if self.exit_angles_deg is None:
            object.__setattr__(self, "exit_angles_deg", self._tiled_exit_angles())
        angles = tuple(float(a) for a in self.exit_angles_deg)
        if len(angles) != self.rois:
            raise ValueError(f"DiffractionCamera.exit_angles_deg has {len(angles)} angles for rois={self.rois}")
        if not all(0.0 < a < 90.0 for a in angles) or list(angles) != sorted(angles):
            raise ValueError(f"DiffractionCamera.exit_angles_deg must increase within (0, 90) deg, got {angles}")
        object.__setattr__(self, "exit_angles_deg", angles)
        reach = np.abs(self.roi_offsets_px()).max() + self.roi_rows / 2
        if reach > self.line_sensor_cols / 2:
            raise ValueError(
                f"DiffractionCamera.exit_angles_deg {angles} need ROIs {reach:.0f} px off the sensor centre "
                f"but line_sensor_cols={self.line_sensor_cols} allows {self.line_sensor_cols / 2:.0f} "
                f"(shorter line_f_px={self.line_f_px} or fewer ROIs)")

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def paper_conditions(cls) -> "DiffractionCamera":
        """The preset of the accuracy report: 3 ROIs × 8 × 2056 at 300 µs (§7's 1743 lines/s
        conveyor run), 1200 grooves/mm (GT50-12), helper camera 2056 × 1542 with an 8 mm lens,
        IMX252-like sensor at 0.1 DN/e⁻ gain, 5 e⁻ read noise, black level 4 DN, 8 bits."""
        return cls(grooves_per_mm=1200.0, W=2056, H_v=1542, Q=2056, rois=3, roi_rows=8, f_px=2319.0,
                   line_f_px=1739.0, line_sensor_cols=1542, exit_angles_deg=None, g_scale=None,
                   g_shift_px=3.0, exposure_us=300.0, full_well_e=10500.0, read_noise_e=5.0,
                   gain_dn_per_e=0.1, dark_offset_dn=4.0, photon_noise=True, psf_sigma_px=1.2)

    def with_(self, **changes) -> "DiffractionCamera":
        """A copy with ``changes`` (dataclasses.replace); derived fields (auto exit angles, g_scale)
        are recomputed when the fields they come from change and they are not given."""
        if _GEOMETRY_FIELDS & changes.keys() and "exit_angles_deg" not in changes:
            changes["exit_angles_deg"] = None
        if {"f_px", "line_f_px"} & changes.keys() and "g_scale" not in changes:
            changes["g_scale"] = None
        return dataclasses.replace(self, **changes)

    def _tiled_exit_angles(self) -> tuple[float, ...]:
        d = self.groove_period_nm
        if self.rois == 1:
            sines = np.array([550.0 / d])
        else:
            first = _TILE_EDGE_NM[0] / d + self._sin_incidence(0.0)
            last = _TILE_EDGE_NM[1] / d + self._sin_incidence(float(self.W))
            sines = np.linspace(first, last, self.rois)
        if np.any(np.abs(sines) >= 1):
            raise ValueError(f"DiffractionCamera: no first-order exit angle tiles the band for "
                             f"grooves_per_mm={self.grooves_per_mm}, W={self.W}, f_px={self.f_px}")
        return tuple(float(np.degrees(np.arcsin(s))) for s in sines)

    # -- geometry --------------------------------------------------------------------------------
    @property
    def groove_period_nm(self) -> float:
        """d of Eq. 1 in nm."""
        return 1e6 / self.grooves_per_mm

    def _sin_incidence(self, xv):
        a = (np.asarray(xv, dtype=np.float64) - self.W / 2) / self.f_px
        return a / np.sqrt(1 + a * a)

    def roi_offsets_px(self) -> np.ndarray:
        """Each ROI's centre column on the rotated sensor, pixels from its optical axis, which
        points at the mean of the extreme exit angles: (R,) float."""
        angles = np.radians(self.exit_angles_deg)
        axis = 0.5 * (angles[0] + angles[-1])
        return self.line_f_px * np.tan(angles - axis)

    def row_exit_sines(self) -> np.ndarray:
        """sin θ' seen by each of the ``roi_rows`` rows of each ROI: (R, h) float64."""
        angles = np.radians(self.exit_angles_deg)
        axis = 0.5 * (angles[0] + angles[-1])
        cols = self.roi_offsets_px()[:, None] + (np.arange(self.roi_rows) - (self.roi_rows - 1) / 2)[None, :]
        return np.sin(axis + np.arctan(cols / self.line_f_px))

    def _roi_sine(self, roi) -> np.ndarray:
        roi = np.asarray(roi)
        if np.any((roi < 0) | (roi >= self.rois)) or not np.issubdtype(roi.dtype, np.integer):
            raise ValueError(f"roi must be integers in [0, {self.rois}), got {roi!r}")
        return np.sin(np.radians(np.asarray(self.exit_angles_deg)))[roi]

    def G(self, y):
        """Eq. 4: sensor row y (pixels) -> virtual row yv (pixels)."""
        return self.g_scale * (np.asarray(y, dtype=np.float64) - self.Q / 2) + self.H_v / 2 + self.g_shift_px

    def G_inv(self, yv):
        """Inverse of Eq. 4: virtual row yv -> sensor row y (pixels, float)."""
        return (np.asarray(yv, dtype=np.float64) - self.H_v / 2 - self.g_shift_px) / self.g_scale + self.Q / 2

    def visible_yv_range(self) -> tuple[float, float]:
        """The virtual rows both cameras see: [0, H_v) ∩ G([0, Q − 1])."""
        lo, hi = float(self.G(0.0)), float(self.G(self.Q - 1.0))
        return max(0.0, lo), min(float(self.H_v), hi)

    def _lambda(self, exit_sine, xv, y):
        """λ (nm) at exit sine(s) for virtual column xv on sensor row y, broadcast."""
        a = (np.asarray(xv, dtype=np.float64) - self.W / 2) / self.f_px
        b = (self.G(y) - self.H_v / 2) / self.f_px
        return self.groove_period_nm * (exit_sine * np.sqrt(1 + a * a) - a) / np.sqrt(1 + a * a + b * b)

    def wavelength_nm(self, xv, y, roi):
        """Eq. 7 with the conical (y) term: the wavelength (nm) the centre of ROI ``roi`` sees from
        virtual column ``xv`` on sensor row ``y``; broadcasts. Decreases monotonically with xv."""
        return self._lambda(self._roi_sine(roi), xv, y)

    def xv_of_wavelength(self, lam_nm, y, roi):
        """Inverse of ``wavelength_nm``: the virtual column (pixels, float) whose light reaches ROI
        ``roi`` at sensor row ``y`` with wavelength ``lam_nm``; NaN where no direction does."""
        s = self._roi_sine(roi)
        k = np.asarray(lam_nm, dtype=np.float64) / self.groove_period_nm
        b = (self.G(y) - self.H_v / 2) / self.f_px
        start = np.clip(s - k, -0.999, 0.999)
        a = start / np.sqrt(1 - start * start)  # the ψ = 0 solution (Eq. 3) as Newton's start
        for _ in range(30):  # F(a) = s√(1+a²) − a − k√(1+a²+b²) decreases monotonically in a
            r1, r2 = np.sqrt(1 + a * a), np.sqrt(1 + a * a + b * b)
            step = (s * r1 - a - k * r2) / (s * a / r1 - 1 - k * a / r2)
            a = a - step
        residual = np.abs(self._lambda(s, a * self.f_px + self.W / 2, y) - np.asarray(lam_nm))
        xv = a * self.f_px + self.W / 2
        return np.where((np.abs(s - k) < 1) & (residual < 1e-6), xv, np.nan)

    def roi_xv_band(self, roi: int, y: float | None = None,
                    band_nm: tuple[float, float] = VISIBLE_BAND_NM) -> tuple[float, float]:
        """The virtual columns (xv_lo, xv_hi) whose light reaches ROI ``roi`` inside ``band_nm``
        on sensor row ``y`` (default: the row imaging the virtual centre row)."""
        y = self.G_inv(self.H_v / 2) if y is None else y
        ends = [float(self.xv_of_wavelength(lam, y, roi)) for lam in band_nm]
        return min(ends), max(ends)

    # -- radiometry ------------------------------------------------------------------------------
    def response(self, lam_nm) -> np.ndarray:
        """c_σ(λ): R, G, B quantum efficiency at ``lam_nm`` (nm): (...) -> (..., 3)."""
        return spectral_response(lam_nm)

    def streak_electrons(self, xv, y, spectrum_ids, flux) -> np.ndarray:
        """Eq. 8 per ROI row: photo-electrons a streak deposits at its centre row, (M, R, h, 3) f32.

        xv, y, spectrum_ids (index into ``spectrum_names()``), flux (e⁻/µs): (M,) each. Each of
        an ROI's rows sees its own exit angle (≈ 0.25 nm apart). A source's few-pixel extent would
        mix wavelengths only ≈ 0.4 nm apart per pixel, far below the spectra's 10 nm features, so
        it is not modelled."""
        xv = np.asarray(xv, dtype=np.float64)[:, None, None]
        y = np.asarray(y, dtype=np.float64)[:, None, None]
        lam = self._lambda(self.row_exit_sines()[None], xv, y)  # (M, R, h)
        ids = np.asarray(spectrum_ids, dtype=np.intp)[:, None, None]
        scale = np.asarray(flux, dtype=np.float32)[:, None, None, None] * np.float32(self.exposure_us)
        return _lookup(ids, lam) * scale

    def broadband_electrons_per_us(self, spectrum: str = "daylight") -> np.ndarray:
        """Per-channel e⁻/µs of a unit-flux extended source of ``spectrum`` seen through the grating
        (every wavelength arrives from some direction): its mean c_σ·s over 400–700 nm, (3,) f32."""
        if spectrum not in SPECTRA:
            raise ValueError(f"unknown spectrum {spectrum!r}; known: {', '.join(SPECTRA)}")
        lam = np.linspace(400.0, 700.0, 301)
        return (spectral_response(lam) * SPECTRA[spectrum](lam)[:, None]).mean(0).astype(np.float32)

    def expose(self, electrons: np.ndarray, rng: np.random.Generator,
               ambient_e: np.ndarray | None = None) -> np.ndarray:
        """The sensor: photo-electrons (..., 3) f32 (+ a per-channel ``ambient_e`` (3,) baseline
        every pixel gets) -> 8-bit DN of the same shape.

        Photon noise (Gaussian with variance = signal), read noise, full-well clipping, gain,
        black level, rounding, saturation at 255. Pixels with no signal above the baseline (under
        0.05 e⁻, i.e. < 0.005 DN) are drawn from their exact quantised distribution by table
        lookup, which keeps sparse scans cheap."""
        electrons = np.asarray(electrons, dtype=np.float32)
        if electrons.ndim < 1 or electrons.shape[-1] != 3:
            raise ValueError(f"electrons must be (..., 3), got shape {electrons.shape}")
        ambient = np.zeros(3, np.float32) if ambient_e is None else np.asarray(ambient_e, np.float32)
        if ambient.shape != (3,) or np.any(ambient < 0):
            raise ValueError(f"ambient_e must be 3 non-negative electron counts, got {ambient_e!r}")
        luts = []
        for c in range(3):
            variance = (float(ambient[c]) if self.photon_noise else 0.0) + self.read_noise_e ** 2
            luts.append(_background_lut(round(self.gain_dn_per_e * math.sqrt(variance), 6),
                                        round(self.dark_offset_dn + self.gain_dn_per_e * float(ambient[c]), 6)))
        codes = np.frombuffer(rng.bytes(2 * electrons.size), np.uint16).reshape(electrons.shape)
        if luts[0] is luts[1] is luts[2]:
            out = luts[0][codes]
        else:
            out = np.empty(electrons.shape, np.uint8)
            for c in range(3):
                out[..., c] = luts[c][codes[..., c]]
        lit = np.flatnonzero(electrons > 0.05)
        e = (electrons + ambient).reshape(-1)[lit] if ambient.any() else electrons.reshape(-1)[lit]
        variance = (e if self.photon_noise else 0.0) + np.float32(self.read_noise_e ** 2)
        e = e + np.sqrt(variance) * rng.standard_normal(e.shape, dtype=np.float32)
        dn = np.clip(e, 0, self.full_well_e) * np.float32(self.gain_dn_per_e) + np.float32(self.dark_offset_dn)
        out.reshape(-1)[lit] = np.clip(np.rint(dn), 0, 255).astype(np.uint8)
        return out
