"""Prism: train in PyTorch, deploy to the edge.

Public API::

    import sdk
    bundle = sdk.deploy(model, target="cpu", example_input=x, out="resnet20.prism")  # toolchain
    engine = sdk.load("resnet20.prism")                                              # runtime
    logits = engine.infer(batch)                                                     # NumPy in/out

The runtime part (``load``, ``Engine``, ``preprocess``) imports without PyTorch; toolchain
functions (``deploy``, ...) import it on first use.
"""
from ._version import __version__
from .bundle import Bundle, TensorSpec, read_bundle
from .errors import BundleError, InputError, PrismError
from .runtime import Engine, load
from .targets import get_target, target_names

# name -> module that defines it; imported on first access so that `import sdk` stays torch-free
_TOOLCHAIN = {"deploy": "sdk.toolchain.deploy", "export_onnx": "sdk.toolchain.export",
              "quantize": "sdk.toolchain.quantize", "make_dynamic": "sdk.toolchain.s2dnas"}


def __getattr__(name):
    if name in _TOOLCHAIN:
        import importlib

        return getattr(importlib.import_module(_TOOLCHAIN[name]), name)
    raise AttributeError(f"module 'sdk' has no attribute '{name}'")


__all__ = ["__version__", "Bundle", "TensorSpec", "read_bundle", "Engine", "load", "deploy",
           "quantize", "export_onnx", "get_target", "target_names", "PrismError", "BundleError", "InputError"]
