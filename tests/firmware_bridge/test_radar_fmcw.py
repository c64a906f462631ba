"""FMCW processing and raw ADC capture: simulated targets are found where they were put."""
from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.radar import dca1000
from firmware_bridge.radar.fmcw import (ChirpConfig, ca_cfar, detect, doppler_fft,
                                        range_angle_heatmaps, range_fft, sin_axis)
from firmware_bridge.radar.simulator import SimulatedRadar, Target
from sdk.errors import InputError

CONFIG = ChirpConfig()
ANGLE_BINS = 64
SIN_STEP = 2.0 / ANGLE_BINS


def test_chirp_config_resolutions():
    assert CONFIG.range_resolution_m == pytest.approx(0.0976, abs=1e-4)
    assert CONFIG.max_range_m == pytest.approx(12.49, abs=0.01)
    assert CONFIG.velocity_resolution_mps == pytest.approx(0.608, abs=1e-3)
    assert CONFIG.antennas == 12


@pytest.mark.parametrize("target", [
    Target(range_m=3.0, azimuth_deg=20.0, velocity_mps=1.2),
    Target(range_m=7.3, azimuth_deg=-35.0, elevation_deg=10.0, velocity_mps=-2.5, amplitude=60),
    Target(range_m=1.1, azimuth_deg=0.0, elevation_deg=-15.0, velocity_mps=0.0),
])
def test_a_target_is_detected_within_one_bin(target):
    found = detect(SimulatedRadar([target], seed=1).adc_cube(), CONFIG)
    assert len(found) == 1
    assert abs(found.range_m[0] - target.range_m) <= CONFIG.range_resolution_m
    assert abs(found.velocity_mps[0] - target.velocity_mps) <= CONFIG.velocity_resolution_mps
    el, az = np.radians(target.elevation_deg), np.radians(target.azimuth_deg)
    assert abs(np.sin(found.elevation_rad[0]) - np.sin(el)) <= SIN_STEP
    assert abs(np.cos(found.elevation_rad[0]) * np.sin(found.azimuth_rad[0])
               - np.cos(el) * np.sin(az)) <= SIN_STEP
    assert found.snr_db[0] > 20


def test_two_targets_and_their_points():
    targets = [Target(2.5, 25.0, velocity_mps=0.6), Target(6.0, -30.0, 5.0, -1.8, amplitude=70)]
    found = detect(SimulatedRadar(targets, seed=2).adc_cube(), CONFIG)
    assert len(found) == 2
    order = np.argsort(found.range_m)
    points = found.points[order]
    for p, t in zip(points, targets):
        az, el = np.radians(t.azimuth_deg), np.radians(t.elevation_deg)
        want = t.range_m * np.array([np.cos(el) * np.sin(az), np.cos(el) * np.cos(az), np.sin(el)])
        assert np.linalg.norm(p[:3] - want) < 0.35     # one range bin and one angle bin
        assert abs(p[3] - t.velocity_mps) <= CONFIG.velocity_resolution_mps


def test_noise_alone_gives_no_detections():
    assert len(detect(SimulatedRadar([], seed=3).adc_cube(), CONFIG)) == 0


def test_range_angle_heatmaps_of_the_horizontal_and_vertical_arrays():
    target = Target(range_m=4.0, azimuth_deg=30.0, elevation_deg=-20.0, velocity_mps=1.0)
    rc = range_fft(SimulatedRadar([target], seed=4).adc_cube())
    horizontal, vertical = range_angle_heatmaps(rc, CONFIG, ANGLE_BINS, remove_static=True)
    assert horizontal.shape == vertical.shape == (ANGLE_BINS, CONFIG.samples)
    a, r = np.unravel_index(np.argmax(horizontal), horizontal.shape)
    assert abs(r - 4.0 / CONFIG.range_resolution_m) <= 1
    el = np.radians(-20.0)
    assert abs(sin_axis(ANGLE_BINS)[a] - np.cos(el) * np.sin(np.radians(30.0))) <= SIN_STEP
    a, r = np.unravel_index(np.argmax(vertical), vertical.shape)
    assert abs(sin_axis(ANGLE_BINS)[a] - np.sin(el)) <= SIN_STEP


def test_doppler_fft_puts_zero_velocity_in_the_middle():
    rc = range_fft(SimulatedRadar([Target(3.0)], noise_std=0).adc_cube())
    power = (np.abs(doppler_fft(rc)) ** 2).sum(axis=1)
    assert np.unravel_index(np.argmax(power), power.shape)[0] == CONFIG.chirps // 2


def test_ca_cfar_on_exponential_noise_with_two_peaks():
    rng = np.random.default_rng(0)
    power = rng.exponential(1.0, (32, 128))
    power[5, 40] = power[20, 90] = 500.0
    mask = ca_cfar(power, pfa=1e-6)
    assert set(zip(*np.nonzero(mask))) == {(5, 40), (20, 90)}
    with pytest.raises(InputError):
        ca_cfar(np.zeros(10))


def test_cube_shape_is_checked():
    with pytest.raises(InputError, match="chirps, antennas, samples"):
        detect(np.zeros((4, 4, 4), np.complex64), CONFIG)


def test_dca1000_round_trip_and_detection_through_it():
    cube = SimulatedRadar([Target(5.0, -10.0, velocity_mps=2.0)], seed=5).adc_cube()
    raw = dca1000.encode_iiqq(cube)
    assert len(raw) == cube.size * 4
    # I0 I1 Q0 Q1: the first group holds samples 0 and 1 of chirp 0, antenna 0.
    first = np.frombuffer(raw[:8], "<i2")
    np.testing.assert_array_equal(first, np.round([cube[0, 0, 0].real, cube[0, 0, 1].real,
                                                   cube[0, 0, 0].imag, cube[0, 0, 1].imag]))
    packets = dca1000.packetize(raw, first_seq=1)
    assert all(len(p) <= 10 + dca1000.MAX_PAYLOAD for p in packets)
    assert int.from_bytes(packets[2][:4], "little") == 3
    assert int.from_bytes(packets[2][4:10], "little") == 2 * dca1000.MAX_PAYLOAD
    shuffled = packets[::-1] + packets[:3]                  # any order, duplicates
    back, lost = dca1000.reassemble(shuffled)
    assert back == raw and lost == 0
    decoded = dca1000.decode_iiqq(back, CONFIG.antennas, CONFIG.samples)
    np.testing.assert_allclose(decoded, np.round(cube.real) + 1j * np.round(cube.imag))
    found = detect(decoded, CONFIG)
    assert len(found) == 1 and abs(found.range_m[0] - 5.0) <= CONFIG.range_resolution_m


def test_dca1000_lost_datagrams_are_zero_filled_and_counted():
    raw = bytes(range(256)) * 20
    packets = dca1000.packetize(raw, payload=1000)
    back, lost = dca1000.reassemble(packets[:2] + packets[3:])
    assert lost == 1000 and len(back) == len(raw)
    assert back[2000:3000] == bytes(1000) and back[3000:] == raw[3000:]
    with pytest.raises(InputError):
        dca1000.decode_iiqq(b"\x00" * 6, 1, 2)
    with pytest.raises(InputError):
        dca1000.encode_iiqq(np.zeros((1, 1, 3), np.complex64))
