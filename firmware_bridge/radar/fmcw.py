"""FMCW processing in NumPy: ADC cube -> range FFT -> Doppler FFT -> angle FFTs -> CA-CFAR.

The antenna axis of a cube holds a T-shaped virtual array, as in RF-Diary (Fan et al., ECCV
2020): ``horizontal_antennas`` elements along x, then ``vertical_antennas`` elements along z,
each array at half-wavelength spacing. Coordinates: y points away from the radar, x to its
right, z up; azimuth is measured from y towards x, elevation from the x-y plane towards z.

Shapes: cube (chirps, antennas, samples) complex; range cube (chirps, antennas, range_bins);
Doppler cube (doppler_bins, antennas, range_bins) with zero velocity in the middle bin;
heatmaps (angle_bins, range_bins) with sin(angle) = 2 (bin - angle_bins/2) / angle_bins.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdk.errors import InputError

__all__ = ["SPEED_OF_LIGHT", "ChirpConfig", "Detections", "range_fft", "doppler_fft",
           "angle_fft", "range_angle_heatmaps", "ca_cfar", "detect", "sin_axis"]

SPEED_OF_LIGHT = 299_792_458.0


@dataclass(frozen=True)
class ChirpConfig:
    """One frame's chirps and the virtual array. Defaults: 77 GHz, 60 MHz/us, 128 complex samples
    at 5 Msps (9.8 cm range bins, 12.5 m reach), 32 chirps every 100 us (0.61 m/s Doppler bins,
    +-9.7 m/s), 8 horizontal + 4 vertical virtual antennas."""

    start_frequency_hz: float = 77e9
    slope_hz_per_s: float = 60e12
    sample_rate_hz: float = 5e6
    samples: int = 128
    chirps: int = 32
    chirp_period_s: float = 100e-6
    """Start to start of consecutive chirps of the same virtual antenna."""
    horizontal_antennas: int = 8
    vertical_antennas: int = 4
    frame_period_s: float = 0.05

    @property
    def antennas(self) -> int:
        return self.horizontal_antennas + self.vertical_antennas

    @property
    def wavelength_m(self) -> float:
        return SPEED_OF_LIGHT / self.start_frequency_hz

    @property
    def range_resolution_m(self) -> float:
        return SPEED_OF_LIGHT * self.sample_rate_hz / (2 * self.slope_hz_per_s * self.samples)

    @property
    def max_range_m(self) -> float:
        return self.range_resolution_m * self.samples

    @property
    def velocity_resolution_mps(self) -> float:
        return self.wavelength_m / (2 * self.chirps * self.chirp_period_s)

    def check(self, cube: np.ndarray) -> None:
        want = (self.chirps, self.antennas, self.samples)
        if cube.shape != want:
            raise InputError(f"cube: expected (chirps, antennas, samples) = {want}, received {cube.shape}")


def sin_axis(bins: int) -> np.ndarray:
    """sin(angle) at each bin of an fftshifted angle FFT over half-wavelength spaced elements."""
    return 2.0 * (np.arange(bins) - bins // 2) / bins


def range_fft(cube: np.ndarray, window: bool = True) -> np.ndarray:
    """(chirps, antennas, samples) -> (chirps, antennas, range_bins = samples), Hann-windowed."""
    cube = np.asarray(cube)
    w = np.hanning(cube.shape[-1]).astype(np.float32) if window else 1.0
    return np.fft.fft(cube * w, axis=-1).astype(np.complex64)


def doppler_fft(range_cube: np.ndarray, window: bool = True) -> np.ndarray:
    """(chirps, antennas, range_bins) -> (doppler_bins, antennas, range_bins), zero velocity at
    bin chirps // 2, positive (receding) velocities above it."""
    w = np.hanning(range_cube.shape[0]).astype(np.float32)[:, None, None] if window else 1.0
    return np.fft.fftshift(np.fft.fft(range_cube * w, axis=0), axes=0).astype(np.complex64)


def angle_fft(x: np.ndarray, bins: int = 64, axis: int = -1) -> np.ndarray:
    """Zero-padded, fftshifted FFT over an array's elements: bin b looks towards sin_axis(bins)[b]."""
    return np.fft.fftshift(np.fft.fft(x, n=bins, axis=axis), axes=axis)


