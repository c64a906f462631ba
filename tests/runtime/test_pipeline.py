"""Pipeline: replayed frames (deterministic) through a fake engine whose preprocessing is the real
C++ kernel; drops and errors accounted for frame by frame; stop from any thread; no threads left."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

import firmware_bridge as fb
from firmware_bridge.recording import Recorder, Recording
from sdk.preprocess import PreprocessRecipe, preprocess
from sdk.runtime.pipeline import Pipeline, PipelineError, PipelineStats

N = 40


@pytest.fixture(autouse=True)
def no_threads_left():
    yield
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(t.name.startswith("prism-pipeline") for t in threading.enumerate()):
        time.sleep(0.01)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("prism-pipeline")]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """N Mono8 frames 24×32 whose pixels all equal their index; frame ids 1000, 1001, ..."""
    path = tmp_path_factory.mktemp("pipeline") / "rec"
    with Recorder(path, source_uri="synthetic://") as rec:
        for i in range(N):
            rec.write(fb.Frame(data=np.full((24, 32), i, np.uint8), frame_id=1000 + i,
                               host_timestamp_ns=i * 1_000_000, device_timestamp_ns=None,
                               pixel_format="Mono8", source="synthetic://"))
    return path


class FakeEngine:
    """Preprocesses with the C++ kernel (8×8 gray, scale 1); infer returns each input's mean after
    ``infer_s`` s, and raises on inputs whose mean is in ``fail_on``."""

    def __init__(self, infer_s: float = 0.0, fail_on: tuple = ()):
        self.recipe = PreprocessRecipe(pixel_format="Mono8", channels="gray", size=(8, 8), scale=1.0)
        self.infer_s, self.fail_on, self.batches = infer_s, set(fail_on), []

    def preprocess(self, frames):
        return preprocess(frames, self.recipe)

    def infer(self, x):
        self.batches.append(len(x))
        if self.infer_s:
            time.sleep(self.infer_s)
        means = x.reshape(len(x), -1).mean(axis=1)
        if self.fail_on & set(np.round(means).astype(int).tolist()):
            raise RuntimeError("engine fault")
        return means[:, None].astype(np.float32)


def replay(path, **options):
    return fb.open_source(f"file://{path}", **options)


class Collect:
    def __init__(self, fail_on=(), delay_s=0.0):
        self.ids, self.values, self.fail_on, self.delay_s = [], [], set(fail_on), delay_s

    def __call__(self, frame, output):
        if self.delay_s:
            time.sleep(self.delay_s)
        if frame.frame_id in self.fail_on:
            raise ValueError("sink fault")
        self.ids.append(frame.frame_id)
        self.values.append(float(output[0]))


def test_every_frame_reaches_the_sink_in_order_with_its_own_output(recording):
    sink = Collect()
    with replay(recording, rate="max") as src, Pipeline(src, FakeEngine(), sink=sink, drop="block") as p:
        stats = p.run()
    assert sink.ids == [1000 + i for i in range(N)]
    assert sink.values == [float(i) for i in range(N)]
    assert stats.delivered == stats.source_frames == N and stats.dropped == 0 and stats.accounted
    assert all(s.frames == N and s.latency_ms["p50"] > 0 for s in stats.stages.values())
    assert stats.end_to_end_ms["p99"] >= stats.end_to_end_ms["p50"] > 0 and stats.fps > 0


def test_newest_drops_the_oldest_queued_frames_of_the_lagging_stage_and_counts_each(recording):
    sink = Collect()
    engine = FakeEngine(infer_s=0.01)
    with replay(recording, rate=2000) as src, Pipeline(src, engine, sink=sink, queue_depth=2) as p:
        stats = p.run()
    assert stats.source_frames == N and stats.accounted and stats.cancelled == 0
    assert stats.stages["infer"].dropped > 0
    assert stats.delivered + stats.dropped == N == len(sink.ids) + stats.dropped
    assert sink.ids == sorted(sink.ids) and sink.ids[-1] == 1000 + N - 1  # the newest survive
    assert stats.source["dropped"] == 0


def test_block_applies_backpressure_to_the_source_instead(recording):
    sink = Collect()
    with replay(recording, rate=2000) as src, \
            Pipeline(src, FakeEngine(infer_s=0.005), sink=sink, drop="block", queue_depth=1) as p:
        stats = p.run()
    assert stats.dropped == 0 and stats.delivered == N and sink.ids == [1000 + i for i in range(N)]
    assert stats.source["late"] > N // 2  # the source was held back: its frames came late


def test_engine_and_sink_errors_are_counted_with_frame_ids_and_the_pipeline_goes_on(recording):
    sink = Collect(fail_on={1007, 1030})
    with replay(recording, rate="max") as src, \
            Pipeline(src, FakeEngine(fail_on=(3, 20)), sink=sink, drop="block") as p:
        stats = p.run()
    assert stats.stages["infer"].errors == 2 and stats.stages["sink"].errors == 2
    assert stats.delivered == N - 4 and stats.accounted
    assert [(e["stage"], e["frame_ids"]) for e in stats.error_log] == [
        ("infer", [1003]), ("sink", [1007]), ("infer", [1020]), ("sink", [1030])]
    assert 1003 not in sink.ids and 1007 not in sink.ids and 1008 in sink.ids


def test_stop_on_error_stops_and_run_raises_with_the_frame_id(recording):
    with replay(recording, rate="max") as src, \
            Pipeline(src, FakeEngine(fail_on=(5,)), drop="block", stop_on_error=True) as p:
        with pytest.raises(PipelineError, match="1005") as e:
            p.run()
    assert e.value.stage == "infer" and e.value.frame_ids == [1005]
    assert p.stats().accounted


def test_batches_take_the_frames_already_waiting(recording):
    sink = Collect()
    engine = FakeEngine(infer_s=0.004)
    with replay(recording, rate="max") as src, \
            Pipeline(src, engine, sink=sink, drop="block", batch=4, queue_depth=4) as p:
        stats = p.run()
    assert sink.values == [float(i) for i in range(N)] and stats.accounted
    assert max(engine.batches) > 1 and max(engine.batches) <= 4 and sum(engine.batches) == N


def test_stop_from_another_thread_ends_an_endless_source_with_nothing_unaccounted(recording):
    with replay(recording, rate=500, loop=1) as src, Pipeline(src, FakeEngine(infer_s=0.002)) as p:
        threading.Timer(0.15, p.stop).start()
        t0 = time.perf_counter()
        stats = p.run()  # no limit: only stop() ends it
        assert time.perf_counter() - t0 < 2
    assert stats.source_frames > 10 and stats.accounted


def test_stop_from_the_sink_thread_and_concurrent_stops(recording):
    holder = {}

    def sink(frame, output):
        if frame.frame_id == 1010:
            holder["p"].stop()

    with replay(recording, rate="max", loop=1) as src:
        p = holder["p"] = Pipeline(src, FakeEngine(), sink=sink, drop="block")
        p.start()
        stoppers = [threading.Thread(target=p.stop) for _ in range(4)]
        p.run(duration=5)
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        stats = p.stats()
    assert not p.running and stats.accounted and 11 <= stats.delivered


def test_duration_limit_finishes_the_frames_already_read(recording):
    with replay(recording, rate=200, loop=1) as src, Pipeline(src, FakeEngine(), drop="block") as p:
        stats = p.run(duration=0.1)
    assert stats.accounted and stats.cancelled == 0 and stats.delivered == stats.source_frames > 5


def test_max_frames_tap_records_exactly_what_the_source_gave(recording, tmp_path):
    with replay(recording, rate="max") as src, Recorder(tmp_path / "tap") as rec, \
            Pipeline(src, FakeEngine(infer_s=0.003), tap=rec.write, queue_depth=1) as p:
        stats = p.run(max_frames=25)
    assert stats.source_frames == 25 and stats.accounted
    with Recording(tmp_path / "tap") as r:
        assert [f.frame_id for f in r] == [1000 + i for i in range(25)]


def test_a_failing_tap_is_reported_and_costs_no_frame(recording):
    def tap(frame):
        if frame.frame_id % 10 == 0:
            raise OSError("disk full")

    with replay(recording, rate="max") as src, Pipeline(src, FakeEngine(), tap=tap, drop="block") as p:
        stats = p.run()
    assert stats.delivered == N and stats.tap_errors == 4 and stats.accounted
    assert [e["frame_ids"] for e in stats.error_log] == [[1000], [1010], [1020], [1030]]


def test_stats_to_dict_and_format(recording):
    with replay(recording, rate="max") as src, Pipeline(src, FakeEngine(), drop="block") as p:
        stats = p.run(max_frames=10)
    assert isinstance(stats, PipelineStats)
    d = json.loads(json.dumps(stats.to_dict()))
    assert d["delivered"] == 10 and d["accounted"] and set(d["stages"]) == {"preprocess", "infer", "sink"}
    table = stats.format()
    for word in ("preprocess", "infer", "sink", "end-to-end", "fps", "p99 ms"):
        assert word in table


def test_with_a_deployed_engine(recording, tiny_bundle):
    import sdk
    outputs = []
    with sdk.load(tiny_bundle.path) as engine, replay(recording, rate="max") as src, \
            Pipeline(src, engine, sink=lambda f, y: outputs.append(y), drop="block", batch=2) as p:
        stats = p.run()
    assert stats.delivered == N and all(y.shape == (10,) for y in outputs)
