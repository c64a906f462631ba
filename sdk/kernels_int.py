"""PWLQ integer kernels: W·A8 GEMM and 2-D convolution with int32 accumulators.

The arithmetic is Sect. 4 of the PWLQ paper (Eqs. 11-13), in folded form. Activations ``X`` are
uint8 with a per-layer scale ``sx`` and zero point ``zx`` (``x̂ = sx·(X − zx)``). The weights of
output channel ``n`` are given as two int8 code tensors:

- ``center`` (W0): the center-region codes, *folded*: ``Q·sign`` at every tail weight
  (``Q = 2^(b−1) − 1``);
- ``tail`` (W1): the signed tail codes ``sign·q``, 0 in the center;

and ``ŵ = s1[n]·W0 + s2[n]·W1``. That is the paper's tail weight ``sign·(s2·q + p)`` because the
quantizer defines the tail offset as ``p = Q·s1`` exactly (:mod:`sdk.formats.layer_table`), so the
tail-offset (sign) accumulator of Eq. 12 is not needed (``LayerQuantTable.folded_codes`` gives
W0 and W1). The kernels put no condition on the two tensors. Uniform int8 weights are ``center``
alone. Per row ``m`` and channel ``n`` the kernels form, exactly in int32, ``A_c = Σ X·W0``,
``A_t = Σ X·W1`` and ``R = Σ X`` over the reduction axis, and then, in float32 and in this order
(no fused multiply-add)::

    ac, at     = A_c − zx·ΣW0[n], A_t − zx·ΣW1[n]                         (int32)
    r          = R[m] − zx·K                                              (int32)
    y = ((f(ac)·αc[n] + f(at)·αt[n]) + f(r)·γ[n]) + β[n]

with ``f`` the int32 → float32 conversion (round to nearest even), ``αc = sx·s1·a``,
``αt = sx·s2·a``, ``γ = c·sx`` computed in float64 and rounded once to float32, and
``β = bias``. That is ``y = sx·(s1·ac + s2·at)·a + c·sx·r + bias``, where ``(a, c)`` is the
per-channel bias correction (``a = 1``, ``c = 0`` when off). Without a tail the ``at`` term is
skipped. The requantized output (``out_scale``/``out_zero_point`` given) keeps consecutive layers
integer::

    q = clamp(round_half_even(y / so) + zo, zo if relu else 0, 255)      (float32, then uint8)

Every entry point has a NumPy twin (``*_reference``: int64 accumulation, im2col) that performs the
same float32 operations in the same order, so kernel and twin agree bit for bit, on every SIMD
path and thread count. Against the exact real-valued formula the float output carries float32
rounding: a few ulp of the largest term, more only where the terms cancel.

How the integers are computed (``tail_form="sparse"``, the default): one dense u8×s8 GEMM with
W0 gives ``A_c``; a sparse pass over the 4-deep k-blocks that hold non-zero tail codes gives
``A_t`` (one dot product per block). ``"dense"`` runs two dense GEMMs instead (the naive form,
kept for comparison). Instruction-set paths, chosen at
run time (:func:`simd_path`) or forced with ``path=``: ``"avx512vnni"`` (vpdpbusd),
``"avx2"`` (vpmaddubsw, kept free of int16 saturation: runs of ``32767 // (510·max|code|)``
k-blocks summed in int16, and for codes beyond ±64 the activations split into nibbles),
``"neon_dot"`` (sdot on ``X − 128`` with an exact ``128·ΣW`` correction) and the portable
``"scalar"``. ``PRISM_MAX_ISA`` caps the choice (e.g. ``avx2`` runs an AVX-512 host as an
AVX2-only one).

Input rules (as :mod:`sdk.preprocess`): activation and code tensors must already have the right
dtype (uint8 / int8) and are never cast; a C-contiguous array goes to C++ without a copy and any
other layout is copied once. Per-channel parameters (``s1``, ``s2``, ``a``, ``c``,
``bias``) are small and are converted to float32 vectors; a number broadcasts to every channel.
Every violation raises :class:`~sdk.errors.InputError` (a ``ValueError``) naming the array, what
was expected and what was received.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from . import _kernels
from .errors import InputError

__all__ = ["PATHS", "TAIL_FORMS", "PackedPwlqWeights", "PwlqGemm", "PwlqConv2d",
           "available_paths", "simd_path", "pack_pwlq_weights", "qgemm_accumulators", "qgemm",
           "qconv2d", "quantize_linear",
           "qgemm_accumulators_reference", "qgemm_reference", "qconv2d_reference"]

PATHS = ("scalar", "avx2", "avx512vnni", "neon_dot")
TAIL_FORMS = ("sparse", "dense")
MAX_DEPTH = 65536  # 255·128·K must fit an int32 accumulator


def available_paths() -> dict[str, str | None]:
    """``{path: None}`` for the paths that run on this CPU and build, else ``{path: reason}``."""
    return {name: (why or None) for name, why in _kernels.qgemm_paths().items()}


def simd_path() -> str:
    """The path the kernels take by default here (``PRISM_DISABLE_SIMD=1`` forces ``scalar``)."""
    return _kernels.qgemm_best_path()


def _resolve_path(path: str | None) -> str:
    return check_path(path, PATHS, available_paths)


def check_path(path: str | None, names: tuple[str, ...], available) -> str:
    """``"auto"`` for None/"auto", else ``path`` if it is one of ``names`` and runs here
    (``available()`` maps each name to None or the reason it cannot); shared with fold_conv."""
    if path is None or path == "auto":
        return "auto"
    if path not in names:
        raise InputError(f"path: expected None, 'auto' or one of {', '.join(names)}, "
                         f"received {path!r}")
    why = available()[path]
    if why:
        raise InputError(f"path: {path!r} cannot run here: {why}")
    return path


def _threads(num_threads: int | None) -> int:
    if num_threads is None:
        return 0
    if type(num_threads) is int and num_threads >= 1:  # the common case, without the ABC check
        return num_threads
    if not isinstance(num_threads, Integral) or isinstance(num_threads, bool) or num_threads < 1:
        raise InputError(f"num_threads: expected None (automatic) or an int >= 1, "
                         f"received {num_threads!r}")
    return int(num_threads)


def _array(name: str, value, dtype, ndim: tuple[int, ...], expected: str) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype`` (a view when possible; never cast)."""
    if not isinstance(value, np.ndarray):
        raise InputError(f"{name}: expected a numpy.ndarray of dtype {np.dtype(dtype)} with shape "
                         f"{expected}, received {type(value).__name__}")
    if value.dtype != dtype:
        raise InputError(f"{name}: expected dtype {np.dtype(dtype)} with shape {expected}, "
                         f"received {value.dtype} {value.shape} (convert explicitly; arrays are "
                         f"never cast)")
    if value.ndim not in ndim:
        raise InputError(f"{name}: expected shape {expected}, received {value.shape}")
    return value if value.flags.c_contiguous else np.ascontiguousarray(value)


