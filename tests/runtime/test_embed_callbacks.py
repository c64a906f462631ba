"""Pipeline callbacks: on_result with each frame's own output, on_drop/on_error with exactly the
frames counted as dropped/failed, a raising callback counted and never fatal."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import firmware_bridge as fb
import sdk
from firmware_bridge.recording import Recorder
from sdk.runtime.pipeline import Pipeline

N = 30


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """N Mono8 frames 40×40 of seeded noise; frame ids 500, 501, ..."""
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("callbacks") / "rec"
    with Recorder(path, source_uri="synthetic://") as rec:
        for i in range(N):
            rec.write(fb.Frame(data=rng.integers(0, 256, (40, 40), dtype=np.uint8), frame_id=500 + i,
                               host_timestamp_ns=i * 1_000_000, device_timestamp_ns=None,
                               pixel_format="Mono8", source="synthetic://"))
    return path


class Events:
    """Everything the callbacks reported, by kind, thread-safe."""

    def __init__(self):
        self.results, self.drops, self.errors = {}, [], []
        self._lock = threading.Lock()

    def on_result(self, frame, output):
        with self._lock:
            self.results[frame.frame_id] = (frame.data, np.array(output))

    def on_drop(self, stage, frames):
        with self._lock:
            self.drops += [(stage, f.frame_id) for f in frames]

    def on_error(self, stage, frames, error):
        with self._lock:
            self.errors += [(stage, f.frame_id, str(error)) for f in frames]


def _sink(delay_s: float, fail_ids: set):
    def sink(frame, output):
        time.sleep(delay_s)
        if frame.frame_id in fail_ids:
            raise ValueError(f"sink refused frame {frame.frame_id}")
    return sink


def test_results_drops_and_errors_are_reported_frame_by_frame(recording, tiny_bundle):
    events = Events()
    with sdk.load(tiny_bundle.path, backend="onnxruntime") as engine:
        with fb.open_source(f"file://{recording}", rate="max") as src, \
                Pipeline(src, engine, sink=_sink(0.01, {500, 501}), queue_depth=1, drop="newest",
                         on_result=events.on_result, on_drop=events.on_drop,
                         on_error=events.on_error) as p:
            stats = p.run()
        # each result is that frame's own output
        for frame_id, (data, output) in events.results.items():
            assert np.array_equal(output, engine.infer(engine.preprocess(data))[0]), frame_id
    assert stats.accounted and stats.source_frames == N
    assert len(events.results) == stats.delivered
    assert len(events.drops) == stats.dropped > 0  # a 10 ms sink behind a max-rate replay must drop
    assert {s for s, _ in events.drops} <= {"preprocess", "infer", "sink"}
    for stage in ("preprocess", "infer", "sink"):
        assert sum(s == stage for s, _ in events.drops) == stats.stages[stage].dropped
    failed = {fid for _, fid, _ in events.errors}
    assert len(events.errors) == stats.errors and all(s == "sink" for s, _, _ in events.errors)
    assert all("sink refused frame" in e for _, _, e in events.errors)
    ids = [fid for _, fid in events.drops] + list(events.results) + sorted(failed)
    assert sorted(ids) == list(range(500, 500 + N))  # every frame reported exactly once
    assert stats.callback_errors == 0


def test_a_raising_callback_is_counted_and_the_pipeline_goes_on(recording, tiny_bundle):
    def bad(frame, output):
        raise RuntimeError("callback fault")

    with sdk.load(tiny_bundle.path, backend="onnxruntime") as engine, \
            fb.open_source(f"file://{recording}", rate="max") as src, \
            Pipeline(src, engine, drop="block", on_result=bad) as p:
        stats = p.run()
    assert stats.delivered == N and stats.errors == 0
    assert stats.callback_errors == N
    assert stats.to_dict()["callback_errors"] == N


def test_frames_aborted_by_stop_are_reported_as_cancelled(recording, tiny_bundle):
    events = Events()
    with sdk.load(tiny_bundle.path, backend="onnxruntime") as engine, \
            fb.open_source(f"file://{recording}", rate="max") as src:
        p = Pipeline(src, engine, sink=_sink(0.05, set()), drop="block", queue_depth=2,
                     on_result=events.on_result, on_drop=events.on_drop)
        p.start()
        while not events.results:
            time.sleep(0.005)
        p.stop()
        stats = p.stats()
    assert stats.accounted and stats.cancelled > 0 and stats.dropped == 0
    assert [s for s, _ in events.drops] == ["cancelled"] * stats.cancelled
    assert len(events.results) == stats.delivered
