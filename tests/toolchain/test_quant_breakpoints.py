"""Breakpoint selection and the error analysis of Sect. 3.3 (Eqs. 4-10, Lemmas 1 and 2)."""
import math

import numpy as np
import pytest

from sdk.errors import InputError
from sdk.toolchain.quant.breakpoints import (
    check_method, gaussian_closed_form, golden_section, laplacian_closed_form, select_breakpoints)
from sdk.toolchain.quant.error_model import (
    DISTRIBUTIONS, expected_error, expected_error_1bp, expected_error_at_optimum, expected_error_curvature,
    expected_error_slope, uniform_expected_error)
from sdk.toolchain.quant.pwlq import pw
from sdk.toolchain.quant.uniform import error_constant, uni

M_VALUES = np.array([2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0])


def exact_optimum(m, dist, bits=4):
    """Dense grid minimiser of Eq. 4 on (0, m/2), independent of the library's search."""
    p = np.linspace(1e-4, m / 2, 200001)
    return p[np.argmin(expected_error_1bp(p, m, dist, bits))]


@pytest.mark.parametrize("name,closed", [("gaussian", gaussian_closed_form), ("laplacian", laplacian_closed_form)])
def test_closed_forms_give_the_breakpoint_in_std_units_not_p_over_m(name, closed):
    """The paper prints "p*/m = ln(0.8614 m + 0.6079)"; the fit is p* itself (std units)."""
    dist = DISTRIBUTIONS[name]
    for m in M_VALUES:
        p_opt = exact_optimum(m, dist)
        assert abs(closed(m) - p_opt) < 0.04 * p_opt + 0.02, (m, closed(m), p_opt)
        # within 0.5% of the optimal expected error over the range of real layers
        excess = expected_error_1bp(closed(m), m, dist, 4) / expected_error_1bp(p_opt, m, dist, 4) - 1
        assert excess < 0.005
        # the p*/m reading puts the breakpoint beyond the range itself
        assert closed(m) * m > m / 2


@pytest.mark.parametrize("name", ["gaussian", "laplacian"])
def test_expected_method_finds_the_minimum_of_eq4(name):
    dist = DISTRIBUTIONS[name]
    for m in M_VALUES:
        # a two-valued row +-1 has std 1, so m_norm = m
        p = select_breakpoints(np.array([[-1.0, 1.0]]), np.array([m]), 4, 1, f"{name}_expected")[0, 0]
        assert abs(p - exact_optimum(m, dist)) < 1e-3


@pytest.mark.parametrize("name", ["gaussian", "laplacian"])
def test_lemma1_eq4_is_convex_on_half_range(name):
    dist = DISTRIBUTIONS[name]
    for m in M_VALUES:
        p = np.linspace(1e-3, m / 2 - 1e-3, 2001)
        assert np.all(expected_error_curvature(p, m, dist, 4) > 0)
        e = expected_error_1bp(p, m, dist, 4)
        assert np.all(np.diff(e, 2) > -1e-15)  # numerically: second differences non-negative


