"""TensorRT backend: engine cache keys and rebuilds (fake builder), device checks, fallback order.

The engine build and run need the ``tensorrt`` package and an NVIDIA GPU; those two tests skip
with the reason when either is missing. Everything around them runs here.
"""
import hashlib
import json
import warnings

import numpy as np
import pytest

import sdk
from sdk.errors import InputError
from sdk.runtime.backends import available_backends, get_backend
from sdk.runtime.backends import tensorrt as trt_backend
from sdk.toolchain.trt.engine import (CacheKey, EngineCache, cache_dir_for, load_or_build,
                                      shape_profiles)


def key(**kw):
    base = dict(tensorrt="10.3.0", compute_capability=(8, 7), precision="fp16", onnx_sha256="ab" * 32,
                device="Orin")
    return CacheKey(**{**base, **kw})


class FakeBuilder:
    """Counts builds; engines are bytes, 'deserialization' checks a header like TensorRT would."""

    def __init__(self):
        self.builds = 0

    def build(self):
        self.builds += 1
        return b"ENGINE" + bytes([self.builds])

    @staticmethod
    def deserialize(data):
        if not data.startswith(b"ENGINE"):
            return None  # TensorRT's deserialize_cuda_engine returns None on a bad plan
        return {"engine": data}


def test_cache_key_changes_with_each_component():
    slugs = {key().slug, key(tensorrt="10.4.0").slug, key(compute_capability=(7, 2)).slug,
             key(precision="int8").slug, key(onnx_sha256="cd" * 32).slug}
    assert len(slugs) == 5
    assert key().slug == "trt10.3.0-sm87-fp16-abababababab"
    assert key(device="other GPU").slug == key().slug  # the SM decides compatibility, not the name


def test_cache_dir_is_beside_the_bundle(tmp_path):
    assert cache_dir_for(tmp_path / "m.jetson.prism") == tmp_path / "m.jetson.prism.engines"


def test_build_then_cache_then_rebuild_on_key_change(tmp_path):
    cache, fake = EngineCache(tmp_path / "c"), FakeBuilder()
    engine, info = load_or_build(cache, "main", key(), fake.build, fake.deserialize)
    assert info["source"] == "built" and fake.builds == 1 and engine["engine"] == b"ENGINE\x01"
    meta = json.loads(cache.path("main", key()).with_suffix(".json").read_text())
    assert meta["key"]["compute_capability"] == [8, 7] and meta["sha256"] == hashlib.sha256(b"ENGINE\x01").hexdigest()
    engine, info = load_or_build(cache, "main", key(), fake.build, fake.deserialize)
    assert info["source"] == "cache" and fake.builds == 1
    for changed in (key(tensorrt="10.4.0"), key(compute_capability=(7, 2)), key(precision="int8")):
        engine, info = load_or_build(cache, "main", changed, fake.build, fake.deserialize)
        assert info["source"] == "built"
    assert fake.builds == 4
    # stale engines of the same graph are dropped; one engine per graph remains
    assert len(list((tmp_path / "c").glob("main.*.engine"))) == 1


def test_corrupted_cache_is_rebuilt_not_crashed(tmp_path):
    cache, fake = EngineCache(tmp_path / "c"), FakeBuilder()
    load_or_build(cache, "main", key(), fake.build, fake.deserialize)
    path = cache.path("main", key())
    path.write_bytes(b"garbage")  # checksum no longer matches
    with pytest.warns(UserWarning, match="checksum mismatch"):
        engine, info = load_or_build(cache, "main", key(), fake.build, fake.deserialize)
    assert info["source"] == "built" and fake.builds == 2 and engine is not None
    # a plan with a valid checksum that TensorRT refuses (e.g. truncated by another TensorRT build)
    bad = b"NOTANENGINE"
    path.write_bytes(bad)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = hashlib.sha256(bad).hexdigest()
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="deserialize"):
        engine, info = load_or_build(cache, "main", key(), fake.build, fake.deserialize)
    assert info["source"] == "built" and fake.builds == 3
    meta_path.write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable"):
        load_or_build(cache, "main", key(), fake.build, fake.deserialize)
    assert fake.builds == 4


def test_shape_profiles_default_and_recorded(tiny_bundle):
    p = shape_profiles(tiny_bundle.entry.inputs, None, max_batch=16)
    assert p == [{"input": {"min": [1, 1, 28, 28], "opt": [1, 1, 28, 28], "max": [16, 1, 28, 28]}}]
    rec = [{"input": {"min": [1, 1, 28, 28], "opt": [4, 1, 28, 28], "max": [4, 1, 28, 28]}}]
    assert shape_profiles(tiny_bundle.entry.inputs, rec) == rec


