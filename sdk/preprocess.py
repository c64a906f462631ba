"""Camera-frame preprocessing: uint8 frames -> float32 NCHW model input.

Two implementations with one meaning:

- :func:`preprocess` runs the C++ kernel (``kernels/src/preprocess.cpp``, GIL released, several
  threads for large batches);
- :func:`preprocess_reference` is its NumPy twin, which the tests compare the kernel against.

What happens to a frame, in this order:

1. **Resize** every needed source channel with bilinear interpolation, half-pixel centers
   (``align_corners=False``, no antialiasing: the same as
   ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` and OpenCV
   ``INTER_LINEAR``). Destination index ``d`` samples source coordinate
   ``s = (d + 0.5) * in / out - 0.5``, clamped to ``[0, in - 1]``; taps ``floor(s)`` and
   ``floor(s) + 1`` (clamped to the edge), weights ``w1 = s - floor(s)``, ``w0 = 1 - w1``
   (computed in float64, rounded to float32). In float32, rows first, then columns::

       h(y) = p[y, x0] * wx0 + p[y, x1] * wx1
       v    = h(y0) * wy0 + h(y1) * wy1

   A same-size resize is an exact copy.
2. **Convert channels** on the resized float values: colour -> ``"gray"`` is ITU-R BT.601 luma
   ``(0.299 R + 0.587 G) + 0.114 B``; Mono8 -> ``"rgb"``/``"bgr"`` replicates the gray plane;
   colour -> ``"rgb"``/``"bgr"`` reorders. The alpha byte of RGBa8/BGRa8 is never read.
3. **Normalise** ``y = (v * scale - mean[c]) / std[c]``, evaluated as ``y = v * a[c] + b[c]`` with
   ``a = float32(scale / std[c])`` and ``b = float32(-mean[c] / std[c])``.

The kernel and the twin perform the same float32 operations in the same order, so they agree bit
for bit on x86-64 (within a few ulp where a compiler fuses multiply-adds, e.g. on aarch64).

Memory rule: a C-contiguous uint8 array goes to C++ without a copy; a non-contiguous one (a
cropped ROI view, a flipped or strided frame) is copied once with ``np.ascontiguousarray``. Any
other dtype is rejected, never cast.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from . import _kernels
from .errors import InputError

__all__ = ["PIXEL_FORMATS", "OUTPUT_CHANNELS", "PreprocessRecipe", "preprocess",
           "preprocess_reference"]

# GenICam PFNC pixel format -> bytes per pixel in the frame's last axis.
PIXEL_FORMATS = {"Mono8": 1, "RGB8": 3, "BGR8": 3, "RGBa8": 4, "BGRa8": 4}
# Output channel layout -> C_out.
OUTPUT_CHANNELS = {"gray": 1, "rgb": 3, "bgr": 3}

_LUMA = (np.float32(0.299), np.float32(0.587), np.float32(0.114))


def _float_tuple(name: str, value, count: int) -> tuple[float, ...]:
    values = (value,) if isinstance(value, Real) else value
    try:
        values = tuple(values)
    except TypeError:
        raise InputError(f"PreprocessRecipe.{name}: expected a number or a sequence of numbers, "
                         f"received {type(value).__name__}") from None
    if len(values) not in (1, count) or not all(isinstance(v, Real) and not isinstance(v, bool)
                                                and math.isfinite(v) for v in values):
        raise InputError(f"PreprocessRecipe.{name}: expected 1 or {count} finite numbers (one per "
                         f"output channel), received {value!r}")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class PreprocessRecipe:
    """How camera frames become model input; stored in a bundle's ``manifest.json`` as a dict.

    Attributes:
        pixel_format: GenICam PFNC name of the input frames: ``"Mono8"``, ``"RGB8"``, ``"BGR8"``,
            ``"RGBa8"`` or ``"BGRa8"``.
        channels: output layout, ``"gray"`` (1 channel), ``"rgb"`` or ``"bgr"`` (3 channels).
        size: output ``(H, W)`` in pixels.
        scale: multiplies the uint8 pixel value before mean and std (1/255 maps to [0, 1]).
        mean, std: per output channel, in scaled units; one value broadcasts to every channel.

    Construction validates and normalises the fields (lists become tuples, one number becomes a
    1-tuple); an invalid field raises :class:`~sdk.errors.InputError` naming it.
    """

    pixel_format: str = "Mono8"
    channels: str = "gray"
    size: tuple[int, int] = (28, 28)
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.pixel_format not in PIXEL_FORMATS:
            raise InputError(f"PreprocessRecipe.pixel_format: expected one of "
                             f"{', '.join(PIXEL_FORMATS)}, received {self.pixel_format!r}")
        if self.channels not in OUTPUT_CHANNELS:
            raise InputError(f"PreprocessRecipe.channels: expected one of "
                             f"{', '.join(OUTPUT_CHANNELS)}, received {self.channels!r}")
        size = self.size
        if (isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2
                or not all(isinstance(v, Integral) and not isinstance(v, bool) and v > 0
                           for v in size)):
            raise InputError(f"PreprocessRecipe.size: expected (H, W), two positive ints, "
                             f"received {size!r}")
        scale = self.scale
        if (not isinstance(scale, Real) or isinstance(scale, bool) or not math.isfinite(scale)
                or scale == 0):
            raise InputError(f"PreprocessRecipe.scale: expected a finite non-zero number, "
                             f"received {scale!r}")
        count = OUTPUT_CHANNELS[self.channels]
        mean = _float_tuple("mean", self.mean, count)
        std = _float_tuple("std", self.std, count)
        if any(s == 0 for s in std):
            raise InputError(f"PreprocessRecipe.std: expected non-zero values, received {std!r}")
        object.__setattr__(self, "size", (int(size[0]), int(size[1])))
        object.__setattr__(self, "scale", float(scale))
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def out_channels(self) -> int:
        """C_out: 1 for ``"gray"``, 3 for ``"rgb"`` and ``"bgr"``."""
        return OUTPUT_CHANNELS[self.channels]

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples as lists), the inverse of :meth:`from_dict`."""
        return {"pixel_format": self.pixel_format, "channels": self.channels,
                "size": list(self.size), "scale": self.scale, "mean": list(self.mean),
                "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: Mapping) -> PreprocessRecipe:
        """Recipe from a manifest dict; every field is required and no other key is allowed."""
        if not isinstance(d, Mapping):
            raise InputError(f"PreprocessRecipe: expected a dict, received {type(d).__name__}")
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(fields), key=str)
        if unknown:
            raise InputError(f"PreprocessRecipe: unknown field(s) {unknown}; expected {fields}")
        missing = [f for f in fields if f not in d]
        if missing:
            raise InputError(f"PreprocessRecipe: missing field(s) {missing}")
        return cls(**d)


