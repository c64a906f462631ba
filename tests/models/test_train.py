"""Training recipe: a tiny LeNet-5 run, checkpoint round trip, the checkpoint cache."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sdk.data import load_dataset, normalize  # noqa: E402
from sdk.errors import InputError  # noqa: E402
import sdk.models.train as train_module  # noqa: E402
from sdk.models import MODEL_NAMES  # noqa: E402
from sdk.models.train import (TrainConfig, cache_dir, checkpoint_meta, checkpoint_path,  # noqa: E402
                              default_config, evaluate, get_or_train, load_checkpoint,
                              save_checkpoint, train)

# ~1 s: 63 SGD steps of LeNet-5 reach ~65% test accuracy (chance: 10%).
TINY = dict(epochs=1, batch_size=32, lr=0.05, max_train_samples=2000, threads=1)


@pytest.fixture(scope="module")
def tiny_run():
    config = default_config("lenet5", **TINY)
    return config, train(config, progress=False)


def _logits(model, n=16):
    x = torch.from_numpy(normalize(load_dataset("mnist5k", "test").images[:n], "mnist5k"))
    with torch.no_grad():
        return model.eval()(x).numpy()


def test_tiny_training_beats_chance(tiny_run):
    config, result = tiny_run
    m = result.metrics
    assert m["test_accuracy"] > 0.3 and m["val_accuracy"] > 0.3
    assert len(m["history"]) == config.epochs and m["history"][0]["train_loss"] < 2.3
    assert result.seconds > 0 and not result.model.training
    assert evaluate(result.model, "mnist5k", "test") == m["test_accuracy"]
    assert torch.get_num_threads() >= 1  # restored after threads=1


def test_training_is_deterministic(tiny_run):
    config, result = tiny_run
    again = train(config, progress=False)
    np.testing.assert_array_equal(_logits(again.model), _logits(result.model))


def test_checkpoint_round_trip(tiny_run, tmp_path):
    config, result = tiny_run
    meta = checkpoint_meta(config, result)
    stem = save_checkpoint(result.model, meta, tmp_path / "lenet.pt")
    assert stem == tmp_path / "lenet"
    assert (tmp_path / "lenet.pt").is_file() and (tmp_path / "lenet.json").is_file()
    model, loaded = load_checkpoint(tmp_path / "lenet")
    np.testing.assert_array_equal(_logits(model), _logits(result.model))
    assert loaded == json.loads(json.dumps(meta))
    assert loaded["architecture"] == {"name": "lenet5", "kwargs": {"in_channels": 1, "num_classes": 10}}
    assert loaded["dataset"]["sizes"]["train"] == 3500 and 0 < loaded["dataset"]["std"] < 1
    assert loaded["accuracy"]["test"] == result.metrics["test_accuracy"]
    assert loaded["config"]["lr"] == 0.05 and loaded["torch_version"] == torch.__version__


def test_checkpoint_errors(tiny_run, tmp_path):
    _, result = tiny_run
    with pytest.raises(InputError, match="architecture"):
        save_checkpoint(result.model, {}, tmp_path / "x")
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")


def test_get_or_train_hits_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRISM_CACHE_DIR", str(tmp_path))
    config = default_config("lenet5", **{**TINY, "max_train_samples": 500})
    model, meta = get_or_train(config, progress=False)
    assert meta["cached"] is False
    stem = checkpoint_path(config)
    assert stem.parent.parent == tmp_path and stem.with_suffix(".json").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("trained although a checkpoint was cached")

    monkeypatch.setattr(train_module, "train", no_training)
    again, meta2 = get_or_train(config, progress=False)
    assert meta2["cached"] is True and meta2["accuracy"] == meta["accuracy"]
    np.testing.assert_array_equal(_logits(again), _logits(model))


def test_cache_key_ignores_threads_only():
    base = default_config("lenet5")
    assert base.key() == default_config("lenet5", threads=1).key()
    assert base.key() != default_config("lenet5", lr=0.01).key()
    assert base.key() != default_config("lenet5", dataset="digits").key()


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("PRISM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "prism"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "prism"
    monkeypatch.setenv("PRISM_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"


def test_default_configs_and_validation():
    for name in MODEL_NAMES:
        config = default_config(name)
        assert config.model == name and config.schedule == "onecycle" and config.augment
    assert default_config("resnet20", epochs=2).epochs == 2
    with pytest.raises(InputError, match="lenet5"):
        default_config("alexnet")
    with pytest.raises(InputError, match="onecycle, cosine"):
        TrainConfig(model="lenet5", schedule="step")
    with pytest.raises(InputError, match="mnist5k, digits"):
        TrainConfig(model="lenet5", dataset="svhn")


def test_cosine_schedule_on_digits():
    config = TrainConfig(model="lenet5", dataset="digits", schedule="cosine", augment=False,
                         **{**TINY, "max_train_samples": 300})
    result = train(config, progress=False)
    assert result.metrics["history"][-1]["lr"] == pytest.approx(0.0, abs=1e-9)
    assert 0.0 <= result.metrics["test_accuracy"] <= 1.0


def test_shift_augmentation_moves_by_at_most_two_pixels():
    images = np.zeros((200, 28, 28), np.uint8)
    images[:, 14, 14] = 255
    shifted = train_module._shift(images, np.random.default_rng(0))
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    n, ys, xs = np.nonzero(shifted)
    assert np.array_equal(n, np.arange(200))  # one pixel per image: nothing lost or duplicated
    assert set(ys - 14) == set(xs - 14) == {-2, -1, 0, 1, 2}
