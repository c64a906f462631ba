"""Shared fixtures: a small trained-enough model deployed once per session."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_model():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * 14 * 14, 10))
    with torch.no_grad():  # non-trivial BN statistics so folding is exercised
        bn = model[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_bundle(tiny_model, tmp_path_factory):
    """A `cpu` bundle of the tiny model with a Mono8 28×28 preprocessing recipe."""
    import sdk
    from sdk.preprocess import PreprocessRecipe

    recipe = PreprocessRecipe(pixel_format="Mono8", channels="gray", size=(28, 28),
                              mean=(0.13,), std=(0.31,))
    out = tmp_path_factory.mktemp("bundles") / "tiny.prism"
    return sdk.deploy(tiny_model, target="cpu", out=out, preprocess=recipe, name="tiny",
                      metadata={"purpose": "tests"})


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
