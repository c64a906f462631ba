"""Folded convolution (Fold-ASPP): Fold → K×K dilated convolution → Unfold in one kernel call.

The "folded convolution" of Zhao et al. (*Suppress and Balance*, ECCV 2020, Sect. 3.3) gathers
each 2×2 stride-2 window of the input into the channel axis ("Fold", space-to-depth), runs a
dilated convolution on the half-resolution, 4×-channel tensor, and scatters the channels back
("Unfold", depth-to-space). Every function here computes exactly PyTorch's::

    pixel_shuffle(conv2d(pixel_unshuffle(x, 2), weight, bias, padding=p, dilation=d), 2)

with ``weight`` the folded convolution's ``(4·C_out, 4·C_in, K, K)`` weight. Channel order is
PyTorch's: folded channel ``c·4 + bh·2 + bw`` holds pixel ``(2i + bh, 2j + bw)`` of channel
``c``, for the input (``pixel_unshuffle``) and the output (``pixel_shuffle``, ONNX
``DepthToSpace`` mode ``"CRD"``). ONNX ``SpaceToDepth`` orders the input channels differently,
``(bh·2 + bw)·C + c``; :func:`weight_from_space_to_depth` converts a weight written for it.

Two implementations with one meaning each, as in :mod:`sdk.preprocess`:

- :func:`fold_conv2d` (FP32) and :func:`fold_qconv2d` / :func:`fold_qconv2d_accumulators`
  (uint8 activations, int8 or PWLQ weights) run the C++ kernels (``kernels/src/fold_conv*.cpp``,
  GIL released, threaded), which never materialise the folded tensors: output pixel ``(y, x)``
  is computed from folded position ``(y//2, x//2)`` and folded channel
  ``c_out·4 + (y%2)·2 + x%2`` by index math on the original NCHW input;
- the ``*_reference`` functions are their NumPy twins (fold, im2col, matrix product, unfold).

FP32 algorithms: on AVX-512 and AVX2 CPUs a 3×3 kernel can run as Winograd on dilated tiles
(the fold is in the zero-padded planes of 2×2 pixel blocks the input transform reads, the unfold
in the scatter of the output transform): F(2×2, 3×3) (paths ``avx512_winograd``,
``avx2_winograd``; 2.25× fewer multiplications) or F(4×4, 3×3) (``avx512_winograd4``,
``avx2_winograd4``; 4× fewer, interpolation points 0, ±1, ½, −2, whose error against the direct
kernel stays at F(2×2)'s level where Lavin's 0, ±1, ±2 gave four times it). Transformed weights
(16/9 and 36/9 the size of the plain ones) are packed once; the per-call scratch is kept by the
calling thread (64-byte aligned). The automatic path picks direct, F(2×2) or F(4×4) by a cost
model (``kernels/src/fold_conv.cpp``, ``winograd_cost``): per output, Winograd pays
``α²·slots/(9·outputs)`` (slots: 16 per vector of tiles; a tile runs partly empty where its
size does not divide a residue class modulo ``d``) plus 20 % (F(2×2)) or 35 % (F(4×4)) for its
transforms, the direct kernel the fraction of kernel rows inside the image; Winograd runs from
16 tiles when it costs at most 0.9 of direct (1.0 on AVX2, whose direct kernel has half the
lanes and registers), and on AVX-512 F(4×4) only from 4 vectors of tiles in a pass (with fewer,
its GEMM waits on the 9.4 MB of transformed weights it streams per pass at 64 channels). A batch
goes through in passes of several images (up to 8 vectors of tiles, each image's output
bit-identical to its own call), so the weights are read once per pass: at 28×28 d=2, batch 4
takes F(4×4) on AVX-512 too, 1.4× faster than per image.
:func:`fp32_algorithm` says which path a call runs: on this AVX-512 host 56×56 inputs at dilation
2 and 4 take F(4×4), 56×56 at 6 and 28×28 at 2 and 4 F(2×2), 28×28 at 6 the direct kernel; on
AVX2 28×28 at 2 and 4 take F(4×4) as well. On aarch64 ``neon_winograd`` / ``neon_winograd4`` are
the same transforms on NEON (chosen as on AVX2; their twins run under qemu, their speed is not
measured here). On other kernel sizes and the ``avx512``/``avx2``/``scalar`` paths the direct
kernel runs (the portable one on aarch64). The forms differ from each other and from PyTorch by
float rounding only.

Integer arithmetic is the PWLQ W·A8 arithmetic of :mod:`sdk.kernels_int` applied to the folded
convolution, in its folded PWLQ form (W0 the folded center codes, W1 the tail codes; no sign
tensor, no offset): per folded output channel ``n`` and folded position, exact int32 sums
``A_c = Σ X·W0``, ``A_t = Σ X·W1`` over the ``4·C_in·K·K`` window (padding is
the zero point ``zx``, i.e. the real value 0.0), ``R = Σ X`` over the same window, and then the
float32 epilogue of :mod:`sdk.kernels_int` in the same order (per-channel parameters have
``4·C_out`` entries, indexed by ``n``), optionally requantized to uint8. The twins reproduce it
bit for bit. Integer paths: ``avx512vnni`` (vpdpbusd), ``avx2`` (vpmaddubsw, kept free of saturation:
up to ``32767 // (510·max|code|)`` groups are summed in int16 before widening, 9 for 4-bit
PWLQ, and for codes beyond ±64 the activations are split into nibbles, ``x = 16·high + low``,
summed in runs of 8), ``neon_dot`` (aarch64
``sdot`` on ``x − 128``, corrected by ``128·ΣW``; the Jetson path, tested under qemu) and
``scalar``. FP32 results differ from PyTorch only by summation order (well within ``1e-4`` for
unit-scale data).

Input rules: arrays must already have the right dtype (float32 / uint8 / int8) and are never
cast; a C-contiguous array goes to C++ without a copy, any other layout is copied once. H and W
of the input must be even. Every violation raises :class:`~sdk.errors.InputError` (a
``ValueError``) naming the array, what was expected and what was received.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np

from . import _kernels
from .errors import InputError
from .kernels_int import _threads, check_path, epilogue_params

__all__ = ["PATHS", "INTEGER_PATHS", "available_paths", "simd_path", "same_padding",
           "PackedFoldWeights", "pack_fold_weights", "fold_conv2d", "fp32_algorithm",
           "PackedFoldQWeights", "pack_fold_qweights", "fold_qconv2d_accumulators",
           "fold_qconv2d", "FoldQConvLayer", "prepare_fold_qconv2d",
           "weight_from_space_to_depth", "FoldConvLayer", "FoldASPPHead",
           "fold_reference", "unfold_reference", "space_to_depth_reference",
           "depth_to_space_reference", "fold_conv2d_reference",
           "fold_qconv2d_accumulators_reference", "fold_qconv2d_reference"]

#: instruction-set paths of the FP32 kernel (``*_winograd``: Winograd F(2×2, 3×3) for K = 3,
#: ``*_winograd4``: F(4×4, 3×3); the direct kernel of the same ISA otherwise) and of the
#: integer kernel
PATHS = ("scalar", "avx2", "avx2_winograd", "avx2_winograd4", "avx512", "avx512_winograd",
         "avx512_winograd4", "neon_winograd", "neon_winograd4")
INTEGER_PATHS = ("scalar", "avx2", "avx512vnni", "neon_dot")
_MAX_DEPTH = 65536  # 255·128·depth must fit an int32 accumulator


def available_paths(integer: bool = False) -> dict[str, str | None]:
    """``{path: None}`` for the paths the FP32 (or integer) kernel takes here, else the reason."""
    names = INTEGER_PATHS if integer else PATHS
    return {name: (why or None) for name, why in _kernels.fold_conv_paths(integer).items()
            if name in names}


def simd_path(integer: bool = False) -> str:
    """The path taken by default here (``PRISM_DISABLE_SIMD=1`` forces ``scalar``)."""
    return _kernels.fold_conv_best_path(integer)


# ------------------------------------------------------------------------------ input checks --

def _resolve_path(path: str | None, integer: bool) -> str:
    return check_path(path, INTEGER_PATHS if integer else PATHS, lambda: available_paths(integer))


def _array(name: str, value, dtype, ndim: int, expected: str) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype`` (a view when possible; never cast)."""
    if not isinstance(value, np.ndarray):
        raise InputError(f"{name}: expected a numpy.ndarray of dtype {np.dtype(dtype)} with shape "
                         f"{expected}, received {type(value).__name__}")
    if value.dtype != dtype:
        raise InputError(f"{name}: expected dtype {np.dtype(dtype)} with shape {expected}, "
                         f"received {value.dtype} {value.shape} (convert explicitly; arrays are "
                         f"never cast)")
    if value.ndim != ndim:
        raise InputError(f"{name}: expected shape {expected}, received {value.shape}")
    return value if value.flags.c_contiguous else np.ascontiguousarray(value)


