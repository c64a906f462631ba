"""Embedding engines in robot software: concurrent calls, asyncio, deterministic close, call stats.

Every engine made by :func:`sdk.load` (:class:`~sdk.runtime.engine.Engine` and
:class:`~sdk.runtime.dynamic.DynamicEngine`) gives the same guarantees:

- **threads**: ``infer``/``run`` may be called from any number of threads at once and return
  exactly what one thread calling alone would. Backends whose ``infer`` is re-entrant (ONNX
  Runtime: ``InferenceSession.run`` is thread-safe) are called without a lock; the others (the
  native backend reuses buffers between calls) get a pool of ``replicas`` backend instances,
  each used by one call at a time (``replicas=1``: calls take turns).
- **asyncio**: ``await engine.infer_async(x)`` runs the call on the engine's own thread pool,
  so the event loop keeps running meanwhile.
- **close**: ``close()`` refuses new calls at once (they raise :class:`EngineClosed`), waits for
  the calls in flight to return, then releases the backends; idempotent.
- **stats**: ``engine.call_stats()`` → :class:`EngineStats` (calls, errors, in flight now and at
  most, latency p50/p99 in ms).

Inputs are not copied on the way in: a C-contiguous array of the model's dtype reaches the
backend as the same buffer (ONNX Runtime reads it in place on CPU).
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import functools
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import PrismError

__all__ = ["EngineClosed", "EngineStats", "CallGate", "BackendPool", "AsyncCalls"]

_LATENCY_WINDOW = 10_000  # latency samples kept for the percentiles (the most recent ones)


class EngineClosed(PrismError):
    """A call reached an engine after ``close()``."""


@dataclass(frozen=True)
class EngineStats:
    """Calls made on an engine since it was loaded (a snapshot)."""

    calls: int
    """Calls that returned a result."""
    errors: int
    """Calls that raised (bad input, backend failure)."""
    refused: int
    """Calls refused because the engine was closed (raised EngineClosed)."""
    in_flight: int
    """Calls running now."""
    in_flight_max: int
    """The most calls ever running at once."""
    latency_ms: dict
    """p50, p99, mean of a call's wall time in ms, over the last 10,000 calls (returned or raised)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def format(self) -> str:
        lat = self.latency_ms
        return (f"{self.calls} calls, {self.errors} errors, {self.refused} refused, in flight "
                f"{self.in_flight} (max {self.in_flight_max}), latency p50 {lat['p50']:.2f} ms "
                f"p99 {lat['p99']:.2f} ms")


def _percentiles(samples) -> dict:
    if not samples:
        return {"p50": 0.0, "p99": 0.0, "mean": 0.0}
    a = np.fromiter(samples, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


class CallGate:
    """Admits calls until closed, counts them, and lets ``close()`` wait for the ones in flight.

    ``with gate.call():`` around one engine call; ``gate.close()`` then refuses new calls and
    returns once every admitted call has left.
    """

    def __init__(self, what: str):
        self._what = what
        self._cond = threading.Condition()
        self._closed = False
        self._in_flight = self._in_flight_max = 0
        self._calls = self._errors = self._refused = 0
        self._latency: collections.deque = collections.deque(maxlen=_LATENCY_WINDOW)

    @property
    def closed(self) -> bool:
        return self._closed

    def _enter(self) -> None:
        with self._cond:
            self._check_open_locked()
            self._in_flight += 1
            self._in_flight_max = max(self._in_flight_max, self._in_flight)

    def check_open(self) -> None:
        """Raise EngineClosed (counted as refused) if the engine is closed."""
        with self._cond:
            self._check_open_locked()

    def _check_open_locked(self) -> None:
        if self._closed:
            self._refused += 1
            raise EngineClosed(f"{self._what} is closed; load the bundle again to run it")

    def _leave(self, seconds: float, ok: bool) -> None:
        with self._cond:
            self._in_flight -= 1
            if ok:
                self._calls += 1
            else:
                self._errors += 1
            self._latency.append(seconds * 1e3)
            if self._in_flight == 0:
                self._cond.notify_all()

    def run(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn()`` as one admitted, timed, counted call."""
        self._enter()
        t0 = time.perf_counter()
        ok = False
        try:
            result = fn()
            ok = True
            return result
        finally:
            self._leave(time.perf_counter() - t0, ok)

    def close(self) -> bool:
        """Refuse new calls, wait for the calls in flight; True the first time (then: release)."""
        with self._cond:
            first = not self._closed
            self._closed = True
            while self._in_flight:
                self._cond.wait()
        return first

    def stats(self) -> EngineStats:
        with self._cond:
            return EngineStats(calls=self._calls, errors=self._errors, refused=self._refused,
                               in_flight=self._in_flight, in_flight_max=self._in_flight_max,
                               latency_ms=_percentiles(self._latency))


class BackendPool:
    """The backend instance(s) an engine calls, with the concurrency the backend allows.

    ``make()`` builds and activates one instance. A re-entrant backend class (``reentrant = True``)
    is built once and called from every thread; otherwise ``replicas`` instances are built and each
    call borrows one for its duration (callers beyond ``replicas`` wait for one to come back).
    """

    def __init__(self, make: Callable[[], Any], reentrant: bool, replicas: int):
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            raise ValueError(f"replicas={replicas!r}: give a whole number of backend instances, at least 1")
        self.reentrant = reentrant
        self.instances: list = []
        try:
            for _ in range(1 if reentrant else replicas):
                self.instances.append(make())
        except BaseException:
            self.deactivate()
            raise
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for backend in self.instances:
            self._free.put(backend)

    @property
    def first(self):
        return self.instances[0]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.reentrant:
            return self.instances[0].infer(feeds)
        backend = self._free.get()
        try:
            return backend.infer(feeds)
        finally:
            self._free.put(backend)

    def deactivate(self) -> None:
        for backend in self.instances:
            backend.deactivate()


class AsyncCalls:
    """A lazily started thread pool for ``infer_async``; ``shutdown()`` (after the gate closed)
    waits for the calls submitted and lets no new one in."""

    def __init__(self, name: str, workers: int, gate: CallGate):
        self._name, self._workers, self._gate = name, max(1, workers), gate
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._shut = False
        self._lock = threading.Lock()

    async def call(self, fn: Callable, *args: Any) -> Any:
        with self._lock:  # submitted under the lock: either before shutdown() (it waits) or refused
            if self._shut:
                self._gate.check_open()
                raise EngineClosed(f"{self._name}: the engine is closing")
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(self._workers, thread_name_prefix=self._name)
            future = self._pool.submit(functools.partial(fn, *args))
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool, self._shut = self._pool, None, True
        if pool is not None:
            pool.shutdown(wait=True)


def async_workers(reentrant: bool, replicas: int) -> int:
    """Threads worth running calls on: every core for a re-entrant backend, else one per replica."""
    return (os.cpu_count() or 1) if reentrant else replicas
