"""Registry of the model zoo: ``build_model("resnet20")``."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from sdk.errors import InputError

from .lenet import LeNet5
from .mobilenetv2 import mobilenetv2
from .resnet import resnet20, resnet56
from .vgg import vgg_bn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": LeNet5,
    "resnet20": resnet20,
    "resnet56": resnet56,
    "vgg_bn": vgg_bn,
    "mobilenetv2": mobilenetv2,
}
MODEL_NAMES = tuple(_BUILDERS)


def build_model(name: str, **kwargs) -> nn.Module:
    """A freshly initialised zoo model. Every model takes ``in_channels=1`` and
    ``num_classes=10``; ``mobilenetv2`` also takes ``width`` (multiplier). Input
    ``(N, in_channels, 28, 28) float32``, output ``(N, num_classes)`` logits."""
    if name not in _BUILDERS:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    return _BUILDERS[name](**kwargs)
