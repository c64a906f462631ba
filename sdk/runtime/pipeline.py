"""Pipeline: source → preprocess (C++ kernel) → infer → sink, each stage on its own thread.

    with open_source("genicam://0?cti=...") as cam, Pipeline(cam, engine, sink=show) as p:
        stats = p.run(max_frames=300)         # or duration=10; p.stop() from any thread
    print(stats.format())

Stages are connected by bounded queues of ``queue_depth`` items. When a stage lags:

- ``drop="newest"``: the stage in front keeps going and the oldest item waiting in the lagging
  stage's queue is dropped — counted in that stage's ``dropped`` (frames, not batches);
- ``drop="block"``: the stage in front waits; the source thread stops reading, so the source's own
  ring overflows and its stats (dropped/missing) show it.

Every frame the source delivered ends in exactly one of: ``delivered`` (the sink returned),
a stage's ``dropped``, a stage's ``errors`` (the engine or sink raised; the frame ids are kept in
``error_log``), or ``cancelled`` (still queued when stop() aborted). ``PipelineStats.accounted``
checks it. An exception is logged and counted and the pipeline goes on, unless
``stop_on_error=True``: then it stops and run() raises PipelineError.

Callbacks let robot software react without polling stats: ``on_result(frame, output)`` after
the sink returned a frame, ``on_drop(stage, frames)`` for frames a lagging stage dropped
(``stage`` = "cancelled" for frames still in flight when stop() aborted), ``on_error(stage,
frames, error)`` for frames a stage raised on. They run on the pipeline's threads (keep them
short); one that raises is logged and counted in ``callback_errors``, and the pipeline goes on.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["Pipeline", "PipelineStats", "StageStats", "PipelineError"]

STAGES = ("preprocess", "infer", "sink")
_POLL_S = 0.05  # how often a blocked thread looks at stop()
_LATENCY_WINDOW = 20_000  # samples kept per stage for the percentiles


class PipelineError(RuntimeError):
    """A stage raised and ``stop_on_error`` was set; ``stage`` and ``frame_ids`` say where."""

    def __init__(self, stage: str, frame_ids: list[int], error: BaseException):
        super().__init__(f"{stage} failed on frame(s) {frame_ids}: {error!r}")
        self.stage, self.frame_ids, self.error = stage, frame_ids, error


class _End:
    """Sentinel that closes a queue: everything before it is processed first."""


_END = _End()


@dataclass
class _Work:
    frames: list  # firmware_bridge Frames
    x: Any = None       # preprocessed batch (N, C, H, W) float32
    y: Any = None       # engine output for the batch


class _BoundedQueue:
    """A FIFO of at most ``depth`` items; put() either drops the oldest or waits for room."""

    def __init__(self, depth: int, drop_oldest: bool, aborted: threading.Event):
        self._items: collections.deque = collections.deque()
        self._depth, self._drop_oldest, self._aborted = depth, drop_oldest, aborted
        self._cond = threading.Condition()

    def put(self, item, *, force_wait: bool = False):
        """Queue ``item``; returns the item dropped to make room (None if none). Returns ``item``
        itself when stop() aborted the wait."""
        with self._cond:
            if self._drop_oldest and not force_wait and len(self._items) >= self._depth:
                for i, queued in enumerate(self._items):  # the sentinel is never dropped
                    if queued is not _END:
                        del self._items[i]
                        self._items.append(item)
                        self._cond.notify_all()
                        return queued
            while len(self._items) >= self._depth:
                if self._aborted.is_set():
                    return item
                self._cond.wait(_POLL_S)
            self._items.append(item)
            self._cond.notify_all()
            return None

    def get(self):
        """The oldest item, or None once stop() aborted."""
        with self._cond:
            while not self._items:
                if self._aborted.is_set():
                    return None
                self._cond.wait(_POLL_S)
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def get_nowait(self):
        with self._cond:
            if self._items and self._items[0] is not _END:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            return None

    def drain(self) -> list:
        with self._cond:
            items, self._items = list(self._items), collections.deque()
            self._cond.notify_all()
            return items


def _percentiles(samples) -> dict:
    if not samples:
        return {"p50": 0.0, "p99": 0.0, "mean": 0.0}
    a = np.fromiter(samples, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


@dataclass
class StageStats:
    name: str
    frames: int = 0
    """Frames this stage finished."""
    dropped: int = 0
    """Frames dropped from this stage's input queue because it lagged (drop="newest")."""
    errors: int = 0
    """Frames this stage raised on."""
    latency_ms: dict = field(default_factory=dict)
    """p50, p99, mean of the stage's own time per item (a batch for preprocess/infer), ms."""