def range_angle_heatmaps(range_cube: np.ndarray, config: ChirpConfig, angle_bins: int = 64,
                         remove_static: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(horizontal, vertical) range-angle heatmaps, each (angle_bins, range_bins) float32 power
    summed over chirps. remove_static subtracts each antenna's mean over chirps first, which
    keeps only what moves (RF-Diary's heatmaps of people)."""
    x = range_cube - range_cube.mean(axis=0, keepdims=True) if remove_static else range_cube
    h = x[:, :config.horizontal_antennas]
    v = x[:, config.horizontal_antennas:]
    maps = []
    for part in (h, v):
        spectrum = angle_fft(part, angle_bins, axis=1)        # (chirps, angle_bins, range_bins)
        maps.append((np.abs(spectrum) ** 2).sum(axis=0).astype(np.float32))
    return maps[0], maps[1]


def _box_sum(a: np.ndarray, half: tuple[int, int]) -> np.ndarray:
    """Sum over the (2*half+1) box around each cell of an array padded by `half` on each side."""
    s = np.zeros((a.shape[0] + 1, a.shape[1] + 1))
    s[1:, 1:] = a.cumsum(0).cumsum(1)
    h0, h1 = half
    n0, n1 = a.shape[0] - 2 * h0, a.shape[1] - 2 * h1
    return (s[2 * h0 + 1:2 * h0 + 1 + n0, 2 * h1 + 1:2 * h1 + 1 + n1] - s[:n0, 2 * h1 + 1:2 * h1 + 1 + n1]
            - s[2 * h0 + 1:2 * h0 + 1 + n0, :n1] + s[:n0, :n1])


def ca_cfar(power: np.ndarray, guard: tuple[int, int] = (1, 2), train: tuple[int, int] = (3, 6),
            pfa: float = 1e-6, peaks_only: bool = True) -> np.ndarray:
    """Cell-averaging CFAR over a (doppler_bins, range_bins) power map -> bool mask of detections.

    Each cell is compared with alpha times the mean of its training ring (``train`` cells beyond
    ``guard`` cells on each side, per axis); alpha = N (pfa^(-1/N) - 1) for N training cells
    (square-law detector, exponential noise). The Doppler axis wraps around; the range axis is
    mirrored at its ends. peaks_only keeps a detection only where it is the maximum of its 3x3
    neighbourhood (one detection per target).
    """
    power = np.asarray(power, dtype=np.float64)
    if power.ndim != 2:
        raise InputError(f"power: expected (doppler_bins, range_bins), received shape {power.shape}")
    outer = (guard[0] + train[0], guard[1] + train[1])
    padded = np.pad(power, ((outer[0], outer[0]), (0, 0)), mode="wrap")
    padded = np.pad(padded, ((0, 0), (outer[1], outer[1])), mode="symmetric")
    inner_pad = padded[outer[0] - guard[0]:padded.shape[0] - (outer[0] - guard[0]),
                       outer[1] - guard[1]:padded.shape[1] - (outer[1] - guard[1])]
    ring = _box_sum(padded, outer) - _box_sum(inner_pad, guard)
    n = (2 * outer[0] + 1) * (2 * outer[1] + 1) - (2 * guard[0] + 1) * (2 * guard[1] + 1)
    alpha = n * (pfa ** (-1.0 / n) - 1.0)
    mask = power > alpha * ring / n
    if peaks_only:
        p = np.pad(power, ((1, 1), (0, 0)), mode="wrap")
        p = np.pad(p, ((0, 0), (1, 1)), mode="constant", constant_values=-np.inf)
        neighbours = np.max([p[1 + i:1 + i + power.shape[0], 1 + j:1 + j + power.shape[1]]
                             for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)], axis=0)
        mask &= power > neighbours
    return mask


@dataclass
class Detections:
    """CFAR detections of one frame, one row each (all (N,) arrays)."""

    range_bin: np.ndarray
    doppler_bin: np.ndarray
    """Doppler FFT bin, zero velocity at chirps // 2."""
    range_m: np.ndarray
    velocity_mps: np.ndarray
    azimuth_rad: np.ndarray
    elevation_rad: np.ndarray
    snr_db: np.ndarray
    noise_db: np.ndarray

    def __len__(self) -> int:
        return len(self.range_m)

    @property
    def points(self) -> np.ndarray:
        """(N, 4) float32 x, y, z (m), v (m/s), the layout of the out-of-box demo's points."""
        r, az, el = self.range_m, self.azimuth_rad, self.elevation_rad
        return np.stack([r * np.cos(el) * np.sin(az), r * np.cos(el) * np.cos(az),
                         r * np.sin(el), self.velocity_mps], axis=1).astype(np.float32)


def detect(cube: np.ndarray, config: ChirpConfig, angle_bins: int = 64, pfa: float = 1e-6,
           min_range_bin: int = 2) -> Detections:
    """Targets in one ADC cube: CA-CFAR on the range-Doppler power summed over antennas, then
    elevation from the vertical array and azimuth from the horizontal one at each detection.
    Range bins below min_range_bin (the leakage at zero range) are ignored."""
    config.check(cube)
    dop = doppler_fft(range_fft(cube))
    power = (np.abs(dop) ** 2).sum(axis=1)                     # (doppler_bins, range_bins)
    mask = ca_cfar(power, pfa=pfa)
    mask[:, :min_range_bin] = False
    d_bins, r_bins = np.nonzero(mask)
    vectors = dop[d_bins, :, r_bins]                          # (N, antennas)
    nh = config.horizontal_antennas
    sin_el = sin_axis(angle_bins)[np.argmax(np.abs(angle_fft(vectors[:, nh:], angle_bins)), axis=1)]
    u_x = sin_axis(angle_bins)[np.argmax(np.abs(angle_fft(vectors[:, :nh], angle_bins)), axis=1)]
    elevation = np.arcsin(np.clip(sin_el, -1, 1))
    azimuth = np.arcsin(np.clip(u_x / np.maximum(np.cos(elevation), 1e-6), -1, 1))
    noise = np.median(power, axis=0)[r_bins]
    return Detections(
        range_bin=r_bins, doppler_bin=d_bins,
        range_m=(r_bins * config.range_resolution_m).astype(np.float32),
        velocity_mps=((d_bins - config.chirps // 2) * config.velocity_resolution_mps).astype(np.float32),
        azimuth_rad=azimuth.astype(np.float32), elevation_rad=elevation.astype(np.float32),
        snr_db=(10 * np.log10(power[d_bins, r_bins] / noise)).astype(np.float32),
        noise_db=(10 * np.log10(noise)).astype(np.float32))