@dataclass(frozen=True, eq=False)
class PackedPwlqWeights:
    """PWLQ weight codes packed once (at load time) for the integer kernels.

    Build with :func:`pack_pwlq_weights`. Keeps read-only copies of the codes for the NumPy twins.

    Attributes:
        center, tail: int8 code tensors W0 (folded) and W1, ``(N, K)`` for a GEMM or
            ``(C_out, C_in/groups, KH, KW)`` for a convolution; ``tail`` is ``None`` for uniform
            weights.
        groups: convolution groups (1 for a GEMM).
        tail_form: ``"sparse"``, ``"dense"`` or ``"none"`` (no tail).
    """

    center: np.ndarray
    tail: np.ndarray | None
    groups: int
    tail_form: str
    native: object
    channels: int  # N (C_out for a convolution)
    depth: int     # K per output channel (C_in/groups·KH·KW for a convolution)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.center.shape

    @property
    def has_tail(self) -> bool:
        return self.tail is not None

    @property
    def tail_block_density(self) -> float:
        """Fraction of (channel, 4-deep k-block) pairs holding a non-zero tail code: what the
        block-wise tail passes (AVX2, NEON dot product, scalar) visit."""
        return self.native.tail_block_density

    @property
    def tail_quad_density(self) -> float:
        """Quads of 4 non-zero tail codes of one channel (the last padded) per (channel,
        k-block) pair: what the AVX-512 VNNI tail pass visits, one ``vpdpbusd`` per quad and
        16 rows."""
        return self.native.tail_quad_density

    def codes_2d(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W0, W1)`` as ``(N, K)`` int8 (zeros for a missing tail)."""
        w0 = self.center.reshape(self.channels, self.depth)
        if self.tail is None:
            return w0, np.zeros_like(w0)
        return w0, self.tail.reshape(w0.shape)


def pack_pwlq_weights(center: np.ndarray, tail: np.ndarray | None = None, *, groups: int = 1,
                      tail_form: str = "sparse") -> PackedPwlqWeights:
    """Validate PWLQ code tensors and pack them for :func:`qgemm` / :func:`qconv2d`.

    Args:
        center: int8 W0 ``(N, K)`` (GEMM) or ``(C_out, C_in/groups, KH, KW)`` (convolution):
            the center codes, folded (``Q·sign`` at every tail weight; see the module doc).
        tail: int8 W1, same shape as ``center``; ``None`` for uniform int8 weights.
        groups: convolution groups (4-D weights only; ``C_out`` must be a multiple).
        tail_form: ``"sparse"`` (dense GEMM with W0 + sparse tail pass, the fast form) or
            ``"dense"`` (two dense GEMMs, the naive form).

    Raises:
        InputError: wrong type, dtype or shape, ``K > 65536``; the message names the array.
    """
    expected = "(N, K) or (C_out, C_in/groups, KH, KW)"
    center = _array("center", center, np.int8, (2, 4), expected)
    if tail_form not in TAIL_FORMS:
        raise InputError(f"tail_form: expected one of {', '.join(TAIL_FORMS)}, "
                         f"received {tail_form!r}")
    if not isinstance(groups, Integral) or isinstance(groups, bool) or groups < 1:
        raise InputError(f"groups: expected an int >= 1, received {groups!r}")
    if center.ndim == 2 and groups != 1:
        raise InputError(f"groups: (N, K) GEMM weights take groups=1, received {groups}")
    if center.shape[0] % groups:
        raise InputError(f"center: C_out={center.shape[0]} is not a multiple of groups={groups}")
    if 0 in center.shape:
        raise InputError(f"center: expected a non-empty shape {expected}, received {center.shape}")
    depth = int(np.prod(center.shape[1:]))
    if depth > MAX_DEPTH:
        raise InputError(f"center: K={depth} exceeds {MAX_DEPTH}, the int32 accumulator limit")
    if tail is not None:
        tail = _array("tail", tail, np.int8, (center.ndim,), str(center.shape))
        if tail.shape != center.shape:
            raise InputError(f"tail: expected the shape of center {center.shape}, "
                             f"received {tail.shape}")
    n = center.shape[0]
    native = _kernels.pack_pwlq_weights(
        center, tail, channels=n, depth=depth, groups=int(groups),
        tail_form=tail_form if tail is not None else "none")

    def frozen(a):
        if a is None:
            return None
        a = np.array(a, copy=True)
        a.flags.writeable = False
        return a

    return PackedPwlqWeights(frozen(center), frozen(tail), int(groups),
                             native.tail_form, native, n, depth)


def _check_packed(packed, conv: bool) -> PackedPwlqWeights:
    if not isinstance(packed, PackedPwlqWeights):
        raise InputError(f"packed: expected PackedPwlqWeights from pack_pwlq_weights, "
                         f"received {type(packed).__name__}")
    if conv and packed.center.ndim != 4:
        raise InputError(f"packed: qconv2d needs (C_out, C_in/groups, KH, KW) weights, received "
                         f"weights of shape {packed.shape}")
    if not conv and packed.center.ndim != 2:
        raise InputError(f"packed: qgemm needs (N, K) weights, received weights of shape "
                         f"{packed.shape} (pack convolution weights for qconv2d)")
    return packed


@dataclass(frozen=True)
class _Affine:
    """Checked epilogue parameters: per-channel float32 vectors and the requantization."""

    sx: float
    zx: int
    s1: np.ndarray
    s2: np.ndarray
    a: np.ndarray
    c: np.ndarray
    bias: np.ndarray
    out_scale: float | None
    out_zero_point: int | None
    relu: bool


def _channel_vector(name: str, value, n: int, default: float) -> np.ndarray:
    if value is None:
        return np.full(n, default, dtype=np.float32)
    if (isinstance(value, np.ndarray) and value.dtype == np.float32 and value.shape == (n,)
            and value.flags.c_contiguous):
        if not np.isfinite(value).all():
            raise InputError(f"{name}: expected finite values, received {value!r}")
        return value  # the common case of prepared parameters: no copy
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu" or arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != n):
        raise InputError(f"{name}: expected a real number or a ({n},) vector (one per output "
                         f"channel), received {arr.dtype} {arr.shape}")
    arr = np.ascontiguousarray(np.broadcast_to(arr.astype(np.float32), (n,)))
    if not np.isfinite(arr).all():
        raise InputError(f"{name}: expected finite values, received {value!r}")
    return arr


def _affine(packed: PackedPwlqWeights, sx, zx, s1, s2, a, c, bias, out_scale,
            out_zero_point, relu) -> _Affine:
    """The qgemm/qconv epilogue parameters."""
    return epilogue_params(packed.channels, sx, zx, s1, s2, a, c, bias, out_scale,
                           out_zero_point, relu)


def epilogue_params(n: int, sx, zx, s1, s2, a, c, bias, out_scale, out_zero_point,
                    relu) -> _Affine:
    """Checked epilogue parameters for ``n`` output channels (shared with ``sdk.fold_conv``)."""
    if not isinstance(sx, Real) or isinstance(sx, bool) or not math.isfinite(sx) or sx <= 0:
        raise InputError(f"sx: expected a finite activation scale > 0, received {sx!r}")
    if not isinstance(zx, Integral) or isinstance(zx, bool) or not 0 <= zx <= 255:
        raise InputError(f"zx: expected an int zero point in 0..255, received {zx!r}")
    if s1 is None:
        raise InputError("s1: the center scale is required (a number or one per channel)")
    if (out_scale is None) != (out_zero_point is None):
        raise InputError("out_scale, out_zero_point: give both (requantized uint8 output) or "
                         f"neither (float32 output), received {out_scale!r} and "
                         f"{out_zero_point!r}")
    if out_scale is not None:
        if (not isinstance(out_scale, Real) or isinstance(out_scale, bool)
                or not math.isfinite(out_scale) or out_scale <= 0):
            raise InputError(f"out_scale: expected a finite scale > 0, received {out_scale!r}")
        if (not isinstance(out_zero_point, Integral) or isinstance(out_zero_point, bool)
                or not 0 <= out_zero_point <= 255):
            raise InputError(f"out_zero_point: expected an int in 0..255, received "
                             f"{out_zero_point!r}")
    elif relu:
        raise InputError("relu: the ReLU clamp is part of requantization; give out_scale and "
                         "out_zero_point too")
    return _Affine(float(np.float32(sx)), int(zx), _channel_vector("s1", s1, n, 1.0),
                   _channel_vector("s2", s2, n, 0.0),
                   _channel_vector("a", a, n, 1.0), _channel_vector("c", c, n, 0.0),
                   _channel_vector("bias", bias, n, 0.0),
                   None if out_scale is None else float(np.float32(out_scale)),
                   None if out_zero_point is None else int(out_zero_point), bool(relu))


def _gemm_input(X, packed: PackedPwlqWeights) -> np.ndarray:
    X = _array("X", X, np.uint8, (2,), f"(M, {packed.depth})")
    if X.shape[1] != packed.depth:
        raise InputError(f"X: expected shape (M, {packed.depth}) (K of the packed weights), "
                         f"received {X.shape}")
    return X


def qgemm_accumulators(X: np.ndarray, packed: PackedPwlqWeights, *, path: str | None = None,
                       num_threads: int | None = None):
    """The exact integer sums of the PWLQ GEMM.

    Args:
        X: uint8 ``(M, K)``.
        packed: ``(N, K)`` weights from :func:`pack_pwlq_weights`.
        path: ``None``/``"auto"`` or a path of :data:`PATHS` (for testing).
        num_threads: ``None`` (automatic) or the thread count.

    Returns:
        ``(A_c, A_t, R)``: int32 ``(M, N)`` ``Σ X·W0``, ``Σ X·W1`` and int32 ``(M,)`` ``Σ X``
        (zeros for ``A_t`` without a tail).
    """
    packed = _check_packed(packed, conv=False)
    X = _gemm_input(X, packed)
    path, threads = _resolve_path(path), _threads(num_threads)
    m, n = X.shape[0], packed.channels
    a_c, a_t = (np.empty((m, n), dtype=np.int32) for _ in range(2))
    r = np.empty(m, dtype=np.int32)
    if m:
        _kernels.qgemm_accumulators(X, packed.native, a_c, a_t, r, path, threads)
    return a_c, a_t, r


class PwlqGemm:
    """A PWLQ GEMM layer ready to run: packed ``(N, K)`` weights and a checked epilogue.

    Build it once at load time and call it per inference, ``y = layer(X)``; the per-call work is
    then only the input check and the kernel. :func:`qgemm` is ``PwlqGemm(...)(X)``.

    Args:
        packed: ``(N, K)`` weights from :func:`pack_pwlq_weights`.
        sx, zx: activation scale (> 0) and zero point (0..255).
        s1, s2: center and tail scale (the steps of W0 and W1); numbers or ``(N,)``. There is
            no offset argument: the tail offset p = Q·s1 is folded into W0.
        a, c: per-channel bias correction (default 1 and 0).
        bias: per-channel bias (default 0).
        out_scale, out_zero_point: requantize to uint8 (both or neither).
        relu: with requantization, clamp below at ``out_zero_point``.
    """

    def __init__(self, packed: PackedPwlqWeights, sx: float, zx: int, s1, s2=None,
                 a=None, c=None, bias=None, out_scale: float | None = None,
                 out_zero_point: int | None = None, relu: bool = False):
        self.packed = _check_packed(packed, conv=False)
        self.affine = _affine(self.packed, sx, zx, s1, s2, a, c, bias, out_scale,
                              out_zero_point, relu)
        f = self.affine
        self._params = _kernels.PwlqEpilogueArrays(f.s1, f.s2, f.a, f.c, f.bias)
        requantize = f.out_scale is not None
        self._run = _kernels.PreparedQgemm(
            self.packed.native, f.sx, f.zx, self._params, requantize,
            f.out_scale if requantize else 1.0, f.out_zero_point if requantize else 0,
            f.relu if requantize else False)

    def __call__(self, X: np.ndarray, *, path: str | None = None,
                 num_threads: int | None = None) -> np.ndarray:
        """uint8 ``(M, K)`` -> float32 ``(M, N)``, or uint8 ``(M, N)`` when requantized.

        ``path``: ``None``/``"auto"`` or one of :data:`PATHS` (for testing); ``num_threads``:
        ``None`` (automatic) or the thread count.
        """
        path = "auto" if path is None else _resolve_path(path)
        threads = 0 if num_threads is None else _threads(num_threads)
        # The prepared call takes a C-contiguous uint8 (M, K) array as it is and refuses
        # anything else without touching it; only then are the documented checks run (which
        # raise the InputError naming the problem, or copy a non-contiguous array).
        try:
            return self._run(X, path, threads)
        except (TypeError, ValueError):
            pass
        return self._run(_gemm_input(X, self.packed), path, threads)

    def reference(self, X: np.ndarray) -> np.ndarray:
        """The NumPy twin of ``self(X)`` (see :func:`qgemm_reference`)."""
        X = _gemm_input(X, self.packed)
        a_c, a_t, r = _accumulators_reference(X, self.packed)
        return _epilogue_reference(a_c, a_t, r[:, None], self.packed, self.affine)


def qgemm(X: np.ndarray, packed: PackedPwlqWeights, sx: float, zx: int, s1, s2=None,
          a=None, c=None, bias=None, out_scale: float | None = None,
          out_zero_point: int | None = None, relu: bool = False, *, path: str | None = None,
          num_threads: int | None = None) -> np.ndarray:
    """PWLQ W·A8 GEMM of uint8 ``X (M, K)`` with packed ``(N, K)`` weights.

    Arguments as :class:`PwlqGemm` and its call. Returns float32 ``(M, N)``, or uint8 ``(M, N)``
    when requantized. For repeated calls with the same layer, build a :class:`PwlqGemm` once.
    """
    layer = PwlqGemm(packed, sx, zx, s1, s2, a, c, bias, out_scale, out_zero_point, relu)
    return layer(X, path=path, num_threads=num_threads)


def _pair(name: str, value, minimum: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, Integral) and not isinstance(value, bool) else value
    try:
        h, w = pair
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected an int or a pair of ints >= {minimum}, "
                         f"received {value!r}") from None
    if not all(isinstance(v, Integral) and not isinstance(v, bool) and v >= minimum
               for v in (h, w)):
        raise InputError(f"{name}: expected an int or a pair of ints >= {minimum}, "
                         f"received {value!r}")
    return int(h), int(w)


class PwlqConv2d:
    """A PWLQ 2-D convolution layer ready to run (cross-correlation, as
    ``torch.nn.functional.conv2d``): packed weights, geometry and a checked epilogue.

    Args:
        packed: ``(C_out, C_in/groups, KH, KW)`` weights from :func:`pack_pwlq_weights`; the
            groups are the packed ones (depthwise: ``groups = C_in = C_out``).
        stride, padding, dilation: an int or an ``(h, w)`` pair. Padding is filled with the zero
            point ``zx``, so it represents the real value 0.0.
        Other arguments: as :class:`PwlqGemm`; the reduction index is
            ``k = (c·KH + kh)·KW + kw`` over the group's input channels.
    """

    def __init__(self, packed: PackedPwlqWeights, sx: float, zx: int, s1, s2=None,
                 a=None, c=None, bias=None, out_scale: float | None = None,
                 out_zero_point: int | None = None, relu: bool = False, *, stride=1, padding=0,
                 dilation=1):
        self.packed = _check_packed(packed, conv=True)
        self.stride, self.padding = _pair("stride", stride, 1), _pair("padding", padding, 0)
        self.dilation = _pair("dilation", dilation, 1)
        self.affine = _affine(self.packed, sx, zx, s1, s2, a, c, bias, out_scale,
                              out_zero_point, relu)
        f = self.affine
        self._params = _kernels.PwlqEpilogueArrays(f.s1, f.s2, f.a, f.c, f.bias)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(H_out, W_out)`` with ``H_out = (H + 2·pad − dil·(KH − 1) − 1) // stride + 1``."""
        kernel = self.packed.shape[2:]
        return tuple((size + 2 * pad - dil * (k - 1) - 1) // s + 1 for size, pad, dil, k, s in
                     zip((height, width), self.padding, self.dilation, kernel, self.stride))

    def _input(self, X, dtype=np.uint8) -> tuple[np.ndarray, tuple[int, int]]:
        X = _array("X", X, dtype, (4,), "(B, C_in, H, W)")
        c_in = self.packed.shape[1] * self.packed.groups
        if X.shape[1] != c_in or 0 in X.shape[2:]:
            raise InputError(f"X: expected shape (B, {c_in}, H, W) (C_in = {self.packed.shape[1]} "
                             f"per group × {self.packed.groups} groups, H, W > 0), received "
                             f"{X.shape}")
        out = self.output_size(*X.shape[2:])
        if min(out) <= 0:
            kh, kw = self.packed.shape[2:]
            raise InputError(f"X: the {kh}x{kw} kernel with dilation {self.dilation} does not fit "
                             f"the input {X.shape[2:]} padded by {self.padding}")
        return X, out

    def __call__(self, X: np.ndarray, *, path: str | None = None,
                 num_threads: int | None = None) -> np.ndarray:
        """uint8 ``(B, C_in, H, W)`` -> float32 ``(B, C_out, H_out, W_out)``, or uint8 when
        requantized. ``path`` and ``num_threads`` as :meth:`PwlqGemm.__call__`."""
        X, out = self._input(X)
        path, threads = _resolve_path(path), _threads(num_threads)
        f = self.affine
        shape = (X.shape[0], self.packed.channels, *out)
        kh, kw = self.packed.shape[2:]
        geometry = (kh, kw, *self.stride, *self.padding, *self.dilation)
        y = np.empty(shape, dtype=np.float32 if f.out_scale is None else np.uint8)
        if X.shape[0]:
            if f.out_scale is None:
                _kernels.qconv2d(X, self.packed.native, *geometry, f.sx, f.zx, self._params, y,
                                 None, 1.0, 0, False, path, threads)
            else:
                _kernels.qconv2d(X, self.packed.native, *geometry, f.sx, f.zx, self._params, None,
                                 y, f.out_scale, f.out_zero_point, f.relu, path, threads)
        return y

    def prepare_float(self, *, clip: tuple[float, float] | None = None, relu: bool = False,
                      path: str | None = None, num_threads: int | None = None):
        """A callable ``f(X, residual=None)`` for float32 ``(B, C_in, H, W)`` C-contiguous
        inputs that returns what ``self(quantize_linear(X, sx, zx, clip))`` returns, with the
        quantization done inside the kernel: ONNX QuantizeLinear with this layer's ``(sx, zx)``
        (``x / sx``, a true float32 division; round half to even; ``+ zx``; saturate to 0..255)
        after ``clip(x, lo, hi)`` when ``clip = (lo, hi)`` (the Clip before QuantizeLinear of
        activations under 8 bits). Float output only: ``residual`` (float32, the output's
        shape) is added to ``y`` as it is stored (a following Add, fused), then ``relu`` applies
        ``maximum(y, 0)`` (a following Relu, fused), in float32 and in that order. Everything
        is bound once, so a call costs one C++ call; it checks the input's rank, channels and
        size and raises ``ValueError`` (a wrong dtype or layout raises ``TypeError``: nothing is
        converted)."""
        lo, hi, has_clip = _clip_range(clip)
        f = self.affine
        if relu and f.out_scale is not None:
            raise InputError("relu: fuses a Relu into the float output; a requantized layer "
                             "clamps with its own relu flag")
        kh, kw = self.packed.shape[2:]
        requant = f.out_scale is not None
        return _kernels.PreparedQConv2d(
            self.packed.native, kh, kw, *self.stride, *self.padding, *self.dilation, f.sx,
            has_clip, lo, hi, f.sx, f.zx, self._params, requant,
            f.out_scale if requant else 1.0, f.out_zero_point if requant else 0,
            f.relu if requant else bool(relu), _resolve_path(path), _threads(num_threads))

    def from_float(self, X: np.ndarray, *, clip: tuple[float, float] | None = None,
                   relu: bool = False, path: str | None = None,
                   num_threads: int | None = None) -> np.ndarray:
        """float32 ``(B, C_in, H, W)`` -> as :meth:`__call__`, quantized inside the kernel: see
        :meth:`prepare_float` (build that once for repeated calls)."""
        X, _ = self._input(X, np.float32)
        return self.prepare_float(clip=clip, relu=relu, path=path, num_threads=num_threads)(X)

    def reference(self, X: np.ndarray) -> np.ndarray:
        """The NumPy twin of ``self(X)``: im2col (padded with ``zx``) and an int64 GEMM per
        group, then the same float32 epilogue."""
        X, out = self._input(X)
        packed, f = self.packed, self.affine
        groups, (c_out, c_in_g, kh, kw) = packed.groups, packed.shape
        n_g = c_out // groups
        codes = [w.astype(np.int64) for w in packed.codes_2d()]
        acc: list[list[np.ndarray]] = [[], []]
        r = []
        for grp in range(groups):
            cols = im2col_reference(X[:, grp * c_in_g:(grp + 1) * c_in_g], (kh, kw), self.stride,
                                    self.padding, self.dilation, f.zx).astype(np.int64)
            channels = slice(grp * n_g, (grp + 1) * n_g)
            for parts, w in zip(acc, codes):
                parts.append(cols @ w[channels].T)  # (B, M, N_g)
            # Each group's channels see the sum of the group's own input window.
            r.append(np.repeat(cols.sum(axis=2, keepdims=True), n_g, axis=2))
        a_c, a_t = (np.concatenate(parts, axis=2) for parts in acc)
        y = _epilogue_reference(a_c, a_t, np.concatenate(r, axis=2), packed, f)  # (B, M, N)
        return np.ascontiguousarray(y.transpose(0, 2, 1).reshape(X.shape[0], c_out, *out))