def test_bundle_for_another_device_names_the_alternatives(tiny_model, tmp_path):
    torch = pytest.importorskip("torch")
    b = sdk.deploy(tiny_model, target="jetson-xavier-nx", example_input=torch.zeros(1, 1, 28, 28),
                   out=tmp_path / "x.prism")
    with pytest.raises(InputError) as e:
        trt_backend.check_bundle_device(b, (8, 7), "Orin (nvgpu)")
    msg = str(e.value)
    assert "jetson-xavier-nx" in msg and "SM 8.7" in msg and "jetson-agx-orin" in msg and "jetson-orin-nano" in msg
    trt_backend.check_bundle_device(b, (7, 2), "Xavier")  # the right device passes
    with pytest.raises(InputError, match="no Jetson profile matches"):
        trt_backend.check_bundle_device(b, (5, 0), "old GPU")
    from types import SimpleNamespace

    fp16_anywhere = SimpleNamespace(target="cpu", precision="fp16", manifest={}, path=tmp_path)
    with pytest.raises(InputError, match="precision='fp32'"):
        trt_backend.check_bundle_device(fp16_anywhere, (5, 0), "old GPU")
    int8 = SimpleNamespace(target="cpu", precision="pwlq4", manifest={}, path=tmp_path)
    with pytest.raises(InputError, match="no INT8"):
        trt_backend.check_bundle_device(int8, (5, 3), "Nano (Maxwell)")


# -- fallback order ---------------------------------------------------------------------------
@pytest.fixture
def jetson_bundle(tiny_model, tmp_path):
    torch = pytest.importorskip("torch")
    return sdk.deploy(tiny_model, target="jetson", example_input=torch.zeros(1, 1, 28, 28),
                      out=tmp_path / "j.prism")


def test_fallback_order_is_tensorrt_then_ort_gpu_then_cpu(monkeypatch, jetson_bundle):
    from sdk.targets import get_target

    assert get_target("jetson").backends == ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda",
                                             "onnxruntime-cpu")
    unavailable = classmethod(lambda cls: (False, f"{cls.name} missing (test)"))
    for name in ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda"):
        monkeypatch.setattr(get_backend(name), "available", unavailable)
    with pytest.warns(RuntimeWarning, match="tensorrt missing.*onnxruntime-tensorrt missing.*onnxruntime-cuda missing"):
        engine = sdk.load(jetson_bundle.path)
    assert engine.backend_name == "onnxruntime-cpu"
    assert engine.infer(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
    engine.close()

    # the ORT CUDA EP is chosen before the CPU when "available"; its provider chain is CUDA first
    monkeypatch.setattr(get_backend("onnxruntime-cuda"), "available", classmethod(lambda cls: (True, "")))
    monkeypatch.setattr(get_backend("onnxruntime-cuda"), "chain", ("CPUExecutionProvider",))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine = sdk.load(jetson_bundle.path)
    assert engine.backend_name == "onnxruntime-cuda"
    engine.close()
    monkeypatch.setattr(get_backend("onnxruntime-tensorrt"), "available", classmethod(lambda cls: (True, "")))
    monkeypatch.setattr(get_backend("onnxruntime-tensorrt"), "chain", ("CPUExecutionProvider",))
    engine = sdk.load(jetson_bundle.path)
    assert engine.backend_name == "onnxruntime-tensorrt"
    engine.close()


def test_availability_reasons_name_what_is_missing():
    reasons = available_backends()
    for name in ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "onnxruntime-cpu"):
        assert name in reasons
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert "TensorRT Python package is not installed" in reasons["tensorrt"]


def test_cpu_target_is_unchanged(tiny_bundle):
    with sdk.load(tiny_bundle.path) as engine:
        assert engine.backend_name == "onnxruntime"


# -- needs TensorRT and a GPU ------------------------------------------------------------------
def _need_tensorrt():
    ok, why = trt_backend.TensorRTBackend.available()
    if not ok:
        pytest.skip(f"engine build/run needs TensorRT and a CUDA GPU: {why}")


