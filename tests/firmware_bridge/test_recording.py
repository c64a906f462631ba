"""Recorder + file:// replay: round trips (Viky and synthetic frames of changing shape), timing,
truncated recordings, and nothing dropped silently."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

import firmware_bridge as fb
from firmware_bridge.recording import FRAMES, HEADER, INDEX, INDEX_FILE, RECORD, Recorder, Recording
from firmware_bridge.replay import EndOfRecording, ReplayStats


def synthetic(i: int, period_ns: int = 20_000_000) -> fb.Frame:
    """Frame i: shape, dtype and format change with i; pixels encode i."""
    shapes = [(4, 6), (5, 7, 3), (1, 1), (8, 3, 4), (0, 5)]
    shape = shapes[i % len(shapes)]
    data = ((np.arange(int(np.prod(shape))) + i) % 251).astype(np.uint8).reshape(shape)
    fmt = {2: "Mono8", 3: "RGB8"}.get(data.ndim, "RGBa8" if shape[-1:] == (4,) else "Mono8")
    return fb.Frame(data=data, frame_id=100 + 2 * i, host_timestamp_ns=10**12 + i * period_ns,
                    device_timestamp_ns=None if i % 2 else 5 * i, pixel_format=fmt,
                    source="synthetic://", meta={"line_ids": list(range(i)), "roi": i})


def write(path, n: int, **kw) -> None:
    with Recorder(path, source_uri="synthetic://", info={"kind": "synthetic"}) as rec:
        for i in range(n):
            assert rec.write(synthetic(i, **kw))
        rec.close(fb.SourceStats(delivered=n, acquired=n))


def assert_same(replayed: fb.Frame, original: fb.Frame) -> None:
    np.testing.assert_array_equal(replayed.data, original.data)
    assert replayed.data.dtype == original.data.dtype and replayed.data.shape == original.data.shape
    assert replayed.frame_id == original.frame_id
    assert replayed.device_timestamp_ns == original.device_timestamp_ns
    assert replayed.pixel_format == original.pixel_format
    assert replayed.meta["recorded_host_timestamp_ns"] == original.host_timestamp_ns
    assert replayed.meta["recorded_source"] == original.source
    assert {k: v for k, v in replayed.meta.items()
            if not k.startswith("recorded_") and k != "pass"} == original.meta


def test_synthetic_frames_of_changing_shape_round_trip(tmp_path):
    write(tmp_path / "rec", 12)
    header = json.loads((tmp_path / "rec" / HEADER).read_text())
    assert header["complete"] and header["frames"] == 12 and header["unwritten"] == 0
    assert header["source_stats"]["delivered"] == 12 and header["source_info"] == {"kind": "synthetic"}
    with fb.open_source(f"file://{tmp_path / 'rec'}?rate=max") as replay:
        frames = list(replay)
        stats = replay.stats
    assert len(frames) == 12
    for i, frame in enumerate(frames):
        assert_same(frame, synthetic(i))
        assert frame.source.startswith("file://")
    assert isinstance(stats, ReplayStats) and stats.delivered == 12 and not stats.truncated


def test_viky_frames_round_trip(tmp_path):
    genicam = pytest.importorskip("genicam")
    pytest.importorskip("harvesters.core")
    cti = os.path.join(os.path.dirname(genicam.__file__), "viky.cti")
    with fb.open_source("genicam://1", cti=cti, width=160, height=120, pixel_format="Mono8",
                        fps=100, drop="block") as cam, Recorder(tmp_path / "viky", source=cam) as rec:
        originals = [cam.read(timeout=5) for _ in range(20)]
        for frame in originals:
            rec.write(frame)
    header = json.loads((tmp_path / "viky" / HEADER).read_text())
    assert header["source"].startswith("genicam://1") and header["source_info"]["width"] == 160
    assert header["source_stats"]["delivered"] == 20
    with fb.open_source(f"file://{tmp_path / 'viky'}", rate="max") as replay:
        replayed = list(replay)
    assert len(replayed) == 20
    for r, o in zip(replayed, originals):
        assert_same(r, o)
    assert len({f.data.tobytes() for f in replayed}) > 1  # Viky's content moves


def test_original_rate_keeps_the_recorded_spacing_and_fixed_rate_overrides_it(tmp_path):
    write(tmp_path / "rec", 6, period_ns=30_000_000)  # 150 ms of recording
    for rate, expected_s in (("original", 0.15), ("100", 0.05)):
        with fb.open_source(f"file://{tmp_path / 'rec'}?rate={rate}") as replay:
            t0 = time.perf_counter()
            frames = list(replay)
            elapsed = time.perf_counter() - t0
        assert len(frames) == 6
        assert expected_s - 0.005 <= elapsed < expected_s + 0.25, (rate, elapsed)
        # The schedule is absolute (a late frame does not delay the next ones): the span holds.
        span_ms = (frames[-1].host_timestamp_ns - frames[0].host_timestamp_ns) / 1e6
        assert span_ms >= (150 if rate == "original" else 50) - 1


def test_a_slow_reader_gets_every_frame_late_and_the_late_ones_are_counted(tmp_path):
    write(tmp_path / "rec", 5)
    with fb.open_source(f"file://{tmp_path / 'rec'}?rate=1000") as replay:
        ids = []
        for frame in replay:
            ids.append(frame.frame_id)
            time.sleep(0.01)
        stats = replay.stats
    assert ids == [100, 102, 104, 106, 108]
    assert stats.late == 4 and stats.max_late_ms >= 20 and stats.dropped == 0


def test_loop_replays_with_frame_ids_preserved_and_counts_passes(tmp_path):
    write(tmp_path / "rec", 3)
    with fb.open_source(f"file://{tmp_path / 'rec'}?rate=max&loop=1") as replay:
        frames = [replay.read() for _ in range(7)]
        assert replay.stats.passes == 2
    assert [f.frame_id for f in frames] == [100, 102, 104] * 2 + [100]
    assert [f.meta["pass"] for f in frames] == [0, 0, 0, 1, 1, 1, 2]


def test_stop_from_another_thread_ends_a_read_waiting_on_the_schedule(tmp_path):
    import threading
    write(tmp_path / "rec", 3, period_ns=10**9)  # 1 s between frames
    replay = fb.open_source(f"file://{tmp_path / 'rec'}")
    replay.read()
    threading.Timer(0.05, replay.stop).start()
    t0 = time.perf_counter()
    with pytest.raises(fb.SourceStopped):
        replay.read(timeout=5)
    assert time.perf_counter() - t0 < 0.5
    replay.close()


def test_a_recording_cut_mid_write_replays_its_complete_frames_and_reports_truncation(tmp_path):
    path = tmp_path / "rec"
    write(path, 5)
    frames_file = path / FRAMES
    with Recording(path) as rec:
        last = rec.entries[4].offset
    # The crash: the recorder never closed (header says incomplete) and the last record is cut
    # inside its payload.
    header = json.loads((path / HEADER).read_text())
    header.update(complete=False)
    del header["frames"]
    (path / HEADER).write_text(json.dumps(header))
    os.truncate(frames_file, last + RECORD.size + 3)
    with Recording(path) as rec:
        assert len(rec) == 4 and rec.truncated and not rec.complete
        assert rec.truncated_bytes == RECORD.size + 3
    with fb.open_source(f"file://{path}?rate=max") as replay:
        replayed = list(replay)
        assert replay.stats.truncated and replay.info["truncated_bytes"] == RECORD.size + 3
    assert [f.frame_id for f in replayed] == [100, 102, 104, 106]
    for i, f in enumerate(replayed):
        assert_same(f, synthetic(i))


def test_frames_written_but_not_yet_indexed_are_found_by_scanning(tmp_path):
    path = tmp_path / "rec"
    write(path, 4)
    os.truncate(path / INDEX_FILE, INDEX.size * 2 + 5)  # crash between payload and index writes
    with Recording(path) as rec:
        assert [f.frame_id for f in rec] == [100, 102, 104, 106] and not rec.truncated


def test_a_corrupt_record_ends_the_readable_part(tmp_path):
    path = tmp_path / "rec"
    write(path, 3)
    with Recording(path) as rec:
        second = rec.entries[1].offset
    with open(path / FRAMES, "r+b") as f:  # flip a payload byte of frame 1: its CRC fails
        f.seek(second + RECORD.size)
        byte = f.read(1)
        f.seek(second + RECORD.size)
        f.write(bytes([byte[0] ^ 0xFF]))
    with Recording(path) as rec:
        assert len(rec) == 1 and rec.truncated


def test_frames_that_cannot_be_written_are_counted_never_silently_lost(tmp_path):
    path = tmp_path / "rec"
    with Recorder(path, source_uri="synthetic://") as rec:
        assert rec.write(synthetic(0))
        bad = synthetic(1)
        bad.data = np.array([object()], dtype=object)
        assert not rec.write(bad)
        assert rec.write(synthetic(2))
    header = json.loads((path / HEADER).read_text())
    assert header["frames"] == 2 and header["unwritten"] == 1
    assert "frame 102" in header["unwritten_reasons"][0]
    with Recording(path) as r:
        assert [f.frame_id for f in r] == [100, 104]


def test_end_of_recording_and_bad_options(tmp_path):
    write(tmp_path / "rec", 1)
    with fb.open_source(f"file://{tmp_path / 'rec'}?rate=max") as replay:
        replay.read()
        with pytest.raises(EndOfRecording):
            replay.read()
    with pytest.raises(ValueError, match="rate"):
        fb.open_source(f"file://{tmp_path / 'rec'}?rate=fast")
    with pytest.raises(FileExistsError):
        Recorder(tmp_path / "rec")
    with pytest.raises(fb.SourceError):
        fb.open_source(f"file://{tmp_path / 'nothing'}")


def test_any_shape_dtype_and_meta_round_trips(tmp_path_factory):
    pytest.importorskip("hypothesis")
    from hypothesis import given, settings, strategies as st
    from hypothesis.extra.numpy import array_shapes, arrays

    dtypes = st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_])
    frames = st.lists(st.tuples(dtypes.flatmap(lambda d: arrays(d, array_shapes(min_dims=0, max_dims=4, min_side=0,
                                                                                max_side=5))),
                                st.integers(-2**63, 2**63 - 1), st.none() | st.integers(0, 2**62),
                                st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5),
                                                max_size=3)),
                      min_size=1, max_size=6)

    @settings(max_examples=20, deadline=None)
    @given(frames)
    def round_trip(items):
        path = tmp_path_factory.mktemp("prop") / "rec"
        originals = [fb.Frame(data=a, frame_id=fid, host_timestamp_ns=k, device_timestamp_ns=dts,
                              pixel_format="Mono16", source="prop://", meta=meta)
                     for k, (a, fid, dts, meta) in enumerate(items)]
        with Recorder(path, source_uri="prop://") as rec:
            for f in originals:
                assert rec.write(f)
        with Recording(path) as r:
            assert len(r) == len(originals) and not r.truncated
            for got, want in zip(r, originals):
                np.testing.assert_array_equal(got.data, want.data)
                assert got.data.dtype == want.data.dtype and got.data.shape == want.data.shape
                assert (got.frame_id, got.device_timestamp_ns, got.meta) == (
                    want.frame_id, want.device_timestamp_ns, want.meta)

    round_trip()
