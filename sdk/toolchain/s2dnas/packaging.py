"""The ``sdk.deploy`` registry entry for multi-stage models, importable without PyTorch (the
predicate looks at a model only once torch is loaded, so deploying other models stays cheap)."""
from __future__ import annotations

import sys


def is_dynamic(model) -> bool:
    """True for a :class:`~.transform.MultiStageNet` (an S2DNAS model)."""
    if "torch" not in sys.modules:  # without torch loaded, the model cannot be one
        return False
    from .stages import MultiStageNet

    return isinstance(model, MultiStageNet)


def package_dynamic(*args, **kwargs):
    """See :func:`.export.package_dynamic`."""
    from .export import package_dynamic as package

    return package(*args, **kwargs)


def is_quantized_dynamic(model) -> bool:
    """True for ``sdk.quantize(MultiStageNet)``: a QuantizedModel around a multi-stage network."""
    if "torch" not in sys.modules:
        return False
    from ..quant.model import QuantizedModel
    from .stages import MultiStageNet

    return isinstance(model, QuantizedModel) and isinstance(model.float_model, MultiStageNet)


def package_quantized_dynamic(*args, **kwargs):
    """See :func:`.quantized.package_quantized_dynamic`."""
    from .quantized import package_quantized_dynamic as package

    return package(*args, **kwargs)
