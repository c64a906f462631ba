"""``sdk.deploy``: a trained model → a verified deployment bundle for a target."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..bundle import Bundle, GraphSpec, write_bundle
from ..errors import InputError
from ..preprocess import PreprocessRecipe
from ..targets import get_target
from .export import export_onnx, to_torch_input


def deploy(model, target: str = "cpu", *, example_input=None, out: str | os.PathLike | None = None,
           precision: str | None = None, preprocess: PreprocessRecipe | dict | None = None,
           name: str | None = None, metadata: dict[str, Any] | None = None,
           atol: float = 1e-3) -> Bundle:
    """Export ``model`` and write a bundle for ``target``.

    ``example_input``: a float32 ``(N, C, H, W)`` tensor/array; when omitted it is made from the
    ``preprocess`` recipe's size and channels. ``out``: the bundle directory (default
    ``<name>.<target>.prism`` in the working directory). Returns the written, re-verified bundle.
    """
    tgt = get_target(target)
    precision = precision or tgt.default_precision
    if precision not in tgt.precisions:
        raise InputError(f"target '{tgt.name}' does not support precision '{precision}' "
                         f"(supported: {', '.join(tgt.precisions)})")
    recipe = PreprocessRecipe.from_dict(preprocess) if isinstance(preprocess, dict) else preprocess
    if example_input is None:
        if recipe is None:
            raise InputError("deploy needs example_input (or a preprocess recipe to derive its shape)")
        import torch

        c = 1 if recipe.channels == "gray" else 3
        example_input = torch.zeros(1, c, *recipe.size)
    x = to_torch_input(example_input)
    if recipe is not None:
        c = 1 if recipe.channels == "gray" else 3
        if tuple(x.shape[1:]) != (c, *recipe.size):
            raise InputError(f"preprocess recipe produces (N, {c}, {recipe.size[0]}, {recipe.size[1]}) "
                             f"but example_input has shape {tuple(x.shape)}")
    name = name or type(model).__name__.lower()
    result = export_onnx(model, x, opset=tgt.opset)
    graph = GraphSpec("main", "model.onnx", result.inputs, result.outputs)
    out = Path(out) if out is not None else Path(f"{name}.{tgt.name}.prism")
    return write_bundle(out, {"model.onnx": result.onnx_bytes}, target=tgt.name,
                        precision=precision, graphs=[graph],
                        preprocess=recipe.to_dict() if recipe else None,
                        export=result.report(),
                        metadata={"name": name, **(metadata or {})})
