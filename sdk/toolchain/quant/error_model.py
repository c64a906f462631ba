"""Expected PWLQ quantization error under a bell-shaped fit (paper Sect. 3.3, Eqs. 4-9).

Weights are normalised by their standard deviation, so the fits are the unit-variance Gaussian and
the unit-variance Laplacian (scale 1/sqrt(2)), both truncated to [-m, m] as Eq. 4 requires
(F(-m) = 0, F(m) = 1). All lengths here (m, p, breakpoints) are in units of the std.
"""
from __future__ import annotations

import math

import numpy as np

from .uniform import error_constant

try:  # scipy comes with the toolchain (scikit-learn); math.erf is the slow fallback
    from scipy.special import erf as _erf
except ImportError:  # pragma: no cover
    _erf = np.vectorize(math.erf, otypes=[float])

_LAPLACE_SCALE = 1.0 / math.sqrt(2.0)  # unit variance: 2 * scale^2 = 1


class Gaussian:
    """Unit-variance Gaussian truncated to [-m, m]."""

    name = "gaussian"

    @staticmethod
    def center_mass(p, m):
        """P(|x| <= p) = 2F(p) - 1 of the truncated law."""
        return _erf(np.asarray(p) / math.sqrt(2.0)) / _erf(np.asarray(m) / math.sqrt(2.0))

    @staticmethod
    def pdf(p, m):
        """Truncated density f(p)."""
        return np.exp(-0.5 * np.square(p)) / math.sqrt(2 * math.pi) / _erf(np.asarray(m) / math.sqrt(2.0))

    @classmethod
    def pdf_slope(cls, p, m):
        """f'(p) = -p f(p)."""
        return -np.asarray(p) * cls.pdf(p, m)


class Laplacian:
    """Unit-variance Laplacian (scale 1/sqrt(2)) truncated to [-m, m]."""

    name = "laplacian"

    @staticmethod
    def center_mass(p, m):
        return -np.expm1(-np.asarray(p) / _LAPLACE_SCALE) / -np.expm1(-np.asarray(m) / _LAPLACE_SCALE)

    @staticmethod
    def pdf(p, m):
        norm = -np.expm1(-np.asarray(m) / _LAPLACE_SCALE)
        return np.exp(-np.abs(p) / _LAPLACE_SCALE) / (2 * _LAPLACE_SCALE) / norm

    @classmethod
    def pdf_slope(cls, p, m):
        """f'(p) = -f(p) / scale for p > 0."""
        return -cls.pdf(p, m) / _LAPLACE_SCALE


DISTRIBUTIONS = {"gaussian": Gaussian, "laplacian": Laplacian}


def expected_error(edges: np.ndarray, distribution, bits: int) -> np.ndarray:
    """Expected squared error of b-bit PWLQ with region edges (..., R+1) = [0, p_1, .., m].

    Generalises Eq. 4 to any number of breakpoints: C(b-1) * sum_r (e_{r+1} - e_r)^2 * P(region r).
    With one breakpoint this is Eq. 4 exactly.
    """
    edges = np.asarray(edges, np.float64)
    m = edges[..., -1:]
    mass = distribution.center_mass(edges, m)
    return error_constant(bits - 1) * np.sum(np.diff(edges, axis=-1) ** 2 * np.diff(mass, axis=-1), axis=-1)


def expected_error_1bp(p, m, distribution, bits: int):
    """Eq. 4: C(b-1) [(m-p)^2 + m(2p-m)(2F(p)-1)]."""
    p, m = np.asarray(p, np.float64), np.asarray(m, np.float64)
    return error_constant(bits - 1) * ((m - p) ** 2 + m * (2 * p - m) * distribution.center_mass(p, m))


def expected_error_slope(p, m, distribution, bits: int):
    """First derivative of Eq. 4 in p (Eq. 6): 2C(b-1)[p - 2m + 2mF(p) + m(2p-m)f(p)].

    Written with 2F(p) = 1 + P(|x| <= p) for the symmetric law.
    """
    p, m = np.asarray(p, np.float64), np.asarray(m, np.float64)
    two_f = 1.0 + distribution.center_mass(p, m)
    return 2 * error_constant(bits - 1) * (p - 2 * m + m * two_f + m * (2 * p - m) * distribution.pdf(p, m))


def expected_error_curvature(p, m, distribution, bits: int):
    """Second derivative of Eq. 4 in p (Eq. 6): 2C(b-1)[1 + 4mf(p) + m(2p-m)f'(p)]."""
    p, m = np.asarray(p, np.float64), np.asarray(m, np.float64)
    return 2 * error_constant(bits - 1) * (
        1 + 4 * m * distribution.pdf(p, m) + m * (2 * p - m) * distribution.pdf_slope(p, m))


def expected_error_at_optimum(p_opt, m, distribution, bits: int):
    """Eq. 9: C(b-1)[-(p*)^2 + m p* - m (m - 2p*)^2 f(p*)], valid where Eq. 8 holds."""
    p, m = np.asarray(p_opt, np.float64), np.asarray(m, np.float64)
    return error_constant(bits - 1) * (-p * p + m * p - m * (m - 2 * p) ** 2 * distribution.pdf(p, m))


def uniform_expected_error(m, bits: int):
    """Eq. 7: b-bit uniform quantization of [-m, m], E = C(b) (2m)^2."""
    return 4.0 * error_constant(bits) * np.square(m)
