"""sdk.data: packaged digit datasets, deterministic stratified splits, train-split normalisation."""
from __future__ import annotations

import numpy as np
import pytest

from sdk import data
from sdk.data import DATASETS, SPLITS, Dataset, dataset_info, load_dataset, normalize
from sdk.errors import InputError

# The sizes documented in sdk/data.py's docstring.
SIZES = {"mnist5k": {"train": 3500, "val": 500, "test": 1000},
         "digits": {"train": 1258, "val": 179, "test": 360}}


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("split", SPLITS)
def test_shapes_dtypes_and_documented_sizes(name, split):
    d = load_dataset(name, split)
    assert isinstance(d, Dataset) and (d.name, d.split) == (name, split)
    assert d.images.dtype == np.uint8 and d.images.shape == (SIZES[name][split], 28, 28)
    assert d.labels.dtype == np.int64 and d.labels.shape == (SIZES[name][split],)
    assert set(np.unique(d.labels)) == set(range(10))
    assert d.images.max() == 255 and d.images.min() == 0
    assert not d.images.flags.writeable and not d.labels.flags.writeable


@pytest.mark.parametrize("name", DATASETS)
def test_info_matches_splits(name):
    info = dataset_info(name)
    assert info["sizes"] == SIZES[name]
    assert info["num_classes"] == 10 and info["image_shape"] == [28, 28]
    assert info["seed"] == data.SPLIT_SEED and "stratified" in info["split_rule"]


@pytest.mark.parametrize("name", DATASETS)
def test_splits_partition_the_dataset(name):
    idx = data._split_indices(name)
    merged = np.concatenate([idx[s] for s in SPLITS])
    n = sum(SIZES[name].values())
    assert len(merged) == n and np.array_equal(np.sort(merged), np.arange(n))
    # No image content is shared either (guards against index bugs that keep sizes right).
    seen = [{d.tobytes() for d in load_dataset(name, s).images} for s in SPLITS]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])


@pytest.mark.parametrize("name", DATASETS)
def test_stratified_by_class(name):
    _, labels = data._full(name)
    for c in range(10):
        n_c = int((labels == c).sum())
        counts = {s: int((load_dataset(name, s).labels == c).sum()) for s in SPLITS}
        assert counts["train"] == round(0.7 * n_c)
        assert counts["val"] == round(0.1 * n_c)
        assert sum(counts.values()) == n_c
    if name == "mnist5k":
        assert np.array_equal(np.bincount(load_dataset(name, "test").labels), [100] * 10)


def test_splits_are_deterministic_across_reloads():
    before = {s: load_dataset("mnist5k", s) for s in SPLITS}
    for cached in (load_dataset, data._full, data._split_indices, data._train_stats):
        cached.cache_clear()
    for s in SPLITS:
        after = load_dataset("mnist5k", s)
        assert after is not before[s]
        assert np.array_equal(after.images, before[s].images)
        assert np.array_equal(after.labels, before[s].labels)


def test_loads_are_cached_in_process():
    assert load_dataset("mnist5k", "train") is load_dataset("mnist5k", "train")


@pytest.mark.parametrize("name", DATASETS)
def test_normalisation_uses_train_statistics(name):
    train = load_dataset(name, "train")
    info = dataset_info(name)
    pixels = train.images.astype(np.float64) / 255
    assert info["mean"] == pytest.approx(pixels.mean(), rel=1e-12)
    assert info["std"] == pytest.approx(pixels.std(), rel=1e-12)
    x = normalize(train.images, name)
    assert x.dtype == np.float32 and x.shape == (len(train), 1, 28, 28)
    assert abs(float(x.mean())) < 1e-4 and float(x.std()) == pytest.approx(1.0, abs=1e-4)
    # The formula a deployed bundle reproduces from the recorded numbers.
    expected = (train.images[:5, None] / 255 - info["mean"]) / info["std"]
    np.testing.assert_allclose(x[:5], expected, atol=1e-5)
    np.testing.assert_array_equal(normalize(train.images[:5, None], name), x[:5])


def test_normalize_rejects_wrong_input():
    with pytest.raises(InputError, match="uint8"):
        normalize(np.zeros((2, 28, 28), np.float32), "mnist5k")
    with pytest.raises(InputError, match=r"\(N, 28, 28\)"):
        normalize(np.zeros((2, 3, 28, 28), np.uint8), "mnist5k")


def test_unknown_names_list_the_known_ones():
    with pytest.raises(InputError, match="mnist5k, digits"):
        load_dataset("cifar10", "train")
    with pytest.raises(InputError, match="train, val, test"):
        load_dataset("mnist5k", "validation")
    with pytest.raises(InputError, match="mnist5k"):
        dataset_info("nope")


def test_digits_are_upscaled_from_8x8():
    d = load_dataset("digits", "train")
    # Bilinear upscaling of a 0-16 grid: smooth images, many distinct grey levels.
    assert len(np.unique(d.images)) > 200
    from sklearn.datasets import load_digits

    assert len(data._full("digits")[1]) == len(load_digits().target)
