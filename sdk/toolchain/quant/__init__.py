"""Post-training quantization: uniform and piecewise linear (PWLQ, Fang et al., ECCV 2020).

    from sdk.toolchain.quant import quantize, export_onnx, pack_tables
    qmodel = quantize(model, calibration_batches, scheme="pwlq", weight_bits=4)
    onnx_model = export_onnx(qmodel, example_input, form="integer")

Rooms: ``core`` (region codes shared by both weight schemes), ``uniform``/``pwlq`` (the schemes),
``breakpoints``/``error_model`` (breakpoint selection, Eqs. 4-9), ``bias_correction``,
``calibration``/``activation`` (activation ranges and quantizers), ``folding`` (batch norms),
``layers`` (per-layer handlers), ``api``/``model``/``tables`` (model level), ``export``/``qdq``/
``integer``/``onnx_graph`` (ONNX), ``integer_reference`` (NumPy twin of the integer kernels),
the ``tables.npz`` format lives in ``sdk.formats`` (shared with the runtime).
"""
from .api import quantize
from .calibration import CALIBRATORS, Calibrator, MinMax, Percentile, TopKMedian
from .config import QuantConfig
from .core import QuantizedWeight
from .export import export_onnx, manifest_section
from .layers import HANDLERS, LayerHandler
from .model import QuantizedLayer, QuantizedModel
from .onnx_input import QuantizedOnnx, quantize_onnx
from ...formats.packed_tables import pack_tables, unpack_tables
from .pwlq import quantize_pwlq
from ...formats.layer_table import LayerQuantTable
from .uniform import quantize_uniform

__all__ = [
    "quantize", "quantize_onnx", "QuantizedOnnx", "QuantizedModel", "QuantizedLayer", "LayerQuantTable", "QuantConfig",
    "export_onnx", "manifest_section", "pack_tables", "unpack_tables",
    "quantize_pwlq", "quantize_uniform", "QuantizedWeight",
    "Calibrator", "TopKMedian", "Percentile", "MinMax", "CALIBRATORS", "HANDLERS", "LayerHandler",
]
