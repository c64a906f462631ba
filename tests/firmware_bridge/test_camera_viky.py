"""The genicam:// source for real, against Viky, the virtual GenTL producer the genicam wheel ships
(3 devices, serials "0", "1", "2"; moving content; no ExposureTime; no device timestamps)."""
from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

pytest.importorskip("harvesters.core", reason="harvesters is not installed (pip install harvesters)")
genicam = pytest.importorskip("genicam", reason="genicam is not installed (pip install genicam)")

import firmware_bridge as fb  # noqa: E402
from firmware_bridge.camera.ring import SHM_PREFIX  # noqa: E402

VIKY = os.path.join(os.path.dirname(genicam.__file__), "viky.cti")
SMALL = dict(width=320, height=240, pixel_format="Mono8")


def open_viky(target="1", **options):
    return fb.open_source(f"genicam://{target}", cti=VIKY, **options)


def spawned_children() -> set[int]:
    """Our processes started by multiprocessing 'spawn' (not its long-lived resource tracker)."""
    pids = set()
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(stat.replace("stat", "cmdline"), "rb") as f:
                spawned = b"spawn_main" in f.read()
        except OSError:  # exited meanwhile
            continue
        if parent == os.getpid() and spawned:
            pids.add(int(stat.split("/")[2]))
    return pids


def our_segments() -> set[str]:
    return set(glob.glob(f"/dev/shm/{SHM_PREFIX}{os.getpid()}-*"))


@pytest.fixture(autouse=True)
def no_leaks():
    """Every test must leave no acquisition process and no shared-memory segment behind."""
    pids_before = spawned_children()
    yield
    deadline = time.monotonic() + 5
    while spawned_children() - pids_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spawned_children() - pids_before == set(), "an acquisition process outlived its source"
    assert our_segments() == set(), "a ring's shared memory was not unlinked"


def test_lists_the_three_viky_devices_and_keeps_the_sigint_handler():
    handler = signal.getsignal(signal.SIGINT)
    devices = fb.list_devices(cti=VIKY)
    assert [d["serial"] for d in devices] == ["0", "1", "2"]
    assert [d["id"] for d in devices] == ["VikyTL_DEV_red", "VikyTL_DEV_green", "VikyTL_DEV_blue"]
    assert all(d["producer"] == VIKY for d in devices)
    assert signal.getsignal(signal.SIGINT) is handler


def test_producers_are_found_on_the_gentl_path(monkeypatch):
    monkeypatch.setenv("GENICAM_GENTL64_PATH", os.pathsep.join(["/nonexistent", os.path.dirname(VIKY)]))
    assert len(fb.list_devices()) == 3


def test_serial_1_configured_320x240_mono8_at_50fps_gives_gap_free_moving_frames():
    handler = signal.getsignal(signal.SIGINT)
    with open_viky("1", fps=50, **SMALL) as camera:
        assert signal.getsignal(signal.SIGINT) is handler
        info = camera.info
        assert (info["serial"], info["width"], info["height"], info["pixel_format"], info["fps"]) == \
            ("1", 320, 240, "Mono8", 50.0)
        frames = [camera.read(timeout=2.0) for _ in range(30)]
        stats = camera.stats
    for frame in frames:
        assert frame.data.shape == (240, 320) and frame.data.dtype == np.uint8
        assert frame.data.flags.owndata and frame.pixel_format == "Mono8"
        assert frame.device_timestamp_ns is None  # Viky has no device clock
    ids = [f.frame_id for f in frames]
    assert ids == list(range(ids[0], ids[0] + 30))
    assert stats.missing == 0 and stats.dropped == 0 and stats.delivered == 30
    host_times = [f.host_timestamp_ns for f in frames]
    assert host_times == sorted(host_times)
    assert len({f.data.tobytes() for f in frames}) > 1, "Viky's content should move"


@pytest.mark.parametrize("target, options, serial", [
    ("", {}, "0"),                          # empty host: the first device
    ("", {"device": 2}, "2"),               # an int is an index
    ("VikyTL_DEV_red", {}, "0"),            # by device id
])
def test_devices_open_by_index_id_or_first(target, options, serial):
    camera = open_viky(target, **options)
    try:
        assert camera.info["serial"] == serial
    finally:
        camera.close()


def test_rgba8_frames_are_hxwx4():
    with open_viky("0", width=200, height=100, pixel_format="RGBa8") as camera:
        frame = camera.read(timeout=2.0)
    assert frame.data.shape == (100, 200, 4) and frame.pixel_format == "RGBa8"


def test_a_feature_viky_lacks_is_named_with_the_device():
    with pytest.raises(fb.FeatureNotAvailable) as caught:
        open_viky("1", exposure=1000)
    assert caught.value.feature == "ExposureTime" and "serial 1" in caught.value.device
    assert "ExposureTime" in str(caught.value)


def test_out_of_range_width_says_the_range():
    with pytest.raises(fb.InvalidFeatureValue) as caught:
        open_viky("1", Width=5000)
    assert caught.value.feature == "Width" and "100..800" in caught.value.allowed


def test_a_missing_producer_is_named():
    with pytest.raises(fb.ProducerNotFound) as caught:
        fb.open_source("genicam://1?cti=/nonexistent/none.cti")
    assert caught.value.path == "/nonexistent/none.cti"


def test_a_file_that_is_not_a_producer_is_named(tmp_path):
    fake = tmp_path / "fake.cti"
    fake.write_text("not a shared library")
    with pytest.raises(fb.ProducerNotFound) as caught:
        fb.list_devices(cti=fake)
    assert caught.value.path == str(fake) and "cannot be loaded" in str(caught.value)