def _input(name: str, x, dtype, in_channels: int) -> np.ndarray:
    x = _array(name, x, dtype, 4, f"(N, {in_channels}, H, W) with H and W even")
    n, c, h, w = x.shape
    if c != in_channels:
        raise InputError(f"{name}: expected shape (N, {in_channels}, H, W) (C_in of the weights), "
                         f"received {x.shape}")
    if h == 0 or w == 0 or h % 2 or w % 2:
        raise InputError(f"{name}: H and W must be even and positive (the 2x2 fold), received "
                         f"shape {x.shape}")
    return x


def _weight_shape(name: str, w: np.ndarray) -> tuple[int, int, int]:
    """``(C_in, C_out, K)`` of a folded ``(4·C_out, 4·C_in, K, K)`` weight."""
    o, i, kh, kw = w.shape
    if o == 0 or i == 0 or o % 4 or i % 4 or kh != kw or kh == 0:
        raise InputError(f"{name}: expected shape (4*C_out, 4*C_in, K, K) (the folded "
                         f"convolution's weight), received {w.shape}")
    if i * kh * kw > _MAX_DEPTH:
        raise InputError(f"{name}: 4*C_in*K*K = {i * kh * kw} exceeds {_MAX_DEPTH}")
    return i // 4, o // 4, kh


