"""The quiet gate of the kernel benchmarks (``bench_fold``, ``bench_kernels``): on a shared VM
other tenants slow this one for seconds to minutes at a time, so a timing round waits until a
short probe of the integer instruction runs at full speed, and a shape's figures use its quiet
rounds (``quiet_rounds``)."""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np


class QuietGate:
    """Holds each timing round until the host runs at full speed. On a shared VM other tenants
    slow this one for seconds to minutes at a time, and not every contender alike (the
    ``vpdpbusd``-bound integer kernels lose more than PyTorch's FP32 convolution). Before a
    round, a 3 ms ``vpdpbusd`` loop (``_kernels.vpdpbusd_per_second``; ``vpmaddubsw``, the AVX2
    integer instruction, where VNNI is missing or capped), run on as many threads at once as the
    round's contenders use, must reach ``threshold`` of the fastest probe seen in the run, in
    wall time, on every thread; otherwise the round waits 0.2 s and probes again, at most
    ``patience`` times, then runs anyway and is counted as ``unquiet``. Every contender of a
    round is measured under the same gate. Without either instruction (probe 0) nothing is
    gated."""

    def __init__(self, threshold: float = 0.9, patience: int = 25):
        from concurrent.futures import ThreadPoolExecutor

        from sdk import _kernels

        self.instruction, rate = "vpdpbusd", _kernels.vpdpbusd_per_second
        if rate(0.001) == 0:
            self.instruction, rate = "vpmaddubsw", _kernels.vpmaddubsw_per_second
            if rate(0.001) == 0:
                self.instruction = None

        def probe() -> float:  # per wall-second (a preempted vCPU counts as slow)
            t0 = time.perf_counter()
            per_cpu_second = rate(0.003)
            return per_cpu_second * 0.003 / max(time.perf_counter() - t0, 1e-9)

        self._probe = probe
        self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
        self.threshold, self.patience = threshold, patience
        self.best, self.waits, self.rounds, self.unquiet = 0.0, 0, 0, 0
        for _ in range(5):  # a first reference: the fastest of a few probes ~0.1 s apart
            self.best = max(self.best, probe())
            time.sleep(0.1)

    def wait(self, threads: int = 1) -> bool:
        """Probe on ``threads`` threads at once (the kernel pool's cores), all must be quiet.
        False when the host stayed unquiet for ``patience`` probes (the round runs anyway)."""
        self.rounds += 1
        for _ in range(self.patience + 1):
            rates = list(self._pool.map(lambda _: self._probe(), range(threads)))
            if min(rates) <= 0:
                return True
            self.best = max(self.best, *rates)
            if min(rates) >= self.threshold * self.best:
                return True
            self.waits += 1
            time.sleep(0.2)
        self.unquiet += 1
        return False

    def close(self) -> None:
        self._pool.shutdown()

    def summary(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "probe": self.instruction,
                "probe_best_per_s": self.best,
                "rounds": self.rounds, "waits": self.waits, "unquiet_rounds": self.unquiet}


def quiet_rounds(quiet: np.ndarray) -> np.ndarray:
    """The rounds a shape's figures use: the quiet ones when at least half of the rounds (and at
    least 2) were quiet, else all of them."""
    return quiet if quiet.sum() >= max(2, (len(quiet) + 1) // 2) else np.ones_like(quiet)
