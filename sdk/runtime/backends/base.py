"""The backend interface: one module per backend, each implementing :class:`Backend`.

A backend runs one graph of a bundle. Its life cycle follows Polygraphy's runners:
``activate()`` (build or load the session/engine), ``infer(feeds)`` any number of times,
``deactivate()``; it is also a context manager. Backends register themselves by name in
:mod:`sdk.runtime.backends` and say whether they can run here (:meth:`Backend.available`).
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...errors import PrismError


class BackendUnavailable(PrismError):
    """The backend cannot run on this machine (package, device or library missing)."""


class Backend(abc.ABC):
    #: registry name, e.g. "onnxruntime", "tensorrt", "native"
    name: ClassVar[str]
    #: True when one activated instance may run ``infer`` from several threads at once; engines
    #: then call it without a lock, else they give each concurrent call its own instance
    reentrant: ClassVar[bool] = False

    def __init__(self, graph_path: Path, *, bundle=None, graph=None, **options: Any):
        """``graph_path``: the ONNX file; ``bundle``/``graph``: the Bundle and GraphSpec it
        belongs to (backends that read side files, such as packed tables, use them)."""
        self.graph_path = Path(graph_path)
        self.bundle = bundle
        self.graph = graph
        self.options = options
        self.active = False

    @classmethod
    @abc.abstractmethod
    def available(cls) -> tuple[bool, str]:
        """(True, "") if this backend can run here, else (False, the reason)."""

    @abc.abstractmethod
    def activate(self) -> None:
        """Create the session/engine. Called once before the first :meth:`infer`."""

    @abc.abstractmethod
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph. ``feeds`` and the result map tensor names to arrays."""

    def deactivate(self) -> None:
        self.active = False

    def describe(self) -> dict[str, Any]:
        """What the backend runs on (providers, threads, device), for reports."""
        return {"backend": self.name}

    def __enter__(self) -> "Backend":
        if not self.active:
            self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()
