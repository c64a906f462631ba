"""Packed quantization tables for native kernels: ``pack_tables`` / ``unpack_tables``.

``np.savez(path, **pack_tables(qmodel))`` writes one ``.npz``; ``unpack_tables(np.load(path))``
gives the ``LayerQuantTable``s back. Format version 2 (version 1 also stored ``L/breakpoints``, region
offsets rounded to float32 independently of the steps; it is refused with a message). Keys (L = layer name, e.g. "features.0";
S = weight shape, output channels first; C = S[0]; R = regions = breakpoints + 1; n = prod(S)):

    __format__          int32 ()          2
    __layers__          str (layers,)     layer names in execution order
    L/meta              str ()            JSON: layer_type, scheme, weight_bits, breakpoint_method,
                                          per_channel, act_scheme, act_bits, stride, padding,
                                          dilation, groups
    L/shape             int64 (ndim,)     S
    L/codes             uint8             signed codes in row-major order of S:
                                          weight_bits <= 4: two per byte, sign+magnitude nibbles,
                                            nibble = sign << 3 | magnitude (sign 1 = negative),
                                            code 2i in the low nibble, 2i+1 in the high one,
                                            length ceil(n/2);
                                          weight_bits > 4: one int8 (two's complement) per byte
    L/regions           uint8 (P, ceil(n/8))  region index, one bit plane per bit (P = ceil(log2 R):
                                          1 for one breakpoint, 0 for uniform); plane j holds bit j,
                                          np.packbits order (first weight in the most significant bit)
    L/scales            float32 (C, R)    step of each region; a channel's steps are integer multiples
                                          of the float32 ulp of its largest step (checked on load)
    L/bc                float32 (2, C)    bias correction: bc_scale, bc_shift (w = bc_scale w_hat + bc_shift)
    L/bias              float32 (C,)
    L/act_scale         float32 ()        input activation scale s (uniform scheme)
    L/act_zero_point    int32 ()          input activation zero point (uint8 range)
    L/act_breakpoints   float32 (k,)      PWLQ activations only (k = 1), else empty
    L/act_range_max     float32 ()        PWLQ activations only, else 0

Region offsets are not stored: offsets[c, r] = Q * (scales[c, 0] + ... + scales[c, r-1]) with
Q = 2^(weight_bits-1) - 1, exact in float64 (``sdk.formats.layer_table``). A weight decodes as
w_hat = sign * (scales[c, r] * magnitude + offsets[c, r]) = sum_j scales[c, j] * folded_j (folded codes:
Q * sign in every region below the weight's own) and runs as bc_scale[c] * w_hat + bc_shift[c];
4-bit PWLQ with one breakpoint takes 5 bits per weight.
"""
from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Mapping

import numpy as np

from ..errors import BundleError
from .layer_table import LayerQuantTable

FORMAT_VERSION = 2
_META_FIELDS = ("layer_type", "scheme", "weight_bits", "breakpoint_method", "per_channel", "act_scheme",
                "act_bits", "stride", "padding", "dilation", "groups")


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Codes (any shape, int8) -> uint8 stream: nibbles for bits <= 4, else int8 bytes."""
    flat = codes.reshape(-1)
    if bits > 4:
        return flat.astype(np.int8).view(np.uint8).copy()
    nibbles = ((flat < 0).astype(np.uint8) << 3) | np.abs(flat.astype(np.int16)).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)


def unpack_codes(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of ``pack_codes``: int8 (count,)."""
    if bits > 4:
        return packed[:count].view(np.int8).copy()
    nibbles = np.empty(packed.size * 2, np.uint8)
    nibbles[0::2], nibbles[1::2] = packed & 0xF, packed >> 4
    nibbles = nibbles[:count]
    magnitude = (nibbles & 0x7).astype(np.int8)
    return np.where(nibbles & 0x8, -magnitude, magnitude).astype(np.int8)


def region_planes(n_regions: int) -> int:
    """Bit planes needed for the region index."""
    return math.ceil(math.log2(n_regions)) if n_regions > 1 else 0


