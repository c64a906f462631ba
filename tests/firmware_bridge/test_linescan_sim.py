"""linescan+sim://: frames of Height lines in line order with exact line timestamps, ROIs side by
side, lost lines counted (never silent), a pluggable line generator; and the assembler alone."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import firmware_bridge as fb
from firmware_bridge.linescan import LineAssembler, decode_line_ids, split_rois
from firmware_bridge.recording import Recorder


@pytest.fixture(autouse=True)
def no_threads_left():
    yield
    assert not [t for t in threading.enumerate() if t.name == "prism-linescan-sim"]


def test_the_issue_uri_gives_rgb_frames_of_three_rois_in_line_order():
    uri = "linescan+sim://?rate=1743&width=2056&rois=3&lines_per_frame=64"
    with fb.open_source(uri) as cam:
        frames = [cam.read(timeout=2) for _ in range(4)]
        info, stats = cam.info, cam.stats
    assert info["configuration"]["complete"] and info["line_rate_hz"] == 1743.0
    assert [(r["offset_x"], r["width"], r["column"]) for r in info["rois"]] == [(0, 688, 0), (688, 688, 688),
                                                                                (1376, 680, 1376)]
    period = round(1e9 / 1743)
    for k, frame in enumerate(frames):
        assert frame.data.shape == (64, 2056, 3) and frame.data.dtype == np.uint8
        assert frame.pixel_format == "RGB8" and frame.frame_id == k
        ids = frame.meta["line_ids"]
        assert list(ids) == list(range(64 * k, 64 * k + 64))
        for roi in split_rois(frame):  # every ROI carries the line signal
            assert list(decode_line_ids(roi)) == list(ids)
        assert (np.diff(frame.meta["line_timestamps_ns"]) == period).all()
        assert frame.device_timestamp_ns == 64 * k * period
        assert frame.meta["lines_missing"] == 0 and frame.meta["line_valid"].all()
    assert stats.lines_dropped == 0 and stats.delivered == 4
    # 64 lines at 1743 lines/s: a frame every 36.7 ms of host time.
    gaps_ms = np.diff([f.host_timestamp_ns for f in frames]) / 1e6
    assert 15 < gaps_ms.mean() < 80


def test_a_lagging_reader_loses_lines_and_every_lost_line_is_counted():
    uri = "linescan+sim://?rate=20000&width=64&rois=2&lines_per_frame=32&buffer_lines=48"
    seen_valid = 0
    with fb.open_source(uri) as cam:
        time.sleep(0.02)  # lines lost before the first read are counted too
        frames = []
        for _ in range(6):
            frames.append(cam.read(timeout=2))
            time.sleep(0.01)  # 200 lines arrive meanwhile; the buffer keeps 48
        stats = cam.stats
    for f in frames:
        valid = f.meta["line_valid"]
        seen_valid += int(valid.sum())
        assert (f.data[~valid] == 0).all()  # a lost line is a zero row, never someone else's line
        assert (decode_line_ids(f.data[valid]) == f.meta["line_ids"][valid] % 65536).all()
        assert f.meta["lines_missing"] == int((~valid).sum())
    assert stats.lines_dropped > 100 and stats.missing > 0
    # Every line id up to the newest one read was either received or counted as dropped.
    assert stats.lines_acquired + stats.lines_dropped == stats.last_line_id + 1
    assert stats.last_line_id >= frames[-1].meta["line_ids"][-1]
    assert stats.incomplete_frames + stats.missing > 0
    assert [f.frame_id for f in frames] == sorted(f.frame_id for f in frames)


def test_a_line_generator_plugs_in_and_the_encoder_sets_the_line_rate():
    calls = []

    def generator(line_ids, device_ts, width):
        calls.append(width)
        rows = np.zeros((len(line_ids), width, 3), np.uint8)
        rows[:, :, 1] = 200
        return rows

    with fb.open_source("linescan+sim://?width=32&lines_per_frame=16&trigger=encoder&encoder_hz=8000&divider=2",
                        line_generator=generator) as cam:
        frame = cam.read(timeout=2)
        info = cam.info
    assert info["line_rate_hz"] == 4000.0
    assert info["configuration"]["applied"]["TriggerSource[LineStart]"] == "Encoder0"
    assert info["configuration"]["applied"]["EncoderDivider[Encoder0]"] == 2
    assert set(calls) == {32} and (frame.data[..., 1] == 200).all()
    assert (np.diff(frame.meta["line_timestamps_ns"]) == 250_000).all()


def test_a_failing_line_generator_is_reported_by_read_not_a_timeout():
    def generator(line_ids, device_ts, width):
        if line_ids[-1] > 40:
            raise RuntimeError("renderer out of memory")
        return np.zeros((len(line_ids), width, 3), np.uint8)

    with fb.open_source("linescan+sim://?width=16&lines_per_frame=16&rate=2000", line_generator=generator) as cam:
        with pytest.raises(fb.errors.DeviceLost, match="line generator failed: RuntimeError: renderer out of memory"):
            for _ in range(20):
                cam.read(timeout=2)


def test_stop_from_another_thread_and_restart_continue_the_line_counter():
    cam = fb.open_source("linescan+sim://?rate=4000&width=16&lines_per_frame=8")
    first = cam.read(timeout=2)
    threading.Timer(0.05, cam.stop).start()
    with pytest.raises(fb.SourceStopped):
        while True:
            cam.read(timeout=2)
    cam.start()
    after = cam.read(timeout=2)
    cam.close()
    assert after.frame_id > first.frame_id
    assert cam.stats.delivered >= 2


def test_line_scan_frames_record_and_replay(tmp_path):
    with fb.open_source("linescan+sim://?rate=8000&width=48&rois=2&lines_per_frame=16") as cam, \
            Recorder(tmp_path / "ls", source=cam) as rec:
        rec.record(max_frames=3)
    with fb.open_source(f"file://{tmp_path / 'ls'}?rate=max") as replay:
        frames = list(replay)
    assert [f.data.shape for f in frames] == [(16, 48, 3)] * 3
    assert frames[1].meta["line_ids"] == list(range(16, 32))
    assert [r["width"] for r in frames[0].meta["rois"]] == [24, 24]


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="speed"):
        fb.open_source("linescan+sim://?speed=3")
    with pytest.raises(fb.InvalidFeatureValue, match="AcquisitionLineRate"):
        fb.open_source("linescan+sim://?rate=5")


def test_assembler_keeps_rows_in_place_across_gaps():
    asm = LineAssembler(lines_per_frame=4, width=2, channels=1)
    rows = lambda ids: np.asarray(ids, np.uint8)[:, None, None].repeat(2, 1)  # noqa: E731
    ids = np.array([0, 1, 2, 3, 4, 6, 7, 13, 14])  # 5, 8..12 lost; frame 2 (8..11) entirely
    done = asm.add(ids, ids * 10, 99, rows(ids))
    assert [f.index for f in done] == [0, 1]
    assert list(done[1].line_valid) == [True, False, True, True]
    assert list(done[1].rows[:, 0, 0]) == [4, 0, 6, 7] and list(done[1].line_timestamps_ns) == [40, 0, 60, 70]
    assert asm.lines_dropped == 6 and asm.frames_missing == 1 and asm.lines_received == 9
    done = asm.add(np.array([15]), np.array([150]), 100, rows([15]))
    assert [f.index for f in done] == [3] and done[0].lines_missing == 1 and done[0].host_timestamp_ns == 100
    assert asm.flush() is None
    with pytest.raises(ValueError):
        asm.add(np.array([15]), np.array([0]), 0, rows([15]))
