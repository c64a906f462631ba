"""The runtime engine: a loaded bundle bound to a backend."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle, TensorSpec, read_bundle
from ..errors import InputError
from ..targets import get_target
from .backends import BackendUnavailable, available_backends, get_backend
from .embed import AsyncCalls, BackendPool, CallGate, EngineStats, async_workers


def _format_shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


class Engine:
    """Runs a bundle's entry graph. Create with :func:`sdk.load`.

    ``infer(x)`` takes the model input as NumPy (``input_spec``: e.g. ``(batch, 1, 28, 28)
    float32``, any batch size) and returns the first output; ``run(feeds)`` takes and returns
    dicts of named tensors. ``preprocess(frames)`` turns raw u8 camera frames into the input with
    the bundle's recorded recipe (C++ kernel).

    Safe to call from several threads at once and from asyncio (``await infer_async(x)``);
    ``replicas``: backend instances for backends that are not re-entrant (the native one), so that
    that many calls run in parallel; ``close()`` waits for calls in flight, then refuses new ones;
    ``call_stats()`` counts calls (see :mod:`sdk.runtime.embed`).
    """

    def __init__(self, bundle: Bundle, backend: str = "auto", *, replicas: int = 1,
                 **backend_options: Any):
        self.bundle = bundle
        self.graph = bundle.entry
        self.input_spec: TensorSpec = self.graph.inputs[0]
        self.output_spec: TensorSpec = self.graph.outputs[0]
        self._input_dtypes = {t.name: np.dtype(t.dtype) for t in self.graph.inputs}
        self._recipe = None
        self.backend_name, cls = self._choose_backend(backend)

        def make():
            instance = cls(bundle.file(self.graph.file), bundle=bundle, graph=self.graph,
                           **backend_options)
            instance.activate()
            return instance

        self._pool = BackendPool(make, reentrant=cls.reentrant, replicas=replicas)
        self._backend = self._pool.first
        self._gate = CallGate(f"engine {bundle.path.name!r}")
        self._async = AsyncCalls(f"prism-engine-{bundle.path.name}", async_workers(cls.reentrant, replicas),
                                 self._gate)
        self._close_lock = threading.Lock()

    def _choose_backend(self, requested: str):
        if requested != "auto":
            cls = get_backend(requested)
            ok, why = cls.available()
            if not ok:
                raise BackendUnavailable(f"backend '{requested}' cannot run here: {why}")
            return requested, cls
        target = get_target(self.bundle.target)
        reasons = available_backends()
        for name in target.backends:
            if reasons.get(name) == "":
                return name, get_backend(name)
        tried = "; ".join(f"{n}: {reasons.get(n, 'not registered')}" for n in target.backends)
        raise BackendUnavailable(f"no backend for target '{target.name}' can run here ({tried})")

    # -- inference --------------------------------------------------------------------------
    def _check(self, spec: TensorSpec, x: Any) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise InputError(f"input '{spec.name}': expected a NumPy array, got {type(x).__name__}")
        want = self._input_dtypes[spec.name]
        if x.dtype != want:
            raise InputError(f"input '{spec.name}': expected dtype {want}, got {x.dtype} "
                             f"(convert with x.astype(np.{want}))")
        if not spec.matches(x.shape):
            raise InputError(f"input '{spec.name}': expected shape {_format_shape(spec.shape)}, "
                             f"got {_format_shape(x.shape)}")
        return x

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run the model on one input array; returns the first output (e.g. logits).

        ``x`` is handed to the backend as is (no copy). Any thread may call; raises
        :class:`~sdk.runtime.embed.EngineClosed` after close()."""
        def call():
            feeds = {self.input_spec.name: self._check(self.input_spec, x)}
            return self._pool.infer(feeds)[self.output_spec.name]
        return self._gate.run(call)

    async def infer_async(self, x: np.ndarray) -> np.ndarray:
        """:meth:`infer` on the engine's thread pool, awaitable without blocking the event loop."""
        self._gate.check_open()
        return await self._async.call(self.infer, x)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run with named inputs; returns every output by name (thread-safe, like :meth:`infer`)."""
        def call():
            names = {t.name for t in self.graph.inputs}
            unknown = set(feeds) - names
            if unknown:
                raise InputError(f"unknown input(s) {sorted(unknown)} (inputs: {sorted(names)})")
            missing = names - set(feeds)
            if missing:
                raise InputError(f"missing input(s) {sorted(missing)}")
            return self._pool.infer({t.name: self._check(t, feeds[t.name]) for t in self.graph.inputs})
        return self._gate.run(call)

    async def run_async(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """:meth:`run` on the engine's thread pool, awaitable without blocking the event loop."""
        self._gate.check_open()
        return await self._async.call(self.run, feeds)

    def call_stats(self) -> EngineStats:
        """Calls, errors, refused calls, calls in flight (now, at most) and latency (ms)."""
        return self._gate.stats()

    def warmup(self, iterations: int = 3, batch: int = 1) -> None:
        """Run ``iterations`` inferences on zeros so first-call costs are paid up front."""
        x = np.zeros(self.example_shape(batch), dtype=self._input_dtypes[self.input_spec.name])
        for _ in range(iterations):
            self.infer(x)

    def example_shape(self, batch: int = 1) -> tuple[int, ...]:
        """The input shape with symbolic dimensions replaced by ``batch``."""
        return tuple(batch if isinstance(d, str) else d for d in self.input_spec.shape)

    # -- frames -----------------------------------------------------------------------------
    def preprocess(self, frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """u8 frames ``(H, W[, C])`` or ``(N, H, W[, C])`` → model input, by the bundle's recipe."""
        from ..preprocess import PreprocessRecipe, preprocess

        if self._recipe is None:
            if not self.bundle.preprocess:
                raise InputError(f"{self.bundle.path}: the bundle records no preprocessing recipe; "
                                 "pass model inputs to infer() directly")
            self._recipe = PreprocessRecipe.from_dict(self.bundle.preprocess)
        return preprocess(frames, self._recipe, out=out)

    # -- life cycle -------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle.path), "target": self.bundle.target,
                "precision": self.bundle.precision, **self._backend.describe(),
                "input": self.input_spec.to_dict(), "output": self.output_spec.to_dict()}

    @property
    def closed(self) -> bool:
        return self._gate.closed

    def close(self) -> None:
        """Refuse new calls, wait for those in flight, then release the backend(s). Idempotent;
        do not call it from inside one of this engine's own calls (it would wait for itself)."""
        with self._close_lock:
            if self._gate.close():
                self._async.shutdown()
                self._pool.deactivate()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Engine({self.bundle.path.name!r}, backend={self.backend_name!r}, "
                f"input={self.input_spec.name}{_format_shape(self.input_spec.shape)} "
                f"{self.input_spec.dtype})")


# manifest section -> engine class for bundles that need more than one graph run (e.g. the
# "dynamic" section of multi-stage S2DNAS bundles). Registered by the module that defines it.
_ENGINE_KINDS: dict[str, type[Engine]] = {}


def register_engine_kind(manifest_section: str, cls: type[Engine]) -> None:
    _ENGINE_KINDS[manifest_section] = cls


def load(path: str | os.PathLike, backend: str = "auto", *, verify: bool = True,
         **options: Any) -> Engine:
    """Open a bundle directory and bind it to a backend (``"auto"``: the target's best
    available one). Checksums are verified unless ``verify=False``. Bundles with a section
    registered by ``register_engine_kind`` get that engine class; ``options`` go to it (and
    from there to the backend)."""
    bundle = read_bundle(Path(path), verify=verify)
    for section, cls in _ENGINE_KINDS.items():
        if bundle.manifest.get(section):
            return cls(bundle, backend=backend, **options)
    return Engine(bundle, backend=backend, **options)
