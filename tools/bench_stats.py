"""Latency statistics for ``prism bench``: percentiles with distribution-free confidence intervals.

A percentile from one run is an estimate; two runs can only be compared honestly with its
uncertainty. The interval here is the order-statistic (binomial) one: for the q-quantile of n
i.i.d. samples, the ranks ``l < u`` with ``P(l ≤ B < u) ≥ 0.95``, ``B ~ Binomial(n, q)``, bound
the true quantile — no distribution assumed (Hahn & Meeker, *Statistical Intervals*, §5.2).
With too few samples for the tail (e.g. p99 from 50 calls) the upper bound is open (``None``).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def _binom_cdf(k: int, n: int, q: float) -> float:
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if n > 2000:  # normal approximation with continuity correction
        mu, sd = n * q, math.sqrt(n * q * (1 - q)) or 1e-12
        return 0.5 * (1 + math.erf((k + 0.5 - mu) / (sd * math.sqrt(2))))
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
            + (i * math.log(q) if i else 0.0) + ((n - i) * math.log1p(-q) if n - i else 0.0)
            for i in range(k + 1)]
    m = max(logs)
    return min(1.0, math.exp(m) * sum(math.exp(v - m) for v in logs))


def quantile_ci(sorted_ms: np.ndarray, q: float, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Distribution-free ``confidence`` interval of the ``q`` quantile from sorted samples."""
    n = len(sorted_ms)
    if n == 0:
        return None, None
    alpha = (1 - confidence) / 2
    # lower rank: largest l with P(B < l) <= alpha; upper: smallest u with P(B <= u - 1) >= 1 - alpha
    mu = n * q
    sd = math.sqrt(n * q * (1 - q))
    lo = max(0, int(mu - 4 * sd) - 2)
    l = None
    for r in range(lo, n + 1):
        if _binom_cdf(r - 1, n, q) <= alpha:
            l = r
        else:
            break
    u = None
    for r in range(max(1, int(mu)), n + 1):
        if _binom_cdf(r - 1, n, q) >= 1 - alpha:
            u = r
            break
    low = float(sorted_ms[l - 1]) if l and l >= 1 else None
    high = float(sorted_ms[u - 1]) if u is not None and u <= n else None
    return low, high


def latency_summary(seconds: Any, confidence: float = 0.95) -> dict[str, Any]:
    """min/mean/p50/p90/p95/p99/max (ms) and each percentile's confidence interval."""
    ms = np.sort(np.asarray(seconds, dtype=np.float64) * 1e3)
    if ms.size == 0:
        return {"n": 0}
    out: dict[str, Any] = {"n": int(ms.size), "min": float(ms[0]), "mean": float(ms.mean()),
                           "std": float(ms.std())}
    for p in PERCENTILES:
        out[f"p{p}"] = float(np.percentile(ms, p))
    out["max"] = float(ms[-1])
    out["ci"] = {f"p{p}": list(quantile_ci(ms, p / 100, confidence)) for p in PERCENTILES}
    out["ci_confidence"] = confidence
    return out


def differ(a: dict, b: dict, percentile: str = "p50") -> bool | None:
    """True when two runs' ``percentile`` intervals do not overlap (a real difference), False when
    they overlap, None when an interval is open."""
    (al, ah), (bl, bh) = a["ci"][percentile], b["ci"][percentile]
    if None in (al, ah, bl, bh):
        return None
    return ah < bl or bh < al
