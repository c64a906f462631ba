"""Native backend: runs a quantized bundle layer by layer on Prism's C++ integer kernels.

It executes the bundle's ``plan.json`` (written by ``sdk.deploy`` for quantized models): every
quantized Conv/Gemm/MatMul runs as u8 activations × PWLQ (or uniform) int8 codes with int32
center/tail/sign/box accumulators (``sdk.kernels_int``), prepacked once at activation from
``tables.npz``; the float ops between them (ReLU, Add, pooling, reshapes) run in NumPy, except
a residual Add and a Relu right after a convolution, which its kernel applies as it stores the
output (``_fuse_conv_epilogues``: the same float32 operations, no NumPy pass). Each
layer's float epilogue performs the same float32 operations in the same order as the bundle's
integer ONNX form (``Cast(acc)·scale`` per term, summed left to right, then bias), and the input
quantization is ONNX QuantizeLinear's (divide, round half to even, add zero point, saturate;
inside the convolution kernel for float32 activations, in NumPy for the GEMM layers), so
the outputs match ONNX Runtime's integer form bit for bit wherever the float ops between layers
are computed alike (see the tests for what is measured).

Needs only NumPy and the compiled kernels: no PyTorch, no ``onnx`` package.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np

from ...errors import BundleError
from .base import Backend, BackendUnavailable


def quantize_linear(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """ONNX QuantizeLinear to uint8: saturate(round_half_even(x / scale) + zero_point)."""
    q = np.rint(np.divide(x, np.float32(scale), dtype=np.float32))
    q += np.float32(zero_point)
    return np.clip(q, 0, 255).astype(np.uint8)


def _codes_by_region(table):
    """(W0, W1) int8 code tensors of a table with at most one breakpoint: the folded center codes
    (Q·sign at every tail weight) and the tail codes; W1 is None for uniform weights."""
    if table.n_regions == 1:
        return table.codes, None
    return table.folded_codes(0), table.folded_codes(1)


def _pads(attrs: dict, where: str) -> tuple[int, int]:
    pads = attrs.get("pads", [0, 0, 0, 0])
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or pads[:2] != pads[2:]:
        raise BackendUnavailable(f"native backend: {where} has asymmetric or automatic padding "
                                 f"({attrs.get('auto_pad', pads)}), which the kernels do not take")
    return pads[0], pads[1]


def _fuse_conv_epilogues(nodes: list[dict], outputs: list[str]) -> list[dict]:
    """The plan with the float ops that follow a QConv merged into it where the kernel can apply
    them as it stores y: ``Add(y, other)`` when the Add is y's only consumer, then ``Relu`` when
    it is the only consumer of the result (the kernel computes ``y + other``, then
    ``maximum(·, 0)``, in float32, as NumPy does). A merged node takes the position of the last
    node it absorbs, so every input (``other`` may be computed after the QConv) exists by then.
    No intermediate that is a graph output is absorbed."""
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node["inputs"]:
            consumers.setdefault(name, []).append(i)

    def only_consumer(name: str, op: str) -> int | None:
        use = consumers.get(name, [])
        if len(use) == 1 and name not in outputs and nodes[use[0]]["op"] == op:
            return use[0]
        return None

    placed: dict[int, dict] = {}  # position -> merged node
    absorbed: set[int] = set()
    for i, node in enumerate(nodes):
        if node["op"] != "QConv" or len(node["outputs"]) != 1:
            continue
        merged, last, out = dict(node), i, node["outputs"][0]
        add = only_consumer(out, "Add")
        if (add is not None and add not in absorbed and len(nodes[add]["inputs"]) == 2
                and nodes[add]["inputs"].count(out) == 1):
            other = next(n for n in nodes[add]["inputs"] if n != out)
            if not other.startswith("const:"):
                merged["inputs"] = [*node["inputs"], other]
                merged["fused_add"] = True
                absorbed.add(add)
                last, out = add, nodes[add]["outputs"][0]
        relu = only_consumer(out, "Relu")
        if relu is not None and nodes[relu]["inputs"] == [out]:
            merged["fused_relu"] = True
            absorbed.add(relu)
            last, out = relu, nodes[relu]["outputs"][0]
        merged["outputs"] = [out]
        if last != i:
            absorbed.add(i)
            placed[last] = merged
        else:
            placed[i] = merged
    return [placed.get(i, node) for i, node in enumerate(nodes)
            if i in placed or i not in absorbed]


class NativeBackend(Backend):
    """Integer execution of PWLQ/uniform bundles on the C++ kernels (AVX-512 VNNI, AVX2, NEON
    dot product or scalar, chosen at run time). Options: ``num_threads`` (default: all cores),
    ``simd_path`` (force a SIMD path: "avx512vnni", "avx2", "neon_dot", "scalar")."""

    name = "native"
    reentrant = False  # per-instance kernel state and activation buffers are reused between calls

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            from ... import kernels_int  # noqa: F401
        except ImportError as e:
            return False, f"the compiled kernels (sdk._kernels) are not importable ({e})"
        return True, ""

    # -- building ---------------------------------------------------------------------------
    def activate(self) -> None:
        from ...formats.packed_tables import unpack_tables

        if self.bundle is None:
            raise BackendUnavailable("native backend: needs the bundle (use sdk.load)")
        native = self.bundle.manifest.get("native") or {}
        # one plan for a single-graph bundle; one per graph ("plans") for a multi-stage bundle
        plan_file = native.get("plan")
        if "plans" in native and self.graph is not None:
            plan_file = native["plans"].get(self.graph.name)
        if plan_file is None:
            why = native.get("unsupported", "the bundle is not a quantized bundle (no plan.json)")
            if "plans" in native:
                why = f"no native plan for graph '{getattr(self.graph, 'name', None)}'"
            raise BackendUnavailable(f"native backend cannot run {self.bundle.path.name}: {why}")
        plan = json.loads(self.bundle.file(plan_file).read_text())
        if plan.get("format") != 1:
            raise BundleError(f"{self.bundle.file(plan_file)}: plan format {plan.get('format')} "
                              f"is not one this Prism reads (1)")
        with np.load(self.bundle.file(native["tables"])) as npz:
            arrays = {k: npz[k] for k in npz.files}
        tables = unpack_tables(arrays)
        self.consts = {k[len("const/"):]: v for k, v in arrays.items() if k.startswith("const/")}
        self.num_threads = self.options.get("num_threads")
        self.path = self.options.get("simd_path")
        self.input_names = list(plan.get("inputs", [plan["input"]]))  # extra inputs: cached features
        self.output_names = plan["outputs"]
        nodes = _fuse_conv_epilogues(plan["nodes"], self.output_names)
        self.steps = [self._step(node, tables) for node in nodes]
        # liveness: drop every intermediate after its last use, so activations do not pile up
        last_use: dict[str, int] = {}
        for i, node in enumerate(nodes):
            for name in node["inputs"]:
                last_use[name] = i
        self.release = [[n for n in node["inputs"] if last_use.get(n) == i and n not in self.output_names]
                        for i, node in enumerate(nodes)]
        self.active = True

    def _step(self, node: dict, tables) -> tuple[Callable, list[str], list[str]]:
        op, attrs = node["op"], node.get("attrs", {})
        if op in ("QConv", "QGemm", "QMatMul"):
            fn = self._quantized(op, tables[node["layer"]], node)
        else:
            maker = getattr(self, f"_op_{op}", None)
            if maker is None:
                raise BackendUnavailable(f"native backend: op {op} is not supported")
            fn = maker(attrs)
        return fn, node["inputs"], node["outputs"]

    def _quantized(self, op: str, table, node: dict) -> Callable:
        from ...kernels_int import PwlqConv2d, PwlqGemm, pack_pwlq_weights

        if table.n_regions > 2:
            raise BackendUnavailable(f"native backend: layer {table.name!r} has {table.n_regions - 1} "
                                     f"breakpoints; the kernels take at most 1")
        if table.act_scheme != "uniform":
            raise BackendUnavailable(f"native backend: layer {table.name!r} quantizes activations "
                                     f"with {table.act_scheme!r}; the kernels take uniform u8")
        attrs = node.get("attrs", {})
        center, tail = _codes_by_region(table)
        groups = int(attrs.get("group", 1)) if op == "QConv" else 1
        packed = pack_pwlq_weights(center, tail, groups=groups)
        has_tail = tail is not None
        # the integer ONNX form skips the box term when no channel has a bias-correction shift
        c = table.bc_shift if np.any(table.bc_shift != 0) else None
        common = dict(sx=float(table.act_scale), zx=int(table.act_zero_point),
                      s1=table.scales[:, 0], s2=table.scales[:, 1] if has_tail else None,
                      a=table.bc_scale, c=c,
                      bias=None if op == "QMatMul" else table.bias)
        scale, zp, bits = float(table.act_scale), int(table.act_zero_point), table.act_bits
        lo = np.float32(scale) * np.float32(0 - zp)
        hi = np.float32(scale) * np.float32(2 ** bits - 1 - zp)
        run_opts = {"path": self.path, "num_threads": self.num_threads}

        def quantize(x):
            if bits < 8:  # the ONNX form clips to the b-bit range before QuantizeLinear
                x = np.clip(x, lo, hi)
            return quantize_linear(x, scale, zp)

        if op == "QConv":
            layer = PwlqConv2d(packed, stride=tuple(attrs.get("strides", (1, 1))),
                               padding=_pads(attrs, f"layer {table.name!r}"),
                               dilation=tuple(attrs.get("dilations", (1, 1))), **common)
            relu = bool(node.get("fused_relu"))
            # float32 activations are quantized inside the kernel (the same QuantizeLinear bits,
            # without NumPy's passes over the tensor), with a following Add and Relu fused
            fused = layer.prepare_float(clip=(float(lo), float(hi)) if bits < 8 else None,
                                        relu=relu, **run_opts)

            def _conv_output_shape(shape: tuple) -> tuple:  # the Add fuses without broadcasting
                if shape not in out_shape:
                    out_shape[shape] = (shape[0], packed.channels, *layer.output_size(*shape[2:]))
                return out_shape[shape]

            out_shape: dict[tuple, tuple] = {}  # input shape -> output shape

            def conv(x, other=None):
                if x.dtype == np.float32 and x.flags.c_contiguous and (
                        other is None or (other.dtype == np.float32 and other.flags.c_contiguous
                                          and other.shape == _conv_output_shape(x.shape))):
                    return fused(x, other)
                y = layer(quantize(x), **run_opts)
                if other is not None:
                    y = np.add(y, other, dtype=np.float32)
                return np.maximum(y, np.float32(0)) if relu else y
            return conv
        layer = PwlqGemm(packed, **common)
        return lambda x: layer(quantize(x), **run_opts)

    # float ops: each maker returns fn(*inputs) -> output
    def _op_Relu(self, attrs):
        return lambda x: np.maximum(x, np.float32(0))

    def _op_Clip(self, attrs):
        def clip(x, lo=None, hi=None):
            return np.clip(x, -np.inf if lo is None else lo, np.inf if hi is None else hi).astype(np.float32)
        return clip

    def _op_Add(self, attrs):
        return lambda a, b: np.add(a, b, dtype=np.float32)

    def _op_Identity(self, attrs):
        return lambda x: x

    def _op_Flatten(self, attrs):
        axis = int(attrs.get("axis", 1))
        return lambda x: x.reshape(int(np.prod(x.shape[:axis])), -1)

    def _op_Reshape(self, attrs):
        def reshape(x, shape):
            shape = [x.shape[i] if d == 0 else int(d) for i, d in enumerate(shape)]
            return x.reshape(shape)
        return reshape

    # Fold-ASPP's fold / unfold and branch merge: pure data movement, exact as in ONNX Runtime
    def _op_SpaceToDepth(self, attrs):
        b = int(attrs["blocksize"])

        def space_to_depth(x):
            n, c, h, w = x.shape
            t = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
            return np.ascontiguousarray(t).reshape(n, c * b * b, h // b, w // b)
        return space_to_depth

    def _op_DepthToSpace(self, attrs):
        b, mode = int(attrs["blocksize"]), attrs.get("mode", "DCR")

        def depth_to_space(x):
            n, c, h, w = x.shape
            if mode == "DCR":
                t = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
            else:  # CRD, what torch's pixel_shuffle exports as
                t = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
            return np.ascontiguousarray(t).reshape(n, c // (b * b), h * b, w * b)
        return depth_to_space

    def _op_Concat(self, attrs):
        axis = int(attrs["axis"])
        return lambda *xs: np.concatenate(xs, axis=axis)

    def _op_GlobalAveragePool(self, attrs):
        def gap(x):
            n, c, h, w = x.shape
            # sum in float32 over the flattened window, then divide: as ONNX Runtime's pooling
            return (x.reshape(n, c, h * w).sum(axis=2, dtype=np.float32) / np.float32(h * w)).reshape(n, c, 1, 1)
        return gap

    def _pool(self, attrs, reduce: str):
        kh, kw = attrs["kernel_shape"]
        sh, sw = attrs.get("strides", (1, 1))
        ph, pw = _pads(attrs, "a pooling node")
        if attrs.get("ceil_mode", 0) or attrs.get("dilations", (1, 1)) != [1, 1] and attrs.get("dilations"):
            raise BackendUnavailable("native backend: pooling with ceil_mode or dilation is not supported")

        def pool(x):
            fill = -np.inf if reduce == "max" else 0.0
            if ph or pw:
                x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
            win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
            if reduce == "max":
                return win.max(axis=(4, 5))
            return (win.sum(axis=(4, 5), dtype=np.float32) / np.float32(kh * kw)).astype(np.float32)
        return pool

    def _op_MaxPool(self, attrs):
        return self._pool(attrs, "max")

    def _op_AveragePool(self, attrs):
        if attrs.get("count_include_pad", 0) == 0 and any(attrs.get("pads", [0])):
            raise BackendUnavailable("native backend: AveragePool excluding padding is not supported")
        return self._pool(attrs, "mean")

    # layers left FP32 by the quantizer (reported in the bundle's quantization.skipped)
    def _op_Conv(self, attrs):
        sh, sw = attrs.get("strides", (1, 1))
        dh, dw = attrs.get("dilations", (1, 1))
        groups = int(attrs.get("group", 1))

        def conv(x, w, b=None):
            ph, pw = _pads(attrs, "an FP32 Conv")
            n, cin, _, _ = x.shape
            cout, cpg, kh, kw = w.shape
            x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
            win = np.lib.stride_tricks.sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1),
                                                           axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
            outs = []
            for g in range(groups):
                xg = win[:, g * cpg:(g + 1) * cpg]
                wg = w[g * (cout // groups):(g + 1) * (cout // groups)]
                outs.append(np.einsum("nchwij,ocij->nohw", xg, wg, optimize=True))
            y = np.concatenate(outs, axis=1).astype(np.float32)
            return y if b is None else y + b.reshape(1, -1, 1, 1)
        return conv

    def _op_Gemm(self, attrs):
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            raise BackendUnavailable("native backend: Gemm with transA/alpha/beta is not supported")
        trans_b = attrs.get("transB", 0)
        return lambda x, w, b=None: (x @ (w.T if trans_b else w) + (0 if b is None else b)).astype(np.float32)

    def _op_MatMul(self, attrs):
        return lambda a, b: np.matmul(a, b).astype(np.float32)

    # -- running ----------------------------------------------------------------------------
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        env: dict[str, Any] = {name: np.ascontiguousarray(feeds[name]) for name in self.input_names}
        consts = self.consts
        for (fn, inputs, outputs), dead in zip(self.steps, self.release):
            args = [consts[name[6:]] if name.startswith("const:") else env[name] for name in inputs]
            env[outputs[0]] = fn(*args)
            for name in dead:
                env.pop(name, None)
        return {name: env[name] for name in self.output_names}

    def describe(self) -> dict[str, Any]:
        from ...kernels_int import simd_path

        return {"backend": self.name, "simd_path": self.path or simd_path(),
                "num_threads": self.num_threads, "layers": len(self.steps) if self.active else None}
