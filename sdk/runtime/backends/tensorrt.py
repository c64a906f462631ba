"""TensorRT backend, and the ONNX Runtime GPU fallbacks used for Jetson bundles.

Fallback order of a Jetson target (``sdk.targets.JETSON_BACKENDS``):

1. ``tensorrt``              the TensorRT Python package + CUDA runtime bindings (cuda-python):
                             engine built on the device at first load, cached beside the bundle
                             (``sdk.toolchain.trt.engine``), run with ``execute_async_v3``;
2. ``onnxruntime-tensorrt``  ONNX Runtime's TensorRT execution provider (CUDA EP, CPU behind it);
3. ``onnxruntime-cuda``      ONNX Runtime's CUDA execution provider;
4. ``onnxruntime-cpu``       ONNX Runtime on the CPU, with a warning naming what was missing.
"""
from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from ...errors import InputError
from .base import Backend, BackendUnavailable
from .ort import OnnxRuntimeBackend


def _cudart():
    """cuda-python's runtime bindings (``cuda.bindings.runtime``, older ``cuda.cudart``)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart  # cuda-python < 12.6
    return cudart


def _check(result):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendUnavailable(f"backend 'tensorrt': CUDA call failed ({err})")
    return rest[0] if len(rest) == 1 else rest


def device_capability() -> tuple[tuple[int, int], str]:
    """(compute capability, GPU name) of CUDA device 0."""
    cudart = _cudart()
    props = _check(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return (int(props.major), int(props.minor)), name.strip("\x00")


def check_bundle_device(bundle, capability: tuple[int, int], gpu: str) -> None:
    """Raise InputError when ``bundle`` was deployed for a Jetson module other than this GPU,
    or for a precision this GPU cannot run, naming the targets that would run here."""
    from ...targets import get_target, target_names

    target = get_target(bundle.target)
    sm = f"SM {capability[0]}.{capability[1]}"
    fits = [n for n in target_names() if (t := get_target(n)).device and t.device.accepts(capability)]
    if target.device is not None and not target.device.accepts(capability):
        raise InputError(f"bundle {bundle.path.name} was deployed for target '{target.name}' "
                         f"({target.device.module}, SM {', '.join(f'{a}.{b}' for a, b in target.device.compute_capability)}) "
                         f"but this GPU is {gpu} ({sm}); "
                         + (f"redeploy with target= one of: {', '.join(fits)}" if fits else
                            "no Jetson profile matches this GPU: deploy with target='cpu'"))
    precision = bundle.precision
    if precision in ("fp16",) and capability < (5, 3):
        raise InputError(f"{gpu} ({sm}) has no fast FP16; redeploy with precision='fp32'")
    if precision not in ("fp32", "fp16") and capability < (6, 1):
        raise InputError(f"{gpu} ({sm}) has no INT8; redeploy with precision='fp16' or 'fp32'")


class TensorRTBackend(Backend):
    """Runs a graph with a TensorRT engine. Options: ``max_batch`` (profile max when the bundle
    records no profile, default 8), ``dla_core`` (build for NVDLA core N with GPU fallback),
    ``workspace_bytes``, ``cache_dir`` (default ``<bundle>.engines`` beside the bundle),
    ``profile_stages`` (synchronize between copies and compute to time each; see
    :attr:`last_breakdown`)."""

    name = "tensorrt"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import tensorrt  # noqa: F401
        except ImportError as e:
            return False, f"the TensorRT Python package is not installed ({e})"
        try:
            cudart = _cudart()
            count = _check(cudart.cudaGetDeviceCount())
        except ImportError as e:
            return False, f"cuda-python (CUDA runtime bindings) is not installed ({e})"
        except BackendUnavailable as e:
            return False, str(e)
        if not count:
            return False, "no CUDA device"
        return True, ""

    def activate(self) -> None:
        import tensorrt as trt

        from ...toolchain.trt.engine import (CacheKey, EngineCache, build_engine, cache_dir_for,
                                             load_or_build, shape_profiles)
        from ...bundle import sha256_file
        from ...targets import get_target

        if self.bundle is None:
            raise BackendUnavailable("backend 'tensorrt' needs the bundle (use sdk.load)")
        capability, gpu = device_capability()
        check_bundle_device(self.bundle, capability, gpu)
        target = get_target(self.bundle.target)
        section = self.bundle.manifest.get("tensorrt") or {}
        key = CacheKey(trt.__version__, capability, self.bundle.precision, sha256_file(self.graph_path), gpu)
        cache = EngineCache(self.options.get("cache_dir") or cache_dir_for(self.bundle.path))
        recorded = (section.get("graphs") or {}).get(self.graph.name, {}).get("profile")
        profiles = shape_profiles(self.graph.inputs, [recorded] if recorded else None,
                                  self.options.get("max_batch", 8))
        workspace = self.options.get("workspace_bytes") or (
            target.device.workspace_bytes if target.device else 1 << 30)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)

        def build() -> bytes:
            return build_engine(self.graph_path, profiles=profiles, workspace_bytes=workspace,
                                timing_cache=cache.timing_cache_path(), dla_core=self.options.get("dla_core"),
                                logger=self._logger)

        self.engine, self.cache_info = load_or_build(cache, self.graph.name, key, build,
                                                     self._runtime.deserialize_cuda_engine)
        self.context = self.engine.create_execution_context()
        self._cudart = _cudart()
        self._stream = _check(self._cudart.cudaStreamCreate())
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self._buffers: dict[str, tuple[int, int]] = {}   # name -> (device pointer, bytes)
        self.last_breakdown: dict[str, float] = {}
        self.key = key
        self.active = True

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self._cudart.cudaFree(ptr))
            ptr = int(_check(self._cudart.cudaMalloc(nbytes)))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart, stream = self._cudart, self._stream
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        timed = bool(self.options.get("profile_stages"))
        clock = time.perf_counter
        t0 = clock()
        for name in self._inputs:
            x = np.ascontiguousarray(feeds[name], dtype=self._dtypes[name])
            self.context.set_input_shape(name, x.shape)
            ptr = self._device_buffer(name, x.nbytes)
            _check(cudart.cudaMemcpyAsync(ptr, x.ctypes.data, x.nbytes, h2d, stream))
            self.context.set_tensor_address(name, ptr)
        if timed:
            _check(cudart.cudaStreamSynchronize(stream))
        t1 = clock()
        outputs = {}
        for name in self._outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = np.empty(shape, self._dtypes[name])
            self.context.set_tensor_address(name, self._device_buffer(name, max(out.nbytes, 1)))
            outputs[name] = out
        if not self.context.execute_async_v3(int(stream)):  # the cudaStream_t handle as an int
            raise BackendUnavailable("backend 'tensorrt': execute_async_v3 failed")
        if timed:
            _check(cudart.cudaStreamSynchronize(stream))
        t2 = clock()
        for name, out in outputs.items():
            _check(cudart.cudaMemcpyAsync(out.ctypes.data, self._buffers[name][0], out.nbytes, d2h, stream))
        _check(cudart.cudaStreamSynchronize(stream))
        t3 = clock()
        if timed:
            self.last_breakdown = {"h2d": t1 - t0, "compute": t2 - t1, "d2h": t3 - t2}
        return outputs

    def deactivate(self) -> None:
        for ptr, _ in getattr(self, "_buffers", {}).values():
            self._cudart.cudaFree(ptr)
        self._buffers = {}
        if getattr(self, "_stream", None) is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self.context = self.engine = None
        super().deactivate()

    def describe(self) -> dict[str, Any]:
        import tensorrt as trt

        out = {"backend": self.name, "tensorrt": trt.__version__}
        if self.active:
            out.update({"compute_capability": list(self.key.compute_capability), "gpu": self.key.device,
                        "engine": self.cache_info})
        return out


class _OrtProviderBackend(OnnxRuntimeBackend):
    """ONNX Runtime with a fixed execution-provider list (``providers`` option overrides)."""

    provider: str = ""
    chain: tuple[str, ...] = ()

    @classmethod
    def available(cls) -> tuple[bool, str]:
        ok, why = OnnxRuntimeBackend.available()
        if not ok:
            return ok, why
        import onnxruntime as ort

        if cls.provider not in ort.get_available_providers():
            return False, (f"onnxruntime has no {cls.provider} (installed: onnxruntime {ort.__version__}, "
                           f"providers {ort.get_available_providers()}; Jetson wheels: onnxruntime-gpu from "
                           f"the Jetson Zoo)")
        return True, ""

    def __init__(self, graph_path, **kw):
        kw.setdefault("providers", list(self.chain))
        super().__init__(graph_path, **kw)


class OrtTensorRTBackend(_OrtProviderBackend):
    name = "onnxruntime-tensorrt"
    provider = "TensorrtExecutionProvider"
    chain = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OrtCudaBackend(_OrtProviderBackend):
    name = "onnxruntime-cuda"
    provider = "CUDAExecutionProvider"
    chain = ("CUDAExecutionProvider", "CPUExecutionProvider")


class OrtCpuFallbackBackend(OnnxRuntimeBackend):
    """ONNX Runtime CPU for a GPU target: runs, and warns which GPU backends were missing."""

    name = "onnxruntime-cpu"

    def activate(self) -> None:
        from ...targets import get_target
        from . import get_backend

        if self.bundle is None or get_target(self.bundle.target).device is None:
            return super().activate()  # a CPU target on the CPU: nothing is missing
        missing = "; ".join(f"{n}: {get_backend(n).available()[1]}" for n in
                            ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda"))
        target = self.bundle.target if self.bundle is not None else "?"
        warnings.warn(f"target '{target}' runs on the CPU through ONNX Runtime (slow): {missing}",
                      RuntimeWarning, stacklevel=4)
        super().activate()


BACKENDS = (TensorRTBackend, OrtTensorRTBackend, OrtCudaBackend, OrtCpuFallbackBackend)


def _register() -> None:
    from . import register_backend

    for cls in BACKENDS:
        register_backend(cls)


_register()
