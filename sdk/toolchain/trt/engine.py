"""TensorRT engines: built on the device at first load, cached beside the bundle.

Build steps are small composable callables, as Polygraphy's loaders are: :func:`build_engine`
runs ``Builder → create_network(STRONGLY_TYPED) → OnnxParser → BuilderConfig (workspace limit,
optimization profiles, timing cache) → build_serialized_network`` (TensorRT 10 Python API).
Precision is the ONNX's own (FP16 ONNX, INT8 Q/DQ): no FP16/INT8 builder flags, no calibrator.

:class:`EngineCache` keeps ``<bundle>.engines/<graph>.<key>.engine`` next to the bundle with a
JSON sidecar (key fields, SHA-256 of the engine). The key is TensorRT version × GPU compute
capability × precision × ONNX SHA-256, so a new TensorRT, another GPU, another precision or a
redeployed bundle each build a new engine; a cached engine whose checksum fails or that TensorRT
refuses to deserialize is rebuilt (with a warning), never a crash.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from ...errors import PrismError


class EngineBuildError(PrismError):
    """TensorRT could not parse or build the network."""


@dataclass(frozen=True)
class CacheKey:
    tensorrt: str                   # e.g. "10.3.0"
    compute_capability: tuple[int, int]
    precision: str                  # the bundle's: "fp16", "int8", "pwlq4", ...
    onnx_sha256: str
    device: str = ""                # GPU name, recorded (not keyed: the SM decides compatibility)

    @property
    def slug(self) -> str:
        sm = f"sm{self.compute_capability[0]}{self.compute_capability[1]}"
        return f"trt{self.tensorrt}-{sm}-{self.precision}-{self.onnx_sha256[:12]}"


def cache_dir_for(bundle_path: Path) -> Path:
    """``resnet20.jetson.prism`` → ``resnet20.jetson.prism.engines`` (beside, not inside: the
    bundle stays read-only and checksummed)."""
    bundle_path = Path(bundle_path)
    return bundle_path.parent / f"{bundle_path.name}.engines"


class EngineCache:
    """Serialized engines of one bundle's graphs, keyed by :class:`CacheKey`."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def path(self, graph: str, key: CacheKey) -> Path:
        return self.directory / f"{graph}.{key.slug}.engine"

    def load(self, graph: str, key: CacheKey) -> bytes | None:
        """The cached engine, or None when absent, stale or corrupted (the reason is warned)."""
        path = self.path(graph, key)
        meta_path = path.with_suffix(".json")
        if not path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            data = path.read_bytes()
        except (OSError, json.JSONDecodeError) as e:
            warnings.warn(f"TensorRT engine cache {path.name}: unreadable ({e}); rebuilding", stacklevel=3)
            return None
        if meta.get("sha256") != hashlib.sha256(data).hexdigest() or meta.get("key", {}).get("onnx_sha256") != key.onnx_sha256:
            warnings.warn(f"TensorRT engine cache {path.name}: checksum mismatch (corrupted or "
                          f"partially written); rebuilding", stacklevel=3)
            return None
        return data

    def store(self, graph: str, key: CacheKey, data: bytes, build_seconds: float) -> Path:
        """Write atomically, then drop this graph's engines for other keys (stale)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(graph, key)
        for stale in self.directory.glob(f"{graph}.*.engine"):
            if stale != path:
                stale.unlink(missing_ok=True)
                stale.with_suffix(".json").unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        meta = {"key": {**asdict(key), "compute_capability": list(key.compute_capability)},
                "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                "build_seconds": build_seconds}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
        return path

    def timing_cache_path(self) -> Path:
        return self.directory / "timing.cache"


def load_or_build(cache: EngineCache, graph: str, key: CacheKey, build: Callable[[], bytes],
                  deserialize: Callable[[bytes], Any]) -> tuple[Any, dict]:
    """Deserialize the cached engine for ``key`` or ``build()`` one and cache it.
    Returns ``(engine, info)``; ``info["source"]`` is "cache" or "built" (and why)."""
    import time

    data = cache.load(graph, key)
    why = "no cached engine"
    if data is not None:
        try:
            engine = deserialize(data)
        except Exception as e:  # noqa: BLE001  TensorRT raises its own types or returns None
            engine, why = None, f"cached engine failed to deserialize ({e})"
        if engine is not None:
            return engine, {"source": "cache", "path": str(cache.path(graph, key))}
        if why == "no cached engine":
            why = "cached engine failed to deserialize"
        warnings.warn(f"TensorRT engine cache {cache.path(graph, key).name}: {why}; rebuilding", stacklevel=2)
    elif cache.path(graph, key).is_file():
        why = "cached engine corrupted"
    t0 = time.perf_counter()
    data = build()
    seconds = time.perf_counter() - t0
    path = cache.store(graph, key, data, seconds)
    engine = deserialize(data)
    if engine is None:
        raise EngineBuildError(f"TensorRT built an engine for {graph} that it cannot deserialize")
    return engine, {"source": "built", "reason": why, "build_seconds": seconds, "path": str(path)}


# -- the TensorRT 10 build --------------------------------------------------------------------
def shape_profiles(graph_inputs, profiles: list[dict] | None, max_batch: int = 8) -> list[dict]:
    """Optimization profiles ``[{input: {"min", "opt", "max"}}]``: the bundle's when recorded,
    else batch 1 / 1 / ``max_batch`` on symbolic dimensions (static inputs: one shape)."""
    if profiles:
        return profiles
    out = {}
    for spec in graph_inputs:
        def fill(n):
            return [n if isinstance(d, str) else int(d) for d in spec.shape]
        out[spec.name] = {"min": fill(1), "opt": fill(1), "max": fill(max_batch)}
    return [out]


def build_engine(onnx_path: Path, *, profiles: list[dict], workspace_bytes: int,
                 timing_cache: Path | None = None, dla_core: int | None = None,
                 logger=None) -> bytes:
    """Build a serialized engine from an ONNX file with the TensorRT 10 Python API."""
    import tensorrt as trt

    logger = logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    for spec in profiles:
        profile = builder.create_optimization_profile()
        for name, shapes in spec.items():
            profile.set_shape(name, tuple(shapes["min"]), tuple(shapes["opt"]), tuple(shapes["max"]))
        config.add_optimization_profile(profile)
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build {onnx_path.name} (see the log above)")
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)