def pack_regions(regions: np.ndarray, n_regions: int) -> np.ndarray:
    flat = regions.reshape(-1)
    planes = [np.packbits((flat >> j) & 1) for j in range(region_planes(n_regions))]
    return np.stack(planes) if planes else np.zeros((0, (flat.size + 7) // 8), np.uint8)


def unpack_regions(packed: np.ndarray, count: int) -> np.ndarray:
    regions = np.zeros(count, np.uint8)
    for j, plane in enumerate(packed):
        regions |= np.unpackbits(plane, count=count) << j
    return regions


def pack_tables(qmodel) -> dict[str, np.ndarray]:
    """The packed arrays of every quantized layer of ``qmodel`` (a QuantizedModel or a mapping
    name -> LayerQuantTable), for ``np.savez``."""
    tables = getattr(qmodel, "tables", qmodel)
    out: dict[str, np.ndarray] = {"__format__": np.array(FORMAT_VERSION, np.int32),
                                  "__layers__": np.array(list(tables), dtype=str)}
    for name, t in tables.items():
        meta = {f: getattr(t, f) for f in _META_FIELDS}
        out[f"{name}/meta"] = np.array(json.dumps(meta))
        out[f"{name}/shape"] = np.array(t.codes.shape, np.int64)
        out[f"{name}/codes"] = pack_codes(t.codes, t.weight_bits)
        out[f"{name}/regions"] = pack_regions(t.regions, t.n_regions)
        out[f"{name}/scales"] = t.scales.astype(np.float32)
        out[f"{name}/bc"] = np.stack([t.bc_scale, t.bc_shift]).astype(np.float32)
        out[f"{name}/bias"] = t.bias.astype(np.float32)
        out[f"{name}/act_scale"] = np.array(t.act_scale, np.float32)
        out[f"{name}/act_zero_point"] = np.array(t.act_zero_point, np.int32)
        out[f"{name}/act_breakpoints"] = np.asarray(t.act_breakpoints, np.float32)
        out[f"{name}/act_range_max"] = np.array(t.act_range_max, np.float32)
    return out


def unpack_tables(arrays: Mapping[str, np.ndarray]) -> "OrderedDict[str, LayerQuantTable]":
    """Tables from ``pack_tables`` output or an ``np.load``-ed ``.npz``; BundleError if malformed."""
    try:
        version = int(arrays["__format__"])
        names = [str(n) for n in arrays["__layers__"]]
    except KeyError as exc:
        raise BundleError(f"quantization tables lack {exc}; not written by pack_tables") from None
    if version == 1:
        raise BundleError("quantization tables have format 1 (region offsets stored apart from the steps); "
                          f"this Prism reads format {FORMAT_VERSION}, where the offsets are Q * cumulative steps "
                          "and fold into the codes: re-quantize and re-deploy the model (sdk.quantize, sdk.deploy)")
    if version != FORMAT_VERSION:
        raise BundleError(f"quantization tables have format {version}; this Prism reads {FORMAT_VERSION}")
    tables = OrderedDict()
    for name in names:
        try:
            meta = json.loads(str(arrays[f"{name}/meta"]))
            shape = tuple(int(s) for s in arrays[f"{name}/shape"])
            count = int(np.prod(shape))
            bc = arrays[f"{name}/bc"]
            tables[name] = LayerQuantTable(
                name=name, layer_type=meta["layer_type"], scheme=meta["scheme"], weight_bits=meta["weight_bits"],
                breakpoint_method=meta["breakpoint_method"], per_channel=meta["per_channel"],
                codes=unpack_codes(arrays[f"{name}/codes"], meta["weight_bits"], count).reshape(shape),
                regions=unpack_regions(arrays[f"{name}/regions"], count).reshape(shape),
                scales=arrays[f"{name}/scales"].astype(np.float32),
                bc_scale=bc[0].copy(), bc_shift=bc[1].copy(), bias=arrays[f"{name}/bias"].copy(),
                act_bits=meta["act_bits"], act_scheme=meta["act_scheme"],
                act_scale=float(arrays[f"{name}/act_scale"]), act_zero_point=int(arrays[f"{name}/act_zero_point"]),
                act_breakpoints=arrays[f"{name}/act_breakpoints"].copy(),
                act_range_max=float(arrays[f"{name}/act_range_max"]),
                stride=_tuple(meta["stride"]), padding=_tuple(meta["padding"]),
                dilation=_tuple(meta["dilation"]), groups=meta["groups"])
        except KeyError as exc:
            raise BundleError(f"quantization tables: layer {name!r} lacks {exc}") from None
        except ValueError as exc:
            raise BundleError(f"quantization tables: layer {name!r}: {exc}") from None
    return tables


def _tuple(v):
    return tuple(v) if isinstance(v, list) else v
