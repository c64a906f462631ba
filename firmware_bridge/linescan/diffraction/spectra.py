"""Emission spectra of the light sources the diffraction camera sees, s(λ) of Eq. 8.

Each entry of ``SPECTRA`` maps wavelengths in nm (any shape) to relative spectral radiant flux,
normalised so its maximum over the visible range 380–780 nm is 1; the absolute scale is the
source's ``flux`` (photo-electrons per µs, see ``optics``). The shapes follow the paper's sources:
white LEDs (a narrow InGaN blue peak plus a broad YAG phosphor hump, with the characteristic dip
near 490 nm), a warm-white LED, a halogen lamp (a 3000 K blackbody) and daylight (6500 K, nearly
flat across the visible band).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["SPECTRA", "spectrum_names", "blackbody"]

_VISIBLE_NM = np.linspace(380.0, 780.0, 801)
_H_C_OVER_K_NM_K = 1.438777e7  # second radiation constant h·c/k in nm·K


def blackbody(lam_nm: np.ndarray, temperature_k: float) -> np.ndarray:
    """Planck's law up to a constant: relative spectral radiance at ``lam_nm`` (nm) for a body at
    ``temperature_k`` (K); zero for non-positive wavelengths."""
    lam = np.asarray(lam_nm, dtype=np.float64)
    safe = np.where(lam > 0, lam, 1.0)
    value = safe ** -5.0 / np.expm1(_H_C_OVER_K_NM_K / (safe * temperature_k))
    return np.where(lam > 0, value, 0.0)


def _gauss(lam: np.ndarray, centre_nm: float, sigma_nm: float) -> np.ndarray:
    return np.exp(-0.5 * ((lam - centre_nm) / sigma_nm) ** 2)


def _peak_normalised(shape: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    peak = float(shape(_VISIBLE_NM).max())

    def spectrum(lam_nm: np.ndarray) -> np.ndarray:
        return shape(np.asarray(lam_nm, dtype=np.float64)) / peak
    spectrum.__doc__ = shape.__doc__
    return spectrum


def _white_led(lam: np.ndarray) -> np.ndarray:
    """Cool-white phosphor LED: InGaN pump at 450 nm (σ 10 nm) + YAG phosphor at 565 nm (σ 50 nm)."""
    return _gauss(lam, 450.0, 10.0) + 0.45 * _gauss(lam, 565.0, 50.0)


def _warm_led(lam: np.ndarray) -> np.ndarray:
    """Warm-white LED: weaker 450 nm pump, phosphor hump shifted to 600 nm (σ 55 nm)."""
    return 0.35 * _gauss(lam, 450.0, 11.0) + _gauss(lam, 600.0, 55.0)


def _halogen(lam: np.ndarray) -> np.ndarray:
    """Halogen lamp: a 3000 K blackbody (rises towards the red end of the visible band)."""
    return blackbody(lam, 3000.0)


def _daylight(lam: np.ndarray) -> np.ndarray:
    """Daylight approximated by a 6500 K blackbody: between 0.69 and 1 over 420–680 nm."""
    return blackbody(lam, 6500.0)


SPECTRA: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "white_led": _peak_normalised(_white_led),
    "warm_led": _peak_normalised(_warm_led),
    "halogen": _peak_normalised(_halogen),
    "daylight": _peak_normalised(_daylight),
}
"""Source spectra s(λ): name -> function of wavelength (nm) returning relative flux, peak 1."""


def spectrum_names() -> tuple[str, ...]:
    """The spectrum names in a fixed order; ``spectrum_id`` in ground truth indexes this tuple."""
    return tuple(SPECTRA)