def test_engine_build_and_run_match_onnxruntime(jetson_bundle, tmp_path):
    _need_tensorrt()
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    with sdk.load(jetson_bundle.path, backend="onnxruntime-cpu") as ref_engine:
        ref = ref_engine.infer(x)
    with sdk.load(jetson_bundle.path, backend="tensorrt", cache_dir=tmp_path / "engines") as engine:
        assert engine.describe()["engine"]["source"] == "built"
        got = engine.infer(x)
    np.testing.assert_allclose(got, ref, atol=5e-2 * max(1, np.abs(ref).max()))
    with sdk.load(jetson_bundle.path, backend="tensorrt", cache_dir=tmp_path / "engines") as engine:
        assert engine.describe()["engine"]["source"] == "cache"


def test_engine_build_int8_qdq_pwlq(tiny_model, tmp_path):
    _need_tensorrt()
    torch = pytest.importorskip("torch")
    from sdk.data import load_dataset, normalize

    calib = torch.from_numpy(normalize(load_dataset("mnist5k", "train").images[:128], "mnist5k"))
    q = sdk.quantize(tiny_model, calib, scheme="pwlq", weight_bits=4, progress=False)
    b = sdk.deploy(q, target="jetson", example_input=calib[:2], out=tmp_path / "q.prism")
    x = calib[:8].numpy()
    with sdk.load(b.path, backend="onnxruntime-cpu") as ref_engine:
        ref = ref_engine.infer(x)
    with sdk.load(b.path, backend="tensorrt", cache_dir=tmp_path / "engines") as engine:
        got = engine.infer(x)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.875


# -- the TensorRT 10 call sequence, against a recording fake of the tensorrt module -------------
def _fake_trt(log, parse_ok=True, build_ok=True):
    import types

    trt = types.ModuleType("tensorrt")

    class Logger:
        WARNING = 2

        def __init__(self, level):
            log.append(("Logger", level))

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            log.append(("set_shape", name, lo, opt, hi))

    class Cache:
        def serialize(self):
            return b"TIMING"

    class Config:
        def set_memory_pool_limit(self, pool, size):
            log.append(("set_memory_pool_limit", pool, size))

        def add_optimization_profile(self, p):
            log.append(("add_optimization_profile",))

        def create_timing_cache(self, data):
            log.append(("create_timing_cache", bytes(data)))
            return Cache()

        def set_timing_cache(self, cache, ignore_mismatch):
            log.append(("set_timing_cache", ignore_mismatch))

        def get_timing_cache(self):
            return Cache()

    class Parser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger):
            log.append(("OnnxParser",))

        def parse_from_file(self, path):
            log.append(("parse_from_file", path))
            return parse_ok

        def get_error(self, i):
            return "node 3 (ConvInteger): no importer"

    class Builder:
        def __init__(self, logger):
            log.append(("Builder",))

        def create_network(self, flags):
            log.append(("create_network", flags))
            return object()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            log.append(("build_serialized_network",))
            return b"PLAN" if build_ok else None

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, Parser
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    return trt


def test_build_engine_follows_the_tensorrt10_api(monkeypatch, tmp_path):
    import sys

    from sdk.toolchain.trt.engine import EngineBuildError, build_engine

    log = []
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt(log))
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"onnx")
    profiles = [{"input": {"min": [1, 3], "opt": [4, 3], "max": [8, 3]}}]
    plan = build_engine(onnx_path, profiles=profiles, workspace_bytes=1 << 28, timing_cache=tmp_path / "t.cache")
    assert plan == b"PLAN" and (tmp_path / "t.cache").read_bytes() == b"TIMING"
    calls = [c[0] for c in log]
    assert calls.index("create_network") < calls.index("OnnxParser") < calls.index("parse_from_file") \
        < calls.index("set_memory_pool_limit") < calls.index("build_serialized_network")
    assert ("create_network", 1 << 1) in log  # STRONGLY_TYPED: precision from the ONNX types
    assert ("set_shape", "input", (1, 3), (4, 3), (8, 3)) in log
    assert ("set_memory_pool_limit", "WORKSPACE", 1 << 28) in log and ("set_timing_cache", False) in log
    # the timing cache of the first build seeds the second
    log.clear()
    build_engine(onnx_path, profiles=profiles, workspace_bytes=1, timing_cache=tmp_path / "t.cache")
    assert ("create_timing_cache", b"TIMING") in log

    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt([], parse_ok=False))
    with pytest.raises(EngineBuildError, match="ConvInteger"):
        build_engine(onnx_path, profiles=profiles, workspace_bytes=1)
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt([], build_ok=False))
    with pytest.raises(EngineBuildError, match="failed to build"):
        build_engine(onnx_path, profiles=profiles, workspace_bytes=1)
