"""ONNX Runtime backend (CPU by default; CUDA/TensorRT execution providers when installed)."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .base import Backend, BackendUnavailable


class OnnxRuntimeBackend(Backend):
    """Runs an ONNX graph with ``onnxruntime.InferenceSession``.

    Options: ``providers`` (list, default ``["CPUExecutionProvider"]``), ``intra_op_threads``
    (default: all cores), ``graph_optimization`` ("all" | "extended" | "basic" | "disabled").
    """

    name = "onnxruntime"
    reentrant = True  # InferenceSession.run is thread-safe

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as e:
            return False, f"onnxruntime is not installed ({e})"
        return True, ""

    def activate(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendUnavailable(f"backend 'onnxruntime': {e}") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(self.options.get("intra_op_threads") or os.cpu_count() or 1)
        level = self.options.get("graph_optimization", "all")
        opts.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[level]
        providers = list(self.options.get("providers") or ["CPUExecutionProvider"])
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise BackendUnavailable(
                f"backend 'onnxruntime': execution provider(s) {missing} not in this onnxruntime "
                f"build (available: {ort.get_available_providers()})")
        self.session = ort.InferenceSession(str(self.graph_path), sess_options=opts,
                                            providers=providers)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.active = True

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outputs))

    def deactivate(self) -> None:
        self.session = None
        super().deactivate()

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"backend": self.name, "onnxruntime": ort.__version__,
                "providers": self.session.get_providers() if self.active else None,
                "intra_op_threads": int(self.options.get("intra_op_threads") or os.cpu_count() or 1)}
