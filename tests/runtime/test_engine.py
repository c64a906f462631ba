"""Engine: input validation, any batch, warmup, backends, preprocessing from frames."""
import numpy as np
import pytest

import sdk
from sdk.runtime.backends import BackendUnavailable, available_backends, get_backend


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    with sdk.load(tiny_bundle.path) as e:
        yield e


@pytest.mark.parametrize("batch", [1, 3, 64])
def test_any_batch(engine, batch, rng):
    out = engine.infer(rng.standard_normal((batch, 1, 28, 28)).astype(np.float32))
    assert out.shape == (batch, 10) and out.dtype == np.float32


def test_wrong_shape_names_expected_and_received(engine):
    with pytest.raises(ValueError, match=r"input 'input': expected shape \(batch, 1, 28, 28\), got \(1, 28, 28\)"):
        engine.infer(np.zeros((1, 28, 28), np.float32))


def test_wrong_dtype_names_expected_and_received(engine):
    with pytest.raises(ValueError, match="input 'input': expected dtype float32, got float64"):
        engine.infer(np.zeros((1, 1, 28, 28)))


def test_not_an_array(engine):
    with pytest.raises(sdk.InputError, match="expected a NumPy array, got list"):
        engine.infer([[0.0]])


def test_run_with_named_inputs(engine, rng):
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    out = engine.run({"input": x})
    np.testing.assert_array_equal(out["logits"], engine.infer(x))
    with pytest.raises(sdk.InputError, match="unknown input"):
        engine.run({"input": x, "extra": x})
    with pytest.raises(sdk.InputError, match="missing input"):
        engine.run({})


def test_warmup_and_describe(engine):
    engine.warmup(2, batch=4)
    d = engine.describe()
    assert d["backend"] == "onnxruntime" and d["target"] == "cpu"
    assert "CPUExecutionProvider" in d["providers"]
    assert engine.example_shape(7) == (7, 1, 28, 28)
    assert "onnxruntime" in repr(engine)


def test_preprocess_frames_with_bundle_recipe(engine, rng):
    frames = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    x = engine.preprocess(frames)
    np.testing.assert_allclose(x[:, 0], (frames / 255.0 - 0.13) / 0.31, atol=1e-5)
    assert engine.infer(x).shape == (3, 10)


def test_backend_registry():
    assert available_backends()["onnxruntime"] == ""
    with pytest.raises(sdk.InputError, match=r"unknown backend 'tpu' \(known: .*onnxruntime"):
        get_backend("tpu")


def test_unavailable_provider_is_a_clear_error(tiny_bundle):
    with pytest.raises(BackendUnavailable, match="TensorrtExecutionProvider"):
        sdk.load(tiny_bundle.path, backend="onnxruntime", providers=["TensorrtExecutionProvider"])