def _resolve(recipe: PreprocessRecipe | None, overrides: dict) -> PreprocessRecipe:
    if recipe is not None and not isinstance(recipe, PreprocessRecipe):
        raise InputError(f"recipe: expected a PreprocessRecipe or None, received "
                         f"{type(recipe).__name__} (use PreprocessRecipe.from_dict for a dict)")
    fields = {f.name for f in dataclasses.fields(PreprocessRecipe)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise InputError(f"unknown recipe field(s) {unknown}; expected some of {sorted(fields)}")
    recipe = recipe or PreprocessRecipe()
    return dataclasses.replace(recipe, **overrides) if overrides else recipe


def _frames_as_nhwc(frames, pixel_format: str) -> np.ndarray:
    """The frames as a C-contiguous (N, H, W, C) uint8 array: a view when possible.

    Accepted shapes: (H, W, C) for one frame and (N, H, W, C) for a batch, C being the pixel
    format's channel count; for Mono8 also (H, W) for one frame and (N, H, W) for a batch. A
    3-D Mono8 array whose last axis has length 1 is one (H, W, 1) frame (the layout harvesters
    gives); a batch of one-pixel-wide Mono8 frames must therefore be passed as (N, H, 1, 1).
    """
    c = PIXEL_FORMATS[pixel_format]
    if pixel_format == "Mono8":
        expected = "(H, W), (H, W, 1), (N, H, W) or (N, H, W, 1)"
    else:
        expected = f"(H, W, {c}) or (N, H, W, {c})"
    if not isinstance(frames, np.ndarray):
        raise InputError(f"frames: expected a numpy.ndarray of dtype uint8 with shape {expected} "
                         f"for pixel format {pixel_format}, received {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise InputError(f"frames: expected dtype uint8 for pixel format {pixel_format}, "
                         f"received {frames.dtype} (convert explicitly; frames are never cast)")
    shape = frames.shape
    if pixel_format == "Mono8" and frames.ndim == 2:
        nhwc = (1, *shape, 1)
    elif pixel_format == "Mono8" and frames.ndim == 3:
        nhwc = (1, *shape) if shape[-1] == 1 else (*shape, 1)
    elif frames.ndim == 3 and shape[-1] == c:
        nhwc = (1, *shape)
    elif frames.ndim == 4 and shape[-1] == c:
        nhwc = shape
    else:
        raise InputError(f"frames: expected shape {expected} for pixel format {pixel_format}, "
                         f"received {shape}")
    if nhwc[1] == 0 or nhwc[2] == 0:
        raise InputError(f"frames: expected frames of at least 1x1 pixels, received shape {shape}")
    contiguous = frames.flags.c_contiguous
    src = (frames if contiguous else np.ascontiguousarray(frames)).reshape(nhwc)
    # The zero-copy rule: contiguous input must reach the kernel as a view of the caller's buffer.
    assert not contiguous or src.size == 0 or np.may_share_memory(src, frames), "frames copied"
    return src


def _check_out(out, shape: tuple[int, ...], frames: np.ndarray) -> None:
    if not isinstance(out, np.ndarray):
        raise InputError(f"out: expected a numpy.ndarray float32 {shape}, received "
                         f"{type(out).__name__}")
    if out.dtype != np.float32 or out.shape != shape:
        raise InputError(f"out: expected float32 {shape}, received {out.dtype} {out.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        problem = "read-only" if out.flags.c_contiguous else "not C-contiguous"
        raise InputError(f"out: expected a C-contiguous writeable float32 {shape} array, received "
                         f"one that is {problem}")
    if np.may_share_memory(out, frames):
        raise InputError("out: must not overlap the input frames")


def _per_channel(recipe: PreprocessRecipe) -> tuple[list[float], list[float]]:
    c = recipe.out_channels
    mean = list(recipe.mean) * (c // len(recipe.mean))
    std = list(recipe.std) * (c // len(recipe.std))
    return mean, std


def preprocess(frames: np.ndarray, recipe: PreprocessRecipe | None = None, *,
               out: np.ndarray | None = None, **overrides) -> np.ndarray:
    """Turn uint8 camera frames into float32 model input with the C++ kernel.

    Args:
        frames: uint8 ``(H, W, C)`` or ``(N, H, W, C)``, C = 1, 3 or 4 as ``pixel_format`` says;
            Mono8 also ``(H, W)`` or ``(N, H, W)``. C-contiguous input is read in place; other
            layouts are copied once. Other dtypes raise, they are never cast.
        recipe: the :class:`PreprocessRecipe`; ``None`` means the defaults.
        out: optional preallocated C-contiguous float32 ``(N, C_out, H_out, W_out)`` array that
            receives the result (and is returned).
        **overrides: recipe fields that replace the recipe's, e.g. ``size=(224, 224)``.

    Returns:
        float32 ``(N, C_out, H_out, W_out)``, C-contiguous (N = 1 for a single frame). The module
        docstring gives the exact resize, channel and normalisation semantics.

    Raises:
        InputError: naming the array or field, what was expected and what was received.
    """
    recipe = _resolve(recipe, overrides)
    src = _frames_as_nhwc(frames, recipe.pixel_format)
    shape = (src.shape[0], recipe.out_channels, *recipe.size)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    else:
        _check_out(out, shape, src)
    if src.shape[0] == 0:
        return out
    mean, std = _per_channel(recipe)
    _kernels.preprocess(src, out, recipe.pixel_format, recipe.channels, recipe.scale, mean, std)
    return out


def _axis_table(n_in: int, n_out: int):
    """Bilinear taps and weights of one axis: (i0, i1, w0, w1), one entry per output index."""
    s = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    s = np.minimum(np.maximum(s, 0.0), float(n_in - 1))
    i0 = s.astype(np.int64)  # floor, s >= 0
    w1 = s - i0
    return i0, np.minimum(i0 + 1, n_in - 1), (1.0 - w1).astype(np.float32), w1.astype(np.float32)


def preprocess_reference(frames: np.ndarray, recipe: PreprocessRecipe | None = None,
                         **overrides) -> np.ndarray:
    """NumPy twin of :func:`preprocess`: same arguments (no ``out``), same result.

    Written for clarity, not speed; it performs the kernel's float32 operations in the kernel's
    order (see the module docstring), so the two agree to float32 rounding.
    """
    recipe = _resolve(recipe, overrides)
    src = _frames_as_nhwc(frames, recipe.pixel_format)
    (_, in_h, in_w, _), (out_h, out_w) = src.shape, recipe.size
    colour = recipe.pixel_format != "Mono8"
    if colour:
        r, b = (2, 0) if recipe.pixel_format.startswith("BGR") else (0, 2)
        source = [b, 1, r] if recipe.channels == "bgr" else [r, 1, b]
    else:
        source = [0]
    x0, x1, wx0, wx1 = _axis_table(in_w, out_w)
    y0, y1, wy0, wy1 = _axis_table(in_h, out_h)

    pixels = src[..., source].astype(np.float32)            # (N, H, W, K)
    wx0, wx1 = wx0[:, None], wx1[:, None]
    rows0, rows1 = pixels[:, y0], pixels[:, y1]              # (N, h, W, K)
    h0 = rows0[:, :, x0] * wx0 + rows0[:, :, x1] * wx1       # (N, h, w, K)
    h1 = rows1[:, :, x0] * wx0 + rows1[:, :, x1] * wx1
    v = h0 * wy0[:, None, None] + h1 * wy1[:, None, None]

    if colour and recipe.channels == "gray":
        v = ((_LUMA[0] * v[..., 0] + _LUMA[1] * v[..., 1]) + _LUMA[2] * v[..., 2])[..., None]
    elif not colour and recipe.out_channels == 3:
        v = np.repeat(v, 3, axis=-1)
    mean, std = (np.asarray(m, dtype=np.float64) for m in _per_channel(recipe))
    a = (recipe.scale / std).astype(np.float32)
    b = (-mean / std).astype(np.float32)
    return np.ascontiguousarray((v * a + b).transpose(0, 3, 1, 2))