def _clip_range(clip) -> tuple[float, float, bool]:
    """(lo, hi, given) of an optional ``(lo, hi)`` clip of float inputs."""
    if clip is None:
        return 0.0, 0.0, False
    try:
        lo, hi = (float(v) for v in clip)
    except (TypeError, ValueError):
        raise InputError(f"clip: expected None or a (low, high) pair of numbers, received "
                         f"{clip!r}") from None
    if not lo <= hi:
        raise InputError(f"clip: expected low <= high, received {clip!r}")
    return lo, hi, True


def quantize_linear(x: np.ndarray, scale: float, zero_point: int,
                    clip: tuple[float, float] | None = None) -> np.ndarray:
    """ONNX QuantizeLinear to uint8 in float32, the NumPy twin of the kernels' input
    quantization: ``saturate(round_half_even(x / scale) + zero_point)``, after
    ``clip(x, lo, hi)`` when ``clip = (lo, hi)``."""
    if clip is not None:
        lo, hi, _ = _clip_range(clip)
        x = np.clip(x, np.float32(lo), np.float32(hi))
    q = np.rint(np.divide(x, np.float32(scale), dtype=np.float32))
    q += np.float32(zero_point)
    return np.clip(q, 0, 255).astype(np.uint8)


def qconv2d(X: np.ndarray, packed: PackedPwlqWeights, sx: float, zx: int, s1, s2=None,
            a=None, c=None, bias=None, out_scale: float | None = None,
            out_zero_point: int | None = None, relu: bool = False, *, stride=1, padding=0,
            dilation=1, path: str | None = None, num_threads: int | None = None) -> np.ndarray:
    """PWLQ W·A8 2-D convolution of uint8 ``X (B, C_in, H, W)``: ``PwlqConv2d(...)(X)``.

    Returns float32 ``(B, C_out, H_out, W_out)``, or uint8 when requantized.
    """
    layer = PwlqConv2d(packed, sx, zx, s1, s2, a, c, bias, out_scale, out_zero_point, relu,
                       stride=stride, padding=padding, dilation=dilation)
    return layer(X, path=path, num_threads=num_threads)