@dataclass
class PipelineStats:
    source_frames: int
    """Frames read from the source."""
    delivered: int
    """Frames the sink returned from."""
    dropped: int
    """Frames dropped, all stages together."""
    errors: int
    cancelled: int
    """Frames still in flight when stop() aborted the pipeline."""
    fps: float
    """Delivered frames per second of run time."""
    wall_s: float
    end_to_end_ms: dict
    """Source host timestamp → sink returned: p50, p99, mean (ms)."""
    stages: dict[str, StageStats]
    error_log: list[dict]
    """The first errors: stage, frame_ids, error."""
    tap_errors: int
    source: dict
    """The source's own stats (SourceStats fields) at the end."""
    drop_policy: str = "newest"
    callback_errors: int = 0
    """Times on_result/on_drop/on_error raised."""

    @property
    def accounted(self) -> bool:
        """Every frame the source delivered was delivered to the sink or counted exactly once."""
        return self.source_frames == self.delivered + self.dropped + self.errors + self.cancelled

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["accounted"] = self.accounted
        return d

    def format(self) -> str:
        rows = [f"{'stage':<12}{'frames':>8}{'dropped':>9}{'errors':>8}{'p50 ms':>10}{'p99 ms':>10}"]
        for s in self.stages.values():
            rows.append(f"{s.name:<12}{s.frames:>8}{s.dropped:>9}{s.errors:>8}"
                        f"{s.latency_ms['p50']:>10.3f}{s.latency_ms['p99']:>10.3f}")
        e = self.end_to_end_ms
        rows.append(f"{'end-to-end':<12}{self.delivered:>8}{self.dropped:>9}{self.errors:>8}"
                    f"{e['p50']:>10.3f}{e['p99']:>10.3f}")
        src = self.source
        rows.append(f"source: {self.source_frames} frames read, {self.delivered} delivered, "
                    f"{self.cancelled} cancelled at stop; {self.fps:.1f} fps over {self.wall_s:.2f} s; "
                    f"source dropped {src.get('dropped', 0)}, missing {src.get('missing', 0)} "
                    f"(drop={self.drop_policy})")
        return "\n".join(rows)