def same_padding(kernel: int, dilation: int) -> int:
    """The padding (in folded pixels) that keeps the output the size of the input."""
    total = dilation * (kernel - 1)
    if total % 2:
        raise InputError(f"padding: 'same' needs an even dilation*(K-1), received K={kernel}, "
                         f"dilation={dilation}; give the padding explicitly")
    return total // 2


def _dilation_padding(kernel: int, dilation, padding) -> tuple[int, int]:
    """Checked ``(dilation, padding)``, ``"same"`` resolved."""
    if not isinstance(dilation, Integral) or isinstance(dilation, bool) or dilation < 1:
        raise InputError(f"dilation: expected an int >= 1, received {dilation!r}")
    if isinstance(padding, str) and padding == "same":
        padding = same_padding(kernel, dilation)
    elif not isinstance(padding, Integral) or isinstance(padding, bool) or padding < 0:
        raise InputError(f"padding: expected 'same' or an int >= 0 (folded pixels), "
                         f"received {padding!r}")
    return int(dilation), int(padding)


def _geometry(x, kernel: int, dilation, padding) -> tuple[int, int, int, int]:
    """Checked ``(dilation, padding, Hf, Wf)``: the folded output size for the array ``x``
    (or its shape) ``(N, C, H, W)``."""
    dilation, padding = _dilation_padding(kernel, dilation, padding)
    shape = x.shape if isinstance(x, np.ndarray) else tuple(x)
    hf, wf = (s // 2 + 2 * padding - dilation * (kernel - 1) for s in shape[2:])
    if hf <= 0 or wf <= 0:
        raise InputError(f"x: the {kernel}x{kernel} kernel with dilation {dilation} does not fit "
                         f"the folded input {(shape[2] // 2, shape[3] // 2)} padded by "
                         f"{padding}")
    return int(dilation), int(padding), int(hf), int(wf)


def _frozen(a: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return None
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


# ------------------------------------------------------------------------------------- FP32 --

@dataclass(frozen=True, eq=False)
class PackedFoldWeights:
    """FP32 folded-convolution weights packed once (at load time) by :func:`pack_fold_weights`.

    Attributes:
        weight: read-only float32 ``(4·C_out, 4·C_in, K, K)`` copy (for the twin).
        bias: read-only float32 ``(4·C_out,)`` copy or ``None``.
    """

    weight: np.ndarray
    bias: np.ndarray | None
    native: object

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] // 4

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0] // 4

    @property
    def kernel(self) -> int:
        return self.weight.shape[2]


def pack_fold_weights(weight: np.ndarray, bias: np.ndarray | None = None) -> PackedFoldWeights:
    """Check and pack a folded convolution's weight (and bias) for :func:`fold_conv2d`.

    Args:
        weight: float32 ``(4·C_out, 4·C_in, K, K)``, the weight of the convolution between
            ``pixel_unshuffle`` and ``pixel_shuffle`` (PyTorch channel order).
        bias: float32 ``(4·C_out,)`` or ``None``.
    """
    weight = _array("weight", weight, np.float32, 4, "(4*C_out, 4*C_in, K, K)")
    _weight_shape("weight", weight)
    if bias is not None:
        bias = _array("bias", bias, np.float32, 1, f"({weight.shape[0]},)")
        if bias.shape[0] != weight.shape[0]:
            raise InputError(f"bias: expected shape ({weight.shape[0]},) (4*C_out), "
                             f"received {bias.shape}")
    native = _kernels.pack_fold_weights(weight, bias)
    return PackedFoldWeights(_frozen(weight), _frozen(bias), native)


def _packed_fp32(weight, bias) -> PackedFoldWeights:
    if isinstance(weight, PackedFoldWeights):
        if bias is not None:
            raise InputError("bias: the packed weights carry their bias; pass bias=None")
        return weight
    return pack_fold_weights(weight, bias)


