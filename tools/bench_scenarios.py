"""The scenarios of ``prism bench``, named after MLPerf LoadGen's, plus a sensor-paced stream.

Every scenario takes ``infer(x)`` (any callable: an Engine's, a DynamicEngine's, a fake in tests)
and a :class:`Budget`, and returns a dict of plain numbers (JSON-ready).

single-stream   one query of one sample at a time, the next issued when the previous returns;
                latency per query (LoadGen's SingleStream; trtexec's latency without queuing).
multi-stream    every query carries ``streams`` samples (one per camera) as one batch;
                latency per query (LoadGen's MultiStream).
offline         batches of ``batch`` samples back to back: throughput (LoadGen's Offline,
                trtexec's throughput).
sensor-paced    frames arrive at ``rate`` per second whether or not the engine is ready; the
                engine always takes the newest unprocessed frame and the older ones are skipped
                (the streaming-perception toolkit's rule, Li et al., ECCV 2020). Reports frames
                processed vs skipped, end-to-end latency (finish − arrival), runtimes under the
                sensor period, mean frame lag (how many frames old the newest available output
                is when a frame arrives), sustained rate and a keep-up verdict on p99 runtime vs
                the period. A rate the engine cannot meet is a result, not an error.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .bench_stats import latency_summary

SCENARIOS = ("single-stream", "multi-stream", "offline", "sensor")


@dataclass
class Budget:
    """Run length: at least ``min_queries`` and ``min_seconds`` (MLPerf's defaults: 100 queries,
    10 s), unless ``iterations`` fixes the count; ``warmup`` untimed queries first."""

    min_seconds: float = 10.0
    min_queries: int = 100
    iterations: int | None = None
    warmup: int = 10

    def done(self, count: int, elapsed: float) -> bool:
        if self.iterations is not None:
            return count >= self.iterations
        return count >= self.min_queries and elapsed >= self.min_seconds

    def total_hint(self) -> int | None:
        return self.iterations


class _Progress:
    def __init__(self, enabled: bool, desc: str, budget: Budget):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            total = budget.iterations
            self.bar = tqdm(total=total if total else round(budget.min_seconds, 1), desc=desc,
                            unit="query" if total else "s", leave=False)
            self.by_time = total is None
            self.last = 0.0

    def update(self, count: int, elapsed: float) -> None:
        if self.bar is None:
            return
        if self.by_time:
            step = min(elapsed, self.bar.total) - self.last
            if step >= 0.1:
                self.bar.update(round(step, 1))
                self.last += round(step, 1)
        else:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _timed_loop(infer: Callable[[np.ndarray], Any], x: np.ndarray, budget: Budget, progress: bool,
                desc: str, on_call: Callable[[], None] | None = None) -> tuple[np.ndarray, float]:
    for _ in range(budget.warmup):
        infer(x)
    clock = time.perf_counter
    samples: list[float] = []
    bar = _Progress(progress, desc, budget)
    start = clock()
    while not budget.done(len(samples), clock() - start):
        t0 = clock()
        infer(x)
        samples.append(clock() - t0)
        if on_call:
            on_call()
        bar.update(len(samples), clock() - start)
    wall = clock() - start
    bar.close()
    return np.asarray(samples), wall


def single_stream(infer, x: np.ndarray, budget: Budget, *, progress: bool = False,
                  on_call=None) -> dict[str, Any]:
    s, wall = _timed_loop(infer, x, budget, progress, "single-stream", on_call)
    return {"scenario": "single-stream", "batch": int(x.shape[0]), "latency_ms": latency_summary(s),
            "throughput_per_s": x.shape[0] * len(s) / wall, "seconds": wall, "_samples": s}


def multi_stream(infer, x: np.ndarray, budget: Budget, *, streams: int = 4,
                 progress: bool = False) -> dict[str, Any]:
    xs = np.concatenate([x[:1]] * streams)
    s, wall = _timed_loop(infer, xs, budget, progress, f"multi-stream x{streams}")
    return {"scenario": "multi-stream", "streams": streams, "latency_ms": latency_summary(s),
            "throughput_per_s": streams * len(s) / wall, "seconds": wall, "_samples": s}


def offline(infer, x: np.ndarray, budget: Budget, *, batch: int = 32, progress: bool = False) -> dict[str, Any]:
    reps = -(-batch // x.shape[0])
    xb = np.concatenate([x] * reps)[:batch]
    s, wall = _timed_loop(infer, xb, budget, progress, f"offline b{batch}")
    return {"scenario": "offline", "batch": batch, "latency_ms": latency_summary(s),
            "throughput_per_s": batch * len(s) / wall, "seconds": wall, "_samples": s}


def sensor_paced(infer, x: np.ndarray, budget: Budget, *, rate: float, progress: bool = False,
                 clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """See the module docstring. ``rate``: frames (or lines) per second. Runs until the budget's
    frame count (``iterations``: frames *arriving*) or duration is reached."""
    if not rate > 0:
        from sdk.errors import InputError

        raise InputError(f"sensor rate must be > 0 frames/s, got {rate}")
    period = 1.0 / rate
    for _ in range(budget.warmup):
        infer(x)
    bar = _Progress(progress, f"sensor {rate:g}/s", budget)
    arrivals, starts, finishes, frame_ids = [], [], [], []
    last_done = -1
    t0 = clock()

    def arrived(now: float) -> int:  # index of the newest frame arrived by ``now``
        return int((now - t0) / period + 1e-9)  # the epsilon: k·period/period must give k

    spin = sleep is time.sleep  # real clock: spin for the last ms (a virtual clock only sleeps)
    limit = budget.iterations  # frames in the stream; None: run for the duration/query budget
    while True:
        now = clock()
        newest = arrived(now)
        if limit is not None:
            if last_done >= limit - 1:  # the stream's last frame is processed
                break
            newest = min(newest, limit - 1)
        elif len(finishes) >= budget.min_queries and now - t0 >= budget.min_seconds:
            break
        if newest <= last_done:  # idle until the next frame arrives
            wait = t0 + (last_done + 1) * period - now
            if spin and wait < 2e-3:
                continue  # busy-wait: an OS sleep overshoots sub-ms periods (1743 lines/s: 0.57 ms)
            sleep(max(1e-7, wait - (1e-3 if spin else 0.0)))
            continue
        start = clock()
        infer(x)
        finish = clock()
        arrivals.append(t0 + newest * period)
        starts.append(start)
        finishes.append(finish)
        frame_ids.append(newest)
        last_done = newest
        bar.update(len(finishes), finish - t0)
    bar.close()
    end = clock()
    # frames of the run: those that arrived before the last result (later ones had no chance)
    total_frames = limit if limit is not None else max(arrived(finishes[-1]) + 1 if finishes else 0, last_done + 1)
    arrivals_a, starts_a, finishes_a = map(np.asarray, (arrivals, starts, finishes))
    ids = np.asarray(frame_ids, dtype=np.int64)
    e2e = finishes_a - arrivals_a
    runtimes = finishes_a - starts_a
    # frame lag: at each frame's arrival, how many frames older is the newest finished output
    k = np.arange(total_frames)
    t_k = t0 + k * period
    done_before = np.searchsorted(finishes_a, t_k, side="right") - 1
    lag = np.where(done_before >= 0, k - ids[np.clip(done_before, 0, None)] if len(ids) else k, k + 1)
    p99_runtime = float(np.percentile(runtimes, 99) * 1e3) if len(runtimes) else float("inf")
    keeps_up = p99_runtime <= period * 1e3
    duration = end - t0
    return {
        "scenario": "sensor", "rate_per_s": rate, "period_ms": period * 1e3,
        "frames_arrived": int(total_frames), "frames_processed": int(len(ids)),
        "frames_skipped": int(total_frames - len(ids)),
        "processed_share": len(ids) / total_frames if total_frames else 0.0,
        "end_to_end_ms": latency_summary(e2e), "runtime_ms": latency_summary(runtimes),
        "runtime_under_period_share": float((runtimes <= period).mean()) if len(runtimes) else 0.0,
        "mean_frame_lag": float(lag.mean()) if len(lag) else 0.0,
        "sustained_rate_per_s": len(ids) / duration if duration > 0 else 0.0,
        "keeps_up": bool(keeps_up),
        "verdict": (f"keeps up: p99 runtime {p99_runtime:.3f} ms <= period {period * 1e3:.3f} ms" if keeps_up else
                    f"cannot keep up: p99 runtime {p99_runtime:.3f} ms > period {period * 1e3:.3f} ms; "
                    f"sustains {len(ids) / duration if duration > 0 else 0:.1f}/s of {rate:g}/s, "
                    f"skipping {total_frames - len(ids)} of {total_frames} frames"),
        "seconds": duration,
        "_timeline": {"arrival_s": (arrivals_a - t0), "finish_s": (finishes_a - t0), "frame": ids,
                      "runtime_s": runtimes},
    }


def run_scenario(name: str, infer, x: np.ndarray, budget: Budget, **kw) -> dict[str, Any]:
    if name == "single-stream":
        return single_stream(infer, x, budget, progress=kw.get("progress", False), on_call=kw.get("on_call"))
    if name == "multi-stream":
        return multi_stream(infer, x, budget, streams=kw.get("streams", 4), progress=kw.get("progress", False))
    if name == "offline":
        return offline(infer, x, budget, batch=kw.get("offline_batch", 32), progress=kw.get("progress", False))
    if name == "sensor":
        return sensor_paced(infer, x, budget, rate=kw["rate"], progress=kw.get("progress", False))
    from sdk.errors import InputError

    raise InputError(f"unknown scenario '{name}' (scenarios: {', '.join(SCENARIOS)})")
