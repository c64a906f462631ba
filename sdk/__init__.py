"""Prism: train in PyTorch, deploy to the edge.

Public API (the runtime part imports without PyTorch)::

    import sdk
    bundle = sdk.deploy(model, target="cpu", example_input=x, out="resnet20.prism")  # toolchain
    engine = sdk.load("resnet20.prism")                                              # runtime
    logits = engine.infer(batch)
"""
from ._version import __version__
from .errors import BundleError, InputError, PrismError

__all__ = ["__version__", "PrismError", "BundleError", "InputError"]
