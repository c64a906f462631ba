"""Dynamic inference with early exits: one graph per stage, features handed over, real exits.

A bundle with a ``dynamic`` manifest section (written for S2DNAS multi-stage models, see
``sdk.toolchain.s2dnas``) lists one ONNX graph per stage. Stage ``j``'s graph takes the network
input plus the cached features of earlier stages it reuses, and returns its logits plus the
features later stages reuse. :class:`DynamicEngine` runs stage 0 on the batch, lets every sample
whose top-1 softmax confidence reaches the stage's threshold exit, compacts the batch (input and
cached features) to the samples that remain and runs the next stage on those only. A sample that
exits never enters a later stage's graph.

Why separate graphs and not one graph with ONNX ``If``: ONNX Runtime cannot stop a graph part-way
for some rows of a batch, and TensorRT evaluates conditional branches eagerly, so an in-graph
exit saves nothing.

Each stage is an ordinary :class:`~sdk.runtime.engine.Engine` over a one-graph view of the
bundle, so backend selection, options and input checks are Engine's.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np

from ..bundle import Bundle, TensorSpec
from ..errors import BundleError, InputError
from .embed import AsyncCalls, CallGate, EngineStats, async_workers
from .engine import Engine, _format_shape, register_engine_kind

SECTION = "dynamic"


class DynamicResult(NamedTuple):
    """``logits`` ``(N, classes) float32`` from the stage each sample exited at, and
    ``exit_stage`` ``(N,) int8`` (0 = first stage)."""

    logits: np.ndarray
    exit_stage: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        """``(N,) int64`` top-1 class of each sample."""
        return self.logits.argmax(axis=1)


def check_thresholds(thresholds: Any, stages: int) -> list[float]:
    """``stages - 1`` exit thresholds in [0, 1] (the last stage always answers) → list of float."""
    try:
        values = [float(t) for t in thresholds]
    except (TypeError, ValueError):
        raise InputError(f"thresholds must be a list of {stages - 1} numbers, got {thresholds!r}") from None
    if len(values) != stages - 1:
        raise InputError(f"expected {stages - 1} thresholds (one per stage but the last, which "
                         f"always answers), got {len(values)}: {values}")
    bad = [v for v in values if not 0.0 <= v <= 1.0]  # NaN fails the comparison too
    if bad:
        raise InputError(f"thresholds are top-1 softmax confidences and must lie in [0, 1], got {bad}")
    return values


@dataclass(frozen=True)
class StageSpec:
    """One stage as the manifest describes it."""

    index: int
    graph: str
    input: str                      # the network input's tensor name
    logits: str
    reuses: tuple[str, ...]         # feature tensors read from earlier stages
    exports: tuple[str, ...]        # feature tensors later stages read
    macs: int                       # multiply-accumulates per sample of exiting here (cumulative)


@dataclass
class StageStats:
    """Samples that entered and exited a stage, its graph runs and their wall time (s)."""

    entered: int = 0
    exited: int = 0
    calls: int = 0
    seconds: float = 0.0


def read_stages(bundle: Bundle) -> tuple[list[StageSpec], list[float]]:
    """The stages and default thresholds of a dynamic bundle, checked against its graphs.

    Raises :class:`BundleError` naming the stage and tensor when a stage reads a feature that no
    earlier stage produces, or with another shape or dtype than its producer writes.
    """
    where = f"{bundle.path}: manifest section '{SECTION}'"
    section = bundle.manifest.get(SECTION)
    if not isinstance(section, dict) or not isinstance(section.get("stages"), list) or not section["stages"]:
        raise BundleError(f"{where} must hold a non-empty list 'stages'")
    stages: list[StageSpec] = []
    produced: dict[str, tuple[int, TensorSpec]] = {}
    for j, entry in enumerate(section["stages"]):
        for key in ("graph", "input", "logits", "reuses", "exports", "macs"):
            if key not in entry:
                raise BundleError(f"{where}: stage {j} is missing the field '{key}'")
        spec = StageSpec(j, entry["graph"], entry["input"], entry["logits"], tuple(entry["reuses"]),
                         tuple(entry["exports"]), int(entry["macs"]))
        graph = bundle.graph(spec.graph)
        inputs = {t.name: t for t in graph.inputs}
        outputs = {t.name: t for t in graph.outputs}
        expected = {spec.input, *spec.reuses}
        if set(inputs) != expected:
            raise BundleError(f"{where}: stage {j} (graph '{spec.graph}') has inputs {sorted(inputs)}, "
                              f"the manifest lists {sorted(expected)}")
        for name in (spec.logits, *spec.exports):
            if name not in outputs:
                raise BundleError(f"{where}: stage {j} (graph '{spec.graph}') has no output '{name}'")
        if stages and inputs[spec.input] != bundle.graph(stages[0].graph).inputs[0]:
            raise BundleError(f"{where}: stage {j} input '{spec.input}' "
                              f"{_format_shape(inputs[spec.input].shape)} differs from stage 0's")
        for name in spec.reuses:
            if name not in produced:
                raise BundleError(f"{where}: stage {j} (graph '{spec.graph}') reads the cached feature "
                                  f"'{name}', which no earlier stage produces")
            i, src = produced[name]
            got = inputs[name]
            if tuple(got.shape) != tuple(src.shape) or got.dtype != src.dtype:
                raise BundleError(
                    f"{where}: stage {j} (graph '{spec.graph}') expects the cached feature '{name}' as "
                    f"{_format_shape(got.shape)} {got.dtype}, but stage {i} (graph '{stages[i].graph}') "
                    f"produces {_format_shape(src.shape)} {src.dtype}")
        for name in spec.exports:
            produced[name] = (j, outputs[name])
        stages.append(spec)
    try:
        thresholds = check_thresholds(section.get("thresholds", []), len(stages))
    except InputError as e:
        raise BundleError(f"{where}: field 'thresholds': {e}") from None
    return stages, thresholds


def _stage_view(bundle: Bundle, graph: str) -> Bundle:
    """The bundle seen as if ``graph`` were its entry point (what an Engine runs)."""
    return Bundle(path=bundle.path, manifest=bundle.manifest, graphs=(bundle.graph(graph),))


def _confidence(logits: np.ndarray) -> np.ndarray:
    """Top-1 softmax probability of each row: ``1 / sum(exp(l - max l))``."""
    z = logits - logits.max(axis=1, keepdims=True)
    return 1.0 / np.exp(z).sum(axis=1)


class DynamicEngine:
    """Runs a dynamic (multi-stage) bundle with early exits. Created by :func:`sdk.load`.

    ``infer(x)`` takes the model input ``(N, C, H, W) float32`` (checked like
    :meth:`Engine.infer`) and returns a :class:`DynamicResult`. ``thresholds`` (one per stage but
    the last, top-1 softmax in [0, 1]) come from the bundle unless given here or with
    :meth:`set_thresholds`: higher thresholds send more samples on (more accurate, slower).
    ``stats()`` reports samples entering/exiting each stage and time per stage.

    Same embedding guarantees as :class:`Engine` (see :mod:`sdk.runtime.embed`): concurrent
    ``infer`` from several threads, ``await infer_async(x)``, ``close()`` that waits for calls in
    flight and then refuses new ones, ``call_stats()``; ``replicas`` goes to every stage's engine.
    """

    def __init__(self, bundle: Bundle, backend: str = "auto", *, thresholds: Sequence[float] | None = None,
                 **backend_options: Any):
        self.bundle = bundle
        self.specs, default = read_stages(bundle)
        self.thresholds = check_thresholds(default if thresholds is None else thresholds, len(self.specs))
        self.stages: list[Engine] = []
        try:
            for spec in self.specs:
                self.stages.append(Engine(_stage_view(bundle, spec.graph), backend, **backend_options))
        except BaseException:
            self.close()
            raise
        first = self.stages[0]
        self.backend_name = first.backend_name
        self.graph = first.graph
        self.input_spec: TensorSpec = first.input_spec
        self.output_spec: TensorSpec = next(t for t in first.graph.outputs if t.name == self.specs[0].logits)
        # features still needed after stage j (dropped from the cache once no later stage reads them)
        self._needed_after = [set().union(*(s.reuses for s in self.specs[j + 1:])) for j in range(len(self.specs))]
        self._stats = [StageStats() for _ in self.specs]
        self._stats_lock = threading.Lock()  # stage counters are updated by concurrent calls
        reentrant = all(e._pool.reentrant for e in self.stages)
        replicas = int(backend_options.get("replicas", 1))
        self._gate = CallGate(f"dynamic engine {bundle.path.name!r}")
        self._async = AsyncCalls(f"prism-dynamic-{bundle.path.name}", async_workers(reentrant, replicas),
                                 self._gate)
        self._close_lock = threading.Lock()

    @property
    def num_stages(self) -> int:
        return len(self.specs)

    @property
    def stage_macs(self) -> list[int]:
        """Multiply-accumulates per sample of exiting at each stage (cumulative)."""
        return [s.macs for s in self.specs]

    def set_thresholds(self, thresholds: Sequence[float]) -> None:
        self.thresholds = check_thresholds(thresholds, self.num_stages)

    # -- inference --------------------------------------------------------------------------
    def infer(self, x: np.ndarray) -> DynamicResult:
        """Dynamic inference on a batch; see the class docstring. Any thread may call; raises
        :class:`~sdk.runtime.embed.EngineClosed` after close()."""
        thresholds = self.thresholds
        return self._gate.run(lambda: self._forward(x, thresholds))

    async def infer_async(self, x: np.ndarray) -> DynamicResult:
        """:meth:`infer` on the engine's thread pool, awaitable without blocking the event loop."""
        self._gate.check_open()
        return await self._async.call(self.infer, x)

    def _forward(self, x: np.ndarray, thresholds: list[float] | None) -> DynamicResult:
        """``thresholds`` None: no sample exits before the last stage (warm-up, checks)."""
        n_total = x.shape[0] if isinstance(x, np.ndarray) and x.ndim else 0
        exit_stage = np.empty(n_total, np.int8)
        logits: np.ndarray | None = None
        active = np.arange(n_total)
        cache: dict[str, np.ndarray] = {}
        clock = time.perf_counter
        last = self.num_stages - 1
        for j, (spec, engine) in enumerate(zip(self.specs, self.stages)):
            feeds = {spec.input: x, **{name: cache[name] for name in spec.reuses}}
            t0 = clock()
            out = engine.run(feeds)  # Engine checks shapes and dtypes (stage 0: the user's input)
            seconds = clock() - t0
            z = out[spec.logits]
            if logits is None:
                logits = np.empty((n_total, z.shape[1]), np.float32)
            if j == last:
                done = np.ones(len(active), bool)
            elif thresholds is None:
                done = np.zeros(len(active), bool)
            else:
                done = _confidence(z) >= thresholds[j]
            finished = active[done]
            logits[finished] = z[done]
            exit_stage[finished] = j
            with self._stats_lock:
                st = self._stats[j]
                st.seconds += seconds
                st.calls += 1
                st.entered += len(active)
                st.exited += len(finished)
            if j == last or len(finished) == len(active):
                break
            needed = self._needed_after[j]
            cache.update({name: out[name] for name in spec.exports if name in needed})
            cache = {k: v for k, v in cache.items() if k in needed}
            if len(finished):  # compact: only unfinished samples go on
                keep = np.flatnonzero(~done)
                active, x = active[keep], x[keep]
                cache = {k: v[keep] for k, v in cache.items()}
        return DynamicResult(logits, exit_stage)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Named-tensor form of :meth:`infer`: ``{input: x}`` → ``{"logits", "exit_stage"}``."""
        names = {self.input_spec.name}
        if set(feeds) != names:
            raise InputError(f"expected exactly the input {sorted(names)}, got {sorted(feeds)}")
        result = self.infer(feeds[self.input_spec.name])
        return {self.output_spec.name: result.logits, "exit_stage": result.exit_stage}

    def warmup(self, iterations: int = 3, batch: int = 1) -> None:
        """Run every stage ``iterations`` times on zeros (no exits), then reset the statistics."""
        x = np.zeros(self.example_shape(batch), dtype=np.dtype(self.input_spec.dtype))
        for _ in range(iterations):
            self._gate.run(lambda: self._forward(x, None))
        self.reset_stats()

    def example_shape(self, batch: int = 1) -> tuple[int, ...]:
        return self.stages[0].example_shape(batch)

    def preprocess(self, frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """u8 frames → model input by the bundle's recipe (see :meth:`Engine.preprocess`)."""
        return self.stages[0].preprocess(frames, out=out)

    # -- statistics -------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Per stage: samples entering and exiting, graph runs, seconds; and the totals."""
        with self._stats_lock:
            per = [{"stage": j, "entered": s.entered, "exited": s.exited, "calls": s.calls,
                    "seconds": s.seconds, "macs": spec.macs}
                   for j, (s, spec) in enumerate(zip(self._stats, self.specs))]
        samples = per[0]["entered"]
        mean_macs = sum(p["exited"] * p["macs"] for p in per) / samples if samples else 0.0
        return {"stages": per, "samples": samples, "mean_macs": mean_macs,
                "seconds": sum(p["seconds"] for p in per)}

    def reset_stats(self) -> None:
        with self._stats_lock:
            self._stats = [StageStats() for _ in self.specs]

    def call_stats(self) -> EngineStats:
        """Calls, errors, refused calls, calls in flight (now, at most) and latency (ms)."""
        return self._gate.stats()

    # -- life cycle -------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        first = self.stages[0].describe()
        return {**first, "kind": SECTION, "stages": self.num_stages, "thresholds": list(self.thresholds),
                "stage_macs": self.stage_macs, "output": self.output_spec.to_dict()}

    @property
    def closed(self) -> bool:
        return self._gate.closed

    def close(self) -> None:
        """Refuse new calls, wait for those in flight, then release every stage. Idempotent."""
        gate = getattr(self, "_gate", None)  # None: __init__ failed part-way, no call ever ran
        if gate is not None:
            with self._close_lock:
                if not gate.close():
                    return
                self._async.shutdown()
        for engine in self.stages:
            engine.close()

    def __enter__(self) -> "DynamicEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"DynamicEngine({self.bundle.path.name!r}, stages={self.num_stages}, "
                f"thresholds={self.thresholds}, backend={self.backend_name!r})")


register_engine_kind(SECTION, DynamicEngine)