# ------------------------------------------------------------------------------ NumPy twins --

def qgemm_accumulators_reference(X: np.ndarray, packed: PackedPwlqWeights):
    """NumPy twin of :func:`qgemm_accumulators` (int64 sums, returned as int32)."""
    packed = _check_packed(packed, conv=False)
    X = _gemm_input(X, packed)
    return _accumulators_reference(X, packed)


def _accumulators_reference(X: np.ndarray, packed: PackedPwlqWeights):
    w0, w1 = (w.astype(np.int64) for w in packed.codes_2d())
    x = X.astype(np.int64)
    sums = (x @ w0.T, x @ w1.T, x.sum(axis=1))
    return tuple(v.astype(np.int32) for v in sums)  # |values| < 2**31 for K <= 65536


def _epilogue_reference(a_c, a_t, r, packed: PackedPwlqWeights, f: _Affine) -> np.ndarray:
    """The documented float32 epilogue on integer sums: ``a_*`` ``(..., M, N)``, ``r`` the
    matching ``(..., M, 1)`` or ``(..., M, N)`` window sums."""
    w0, w1 = (w.astype(np.int64) for w in packed.codes_2d())
    zx = np.int64(f.zx)
    f32 = np.float32
    sx = np.float64(f.sx)
    a64 = f.a.astype(np.float64)
    alpha_c = ((sx * f.s1.astype(np.float64)) * a64).astype(f32)
    alpha_t = ((sx * f.s2.astype(np.float64)) * a64).astype(f32)
    gamma = (f.c.astype(np.float64) * sx).astype(f32)
    ac = (a_c.astype(np.int64) - zx * w0.sum(axis=1)).astype(f32)
    y = ac * alpha_c
    if packed.has_tail:
        at = (a_t.astype(np.int64) - zx * w1.sum(axis=1)).astype(f32)
        y = y + at * alpha_t
    rr = (r.astype(np.int64) - zx * packed.depth).astype(f32)
    y = y + rr * gamma
    y = y + f.bias
    if f.out_scale is None:
        return y
    t = np.rint(y / f32(f.out_scale)) + f32(f.out_zero_point)
    low = f32(f.out_zero_point if f.relu else 0)
    t = np.where(t > low, t, low)
    t = np.where(t < f32(255), t, f32(255))
    return t.astype(np.uint8)