def fold_conv2d(x: np.ndarray, weight, bias: np.ndarray | None = None, *, dilation: int = 1,
                padding="same", relu: bool = False, path: str | None = None,
                num_threads: int | None = None) -> np.ndarray:
    """Fused ``pixel_shuffle(conv2d(pixel_unshuffle(x, 2), weight, bias, p, d), 2)`` in FP32.

    Args:
        x: float32 ``(N, C_in, H, W)``, H and W even.
        weight: float32 ``(4·C_out, 4·C_in, K, K)`` or :class:`PackedFoldWeights` (pack once
            with :func:`pack_fold_weights` when calling repeatedly).
        bias: float32 ``(4·C_out,)`` or ``None`` (must be ``None`` with packed weights).
        dilation: in folded pixels (2, 4, 6 in Fold-ASPP).
        padding: ``"same"`` (``dilation·(K−1)/2``, output size = input size) or an int, in
            folded pixels; zero padding.
        relu: apply ``max(y, 0)`` to the output.
        path: ``None``/``"auto"`` or one of :data:`PATHS` (for testing).
        num_threads: ``None`` (automatic) or the thread count.

    Returns:
        float32 ``(N, C_out, 2·Hf, 2·Wf)`` with ``Hf = H/2 + 2·padding − dilation·(K−1)``.

    Raises:
        InputError: wrong dtype or shape, odd H or W, a kernel that does not fit.
    """
    packed = _packed_fp32(weight, bias)
    x = _input("x", x, np.float32, packed.in_channels)
    d, p, hf, wf = _geometry(x, packed.kernel, dilation, padding)
    path, threads = _resolve_path(path, False), _threads(num_threads)
    y = np.empty((x.shape[0], packed.out_channels, 2 * hf, 2 * wf), dtype=np.float32)
    if x.shape[0]:
        _kernels.fold_conv2d(x, packed.native, d, p, bool(relu), y, path, threads)
    return y


def fp32_algorithm(x_shape, weight, *, dilation: int = 1, padding="same",
                   path: str | None = None) -> str:
    """The FP32 path :func:`fold_conv2d` runs for input shape ``x_shape`` ``(N, C_in, H, W)``
    and ``weight`` (an array or :class:`PackedFoldWeights`): ``path`` itself, or for
    ``None``/``"auto"`` this host's best ISA and there, for a 3×3 kernel, its direct path or
    Winograd F(2×2, 3×3) (``*_winograd``) or F(4×4, 3×3) (``*_winograd4``) by the cost model; a
    Winograd path runs its direct kernel (``avx512``, ``avx2``) for other kernel sizes."""
    if isinstance(weight, PackedFoldWeights):
        c_in, c_out, k = weight.in_channels, weight.out_channels, weight.kernel
    else:
        c_in, c_out, k = _weight_shape("weight", np.asarray(weight))
    if len(x_shape) != 4 or x_shape[1] != c_in:
        raise InputError(f"x_shape: expected (N, {c_in}, H, W) for this weight, got "
                         f"{tuple(x_shape)}")
    d, p, _, _ = _geometry(x_shape, k, dilation, padding)
    return _kernels.fold_conv_fp32_algorithm(int(x_shape[0]), c_in, int(x_shape[2]),
                                             int(x_shape[3]), c_out, k, d, p,
                                             _resolve_path(path, False))


