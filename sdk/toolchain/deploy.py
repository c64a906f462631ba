"""``sdk.deploy``: a trained (optionally quantized) model → a verified bundle for a target.

What goes into a bundle depends on the kind of model; each kind is one *packager* in a registry
(FP32 ``nn.Module``, ``QuantizedModel``; dynamic multi-stage models add their own), so a new kind
is a new entry, not another branch here.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..bundle import Bundle, GraphSpec, write_bundle
from ..errors import InputError
from ..preprocess import PreprocessRecipe
from ..targets import Target, get_target
from .export import export_onnx, to_torch_input, verify_onnx


@dataclass
class Packaged:
    """What a packager produces: bundle files, graphs and manifest sections."""

    files: dict[str, bytes]
    graphs: list[GraphSpec]
    precision: str
    export: dict[str, Any]
    sections: dict[str, Any] = field(default_factory=dict)


Packager = Callable[..., Packaged]
_PACKAGERS: list[tuple[Callable[[Any], bool], Packager]] = []


def register_packager(matches: Callable[[Any], bool], package: Packager, *, first: bool = True) -> None:
    """Register ``package(model, x, target, precision=, form=, atol=)`` for models where
    ``matches(model)`` is true. Later registrations are tried first unless ``first=False``."""
    entry = (matches, package)
    _PACKAGERS.insert(0, entry) if first else _PACKAGERS.append(entry)


def _package_float(model, x, target: Target, *, precision: str | None, form: str | None,
                   atol: float) -> Packaged:
    x = to_torch_input(x)
    if precision not in (None, *target.precisions):
        raise InputError(f"precision '{precision}' needs a quantized model: quantize first with "
                         f"sdk.quantize(model, calibration_data, ...) and deploy the result "
                         f"(float precisions of target '{target.name}': {', '.join(target.precisions)})")
    if form is not None:
        raise InputError(f"form='{form}' applies to quantized models only")
    result = export_onnx(model, x, opset=target.opset, atol=atol)
    graph = GraphSpec("main", "model.onnx", result.inputs, result.outputs)
    return Packaged({"model.onnx": result.onnx_bytes}, [graph], precision or target.default_precision,
                    result.report())


def _is_quantized(model) -> bool:
    from .quant.model import QuantizedModel

    return isinstance(model, QuantizedModel)


def _package_quantized(qmodel, x, target: Target, *, precision: str | None, form: str | None,
                       atol: float) -> Packaged:
    from .quant import export_onnx as export_quantized
    from .quant import manifest_section, pack_tables

    from .quant.plan import build_plan

    x = to_torch_input(x)
    own, form = _quant_precision_form(qmodel.config, target, precision, form)
    data = export_quantized(qmodel, x, form=form).SerializeToString()
    # The ONNX form must reproduce the PyTorch simulation of the quantized arithmetic.
    result = verify_onnx(data, qmodel, x, atol=1e-2, relative=True, what=f"{own} ({form} form)",
                         opset=target.opset)
    return _quantized_package(qmodel, data, result, form, own, pack_tables(qmodel),
                              manifest_section(qmodel), lambda: build_plan(qmodel, x),
                              "PyTorch simulation of the quantized arithmetic")


def _quant_precision_form(cfg, target: Target, precision, form) -> tuple[str, str]:
    own = f"{cfg.scheme}{cfg.weight_bits}"
    if precision is not None and precision != own:
        raise InputError(f"precision '{precision}' does not match the quantized model ({own}); "
                         f"quantize again with the scheme/bits you want")
    if not target.quant_forms:
        raise InputError(f"target '{target.name}' takes no quantized models")
    form = form or target.quant_forms[0]
    if form not in target.quant_forms:
        raise InputError(f"form '{form}' is not supported by target '{target.name}' "
                         f"(forms: {', '.join(target.quant_forms)})")
    return own, form


def _quantized_package(qmodel, data: bytes, result, form: str, own: str, arrays: dict,
                       section: dict, make_plan, reference: str) -> Packaged:
    """Bundle files of a quantized model: its ONNX form, packed tables, native plan."""
    from ..errors import PrismError

    files = {"model.onnx": data}
    sections: dict[str, Any] = {}
    fp32_weight_bytes = sum(4 * t.codes.size for t in qmodel.tables.values())
    packed_weight_bytes = sum(arrays[f"{name}/{k}"].nbytes for name in qmodel.tables
                              for k in ("codes", "regions"))
    try:  # the native backend's execution plan; a model it cannot run still deploys (ORT runs it)
        plan, consts = make_plan()
        arrays = {**arrays, **consts}
        files["plan.json"] = json.dumps(plan, indent=1).encode()
        sections["native"] = {"plan": "plan.json", "tables": "tables.npz"}
    except PrismError as e:
        sections["native"] = {"unsupported": str(e)}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    tables = buf.getvalue()
    files["tables.npz"] = tables
    section = {**section, "form": form, "tables": "tables.npz",
               "tables_format": int(arrays["__format__"]),
               "sizes": {"onnx_bytes": len(data), "tables_bytes": len(tables),
                         "fp32_weight_bytes": fp32_weight_bytes,
                         "packed_weight_bytes": packed_weight_bytes,
                         "packed_weight_ratio": packed_weight_bytes / max(fp32_weight_bytes, 1)}}
    graph = GraphSpec("main", "model.onnx", result.inputs, result.outputs, {"form": form})
    report = {**result.report(), "reference": reference}
    return Packaged(files, [graph], own, report, {"quantization": section, **sections})


def _is_quantized_onnx(model) -> bool:
    return type(model).__name__ == "QuantizedOnnx"


def _package_quantized_onnx(qonnx, x, target: Target, *, precision: str | None, form: str | None,
                            atol: float) -> Packaged:
    """A quantized existing ONNX model: no PyTorch involved; the chosen form is checked against
    the QDQ simulation on ONNX Runtime."""
    from .export import ExportResult, _specs
    from .quant.plan import build_plan_onnx

    own, form = _quant_precision_form(qonnx.config, target, precision, form)
    proto = qonnx.export(form)
    data = proto.SerializeToString()
    import onnxruntime as ort

    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    diffs = []
    for xb in (x, np.concatenate([x, x[:1]])):
        got = session.run(None, {qonnx.input_name: xb})[0]
        ref = qonnx.run_simulation(xb)
        diffs.append(float(np.max(np.abs(got - ref))))
        if diffs[-1] > 1e-2 * max(1.0, float(np.max(np.abs(ref)))):
            raise InputError(f"{own} ({form} form) differs from the QDQ simulation by {diffs[-1]:.3g}")
    result = ExportResult(data, _specs(proto.graph.input), _specs(proto.graph.output),
                          proto.opset_import[0].version, max(diffs), (len(x), len(x) + 1),
                          exporter="prism-quant (ONNX input)")
    return _quantized_package(qonnx, data, result, form, own, qonnx.pack_tables(),
                              qonnx.manifest_section(), lambda: build_plan_onnx(qonnx),
                              "QDQ simulation on ONNX Runtime")


register_packager(lambda m: True, _package_float)  # the fallback: any nn.Module
register_packager(_is_quantized, _package_quantized)
register_packager(_is_quantized_onnx, _package_quantized_onnx)
from .s2dnas.packaging import (is_dynamic, is_quantized_dynamic, package_dynamic,  # noqa: E402
                               package_quantized_dynamic)  # torch-free predicates; S2DNAS models
register_packager(is_dynamic, package_dynamic)
register_packager(is_quantized_dynamic, package_quantized_dynamic)


def deploy(model, target: str = "cpu", *, example_input=None, out: str | os.PathLike | None = None,
           precision: str | None = None, form: str | None = None,
           preprocess: PreprocessRecipe | dict | None = None, name: str | None = None,
           metadata: dict[str, Any] | None = None, atol: float = 1e-3) -> Bundle:
    """Export ``model`` and write a bundle for ``target``.

    ``model``: a ``torch.nn.Module`` (FP32) or a ``QuantizedModel`` from ``sdk.quantize`` (the
    bundle then holds the quantized ONNX in ``form`` — "integer" (ConvInteger accumulators) or
    "qdq", the target's default if omitted — plus the packed tables ``tables.npz``).
    ``example_input``: a float32 ``(N, C, H, W)`` tensor/array; when omitted it is made from the
    ``preprocess`` recipe's size and channels. ``out``: the bundle directory (default
    ``<name>.<target>.prism`` in the working directory). Returns the written, re-verified bundle.
    """
    tgt = get_target(target)
    recipe = PreprocessRecipe.from_dict(preprocess) if isinstance(preprocess, dict) else preprocess
    if example_input is None:
        if recipe is None:
            raise InputError("deploy needs example_input (or a preprocess recipe to derive its shape)")
        c = 1 if recipe.channels == "gray" else 3
        example_input = np.zeros((1, c, *recipe.size), np.float32)
    x = example_input
    if recipe is not None:
        c = 1 if recipe.channels == "gray" else 3
        if tuple(x.shape[1:]) != (c, *recipe.size):
            raise InputError(f"preprocess recipe produces (N, {c}, {recipe.size[0]}, {recipe.size[1]}) "
                             f"but example_input has shape {tuple(x.shape)}")
    if precision is not None:
        tgt.check_precision(precision)
    package = next(fn for matches, fn in _PACKAGERS if matches(model))
    if tgt.device is not None:  # Jetson: TensorRT-ready ONNX (fp16 / symmetric QDQ), linted
        from .trt.package import package_jetson

        packaged = package_jetson(package, model, x, tgt, precision=precision, form=form, atol=atol)
    else:
        packaged = package(model, x, tgt, precision=precision, form=form, atol=atol)
    tgt.check_precision(packaged.precision)
    name = name or type(model).__name__.lower()
    out = Path(out) if out is not None else Path(f"{name}.{tgt.name}.prism")
    return write_bundle(out, packaged.files, target=tgt.name, precision=packaged.precision,
                        graphs=packaged.graphs, preprocess=recipe.to_dict() if recipe else None,
                        export=packaged.export, metadata={"name": name, **(metadata or {})},
                        **packaged.sections)
