"""Activation range calibrators: one interface, three methods (``CALIBRATORS``).

Like ONNX Runtime's calibrators, each one first collects per-batch statistics of one tensor
(``collect``) and then computes the range [rl, ru] (``compute_range``). None of them keeps all
activations: top-k median keeps the k smallest and k largest values seen so far, percentile one
pair of numbers per batch, min/max two numbers. All of them also keep the running moments and a
small random subsample, which the PWLQ activation scheme needs to place its breakpoint.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ...errors import InputError

_SAMPLE_PER_BATCH = 4096
_SAMPLE_MAX = 65536


class Calibrator(ABC):
    """Collects a tensor's statistics batch by batch, then computes its range [rl, ru]."""

    def __init__(self, seed: int = 0):
        self.batches = 0
        self._count = 0
        self._sum = 0.0
        self._sum_sq = 0.0
        self._samples: list[np.ndarray] = []
        self._rng = np.random.default_rng(seed)

    def collect(self, x) -> None:
        """Add one batch of activations (any shape, any float dtype)."""
        flat = np.asarray(x, dtype=np.float64).reshape(-1)
        if flat.size == 0:
            return
        self.batches += 1
        self._count += flat.size
        self._sum += float(flat.sum())
        self._sum_sq += float(np.dot(flat, flat))
        if sum(len(s) for s in self._samples) < _SAMPLE_MAX:
            take = min(flat.size, _SAMPLE_PER_BATCH)
            self._samples.append(self._rng.choice(flat, size=take, replace=False))
        self._collect(flat)

    def compute_range(self) -> tuple[float, float]:
        """The calibrated range (rl, ru), rl <= ru. Raises InputError if nothing was collected."""
        if not self.batches:
            raise InputError(f"{type(self).__name__}: no activations were collected; "
                             "run at least one calibration batch through the layer")
        rl, ru = self._compute()
        return float(min(rl, ru)), float(max(rl, ru))

    @property
    def std(self) -> float:
        """Standard deviation of all collected values."""
        mean = self._sum / self._count
        return float(np.sqrt(max(self._sum_sq / self._count - mean * mean, 0.0)))

    @property
    def samples(self) -> np.ndarray:
        """A random subsample (at most 65536 values) of the collected activations, float64."""
        return np.concatenate(self._samples) if self._samples else np.zeros(0)

    @abstractmethod
    def _collect(self, flat: np.ndarray) -> None:
        """Fold one non-empty flattened float64 batch into the method's statistics."""

    @abstractmethod
    def _compute(self) -> tuple[float, float]:
        """The range from the method's statistics."""


class TopKMedian(Calibrator):
    """rl = median of the k smallest, ru = median of the k largest values (paper Sect. 5.1, k=10).

    The k smallest of all batches are the k smallest of the per-batch k smallest, so this equals
    sorting every activation and taking median(X_sort[:k]) and median(X_sort[-k:]).
    """

    def __init__(self, k: int = 10, seed: int = 0):
        if k < 1:
            raise InputError(f"TopKMedian: k={k}; allowed: an integer >= 1")
        super().__init__(seed)
        self.k = k
        self._smallest = np.zeros(0)
        self._largest = np.zeros(0)

    def _collect(self, flat):
        k = self.k
        low = np.partition(flat, k - 1)[:k] if flat.size > k else flat
        high = np.partition(flat, flat.size - k)[-k:] if flat.size > k else flat
        self._smallest = np.sort(np.concatenate([self._smallest, low]))[:k]
        self._largest = np.sort(np.concatenate([self._largest, high]))[-k:]

    def _compute(self):
        return float(np.median(self._smallest)), float(np.median(self._largest))


class Percentile(Calibrator):
    """rl, ru = the (100 - q)th and q-th percentiles of each batch, averaged over the batches."""

    def __init__(self, percentile: float = 99.99, seed: int = 0):
        if not 50.0 < percentile <= 100.0:
            raise InputError(f"Percentile: percentile={percentile}; allowed: 50 < percentile <= 100")
        super().__init__(seed)
        self.percentile = percentile
        self._bounds: list[np.ndarray] = []

    def _collect(self, flat):
        self._bounds.append(np.percentile(flat, [100.0 - self.percentile, self.percentile]))

    def _compute(self):
        rl, ru = np.mean(self._bounds, axis=0)
        return float(rl), float(ru)


class MinMax(Calibrator):
    """rl, ru = the smallest and largest value seen."""

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self._min, self._max = np.inf, -np.inf

    def _collect(self, flat):
        self._min = min(self._min, float(flat.min()))
        self._max = max(self._max, float(flat.max()))

    def _compute(self):
        return self._min, self._max


CALIBRATORS: dict[str, type[Calibrator]] = {"topk_median": TopKMedian, "percentile": Percentile, "minmax": MinMax}


def create_calibrator(method: str) -> Calibrator:
    """A fresh calibrator of ``method`` with its default parameters."""
    try:
        return CALIBRATORS[method]()
    except KeyError:
        raise InputError(f"act_calibration={method!r} is not known; allowed: {', '.join(CALIBRATORS)}") from None
