"""DiffractionCamera: Eq. 7 and its inverse, the conical y term, the multi-ROI band tiling, G,
the spectral response, Eq. 9's intensity invariance through the 8-bit sensor, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.linescan.diffraction import (SPECTRA, VISIBLE_BAND_NM, DiffractionCamera, PointSource,
                                                  render_points, spectral_response, spectrum_names)

CAM = DiffractionCamera.paper_conditions()
NOISELESS = CAM.with_(read_noise_e=0.0, photon_noise=False)


def test_paper_conditions_are_the_papers_line_camera():
    cam = DiffractionCamera.paper_conditions()
    assert (cam.rois, cam.roi_rows, cam.Q, cam.exposure_us, cam.grooves_per_mm) == (3, 8, 2056, 300.0, 1200.0)
    assert (cam.W, cam.H_v) == (2056, 1542)
    assert cam.groove_period_nm == pytest.approx(833.333, abs=1e-3)
    assert len(cam.exit_angles_deg) == 3 and cam.g_scale == pytest.approx(cam.f_px / cam.line_f_px)
    assert cam == DiffractionCamera()  # the defaults are the paper preset


def test_centre_row_is_exactly_eq7():
    y0 = CAM.G_inv(CAM.H_v / 2)  # ψ = 0: no conical term
    xv = np.linspace(0, CAM.W, 101)
    for r, theta in enumerate(CAM.exit_angles_deg):
        eq7 = CAM.groove_period_nm * (np.sin(np.radians(theta)) - np.sin(np.arctan((xv - CAM.W / 2) / CAM.f_px)))
        np.testing.assert_allclose(CAM.wavelength_nm(xv, y0, r), eq7, rtol=0, atol=1e-9)


def test_wavelength_inverse_round_trips_everywhere():
    rng = np.random.default_rng(0)
    xv = rng.uniform(0, CAM.W, 2000)
    y = rng.uniform(0, CAM.Q - 1, 2000)
    roi = rng.integers(0, CAM.rois, 2000)
    lam = CAM.wavelength_nm(xv, y, roi)
    back = CAM.xv_of_wavelength(lam, y, roi)
    np.testing.assert_allclose(back, xv, atol=1e-6)
    assert np.isnan(CAM.xv_of_wavelength(5000.0, 1000.0, 0))  # no direction diffracts 5 µm into ROI 0


@pytest.mark.parametrize("y", [0.0, 700.0, 1028.0, 2055.0])
def test_wavelength_decreases_monotonically_with_xv_in_every_roi(y):
    xv = np.linspace(-200, CAM.W + 200, 4001)
    for r in range(CAM.rois):
        assert np.all(np.diff(CAM.wavelength_nm(xv, y, r)) < 0)


def test_conical_term_makes_lambda_depend_on_y_by_a_few_percent():
    ys = np.array([CAM.G_inv(0.0), CAM.G_inv(CAM.H_v / 2), CAM.G_inv(CAM.H_v - 1.0)])
    lam = CAM.wavelength_nm(CAM.W / 2, ys, 1)
    assert lam[1] > lam[0] and lam[1] > lam[2]  # cos ψ < 1 away from the centre row
    assert 0.01 < 1 - lam[0] / lam[1] < 0.06 and 0.01 < 1 - lam[2] / lam[1] < 0.06


def test_roi_bands_tile_the_virtual_width_with_slight_overlap():
    bands = [CAM.roi_xv_band(r) for r in range(CAM.rois)]
    assert bands[0][0] <= 0 and bands[-1][1] >= CAM.W
    for (lo, hi), (lo2, hi2) in zip(bands, bands[1:]):
        assert lo < lo2 and 0 < hi - lo2 < 0.1 * CAM.W  # neighbours overlap a little
    for lo, hi in bands:
        assert 0.3 * CAM.W < min(hi, CAM.W) - max(lo, 0) < 0.45 * CAM.W  # about a third each
    assert np.all(np.abs(CAM.roi_offsets_px()) + CAM.roi_rows / 2 <= CAM.line_sensor_cols / 2)


def test_rows_of_an_roi_see_neighbouring_exit_angles():
    sines = CAM.row_exit_sines()
    assert sines.shape == (CAM.rois, CAM.roi_rows)
    assert np.all(np.diff(sines, axis=1) > 0)
    centre = np.sin(np.radians(CAM.exit_angles_deg))
    np.testing.assert_allclose(sines.mean(axis=1), centre, atol=1e-6)


def test_g_is_affine_and_inverted_exactly():
    y = np.linspace(0, CAM.Q - 1, 50)
    np.testing.assert_allclose(CAM.G_inv(CAM.G(y)), y, atol=1e-9)
    np.testing.assert_allclose(np.diff(CAM.G(y)), CAM.g_scale * np.diff(y))
    lo, hi = CAM.visible_yv_range()
    assert 0 <= lo < hi <= CAM.H_v


def test_spectral_response_and_normalised_colour_is_one_to_one_in_band():
    lam = np.linspace(*VISIBLE_BAND_NM, 521)
    c = spectral_response(lam)
    assert c.shape == (521, 3) and np.all((c >= 0) & (c <= 1))
    np.testing.assert_allclose(CAM.response(lam), c)
    peaks = spectral_response(np.arange(380, 780)).argmax(0) + 380
    assert peaks[2] < peaks[1] < peaks[0]  # B, G, R peaks in wavelength order
    h = c / np.linalg.norm(c, axis=1, keepdims=True)  # Eq. 9's H
    dist = np.linalg.norm(h[:, None] - h[None], axis=-1)
    far = np.abs(np.arange(521)[:, None] - np.arange(521)[None]) >= 20  # ≥ 10 nm apart
    assert dist[far].min() > 0.005  # weakest at the red end, where R alone changes (Eq. 14)
    middle = (lam > 470) & (lam < 630)
    assert dist[far & middle[:, None] & middle[None]].min() > 0.04


def test_spectra_are_peak_normalised_with_their_characteristic_shapes():
    lam = np.linspace(380, 780, 801)
    for name in spectrum_names():
        s = SPECTRA[name](lam)
        assert s.max() == pytest.approx(1.0) and s.min() >= 0
    white = SPECTRA["white_led"](lam)
    assert abs(lam[white.argmax()] - 450) < 3
    phosphor = (lam > 520) & (lam < 620)
    assert 540 < lam[phosphor][white[phosphor].argmax()] < 585
    assert white[np.searchsorted(lam, 490)] < 0.5 * white[phosphor].max()  # the dip between the two
    assert lam[SPECTRA["halogen"](lam).argmax()] > 700  # 3000 K peaks in the infrared
    day = SPECTRA["daylight"](np.linspace(420, 680, 100))
    assert day.min() > 0.65  # ≈ flat (a 6500 K blackbody falls to 0.69 at 680 nm)


def test_eq9_normalised_colour_is_invariant_to_flux_and_exposure():
    xv, y = np.array([700.0, 1500.0]), np.array([900.0, 1300.0])
    e1 = CAM.streak_electrons(xv, y, [0, 2], [2.0, 2.0])
    e2 = CAM.with_(exposure_us=150.0).streak_electrons(xv, y, [0, 2], [7.0, 7.0])
    lit = np.linalg.norm(e1, axis=-1) > 1
    e1, e2 = e1[lit], e2[lit]
    np.testing.assert_allclose(e1 / np.linalg.norm(e1, axis=-1, keepdims=True),
                               e2 / np.linalg.norm(e2, axis=-1, keepdims=True), atol=1e-5)
    # ... and through the 8-bit sensor while unsaturated: the patch colour agrees to quantisation
    rng = np.random.default_rng(1)
    dim = render_points(NOISELESS, [PointSource(1000.0, 700.0, "white_led", 6.0)], rng).astype(float)
    bright = render_points(NOISELESS, [PointSource(1000.0, 700.0, "white_led", 12.0)], rng).astype(float)
    assert bright.max() < 255
    y = int(round(float(NOISELESS.G_inv(700.0))))
    patch = lambda s: (s[1, :, y - 1:y + 2] - NOISELESS.dark_offset_dn).sum(axis=(0, 1))  # noqa: E731
    u1, u2 = patch(dim), patch(bright)
    assert np.linalg.norm(u2) == pytest.approx(2 * np.linalg.norm(u1), rel=0.02)
    np.testing.assert_allclose(u1 / np.linalg.norm(u1), u2 / np.linalg.norm(u2), atol=0.01)


def test_sensor_saturates_at_255_and_dark_pixels_read_the_black_level():
    rng = np.random.default_rng(2)
    dark = CAM.expose(np.zeros((200, 1000, 3), np.float32), rng)
    assert dark.dtype == np.uint8
    assert abs(dark.mean() - CAM.dark_offset_dn) < 0.02
    assert dark.std() == pytest.approx(CAM.read_noise_e * CAM.gain_dn_per_e, rel=0.15)
    assert dark.min() >= CAM.dark_offset_dn - 3 and dark.max() <= CAM.dark_offset_dn + 3
    flood = CAM.expose(np.full((10, 3), 1e6, np.float32), rng)
    assert np.all(flood == 255)
    mid = CAM.expose(np.full((100000, 3), 1000.0, np.float32), rng).astype(float)
    assert mid.mean() == pytest.approx(CAM.dark_offset_dn + 100, abs=0.1)  # 1000 e⁻ · 0.1 DN/e⁻
    expected_sd = CAM.gain_dn_per_e * np.sqrt(1000 + CAM.read_noise_e ** 2)  # photon + read noise
    assert mid.std() == pytest.approx(expected_sd, rel=0.1)
    amb = CAM.expose(np.zeros((100000, 3), np.float32), rng, ambient_e=np.array([30.0, 20.0, 10.0]))
    np.testing.assert_allclose(amb.mean(0), CAM.dark_offset_dn + CAM.gain_dn_per_e * np.array([30, 20, 10]),
                               atol=0.05)


def test_with_recomputes_derived_fields():
    wide = CAM.with_(W=1542)
    assert wide.exit_angles_deg != CAM.exit_angles_deg
    assert wide.roi_xv_band(0)[0] <= 0 and wide.roi_xv_band(wide.rois - 1)[1] >= wide.W
    assert CAM.with_(line_f_px=1600.0).g_scale == pytest.approx(CAM.f_px / 1600.0)
    assert CAM.with_(exposure_us=50.0).exit_angles_deg == CAM.exit_angles_deg
    one = CAM.with_(rois=1)
    assert one.wavelength_nm(one.W / 2, one.G_inv(one.H_v / 2), 0) == pytest.approx(550.0)


@pytest.mark.parametrize("changes, field", [
    ({"rois": 0}, "rois"), ({"Q": 4}, "Q"), ({"grooves_per_mm": -1.0}, "grooves_per_mm"),
    ({"exposure_us": 0.0}, "exposure_us"), ({"exit_angles_deg": (30.0, 40.0)}, "exit_angles_deg"),
    ({"exit_angles_deg": (50.0, 40.0, 30.0)}, "exit_angles_deg"), ({"read_noise_e": -1.0}, "read_noise_e"),
    ({"dark_offset_dn": 300.0}, "dark_offset_dn"), ({"g_scale": -2.0}, "g_scale"),
    ({"line_f_px": 4000.0}, "exit_angles_deg"), ({"gain_dn_per_e": float("nan")}, "gain_dn_per_e"),
])
def test_bad_fields_raise_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        DiffractionCamera(**changes)


def test_bad_calls_raise():
    with pytest.raises(ValueError, match="roi"):
        CAM.wavelength_nm(100.0, 100.0, 3)
    with pytest.raises(ValueError, match="roi"):
        CAM.xv_of_wavelength(500.0, 100.0, 1.5)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        CAM.expose(np.zeros((4, 2), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="ambient_e"):
        CAM.expose(np.zeros((4, 3), np.float32), np.random.default_rng(0), ambient_e=np.array([-1.0, 0, 0]))
    with pytest.raises(ValueError, match="spectrum"):
        CAM.broadband_electrons_per_us("neon")
