"""End to end: a simulated radar sends real-format packets over UDP loopback and a
pseudo-terminal; radar+udp:// and radar+serial:// sources deliver frames with the targets."""
from __future__ import annotations

import os
import socket
import threading
import time

import numpy as np
import pytest

import firmware_bridge as fb
from firmware_bridge.radar import RadarFrame
from firmware_bridge.radar.fmcw import ChirpConfig
from firmware_bridge.radar.simulator import SimulatedRadar, Target

CONFIG = ChirpConfig()
TARGETS = [Target(range_m=2.0, azimuth_deg=15.0, velocity_mps=1.0),
           Target(range_m=6.0, azimuth_deg=-25.0, elevation_deg=8.0, velocity_mps=-1.5, amplitude=70)]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_targets(frame: fb.Frame) -> None:
    radar = frame.meta["radar"]
    assert isinstance(radar, RadarFrame) and frame.data is radar.points
    assert frame.data.shape == (2, 4) and frame.data.dtype == np.float32
    assert frame.frame_id == radar.header.frame_number
    ranges = np.sort(np.linalg.norm(frame.data[:, :3], axis=1))
    for r, t in zip(ranges, TARGETS):   # targets move radially between frames
        want = t.range_m + t.velocity_mps * frame.frame_id * CONFIG.frame_period_s
        assert abs(r - want) <= CONFIG.range_resolution_m + 0.02
    assert radar.snr_db.shape == (2,) and np.all(radar.snr_db > 10)
    assert radar.range_profile.shape == (CONFIG.samples,)


def _read_frames(source, n, limit_s=10.0) -> list[fb.Frame]:
    frames, deadline = [], time.monotonic() + limit_s
    while len(frames) < n and time.monotonic() < deadline:
        try:
            frames.append(source.read(timeout=0.5))
        except fb.AcquisitionTimeout:
            continue
    return frames


def test_udp_end_to_end():
    port = _free_udp_port()
    radar = SimulatedRadar(TARGETS, seed=7)
    with fb.open_source(f"radar+udp://127.0.0.1:{port}", timeout=1) as source:
        assert source.info["address"] == ("127.0.0.1", port)
        # Small datagrams: packets span several of them.
        thread, stop = radar.start(radar.serve_udp, ("127.0.0.1", port), frames=8, period_s=0.01,
                                   datagram=100)
        frames = _read_frames(source, 8)
        thread.join(5)
        stop.set()
        stats = source.stats
    assert [f.frame_id for f in frames] == list(range(8))
    for f in frames:
        _check_targets(f)
    assert (stats.delivered, stats.acquired, stats.errors, stats.missing) == (8, 8, 0, 0)


def test_udp_garbage_and_lost_datagrams_are_counted():
    port = _free_udp_port()
    packets = SimulatedRadar(TARGETS, seed=8).packets(4)
    with fb.open_source(f"radar+udp://127.0.0.1:{port}") as source, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.sendto(packets[0], ("127.0.0.1", port))
        tx.sendto(b"\x00garbage" * 10, ("127.0.0.1", port))
        tx.sendto(packets[1][:120], ("127.0.0.1", port))     # the rest of it is lost
        tx.sendto(packets[2], ("127.0.0.1", port))
        tx.sendto(packets[3], ("127.0.0.1", port))
        frames = _read_frames(source, 3)
        stats, counts = source.stats, source.stream_counts
    assert [f.frame_id for f in frames] == [0, 2, 3]
    assert stats.errors == 1 and counts.reasons == {"CUT_SHORT": 1}
    assert stats.missing == 1 and stats.delivered == 3
    assert counts.skipped_bytes == 80 + 120


def test_serial_end_to_end_over_a_pty():
    master, slave = os.openpty()
    try:
        radar = SimulatedRadar(TARGETS, seed=9)
        with fb.open_source(f"radar+serial://{os.ttyname(slave)}", baud=921600) as source:
            thread, stop = radar.start(radar.serve_fd, master, frames=5, chunk=64)
            frames = _read_frames(source, 5)
            stop.set()
            thread.join(5)
            stats = source.stats
    finally:
        os.close(master)
        os.close(slave)
    assert [f.frame_id for f in frames] == list(range(5))
    for f in frames:
        _check_targets(f)
    assert stats.errors == 0 and stats.delivered == 5


def test_stop_from_another_thread_ends_iteration():
    with fb.open_source(f"radar+udp://127.0.0.1:0", timeout=0.2) as source:
        threading.Timer(0.3, source.stop).start()
        t0 = time.monotonic()
        assert list(source) == []
        assert time.monotonic() - t0 < 3
        assert source.stats.timeouts >= 1


def test_bad_uris():
    with pytest.raises(ValueError, match="HOST:PORT"):
        fb.open_source("radar+udp://localhost")
    with pytest.raises(ValueError, match="unknown radar\\+udp option"):
        fb.open_source("radar+udp://127.0.0.1:0?colour=red")
    with pytest.raises(ValueError, match="baud"):
        fb.open_source("radar+serial:///dev/null?baud=123")
    with pytest.raises(FileNotFoundError):
        fb.open_source("radar+serial:///dev/no-such-radar")
