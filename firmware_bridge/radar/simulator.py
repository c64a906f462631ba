"""A simulated TI radar: point targets -> ADC cubes -> FMCW detections -> SDK 3.x packets, sent
over UDP or written to a file descriptor (a pseudo-terminal's master side, as a UART).

    radar = SimulatedRadar([Target(range_m=3.0, azimuth_deg=20.0, velocity_mps=1.0)])
    radar.serve_udp(("127.0.0.1", port), frames=20)        # or radar.serve_fd(master_fd, ...)

Signal model (complex baseband, per target; chirp config in fmcw.ChirpConfig): sample n of chirp
m at virtual antenna a is

    amplitude * exp(2j*pi * (f_beat * n / fs + 2 v / lambda * m * T_chirp)) * exp(1j * phase_a)
    f_beat = 2 * slope * range / c
    phase_a = pi * k * cos(el) * sin(az)  for horizontal element k,  pi * l * sin(el)  for vertical l

plus complex white noise. Targets move radially at their velocity from frame to frame.
"""
from __future__ import annotations

import os
import select
import socket
import threading
import time
from dataclasses import dataclass

import numpy as np

from .fmcw import SPEED_OF_LIGHT, ChirpConfig, detect
from .packet_writer import encode_packet

__all__ = ["Target", "SimulatedRadar"]


@dataclass(frozen=True)
class Target:
    range_m: float
    azimuth_deg: float = 0.0
    elevation_deg: float = 0.0
    velocity_mps: float = 0.0
    """Radial velocity, positive away from the radar."""
    amplitude: float = 100.0
    """Per ADC sample, in ADC counts."""


class SimulatedRadar:
    def __init__(self, targets, config: ChirpConfig = ChirpConfig(), noise_std: float = 4.0,
                 seed: int = 0):
        self.targets, self.config, self.noise_std = list(targets), config, noise_std
        self._rng = np.random.default_rng(seed)

    def adc_cube(self, frame_index: int = 0) -> np.ndarray:
        """(chirps, antennas, samples) complex64 of frame ``frame_index``."""
        c = self.config
        n = np.arange(c.samples)
        m = np.arange(c.chirps)
        k = np.arange(c.horizontal_antennas)
        l = np.arange(c.vertical_antennas)
        cube = np.zeros((c.chirps, c.antennas, c.samples), np.complex128)
        for t in self.targets:
            r = t.range_m + t.velocity_mps * frame_index * c.frame_period_s
            az, el = np.radians(t.azimuth_deg), np.radians(t.elevation_deg)
            fast = np.exp(2j * np.pi * (2 * c.slope_hz_per_s * r / SPEED_OF_LIGHT) * n / c.sample_rate_hz)
            slow = np.exp(2j * np.pi * (2 * t.velocity_mps / c.wavelength_m) * m * c.chirp_period_s)
            phase = np.concatenate([np.pi * k * np.cos(el) * np.sin(az), np.pi * l * np.sin(el)])
            cube += t.amplitude * slow[:, None, None] * np.exp(1j * phase)[None, :, None] * fast
        noise = self._rng.normal(0, self.noise_std / np.sqrt(2), (2, *cube.shape))
        return (cube + noise[0] + 1j * noise[1]).astype(np.complex64)

    def packet(self, frame_index: int) -> bytes:
        """The SDK 3.x packet of frame ``frame_index``: points and side info of the detections,
        the zero-Doppler range profile (dB) and stats."""
        cube = self.adc_cube(frame_index)
        found = detect(cube, self.config)
        profile = np.abs(np.fft.fft(cube * np.hanning(self.config.samples), axis=-1)).mean(axis=(0, 1))
        return encode_packet(frame_index, found.points, snr_db=found.snr_db, noise_db=found.noise_db,
                             range_profile_db=20 * np.log10(profile + 1e-3),
                             stats=(1000, 200, 40000, 50, 10, 5),
                             # the device's 200 MHz CPU-cycle clock is a uint32 that wraps (21 s)
                             time_cpu_cycles=int(frame_index * self.config.frame_period_s * 200e6) % 2**32)

    def packets(self, frames: int, first: int = 0) -> list[bytes]:
        return [self.packet(i) for i in range(first, first + frames)]

    def serve_udp(self, address: tuple[str, int], frames: int, period_s: float = 0.0,
                  datagram: int = 1024, stop: threading.Event | None = None) -> int:
        """Send ``frames`` packets to ``address`` (UDP), each split into datagrams of at most
        ``datagram`` bytes, one packet every period_s. Returns the packets sent."""
        packets = self.packets(frames)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for sent, p in enumerate(packets):
                if stop is not None and stop.is_set():
                    return sent
                for i in range(0, len(p), datagram):
                    sock.sendto(p[i:i + datagram], address)
                time.sleep(period_s)
        return frames

    def serve_fd(self, fd: int, frames: int, period_s: float = 0.0, chunk: int = 256,
                 stop: threading.Event | None = None, timeout_s: float = 5.0) -> int:
        """Write ``frames`` packets to file descriptor fd (a pty master: the radar's UART) in
        chunks of ``chunk`` bytes. Returns the packets written."""
        for sent, p in enumerate(self.packets(frames)):
            if stop is not None and stop.is_set():
                return sent
            view = memoryview(p)
            while view:
                if not select.select([], [fd], [], timeout_s)[1]:
                    return sent
                view = view[os.write(fd, view[:chunk]):]
            time.sleep(period_s)
        return frames

    def start(self, serve, *args, **kwargs) -> tuple[threading.Thread, threading.Event]:
        """Run serve_udp/serve_fd in a daemon thread: (thread, stop event)."""
        stop = threading.Event()
        thread = threading.Thread(target=serve, args=args, kwargs={**kwargs, "stop": stop},
                                  daemon=True, name="prism-simulated-radar")
        thread.start()
        return thread, stop