def weight_from_space_to_depth(weight: np.ndarray) -> np.ndarray:
    """The kernel weight of a convolution written for ONNX ``SpaceToDepth`` input.

    ONNX ``SpaceToDepth`` (blocksize 2) orders channels ``(bh·2 + bw)·C + c``; PyTorch's
    ``pixel_unshuffle`` and these kernels order them ``c·4 + bh·2 + bw``. A
    ``SpaceToDepth → Conv(W) → DepthToSpace(mode="CRD")`` graph is the folded convolution with
    the returned weight. ``weight``: ``(4·C_out, 4·C_in, K, K)``, any dtype.
    """
    weight = np.asarray(weight)
    if weight.ndim != 4 or weight.shape[1] % 4:
        raise InputError(f"weight: expected shape (4*C_out, 4*C_in, K, K), received "
                         f"{weight.shape}")
    o, i, kh, kw = weight.shape
    # Input axis (q, c) with q = bh·2 + bw  ->  (c, q).
    w = weight.reshape(o, 4, i // 4, kh, kw).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(w.reshape(o, i, kh, kw))


@dataclass(frozen=True)
class FoldConvLayer:
    """One FP32 folded convolution ready to run: packed weights (bias included), dilation,
    padding (folded pixels) and an optional ReLU. ``layer(x)`` is :func:`fold_conv2d`."""

    packed: PackedFoldWeights
    dilation: int
    padding: int
    relu: bool = False

    def __call__(self, x: np.ndarray, *, num_threads: int | None = None) -> np.ndarray:
        return fold_conv2d(x, self.packed, dilation=self.dilation, padding=self.padding,
                           relu=self.relu, num_threads=num_threads)


@dataclass(frozen=True)
class FoldASPPHead:
    """Fold-ASPP on the native kernels (no PyTorch): the branches run on the same input, their
    outputs are concatenated along channels and fused (see ``sdk.models.FoldASPP``)."""

    branches: tuple[FoldConvLayer, ...]
    fuse: FoldConvLayer

    def __call__(self, x: np.ndarray, *, num_threads: int | None = None) -> np.ndarray:
        merged = np.concatenate([b(x, num_threads=num_threads) for b in self.branches], axis=1)
        return self.fuse(merged, num_threads=num_threads)


# ---------------------------------------------------------------------------------- integer --

@dataclass(frozen=True, eq=False)
class PackedFoldQWeights:
    """Integer folded-convolution codes packed once by :func:`pack_fold_qweights`.

    Attributes:
        center, tail: read-only int8 ``(4·C_out, 4·C_in, K, K)`` copies of W0 (folded center
            codes) and W1 (tail codes), for the twins; ``tail`` is ``None`` for uniform int8
            weights.
    """

    center: np.ndarray
    tail: np.ndarray | None
    native: object

    @property
    def in_channels(self) -> int:
        return self.center.shape[1] // 4

    @property
    def out_channels(self) -> int:
        return self.center.shape[0] // 4

    @property
    def kernel(self) -> int:
        return self.center.shape[2]

    @property
    def channels(self) -> int:
        """Folded output channels, ``4·C_out``: the length of the per-channel parameters."""
        return self.center.shape[0]

    @property
    def depth(self) -> int:
        """``4·C_in·K·K``, the reduction depth of one folded output value."""
        return int(np.prod(self.center.shape[1:]))

    @property
    def has_tail(self) -> bool:
        return self.tail is not None

    @property
    def tail_group_density(self) -> float:
        """Fraction of (channel, input channel, tap) 4-byte groups holding a non-zero tail code:
        what the AVX2 and NEON dot-product tail passes visit."""
        return self.native.tail_group_density

    @property
    def tail_code_density(self) -> float:
        """Fraction of the tail codes ``W1`` that are non-zero."""
        return self.native.tail_code_density

    @property
    def tail_quad_density(self) -> float:
        """Quads of tail codes (4 codes from any groups of one channel and kernel row, the last
        of each padded) per (channel, input channel, tap) group: what the AVX-512 VNNI tail
        pass visits, one ``vpdpbusd`` per quad and 16 pixels."""
        return self.native.tail_quad_density

    def codes(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W0, W1)`` as int8 ``(4·C_out, 4·C_in, K, K)`` (zeros for a missing tail)."""
        if self.tail is None:
            return self.center, np.zeros_like(self.center)
        return self.center, self.tail


def pack_fold_qweights(center: np.ndarray, tail: np.ndarray | None = None) -> PackedFoldQWeights:
    """Check and pack integer codes of a folded convolution for :func:`fold_qconv2d`.

    The PWLQ form is :mod:`sdk.kernels_int`'s folded one (``pack_pwlq_weights``): the weight is
    ``s1·W0 + s2·W1``, the tail offset ``p = Q·s1`` already folded into W0
    (:meth:`sdk.formats.layer_table.LayerTable.folded_codes`), so there is no sign tensor and no
    offset. As there, the codes themselves are not constrained.

    Args:
        center: int8 ``(4·C_out, 4·C_in, K, K)``: the uniform int8 codes, or W0, the PWLQ folded
            center codes (the center codes, and ``Q·sign`` at every tail weight).
        tail: int8, same shape: W1, the PWLQ tail codes (0 outside the tail); ``None`` for int8
            weights.

    Raises:
        InputError: wrong dtype or shape; the message names the array.
    """
    expected = "(4*C_out, 4*C_in, K, K)"
    center = _array("center", center, np.int8, 4, expected)
    _weight_shape("center", center)
    if tail is not None:
        tail = _array("tail", tail, np.int8, 4, str(center.shape))
        if tail.shape != center.shape:
            raise InputError(f"tail: expected the shape of center {center.shape}, "
                             f"received {tail.shape}")
    native = _kernels.pack_fold_qweights(center, tail)
    return PackedFoldQWeights(_frozen(center), _frozen(tail), native)


def _check_qpacked(packed) -> PackedFoldQWeights:
    if not isinstance(packed, PackedFoldQWeights):
        raise InputError(f"packed: expected PackedFoldQWeights from pack_fold_qweights, "
                         f"received {type(packed).__name__}")
    return packed


def _zero_point(zx) -> int:
    if not isinstance(zx, Integral) or isinstance(zx, bool) or not 0 <= zx <= 255:
        raise InputError(f"zx: expected an int zero point in 0..255, received {zx!r}")
    return int(zx)


def _affine(packed: PackedFoldQWeights, sx, zx, s1, s2, a, c, bias, out_scale,
            out_zero_point, relu):
    """Checked epilogue parameters, one per folded output channel (4·C_out)."""
    return epilogue_params(packed.channels, sx, zx, s1, s2, a, c, bias, out_scale,
                           out_zero_point, relu)


def fold_qconv2d_accumulators(X: np.ndarray, packed: PackedFoldQWeights, zx: int, *,
                              dilation: int = 1, padding="same", path: str | None = None,
                              num_threads: int | None = None):
    """The exact integer sums of the folded convolution.

    Args:
        X: uint8 ``(N, C_in, H, W)``, H and W even.
        packed: codes from :func:`pack_fold_qweights`.
        zx: the activation zero point (0..255), also the padding value.
        dilation, padding, path, num_threads: as :func:`fold_conv2d` (``path`` from
            :data:`INTEGER_PATHS`).

    Returns:
        ``(A_c, A_t, R)``: int32 ``(N, C_out, 2·Hf, 2·Wf)`` ``Σ X·W0`` and ``Σ X·W1`` laid out
        like the unfolded output (pixel ``(y, x)`` holds folded channel ``c·4 + (y%2)·2 + x%2``
        at ``(y//2, x//2)``; zeros for ``A_t`` without a tail),
        and int32 ``(N, Hf, Wf)`` ``R = Σ X`` over each folded position's window.
    """
    packed = _check_qpacked(packed)
    X = _input("X", X, np.uint8, packed.in_channels)
    zx = _zero_point(zx)
    d, p, hf, wf = _geometry(X, packed.kernel, dilation, padding)
    path, threads = _resolve_path(path, True), _threads(num_threads)
    shape = (X.shape[0], packed.out_channels, 2 * hf, 2 * wf)
    a_c, a_t = (np.empty(shape, dtype=np.int32) for _ in range(2))
    r = np.empty((X.shape[0], hf, wf), dtype=np.int32)
    if X.shape[0]:
        _kernels.fold_qconv2d(X, packed.native, d, p, 1.0, zx, a_c=a_c, a_t=a_t, r=r,
                              path=path, num_threads=threads)
    return a_c, a_t, r


def fold_qconv2d(X: np.ndarray, packed: PackedFoldQWeights, sx: float, zx: int, s1, s2=None,
                 a=None, c=None, bias=None, out_scale: float | None = None,
                 out_zero_point: int | None = None, relu: bool = False, *, dilation: int = 1,
                 padding="same", path: str | None = None,
                 num_threads: int | None = None) -> np.ndarray:
    """Fused Fold → integer dilated convolution → Unfold, with the PWLQ float epilogue.

    Args:
        X: uint8 ``(N, C_in, H, W)``, H and W even; ``x̂ = sx·(X − zx)``.
        packed: codes from :func:`pack_fold_qweights`.
        sx, zx: activation scale (> 0) and zero point (0..255; also the padding value).
        s1, s2: center and tail scale (the steps of W0 and W1); numbers or ``(4·C_out,)``
            vectors indexed by the folded output channel ``c·4 + py·2 + px``. There is no
            offset argument: the tail offset ``p = Q·s1`` is folded into W0.
        a, c: per-channel bias correction (default 1 and 0); bias: per-channel bias (default 0).
        out_scale, out_zero_point: requantize to uint8 (both or neither).
        relu: with requantization, clamp below at ``out_zero_point``.
        dilation, padding, path, num_threads: as :func:`fold_qconv2d_accumulators`.

    Returns:
        float32 ``(N, C_out, 2·Hf, 2·Wf)``, or uint8 when requantized.
    """
    packed = _check_qpacked(packed)
    X = _input("X", X, np.uint8, packed.in_channels)
    f = _affine(packed, sx, zx, s1, s2, a, c, bias, out_scale, out_zero_point, relu)
    d, pad, hf, wf = _geometry(X, packed.kernel, dilation, padding)
    path, threads = _resolve_path(path, True), _threads(num_threads)
    shape = (X.shape[0], packed.out_channels, 2 * hf, 2 * wf)
    params = _kernels.PwlqEpilogueArrays(f.s1, f.s2, f.a, f.c, f.bias)
    if f.out_scale is None:
        y = np.empty(shape, dtype=np.float32)
        if X.shape[0]:
            _kernels.fold_qconv2d(X, packed.native, d, pad, f.sx, f.zx, params, y=y, path=path,
                                  num_threads=threads)
        return y
    q = np.empty(shape, dtype=np.uint8)
    if X.shape[0]:
        _kernels.fold_qconv2d(X, packed.native, d, pad, f.sx, f.zx, params, q=q,
                              out_scale=f.out_scale, out_zero_point=f.out_zero_point,
                              relu=f.relu, path=path, num_threads=threads)
    return q


class FoldQConvLayer:
    """An integer folded convolution prepared once, as a deployed network runs it: the packed
    codes, the epilogue parameters (checked once, as :func:`fold_qconv2d` checks them per call),
    the dilation and the padding. ``layer(X)`` returns what ``fold_qconv2d(X, packed, ...)``
    returns, bit for bit; a call checks only ``X`` (and ``path``/``num_threads``), so the Python
    cost per call is a few microseconds instead of tens.

    Build it with :func:`prepare_fold_qconv2d`.
    """

    __slots__ = ("packed", "dilation", "padding", "requantized", "_native")

    def __init__(self, packed: PackedFoldQWeights, dilation: int, padding: int,
                 requantized: bool, native: object):
        self.packed, self.dilation, self.padding = packed, dilation, padding
        self.requantized, self._native = requantized, native

    def __call__(self, X: np.ndarray, *, path: str | None = None,
                 num_threads: int | None = None) -> np.ndarray:
        """X: uint8 ``(N, C_in, H, W)`` → float32 (or uint8 when requantized)
        ``(N, C_out, 2·Hf, 2·Wf)``; raises :class:`InputError` naming ``X`` on a bad input."""
        X = _input("X", X, np.uint8, self.packed.in_channels)
        _geometry(X, self.packed.kernel, self.dilation, self.padding)
        return self._native(X, _resolve_path(path, True), _threads(num_threads))


def prepare_fold_qconv2d(packed: PackedFoldQWeights, sx: float, zx: int, s1, s2=None, a=None,
                         c=None, bias=None, out_scale: float | None = None,
                         out_zero_point: int | None = None, relu: bool = False, *,
                         dilation: int = 1, padding="same") -> FoldQConvLayer:
    """Check the arguments of :func:`fold_qconv2d` (all but ``X``, ``path`` and
    ``num_threads``) once and return the prepared :class:`FoldQConvLayer`.

    Raises:
        InputError: as :func:`fold_qconv2d`, naming the argument.
    """
    packed = _check_qpacked(packed)
    f = _affine(packed, sx, zx, s1, s2, a, c, bias, out_scale, out_zero_point, relu)
    dilation, padding = _dilation_padding(packed.kernel, dilation, padding)
    requantized = f.out_scale is not None
    params = _kernels.PwlqEpilogueArrays(f.s1, f.s2, f.a, f.c, f.bias)
    native = _kernels.PreparedFoldQConv2d(
        packed.native, dilation, padding, f.sx, f.zx, params, requantized,
        f.out_scale if requantized else 1.0, f.out_zero_point if requantized else 0, f.relu)
    return FoldQConvLayer(packed, dilation, padding, requantized, native)


# ------------------------------------------------------------------------------ NumPy twins --

def fold_reference(x: np.ndarray) -> np.ndarray:
    """``pixel_unshuffle(x, 2)``: ``(N, C, H, W)`` → ``(N, 4C, H/2, W/2)``, channel
    ``c·4 + bh·2 + bw``."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 3, 5, 2, 4).reshape(
        n, 4 * c, h // 2, w // 2)


def unfold_reference(y: np.ndarray) -> np.ndarray:
    """``pixel_shuffle(y, 2)`` (ONNX ``DepthToSpace`` ``"CRD"``): ``(N, 4C, h, w)`` →
    ``(N, C, 2h, 2w)``."""
    n, c4, h, w = y.shape
    return y.reshape(n, c4 // 4, 2, 2, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(
        n, c4 // 4, 2 * h, 2 * w)


def space_to_depth_reference(x: np.ndarray) -> np.ndarray:
    """ONNX ``SpaceToDepth`` (blocksize 2): ``(N, C, H, W)`` → ``(N, 4C, H/2, W/2)``, channel
    ``(bh·2 + bw)·C + c`` — not :func:`fold_reference`'s order."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 3, 5, 1, 2, 4).reshape(
        n, 4 * c, h // 2, w // 2)


def depth_to_space_reference(y: np.ndarray, mode: str = "CRD") -> np.ndarray:
    """ONNX ``DepthToSpace`` (blocksize 2): ``"CRD"`` is :func:`unfold_reference`
    (``pixel_shuffle``); ``"DCR"`` (ONNX's default) inverts :func:`space_to_depth_reference`."""
    if mode == "CRD":
        return unfold_reference(y)
    if mode != "DCR":
        raise InputError(f"mode: expected 'CRD' or 'DCR', received {mode!r}")
    n, c4, h, w = y.shape
    return y.reshape(n, 2, 2, c4 // 4, h, w).transpose(0, 3, 4, 1, 5, 2).reshape(
        n, c4 // 4, 2 * h, 2 * w)


def _im2col(x: np.ndarray, kernel: int, dilation: int, padding: int, pad_value):
    """``(N, C, h, w)`` → ``(N, ho·wo, C·K·K)``, k = (c·K + kh)·K + kw (conv2d's weight order)."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)),
                constant_values=pad_value)
    n, c = x.shape[:2]
    ho = xp.shape[2] - dilation * (kernel - 1)
    wo = xp.shape[3] - dilation * (kernel - 1)
    cols = np.empty((n, c, kernel, kernel, ho, wo), dtype=x.dtype)
    for i in range(kernel):
        for j in range(kernel):
            cols[:, :, i, j] = xp[:, :, i * dilation:i * dilation + ho,
                                  j * dilation:j * dilation + wo]
    return cols.reshape(n, c * kernel * kernel, ho * wo).transpose(0, 2, 1), (ho, wo)


def fold_conv2d_reference(x: np.ndarray, weight, bias: np.ndarray | None = None, *,
                          dilation: int = 1, padding="same", relu: bool = False) -> np.ndarray:
    """NumPy twin of :func:`fold_conv2d` (same arguments, no ``path``/``num_threads``): fold,
    im2col, a float64 matrix product, bias, unfold; returned as float32."""
    packed = _packed_fp32(weight, bias)  # the same checks; the twin reads the kept copies
    x = _input("x", x, np.float32, packed.in_channels)
    d, p, hf, wf = _geometry(x, packed.kernel, dilation, padding)
    cols, _ = _im2col(fold_reference(x).astype(np.float64), packed.kernel, d, p, 0.0)
    w = packed.weight.reshape(packed.weight.shape[0], -1).astype(np.float64)
    y = cols @ w.T  # (N, Hf·Wf, 4·C_out)
    if packed.bias is not None:
        y = y + packed.bias
    y = y.transpose(0, 2, 1).reshape(x.shape[0], -1, hf, wf)
    if relu:
        y = np.maximum(y, 0.0)
    return unfold_reference(y).astype(np.float32)


def _accumulators_reference(X: np.ndarray, packed: PackedFoldQWeights, zx: int, d: int,
                            p: int):
    """Folded int64 sums: ``A_c, A_t`` ``(N, 4·C_out, Hf, Wf)`` and ``R`` ``(N, Hf, Wf)``."""
    cols, (hf, wf) = _im2col(fold_reference(X), packed.kernel, d, p, zx)
    cols = cols.astype(np.int64)  # (N, Hf·Wf, depth)
    n = X.shape[0]
    sums = []
    for w in packed.codes():
        acc = cols @ w.reshape(w.shape[0], -1).astype(np.int64).T
        sums.append(acc.transpose(0, 2, 1).reshape(n, -1, hf, wf))
    r = cols.sum(axis=2).reshape(n, hf, wf)
    return (*sums, r)


def fold_qconv2d_accumulators_reference(X: np.ndarray, packed: PackedFoldQWeights, zx: int, *,
                                        dilation: int = 1, padding="same"):
    """NumPy twin of :func:`fold_qconv2d_accumulators` (int64 sums, returned as int32)."""
    packed = _check_qpacked(packed)
    X = _input("X", X, np.uint8, packed.in_channels)
    zx = _zero_point(zx)
    d, p, _, _ = _geometry(X, packed.kernel, dilation, padding)
    a_c, a_t, r = _accumulators_reference(X, packed, zx, d, p)
    return (*(unfold_reference(a).astype(np.int32) for a in (a_c, a_t)), r.astype(np.int32))


def _epilogue_reference(a_c, a_t, r, packed: PackedFoldQWeights, f: _Affine) -> np.ndarray:
    """The float32 epilogue of :mod:`sdk.kernels_int`, in its order, on folded sums
    ``(N, 4·C_out, Hf, Wf)`` and window sums ``(N, Hf, Wf)``."""
    f32 = np.float32
    zx = np.int64(f.zx)
    sx = np.float64(f.sx)
    a64 = f.a.astype(np.float64)

    def per_channel(v):  # (4·C_out,) -> broadcast over (N, n, Hf, Wf)
        return v[None, :, None, None]

    alpha_c = per_channel(((sx * f.s1.astype(np.float64)) * a64).astype(f32))
    alpha_t = per_channel(((sx * f.s2.astype(np.float64)) * a64).astype(f32))
    gamma = per_channel((f.c.astype(np.float64) * sx).astype(f32))
    w0, w1 = (w.reshape(w.shape[0], -1).astype(np.int64).sum(axis=1) for w in packed.codes())
    y = (a_c - zx * per_channel(w0)).astype(f32) * alpha_c
    if packed.has_tail:
        y = y + (a_t - zx * per_channel(w1)).astype(f32) * alpha_t
    y = y + (r[:, None] - zx * packed.depth).astype(f32) * gamma
    y = y + per_channel(f.bias)
    if f.out_scale is None:
        return y
    t = np.rint(y / f32(f.out_scale)) + f32(f.out_zero_point)
    low = f32(f.out_zero_point if f.relu else 0)
    t = np.where(t > low, t, low)
    t = np.where(t < f32(255), t, f32(255))
    return t.astype(np.uint8)


def fold_qconv2d_reference(X: np.ndarray, packed: PackedFoldQWeights, sx: float, zx: int, s1,
                           s2=None, a=None, c=None, bias=None,
                           out_scale: float | None = None, out_zero_point: int | None = None,
                           relu: bool = False, *, dilation: int = 1,
                           padding="same") -> np.ndarray:
    """NumPy twin of :func:`fold_qconv2d`: same arguments (no ``path``/``num_threads``), same
    bits."""
    packed = _check_qpacked(packed)
    X = _input("X", X, np.uint8, packed.in_channels)
    f = _affine(packed, sx, zx, s1, s2, a, c, bias, out_scale, out_zero_point, relu)
    d, pad, _, _ = _geometry(X, packed.kernel, dilation, padding)
    a_c, a_t, r = _accumulators_reference(X, packed, f.zx, d, pad)
    return np.ascontiguousarray(unfold_reference(_epilogue_reference(a_c, a_t, r, packed, f)))