def test_an_unknown_serial_lists_the_devices_there_are():
    with pytest.raises(fb.DeviceNotFound) as caught:
        open_viky("9")
    assert caught.value.requested == "9"
    assert [d["serial"] for d in caught.value.available] == ["0", "1", "2"]


def test_unknown_options_are_refused_before_anything_opens():
    with pytest.raises(ValueError, match="widht"):
        open_viky("1", widht=320)


def test_a_slow_reader_with_newest_wins_loses_counted_frames_only():
    with open_viky("1", fps=200, buffers=2, drop="newest", **SMALL) as camera:
        ids = []
        for frame in camera:
            ids.append(frame.frame_id)
            # a 20 frames/s reader behind a 200 frames/s camera: drops even on a loaded machine
            time.sleep(0.05)
            if len(ids) == 25:
                break
        camera.stop()
        stats = camera.stats
    assert stats.dropped > 0
    assert stats.acquired == stats.delivered + stats.dropped  # every frame accounted for
    assert ids == sorted(ids) and ids[-1] - ids[0] + 1 > len(ids)  # newest wins: ids jump
    # every gap in the ids is counted: dropped by the ring, or skipped by the device (a loaded
    # machine can make the acquisition process miss frames too; those count as missing)
    assert ids[-1] - ids[0] + 1 - len(ids) <= stats.dropped + stats.missing


def test_block_policy_drops_nothing_in_the_ring_and_counts_what_the_device_skipped():
    with open_viky("1", fps=200, buffers=2, drop="block", **SMALL) as camera:
        ids = []
        for frame in camera:
            ids.append(frame.frame_id)
            time.sleep(0.02)
            if len(ids) == 15:
                break
        running = camera.stats
        camera.stop()
        stopped = camera.stats
    # The acquisition process waited for the reader; the device dropped frames meanwhile.
    assert running.dropped == 0
    assert running.missing >= ids[-1] - ids[0] + 1 - len(ids) > 0
    assert stopped.acquired == stopped.delivered + stopped.dropped  # unread at stop: dropped


def test_stop_from_another_thread_ends_iteration():
    with open_viky("2", fps=100, **SMALL) as camera:
        timer = threading.Timer(0.5, camera.stop)
        timer.start()
        started = time.monotonic()
        count = sum(1 for _ in camera)
        assert time.monotonic() - started < 3.0
        assert count > 10
        camera.start()  # and it starts again
        assert camera.read(timeout=2.0).data.shape == (240, 320)


def test_read_view_lends_the_slot_without_copying():
    with open_viky("1", fps=200, buffers=2, **SMALL) as camera:
        for _ in range(10):  # with two slots this stalls unless each view gives its slot back
            with camera.read_view(timeout=2.0) as frame:
                assert frame.data.shape == (240, 320) and not frame.data.flags.owndata
        assert camera.stats.delivered == 10
    # A view kept past close() keeps its mapping alive: reading it must not crash.
    assert frame.data.shape == (240, 320) and int(frame.data.sum()) >= 0


def test_a_killed_acquisition_process_is_reopened_and_counted():
    with open_viky("1", fps=100, reconnect=3, **SMALL) as camera:
        camera.read(timeout=2.0)
        (acquisition,) = spawned_children()
        os.kill(acquisition, signal.SIGKILL)
        # Frames already in the ring are still delivered; read on until the loss is noticed and
        # the process respawned (it imports harvesters: slow on a busy machine).
        deadline = time.monotonic() + 30.0
        while camera.stats.reconnects == 0 and time.monotonic() < deadline:
            frame = camera.read(timeout=30.0)
        frame = camera.read(timeout=30.0)
        assert frame.data.shape == (240, 320)
        assert camera.stats.reconnects == 1
        assert spawned_children() != {acquisition}


def test_without_reconnects_a_lost_device_raises_device_lost():
    with open_viky("1", fps=100, reconnect=0, **SMALL) as camera:
        camera.read(timeout=2.0)
        (acquisition,) = spawned_children()
        os.kill(acquisition, signal.SIGKILL)
        with pytest.raises(fb.DeviceLost) as caught:
            for _ in range(100):
                camera.read(timeout=2.0)
        assert "exited" in str(caught.value)


def test_a_source_never_closed_is_released_when_dropped():
    camera = open_viky("0", **SMALL)
    camera.read(timeout=2.0)
    del camera  # the finalizer closes the acquisition process and unlinks the ring


def test_no_process_or_memory_is_left_when_the_reader_raises():
    with pytest.raises(RuntimeError):
        with open_viky("0", **SMALL) as camera:
            next(iter(camera))
            raise RuntimeError("the model crashed")
    assert camera.closed


def test_delivers_near_the_configured_200_fps():
    with open_viky("0", fps=200, buffers=8, **SMALL) as camera:
        for _ in range(20):  # warm up
            camera.read(timeout=2.0)
        started, count = time.monotonic(), 0
        while time.monotonic() - started < 1.0:
            camera.read(timeout=2.0)
            count += 1
        rate = count / (time.monotonic() - started)
    assert rate > 100, f"{rate:.0f} frames/s"


def test_a_script_without_a_main_guard_can_open_a_camera(tmp_path):
    script = tmp_path / "three_lines.py"
    script.write_text(textwrap.dedent(f"""
        import firmware_bridge as fb
        with fb.open_source("genicam://1", cti={VIKY!r}, width=160, height=120) as camera:
            print(camera.read(timeout=5).data.shape)
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(120, 160, 4)"