def qgemm_reference(X: np.ndarray, packed: PackedPwlqWeights, sx: float, zx: int, s1, s2=None,
                    a=None, c=None, bias=None, out_scale: float | None = None,
                    out_zero_point: int | None = None, relu: bool = False) -> np.ndarray:
    """NumPy twin of :func:`qgemm`: same arguments (no ``path``/``num_threads``), same bits."""
    return PwlqGemm(packed, sx, zx, s1, s2, a, c, bias, out_scale, out_zero_point,
                    relu).reference(X)


def im2col_reference(X: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                     padding: tuple[int, int], dilation: tuple[int, int],
                     pad_value: int) -> np.ndarray:
    """uint8 ``(B, C, H, W)`` -> ``(B, H_out·W_out, C·KH·KW)``, k = (c·KH + kh)·KW + kw, padded
    with ``pad_value``."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    xp = np.pad(X, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    b, ch = X.shape[:2]
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((b, ch, kh, kw, oh, ow), dtype=X.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                                  j * dw:j * dw + sw * (ow - 1) + 1:sw]
    return cols.reshape(b, ch * kh * kw, oh * ow).transpose(0, 2, 1)


def qconv2d_reference(X: np.ndarray, packed: PackedPwlqWeights, sx: float, zx: int, s1, s2=None,
                      a=None, c=None, bias=None, out_scale: float | None = None,
                      out_zero_point: int | None = None, relu: bool = False, *, stride=1,
                      padding=0, dilation=1) -> np.ndarray:
    """NumPy twin of :func:`qconv2d`: same arguments (no ``path``/``num_threads``), same bits."""
    return PwlqConv2d(packed, sx, zx, s1, s2, a, c, bias, out_scale, out_zero_point, relu,
                      stride=stride, padding=padding, dilation=dilation).reference(X)
