"""Embedding guarantees: concurrent infer from threads, asyncio, close() under load, call stats."""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

import sdk
from sdk.errors import InputError
from sdk.runtime.embed import EngineClosed
from tests.runtime.test_dynamic import dynamic  # noqa: F401  (the module-scoped dynamic bundle fixture)

torch = pytest.importorskip("torch")

THREADS, CALLS = 6, 12


@pytest.fixture(scope="module")
def native_bundle(tiny_model, tmp_path_factory):
    """The tiny model quantized (PWLQ, 8-bit) for the native backend."""
    calib = torch.from_numpy(np.random.default_rng(7).normal(0, 1, (64, 1, 28, 28)).astype(np.float32))
    q = sdk.quantize(tiny_model, calib, progress=False, weight_bits=8)
    return sdk.deploy(q, out=tmp_path_factory.mktemp("native") / "tiny.q.prism",
                      example_input=torch.zeros(1, 1, 28, 28))


def _inputs(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(42)
    return [rng.normal(0, 1, (1 + i % 3, 1, 28, 28)).astype(np.float32) for i in range(n)]


def _hammer(engine, xs: list[np.ndarray], threads: int) -> list[np.ndarray]:
    """Every input inferred once, spread over ``threads`` threads started together."""
    out: list = [None] * len(xs)
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        barrier.wait()
        try:
            for i in range(k, len(xs), threads):
                out[i] = engine.infer(xs[i])
        except BaseException as e:  # surfaced below, with the thread's failure
            errors.append(e)

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors
    return out


class _EntryCheck:
    """Wraps a backend's infer to record how many calls are inside one instance at once."""

    def __init__(self, backend):
        self.backend, self.inner, self.most = backend, backend.infer, 0
        self._now, self._lock = 0, threading.Lock()
        backend.infer = self

    def __call__(self, feeds):
        with self._lock:
            self._now += 1
            self.most = max(self.most, self._now)
        try:
            return self.inner(feeds)
        finally:
            with self._lock:
                self._now -= 1


@pytest.mark.parametrize("backend, replicas", [("onnxruntime", 1), ("native", 1), ("native", 3)])
def test_threads_get_exactly_the_single_threaded_outputs(tiny_bundle, native_bundle, backend, replicas):
    bundle = tiny_bundle if backend == "onnxruntime" else native_bundle
    xs = _inputs(THREADS * CALLS)
    with sdk.load(bundle.path, backend=backend) as alone:
        expected = [alone.infer(x) for x in xs]
    with sdk.load(bundle.path, backend=backend, replicas=replicas) as engine:
        checks = [_EntryCheck(b) for b in engine._pool.instances]
        got = _hammer(engine, xs, THREADS)
        stats = engine.call_stats()
    for i, (a, b) in enumerate(zip(expected, got)):
        assert np.array_equal(a, b), f"input {i}: threaded output differs from the single-threaded one"
    assert stats.calls == len(xs) and stats.errors == 0 and stats.in_flight == 0
    assert 1 <= stats.in_flight_max <= THREADS
    if backend == "native":  # not re-entrant: one call per instance at a time, all replicas built
        assert len(checks) == replicas
        assert all(c.most <= 1 for c in checks), [c.most for c in checks]
        assert sum(c.most for c in checks) >= 1
    else:  # ORT is re-entrant: a single session shared by every thread
        assert len(checks) == 1


def test_replicas_must_be_a_positive_count(tiny_bundle):
    with pytest.raises(ValueError, match="replicas=0"):
        sdk.load(tiny_bundle.path, backend="onnxruntime", replicas=0)


def test_input_reaches_the_backend_without_a_copy(tiny_bundle):
    with sdk.load(tiny_bundle.path, backend="onnxruntime") as engine:
        seen = []
        inner = engine._backend.infer
        engine._backend.infer = lambda feeds: (seen.append(feeds), inner(feeds))[1]
        x = np.zeros((2, 1, 28, 28), np.float32)
        engine.infer(x)
        assert seen[0][engine.input_spec.name] is x


def test_asyncio_gather_runs_calls_off_the_event_loop(tiny_bundle):
    xs = _inputs(40)
    with sdk.load(tiny_bundle.path, backend="onnxruntime") as engine:
        expected = [engine.infer(x) for x in xs]
        threads = set()
        inner = engine._backend.infer
        engine._backend.infer = lambda feeds: (threads.add(threading.get_ident()), inner(feeds))[1]

        async def main():
            loop_thread = threading.get_ident()
            got = await asyncio.gather(*(engine.infer_async(x) for x in xs))
            return loop_thread, got

        loop_thread, got = asyncio.run(main())
    assert all(np.array_equal(a, b) for a, b in zip(expected, got))
    assert threads and loop_thread not in threads
    assert engine.call_stats().calls == 2 * len(xs)


def test_close_under_load_waits_for_calls_in_flight_then_refuses(native_bundle):
    engine = sdk.load(native_bundle.path, backend="native", replicas=2)
    check = [_EntryCheck(b) for b in engine._pool.instances]
    deactivated_with_calls_in_flight = []
    for c in check:
        inner_off = c.backend.deactivate
        c.backend.deactivate = lambda c=c, off=inner_off: (deactivated_with_calls_in_flight.append(c._now), off())[1]
    x = _inputs(1)[0]
    done, refused, other = [0] * 4, [0] * 4, []
    started = threading.Barrier(5)

    def work(k: int) -> None:
        started.wait()
        while True:
            try:
                engine.infer(x)
                done[k] += 1
            except EngineClosed:
                refused[k] += 1
                return
            except BaseException as e:
                other.append(e)
                return

    pool = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in pool:
        t.start()
    started.wait()
    while sum(done) < 20:
        threading.Event().wait(0.005)
    engine.close()
    for t in pool:
        t.join()
    assert other == []
    assert deactivated_with_calls_in_flight == [0, 0]
    with pytest.raises(EngineClosed, match="closed"):
        engine.infer(x)
    with pytest.raises(EngineClosed):
        asyncio.run(engine.infer_async(x))
    engine.close()  # idempotent
    stats = engine.call_stats()
    assert stats.calls == sum(done)
    assert stats.refused == sum(refused) + 2 and stats.in_flight == 0 and stats.errors == 0


def test_stats_count_errors_and_latencies(tiny_bundle):
    with sdk.load(tiny_bundle.path, backend="onnxruntime") as engine:
        for x in _inputs(5):
            engine.infer(x)
        with pytest.raises(InputError, match="dtype"):
            engine.infer(np.zeros((1, 1, 28, 28), np.float64))
        stats = engine.call_stats()
    assert (stats.calls, stats.errors, stats.refused, stats.in_flight_max) == (5, 1, 0, 1)
    lat = stats.latency_ms
    assert 0 < lat["p50"] <= lat["p99"]
    assert "5 calls, 1 errors" in stats.format()


def test_dynamic_engine_has_the_same_guarantees(dynamic):  # noqa: F811
    _, path, x = dynamic
    chunks = [x[i:i + 4] for i in range(0, len(x), 4)]
    with sdk.load(path) as alone:
        expected = [alone.infer(c) for c in chunks]
    engine = sdk.load(path)
    got = _hammer(engine, chunks * 3, THREADS)

    async def gather():
        return await asyncio.gather(*(engine.infer_async(c) for c in chunks))

    got += asyncio.run(gather())
    for i, r in enumerate(got):
        e = expected[i % len(chunks)]
        assert np.array_equal(e.logits, r.logits) and np.array_equal(e.exit_stage, r.exit_stage)
    stages = engine.stats()["stages"]
    assert stages[0]["entered"] == 4 * len(x)  # counters updated by concurrent calls lose nothing
    assert sum(s["exited"] for s in stages) == 4 * len(x)
    engine.close()
    with pytest.raises(EngineClosed):
        engine.infer(chunks[0])
    stats = engine.call_stats()
    assert (stats.calls, stats.refused, stats.in_flight) == (4 * len(chunks), 1, 0)


def test_close_while_async_calls_are_queued_answers_each_exactly_once(tiny_bundle):
    engine = sdk.load(tiny_bundle.path, backend="onnxruntime")
    x = _inputs(1)[0]
    expected = engine.infer(x)

    async def main():
        tasks = [asyncio.ensure_future(engine.infer_async(x)) for _ in range(200)]
        await asyncio.sleep(0)  # every task reaches the pool before close() starts
        closer = asyncio.get_running_loop().run_in_executor(None, engine.close)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await closer
        return results

    results = asyncio.run(main())
    ok = [r for r in results if isinstance(r, np.ndarray)]
    closed = [r for r in results if isinstance(r, EngineClosed)]
    assert len(ok) + len(closed) == len(results)  # nothing else (no RuntimeError from the pool)
    assert all(np.array_equal(r, expected) for r in ok)
    stats = engine.call_stats()
    assert (stats.calls, stats.refused, stats.in_flight) == (len(ok) + 1, len(closed), 0)