@pytest.mark.parametrize("name", ["gaussian", "laplacian"])
def test_eq6_derivatives_match_finite_differences(name):
    dist = DISTRIBUTIONS[name]
    m, h = 4.0, 1e-5
    p = np.linspace(0.1, 1.9, 19)
    fd1 = (expected_error_1bp(p + h, m, dist, 4) - expected_error_1bp(p - h, m, dist, 4)) / (2 * h)
    np.testing.assert_allclose(expected_error_slope(p, m, dist, 4), fd1, rtol=1e-5, atol=1e-12)
    fd2 = (expected_error_slope(p + h, m, dist, 4) - expected_error_slope(p - h, m, dist, 4)) / (2 * h)
    np.testing.assert_allclose(expected_error_curvature(p, m, dist, 4), fd2, rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize("name", ["gaussian", "laplacian"])
def test_eq8_and_eq9_hold_at_the_optimum(name):
    dist = DISTRIBUTIONS[name]
    for m in M_VALUES:
        p = select_breakpoints(np.array([[-1.0, 1.0]]), np.array([m]), 4, 1, f"{name}_expected")[0, 0]
        assert abs(expected_error_slope(p, m, dist, 4)) < 1e-8 * m  # Eq. 8: zero slope
        np.testing.assert_allclose(expected_error_at_optimum(p, m, dist, 4), expected_error_1bp(p, m, dist, 4),
                                   rtol=1e-6)


@pytest.mark.parametrize("name", ["gaussian", "laplacian"])
@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_lemma2_expected_error_bound(name, bits):
    """E_pw(p*) < C(b-1)/(16 C(b)) E_uni, and that factor is at most 9/16."""
    dist = DISTRIBUTIONS[name]
    factor = error_constant(bits - 1) / (16 * error_constant(bits))
    assert factor <= 9 / 16
    for m in M_VALUES:
        p = select_breakpoints(np.array([[-1.0, 1.0]]), np.array([m]), bits, 1, f"{name}_expected")[0, 0]
        assert expected_error_1bp(p, m, dist, bits) < factor * uniform_expected_error(m, bits)


@pytest.mark.parametrize("name", ["gaussian", "laplacian"])
@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_lemma2_holds_on_samples(name, bits):
    """Measured MSE of Eq. 3 at p* against Eq. 1 (2^b levels on [-m, m]) on 100k samples."""
    rng = np.random.default_rng(bits)
    x = rng.normal(size=100_000) if name == "gaussian" else rng.laplace(size=100_000)
    x /= x.std()
    m = np.abs(x).max()
    p = select_breakpoints(x[None, :], np.array([m]), bits, 1, f"{name}_expected")[0, 0]
    e_pw = np.mean((pw(x, bits, m, p) - x) ** 2)
    e_uni = np.mean((uni(x, bits, -m, m, -m, signed=False) - x) ** 2)
    assert e_pw / e_uni < error_constant(bits - 1) / (16 * error_constant(bits))


def test_breakpoint_at_half_range_gives_uniform_expected_error():
    """p = m/2: E = C(b-1) m^2/4, the same for every distribution (uniform-like)."""
    for dist in DISTRIBUTIONS.values():
        for m in M_VALUES:
            np.testing.assert_allclose(expected_error_1bp(m / 2, m, dist, 4), error_constant(3) * m * m / 4)


def test_multi_breakpoint_expected_error_generalises_eq4():
    dist = DISTRIBUTIONS["gaussian"]
    m, p = 4.0, 1.3
    np.testing.assert_allclose(expected_error(np.array([0, p, m]), dist, 4), expected_error_1bp(p, m, dist, 4))
    # more breakpoints (placed by the search) never raise the expected error
    rows = np.array([[-1.0, 1.0]])
    errs = [expected_error(np.concatenate([[0], select_breakpoints(rows, np.array([m]), 4, n, "gaussian_expected")[0],
                                           [m]]), dist, 4) for n in (1, 2, 3)]
    assert errs[0] > errs[1] > errs[2]


def test_golden_section_vectorised():
    centers = np.array([0.3, 1.7, -2.0])
    x, fx = golden_section(lambda v: (v - centers) ** 2 + 1, np.full(3, -5.0), np.full(3, 5.0), iters=80)
    np.testing.assert_allclose(x, centers, atol=1e-8)
    np.testing.assert_allclose(fx, 1.0)


def test_method_errors_name_the_allowed_values():
    with pytest.raises(InputError, match="allowed: gaussian_closed"):
        check_method("newton", 1)
    with pytest.raises(InputError, match="1 breakpoint only.*'empirical'"):
        check_method("gaussian_closed", 2)
    assert math.isfinite(float(gaussian_closed_form(1.0))) and gaussian_closed_form(1.0) > 0