class Pipeline:
    """Frames from ``source`` through ``engine.preprocess`` and ``engine.infer`` to ``sink``.

    Args:
        source: a firmware_bridge Source (started here if it is not streaming).
        engine: anything with ``preprocess(frames) -> (N, C, H, W)`` and ``infer(x) -> (N, ...)``
            (an sdk Engine). ``preprocess=False`` skips the first and infers on ``frame.data``.
        sink: ``sink(frame, output)`` with ``output`` the engine's output for that frame (the
            batch axis removed); runs on the sink thread. None: outputs are discarded.
        queue_depth: items (batches) each queue holds.
        drop: "newest" (drop the oldest queued item of a lagging stage) or "block" (backpressure).
        batch: up to this many frames already waiting are preprocessed and inferred together.
        tap: ``tap(frame)`` called on the source thread for each frame read (e.g. a Recorder).
        stop_on_error: stop at the first engine/sink exception and raise it from run().
        on_result: ``on_result(frame, output)`` after the sink returned (also with no sink).
        on_drop: ``on_drop(stage, frames)`` for frames dropped by ``stage``'s queue, or with
            stage "cancelled" for frames stop() aborted.
        on_error: ``on_error(stage, frames, error)`` for frames ``stage`` raised on.
    """

    def __init__(self, source, engine, sink: Callable | None = None, *, queue_depth: int = 2,
                 drop: str = "newest", batch: int = 1, tap: Callable | None = None,
                 preprocess: bool = True, stop_on_error: bool = False,
                 on_result: Callable | None = None, on_drop: Callable | None = None,
                 on_error: Callable | None = None):
        if drop not in ("newest", "block"):
            raise ValueError(f"drop={drop!r}: use 'newest' or 'block'")
        if queue_depth < 1 or batch < 1:
            raise ValueError("queue_depth and batch must be at least 1")
        self.source, self.engine, self.sink, self.tap = source, engine, sink, tap
        self.drop, self.batch, self.stop_on_error = drop, batch, stop_on_error
        self._preprocess = preprocess
        self.on_result, self.on_drop, self.on_error = on_result, on_drop, on_error
        self._callback_errors = 0
        self._aborted = threading.Event()     # stop(): everything ends now
        self._finishing = threading.Event()   # run() reached its limit: the source stops, queues drain
        self._lock = threading.Lock()
        self._queues = {name: _BoundedQueue(queue_depth, drop == "newest", self._aborted) for name in STAGES}
        self._stages = {name: StageStats(name) for name in STAGES}
        self._latency = {name: collections.deque(maxlen=_LATENCY_WINDOW) for name in STAGES}
        self._e2e = collections.deque(maxlen=_LATENCY_WINDOW)
        self._error_log: list[dict] = []
        self._failure: PipelineError | None = None
        self._source_frames = self._delivered = self._cancelled = self._tap_errors = 0
        self._max_frames: int | None = None
        self._threads: list[threading.Thread] = []
        self._t_start = self._t_end = None
        self._done = threading.Event()

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> "Pipeline":
        """Start the stage threads (run() does it when needed)."""
        if self._threads:
            return self
        if not getattr(self.source, "streaming", True):
            self.source.start()
        self._t_start = time.perf_counter()
        targets = {"source": self._source_loop, "preprocess": self._preprocess_loop,
                   "infer": self._infer_loop, "sink": self._sink_loop}
        self._threads = [threading.Thread(target=fn, name=f"prism-pipeline-{name}", daemon=True)
                         for name, fn in targets.items()]
        for t in self._threads:
            t.start()
        return self

    def run(self, max_frames: int | None = None, duration: float | None = None) -> PipelineStats:
        """Run until the source has given ``max_frames`` frames, ``duration`` s passed, the source
        ended, or stop(); frames already read are then finished (unless stop() aborted).
        Returns stats(); raises PipelineError when ``stop_on_error`` stopped it."""
        if max_frames is not None and self._threads:
            raise RuntimeError("max_frames must be given before the pipeline starts: call run() without start()")
        self._max_frames = max_frames
        self.start()
        self._done.wait(duration)
        self._finishing.set()
        self._join()
        if self._failure is not None:
            raise self._failure
        return self.stats()

    def stop(self) -> None:
        """Abort from any thread (the sink's too): frames in flight are counted as cancelled."""
        self._aborted.set()
        self._finishing.set()
        self._done.set()
        if threading.current_thread() not in self._threads:
            self._join()

    def _join(self) -> None:
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()
        if self._threads and all(not t.is_alive() for t in self._threads if t is not threading.current_thread()):
            leftover = [w for q in self._queues.values() for w in q.drain() if isinstance(w, _Work)]
            with self._lock:
                self._cancelled += sum(len(w.frames) for w in leftover)
                if self._t_end is None:
                    self._t_end = time.perf_counter()
            for w in leftover:
                self._notify(self.on_drop, "cancelled", w.frames)

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def __enter__(self) -> "Pipeline":
        return self  # run() starts the threads, with its limits in place

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- stages ---------------------------------------------------------------------------------
    def _notify(self, callback: Callable | None, *args) -> None:
        """Call a user callback; its failure is logged and counted, never the pipeline's."""
        if callback is None:
            return
        try:
            callback(*args)
        except Exception as e:
            log.warning("pipeline callback %s raised: %r", getattr(callback, "__name__", callback), e)
            with self._lock:
                self._callback_errors += 1

    def _put(self, stage: str, work: _Work) -> None:
        """Hand ``work`` to ``stage``'s queue, counting what the drop policy throws away."""
        lost = self._queues[stage].put(work)
        if lost is work:  # aborted while waiting for room
            with self._lock:
                self._cancelled += len(work.frames)
            self._notify(self.on_drop, "cancelled", work.frames)
        elif lost is not None:
            with self._lock:
                self._stages[stage].dropped += len(lost.frames)
            self._notify(self.on_drop, stage, lost.frames)

    def _close(self, stage: str) -> None:
        self._queues[stage].put(_END, force_wait=True)

    def _fail(self, stage: str, work: _Work, error: BaseException) -> None:
        ids = [f.frame_id for f in work.frames]
        log.warning("pipeline %s failed on frame(s) %s: %r", stage, ids, error)
        with self._lock:
            self._stages[stage].errors += len(work.frames)
            if len(self._error_log) < 100:
                self._error_log.append({"stage": stage, "frame_ids": ids, "error": repr(error)})
            if self.stop_on_error and self._failure is None:
                self._failure = PipelineError(stage, ids, error)
        self._notify(self.on_error, stage, list(work.frames), error)
        if self.stop_on_error:
            self._aborted.set()
            self._finishing.set()
            self._done.set()

    def _timed(self, stage: str, work: _Work, fn) -> bool:
        t = time.perf_counter()
        try:
            fn()
        except Exception as e:  # counted and reported with the frame ids; the pipeline goes on
            self._fail(stage, work, e)
            return False
        with self._lock:
            self._latency[stage].append((time.perf_counter() - t) * 1e3)
            self._stages[stage].frames += len(work.frames)
        return True

    def _source_loop(self) -> None:
        from firmware_bridge.errors import AcquisitionTimeout, SourceError, SourceStopped

        try:
            while not self._finishing.is_set():
                if self._max_frames is not None and self._source_frames >= self._max_frames:
                    break
                try:
                    frame = self.source.read(timeout=0.1)
                except AcquisitionTimeout:
                    continue
                except SourceStopped:
                    break
                except SourceError as e:
                    log.warning("pipeline source %s failed: %r", getattr(self.source, "uri", "?"), e)
                    with self._lock:
                        self._error_log.append({"stage": "source", "frame_ids": [], "error": repr(e)})
                    break
                with self._lock:
                    self._source_frames += 1
                if self.tap is not None:
                    try:  # a side channel (e.g. a Recorder): its failure does not cost the frame
                        self.tap(frame)
                    except Exception as e:
                        log.warning("pipeline tap failed on frame %s: %r", frame.frame_id, e)
                        with self._lock:
                            self._tap_errors += 1
                            if len(self._error_log) < 100:
                                self._error_log.append({"stage": "tap", "frame_ids": [frame.frame_id],
                                                        "error": repr(e)})
                self._put("preprocess", _Work([frame]))
        finally:
            self._close("preprocess")

    def _stage_loop(self, stage: str, next_stage: str | None, step) -> None:
        try:
            while True:
                work = self._queues[stage].get()
                if work is None or work is _END:
                    return
                if stage == "preprocess" and self.batch > 1:
                    work = self._collect(work, stage)
                if self._timed(stage, work, lambda: step(work)) and next_stage is not None:
                    self._put(next_stage, work)
        finally:
            if next_stage is not None:
                self._close(next_stage)
            else:
                self._done.set()

    def _collect(self, first: _Work, stage: str) -> _Work:
        """``first`` plus frames already waiting in the queue, up to ``batch`` frames."""
        frames = list(first.frames)
        while len(frames) < self.batch:
            more = self._queues[stage].get_nowait()
            if more is None:
                break
            frames += more.frames
        return _Work(frames)

    def _preprocess_loop(self) -> None:
        def step(work: _Work) -> None:
            if not self._preprocess:
                work.x = np.stack([f.data for f in work.frames])
            elif len(work.frames) == 1:
                work.x = self.engine.preprocess(work.frames[0].data)
            elif len({f.data.shape for f in work.frames}) == 1:
                work.x = self.engine.preprocess(np.stack([f.data for f in work.frames]))
            else:  # frames of different shapes: one call each, same output size
                work.x = np.concatenate([self.engine.preprocess(f.data) for f in work.frames])
        self._stage_loop("preprocess", "infer", step)

    def _infer_loop(self) -> None:
        def step(work: _Work) -> None:
            work.y = self.engine.infer(work.x)
        self._stage_loop("infer", "sink", step)

    def _sink_loop(self) -> None:
        try:
            while True:
                work = self._queues["sink"].get()
                if work is None or work is _END:
                    return
                # Frames of one batch go to the sink one by one; a raising sink fails only its frame.
                for i, frame in enumerate(work.frames):
                    one = _Work([frame])
                    if self.sink is not None and not self._timed(
                            "sink", one, lambda: self.sink(frame, work.y[i])):
                        continue
                    if self.sink is None:
                        with self._lock:
                            self._stages["sink"].frames += 1
                    now = time.monotonic_ns()
                    with self._lock:
                        self._delivered += 1
                        self._e2e.append((now - frame.host_timestamp_ns) / 1e6)
                    self._notify(self.on_result, frame, work.y[i])
        finally:
            self._done.set()

    # -- results --------------------------------------------------------------------------------
    def stats(self) -> PipelineStats:
        """A snapshot (also while running)."""
        with self._lock:
            stages = {}
            for name in STAGES:
                s = self._stages[name]
                stages[name] = dataclasses.replace(s, latency_ms=_percentiles(self._latency[name]))
            end = self._t_end if self._t_end is not None else time.perf_counter()
            wall = (end - self._t_start) if self._t_start is not None else 0.0
            src = getattr(self.source, "stats", None)
            return PipelineStats(
                source_frames=self._source_frames, delivered=self._delivered,
                dropped=sum(s.dropped for s in stages.values()),
                errors=sum(s.errors for s in stages.values()), cancelled=self._cancelled,
                fps=self._delivered / wall if wall > 0 else 0.0, wall_s=wall,
                end_to_end_ms=_percentiles(self._e2e), stages=stages,
                error_log=list(self._error_log), tap_errors=self._tap_errors,
                source=dataclasses.asdict(src) if dataclasses.is_dataclass(src) else {},
                drop_policy=self.drop, callback_errors=self._callback_errors)
