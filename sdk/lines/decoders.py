"""Decoders of diffraction line imaging that run deployed networks (Sheinin et al., §3.2).

* :class:`PointDecoder` — sparse point sources: gray-profile peaks → ``(3, h, 9R)`` patches →
  the point CNN (a Prism bundle on ONNX Runtime) → ``xv = arg max softmax(s)`` (Eq. 11; the
  arg max of the scores is the same), ``yv = G(y)`` (Eq. 4, an affine map recorded in the bundle).
* :class:`LineDecoder` — a projected line: per-y line features → the line MLP → xv, NaN where
  the y is not in Eq. 14's valid set A.
* :class:`LUTLineDecoder` — the same interface over a :class:`~sdk.lines.lut.LineLUT` (the MLP
  distilled by :mod:`sdk.lines.distill`), decoded by the C++ kernel.

**One graph input.** ``sdk.deploy`` exports single-input graphs, so the point CNN takes ``y`` as a
fourth, constant channel of its input ``(B, 4, h, 9R)``: channels 0-2 are the patch, channel 3
is ``y / (Q - 1)`` everywhere (the network reads it at its first FC layer only; see
``sdk.models.line_decoders``). The line MLP's input is the ``3R + 1`` feature vector, whose last
entry already is ``y / (Q - 1)``.

Each bundle's ``metadata["line_decoder"]`` records what the decoder needs: ``kind`` ("point" or
"line"), ``rois``, ``rows``, ``q`` (sensor pixels), ``width`` (virtual columns W), the
:class:`~sdk.lines.preprocess.PreprocessConfig` and ``g`` = ``[a, b]`` with ``yv = a * y + b``.

:func:`build_line_bundles` (needs PyTorch) trains or loads the cached networks and deploys them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .lut import LineDecodeResult, LineLUT, _counts
from .preprocess import (PreprocessConfig, as_scan_batch, extract_patches, find_peaks,
                         gray_profile, line_features, roi_means, validity)

__all__ = ["PointDecodeResult", "PointDecoder", "LineDecoder", "LUTLineDecoder", "LineBundles",
           "build_line_bundles", "decoder_meta"]

META_KEY = "line_decoder"


def decoder_meta(kind: str, *, rois: int, rows: int, q: int, width: int,
                 config: PreprocessConfig, g: tuple[float, float], **extra: Any) -> dict[str, Any]:
    """The ``metadata["line_decoder"]`` record of a decoder bundle (see the module docstring)."""
    if kind not in ("point", "line"):
        raise InputError(f"kind: expected 'point' or 'line', received {kind!r}")
    return {"kind": kind, "rois": int(rois), "rows": int(rows), "q": int(q), "width": int(width),
            "config": config.to_dict(), "g": [float(g[0]), float(g[1])], **extra}


def _open(bundle: str | os.PathLike, kind: str, backend: str):
    import sdk

    engine = sdk.load(bundle, backend=backend)
    meta = (engine.bundle.manifest.get("metadata") or {}).get(META_KEY)
    if not isinstance(meta, dict):
        raise InputError(f"{bundle}: manifest metadata has no '{META_KEY}' record; not a line "
                         f"decoder bundle (write one with sdk.lines.build_line_bundles)")
    for key in ("kind", "rois", "rows", "q", "width", "config", "g"):
        if key not in meta:
            raise InputError(f"{bundle}: metadata['{META_KEY}'] is missing the field '{key}'")
    if meta["kind"] != kind:
        raise InputError(f"{bundle}: a '{meta['kind']}' decoder bundle, expected '{kind}'")
    return engine, meta


def _check_geometry(scans: np.ndarray, meta: dict, what: str) -> None:
    _, r, h, q, _ = scans.shape
    want = (meta["rois"], meta["rows"], meta["q"])
    if (r, h, q) != want:
        raise InputError(f"scans: shape {scans.shape} has (R, h, Q) = {(r, h, q)}, the {what} "
                         f"was trained for {want}")


@dataclass
class PointDecodeResult:
    """Point sources found in a batch of scans, one row per gray-profile peak.

    ``scan_index`` int64 ``(K,)``; ``y_sensor`` float32 sub-pixel peak row (px); ``xv``, ``yv``
    float32 virtual-image coordinates (px; Eq. 11 and Eq. 4); ``score`` float32, the softmax
    probability at the arg max (a confidence); ``in_bounds`` bool, False where the patch crossed
    a sensor end (zero padded, still decoded). ``counts``: ``scans``, ``peaks``,
    ``out_of_bounds``.
    """

    scan_index: np.ndarray
    y_sensor: np.ndarray
    xv: np.ndarray
    yv: np.ndarray
    score: np.ndarray
    in_bounds: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)


class PointDecoder:
    """Sparse point-source decoder over a point-CNN bundle (``build_line_bundles``)."""

    def __init__(self, bundle: str | os.PathLike, *, backend: str = "auto", batch: int = 2048):
        self.engine, self.meta = _open(bundle, "point", backend)
        self.config = PreprocessConfig(**self.meta["config"])
        self.batch = int(batch)
        if self.batch < 1:
            raise InputError(f"batch: expected >= 1 patches per inference, received {batch}")

    def peaks(self, scans: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Peaks and patches of every scan: ``(scan_index (K,), y_sub (K,), patches (K, 3, h, 9R),
        in_bounds (K,))`` — the decoder's input before the network."""
        s = as_scan_batch(scans)
        _check_geometry(s, self.meta, "point decoder")
        profiles = gray_profile(s)
        idx, ys, pats, inb = [], [], [], []
        for n in range(s.shape[0]):
            y_int, y_sub, _ = find_peaks(profiles[n], self.config)
            if y_int.size == 0:
                continue
            p, ok = extract_patches(s[n], y_int, self.config)
            idx.append(np.full(y_int.size, n, np.int64))
            ys.append(y_sub)
            pats.append(p)
            inb.append(ok)
        if not idx:
            h, w = s.shape[2], self.config.patch_width * s.shape[1]
            return (np.zeros(0, np.int64), np.zeros(0, np.float32),
                    np.zeros((0, 3, h, w), np.float32), np.zeros(0, bool))
        return np.concatenate(idx), np.concatenate(ys), np.concatenate(pats), np.concatenate(inb)

    def network_input(self, patches: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``(K, 4, h, 9R)`` float32: the patches plus the constant ``y / (Q - 1)`` channel."""
        k, _, h, w = patches.shape
        x = np.empty((k, 4, h, w), np.float32)
        x[:, :3] = patches
        x[:, 3] = (np.asarray(y, np.float32) / np.float32(max(self.meta["q"] - 1, 1)))[:, None, None]
        return x

    def scores(self, patches: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Raw ``(K, W)`` scores of the network, run in batches of ``self.batch``."""
        x = self.network_input(patches, y)
        out = np.empty((x.shape[0], self.meta["width"]), np.float32)
        for start in range(0, x.shape[0], self.batch):
            out[start:start + self.batch] = self.engine.infer(x[start:start + self.batch])
        return out

    def decode_patches(self, patches: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eq. 11 on given patches: ``(xv (K,) float32 px, softmax probability at the arg max)``."""
        s = self.scores(patches, y)
        best = s.argmax(axis=1)
        top = s[np.arange(s.shape[0]), best]
        prob = 1.0 / np.exp(s - top[:, None]).sum(axis=1)
        return best.astype(np.float32), prob.astype(np.float32)

    def decode(self, scans: np.ndarray) -> PointDecodeResult:
        """Find and decode every point source in ``scans`` (``(R, h, Q, 3)`` or a batch)."""
        s = as_scan_batch(scans)
        idx, y_sub, patches, inb = self.peaks(s)
        xv, prob = self.decode_patches(patches, y_sub)
        a, b = self.meta["g"]
        yv = (np.float32(a) * y_sub + np.float32(b)).astype(np.float32)
        counts = {"scans": int(s.shape[0]), "peaks": int(idx.size),
                  "out_of_bounds": int((~inb).sum())}
        return PointDecodeResult(idx, y_sub, xv, yv, prob, inb, counts)

    def close(self) -> None:
        self.engine.close()


class LineDecoder:
    """Projected-line decoder over a line-MLP bundle: xv per y, NaN outside Eq. 14's set A."""

    def __init__(self, bundle: str | os.PathLike, *, backend: str = "auto", batch: int = 65536):
        self.engine, self.meta = _open(bundle, "line", backend)
        self.config = PreprocessConfig(**self.meta["config"])
        self.batch = int(batch)
        if self.batch < 1:
            raise InputError(f"batch: expected >= 1 rows per inference, received {batch}")

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """The MLP on ``(M, 3R + 1)`` float32 features → xv ``(M,)`` float32 px."""
        f = np.ascontiguousarray(features, dtype=np.float32)
        want = 3 * self.meta["rois"] + 1
        if f.ndim != 2 or f.shape[1] != want:
            raise InputError(f"features: expected (M, {want}) float32, received {f.shape}")
        out = np.empty(f.shape[0], np.float32)
        for start in range(0, f.shape[0], self.batch):
            out[start:start + self.batch] = self.engine.infer(f[start:start + self.batch])[:, 0]
        return out

    def decode(self, scans: np.ndarray) -> LineDecodeResult:
        """xv ``(N, Q)`` for every y of every scan; ``roi`` is the brightest valid ROI."""
        s = as_scan_batch(scans)
        _check_geometry(s, self.meta, "line decoder")
        features, valid, flags = line_features(s, self.config)
        xv = np.full(valid.shape, np.nan, np.float32)
        xv[valid] = self.predict_features(features[valid])
        means = roi_means(s)
        roi_valid, _ = validity(means, self.config)
        peak = np.where(roi_valid, means.max(axis=-1), -1.0)                 # (N, R, Q)
        roi = np.where(valid, peak.argmax(axis=1), -1).astype(np.int8)
        return LineDecodeResult(xv, roi, flags, _counts(xv, flags))

    def close(self) -> None:
        self.engine.close()


class LUTLineDecoder:
    """The :class:`LineDecoder` interface over a distilled :class:`LineLUT` (C++ decode)."""

    def __init__(self, lut: LineLUT | str | os.PathLike, *, num_threads: int = 1):
        self.lut = lut if isinstance(lut, LineLUT) else LineLUT.load(lut)
        self.config = self.lut.config
        self.num_threads = num_threads

    def decode(self, scans: np.ndarray) -> LineDecodeResult:
        """xv ``(N, Q)``; NaN where y is invalid or has no LUT support (flag NO_LUT)."""
        return self.lut.decode(scans, num_threads=self.num_threads)


@dataclass
class LineBundles:
    """What :func:`build_line_bundles` wrote: the two decoder bundles and the distilled LUT,
    plus each network's training record (config, metrics, whether it came from the cache)."""

    point: Path
    line: Path
    lut: Path
    point_meta: dict[str, Any]
    line_meta: dict[str, Any]


def build_line_bundles(out: str | os.PathLike, camera, *, point_config=None, line_config=None,
                       lut_ny: int = 65, lut_nc: int = 96, combine: str = "weighted",
                       progress: bool = True) -> LineBundles:
    """Train (or load cached) point CNN and line MLP for ``camera`` and deploy them.

    ``camera``: a ``firmware_bridge.linescan.diffraction.DiffractionCamera``; ``point_config`` /
    ``line_config``: ``sdk.models.line_decoders.PointTrainConfig`` / ``LineTrainConfig`` (their
    defaults when None). Writes ``out/point.prism``, ``out/line.prism`` (``cpu`` target, FP32 ONNX)
    and ``out/line_lut.npz`` (the MLP distilled with a training-colour support mask).
    Needs PyTorch.
    """
    import sdk
    from sdk.models import line_decoders as ld

    from .distill import colour_support, distill_line_lut

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    point_config = point_config or ld.PointTrainConfig()
    line_config = line_config or ld.LineTrainConfig()
    cnn, pmeta = ld.get_or_train_point(camera, point_config, progress=progress)
    mlp, lmeta = ld.get_or_train_line(camera, line_config, progress=progress)
    geo = ld.camera_geometry(camera)
    cfg = ld.preprocess_config(point_config)
    h, w9 = geo["rows"], cfg.patch_width * geo["rois"]
    point_path = sdk.deploy(
        cnn, target="cpu", example_input=np.zeros((2, 4, h, w9), np.float32) + 0.5,
        out=out / "point.prism", name="line_point_cnn",
        metadata={META_KEY: decoder_meta("point", config=cfg, **geo),
                  "training": _summary(pmeta)}).path
    lcfg = ld.preprocess_config(line_config)
    line_path = sdk.deploy(
        mlp, target="cpu", example_input=np.full((2, 3 * geo["rois"] + 1), 0.3, np.float32),
        out=out / "line.prism", name="line_mlp",
        metadata={META_KEY: decoder_meta("line", config=lcfg, **geo),
                  "training": _summary(lmeta)}).path
    decoder = LineDecoder(line_path)
    feats, valid = ld.line_support_features(camera, line_config)
    support = colour_support(feats, valid, q=geo["q"], ny=lut_ny, nc=lut_nc)
    lut = distill_line_lut(decoder.predict_features, rois=geo["rois"], q=geo["q"], ny=lut_ny,
                           nc=lut_nc, config=lcfg, support=support, combine=combine,
                           meta={"distilled_from": str(line_path), "ny": lut_ny, "nc": lut_nc})
    decoder.close()
    lut_path = lut.save(out / "line_lut.npz")
    return LineBundles(point_path, line_path, lut_path, pmeta, lmeta)


def _summary(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta[k] for k in ("config_key", "metrics", "seconds") if k in meta}
