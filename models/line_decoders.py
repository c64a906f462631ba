"""The learned decoders of diffraction line imaging (Sheinin et al., ECCV 2020, §3.2 and §4).

Two networks approximate the inverse colour map ``H^-1`` (colour at sensor pixel ``y`` → the
virtual-image column ``xv``):

* :class:`PointCNN` — sparse point sources. Input: the ``(3, h, 9R)`` patch around a rainbow
  peak (L∞-normalised, the R ROIs side by side, ``sdk.lines.preprocess.extract_patches``) plus
  the peak row ``y``; three 3x3 convolutions (20, 50, 50 channels), two fully connected layers,
  ``y`` concatenated at the first one; output: ``W`` scores, one per virtual column. Trained with
  Eq. 13: BCE between ``softmax(scores)`` and a Gaussian ``D(xv_gt, σ)``; decoded by arg max
  (Eq. 11).
* :class:`LineMLP` — a projected line. Input: the ``3R + 1`` line feature (per-ROI mean colour,
  L2-normalised, zero for an invalid ROI, then ``y``; ``sdk.lines.preprocess.line_features``);
  four fully connected layers of 300; output: ``xv`` in pixels. Trained with the Huber loss.

**One input tensor.** ``sdk.deploy`` exports single-input graphs, so ``PointCNN`` takes ``y`` as
a fourth, constant input channel: ``x[:, 3]`` is filled with ``y_feature(y, Q)``; the
convolutions see only ``x[:, :3]`` and the first FC layer reads ``x[:, 3, 0, 0]`` — exactly the
paper's architecture with ``y`` concatenated at the first FC layer.

**Augmentation (§4).** Line features are re-made from the raw ROI means with a random albedo
scale per ROI and per sample plus simulated sensor noise (shot + read), then re-thresholded, so an
ROI that a dark surface would make invalid is invalid in training too; and *ROI dropout* zeroes a
random subset of the valid ROIs (as invalid ROIs are zero) so that single-ROI queries — what a
per-ROI look-up table asks (``sdk.lines.distill``) — are in the training distribution. Point
patches get a per-ROI scale and noise before L∞ re-normalisation.

**Accuracy gap (measured on the simulator, ``DiffractionCamera.paper_conditions()``).** The line
MLP reaches ~4 px test MAE (paper 2.27 px) with 144k samples x 12 epochs. The point CNN (recipe
version 1) stayed at ~22 px (paper 1.71 px) in every variant tried then: sigma 2/4/8 px,
10k-24k samples, 8-24 epochs, hidden 256/1024, pooling variants, BatchNorm, background
subtraction, a regression head — with train error = validation error. *Cause*: the network
ignored ``y``. Its error had a y-dependent sign (mean signed error +17 px for sensor rows
400-800, -23 px for 800-1200, +12 px for 1200-1600, 7.6k samples): the conical-diffraction
term shifts the colour of a source by up to ~5 % of λ at the top and bottom of the field, an
even function of y whose size depends on the colour, and a bare ``y / (Q - 1)`` in [0, 1], one
input beside ~2600 conv features, was never picked up by the optimiser. Neither the loss
(soft-label cross-entropy trains exactly like Eq. 13's BCE: 12.0 vs 12.1 px after 6 epochs) nor
the patch nor the label was at fault. With the y code of :class:`PointCNN` (``t = 2y/(Q-1) - 1``
and 6 sine/cosine pairs of ``t``, times 3, at the first FC layer) the same data and training
gives 12 px after 6 epochs, 5.0 px after 20 epochs on 7.6k samples and 3.2 px after 14 epochs
on 26k samples; 18k scans (30.5k samples) x 16 epochs reached 3.06 ± 4.13 px on the report's
held-out set (median 1.8 px), and the default recipe, 30k scans (~50k samples) x 24 epochs
(~13 min on one thread of a loaded 2-core box), 2.77 ± 3.93 px (median 1.63 px, p95 9.1 px).
The error still falls with more samples and epochs; its tail sits where one ROI sees a band
end (the FOV edges and the 3-ROI seams, see ``report_lines``' ROI sweep).

Training is seeded and cached like ``sdk.models.train.get_or_train``: ``<stem>.pt`` (state_dict)
+ ``<stem>.json`` (config, metrics) under ``cache_dir()/checkpoints``, keyed by a hash of the
config.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sdk.errors import InputError

from .train import cache_dir

# Bump when a recipe changes in a way that changes trained weights (old cache entries are then
# ignored rather than silently reused). One version per kind, so that changing one recipe does
# not retrain the other network.
RECIPE_VERSION = {"point": 2, "line": 1}  # point 2: PointCNN's y code (y_freqs, y_scale)


def y_feature(y: np.ndarray | float, q: int) -> np.ndarray:
    """The networks' ``y`` input: sensor row ``y`` (px, 0..Q-1) as ``y / (Q - 1)`` in [0, 1], the
    same scaling as the last entry of ``sdk.lines.preprocess.line_features``."""
    return np.asarray(y, np.float32) / np.float32(max(q - 1, 1))


# --------------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------------
class PointCNN(nn.Module):
    """Sparse-point decoder: ``(B, 4, h, 9R)`` (RGB patch + constant y channel) → ``(B, W)`` scores.

    Three 3x3 convolutions (20, 50, 50 channels, ReLU; 2x2 max-pool after the first, which halves
    the cost of the other two and keeps the first FC layer small), then FC(flatten + y code →
    ``hidden``) and FC(``hidden`` → ``W``).

    **The y code.** ``y`` enters the first FC layer as ``y_scale * [t, sin(k π t / 2),
    cos(k π t / 2)]`` for ``k = 1..y_freqs`` with ``t = 2 y / (Q - 1) - 1`` in [-1, 1], not as the
    bare ``y / (Q - 1)``. The conical-diffraction term shifts the decoded column by tens of pixels
    as a smooth, even function of ``t`` (``cos ψ``) whose size depends on the colour; a single
    [0, 1] scalar among the ~2600 conv features gets too little weight and gradient for the network
    to learn that, and the error stayed at ~22 px with a y-dependent bias (measured; see the module
    docstring). ``y_freqs = 0`` gives the bare scalar of the paper's wording (times ``y_scale``).
    """

    def __init__(self, rois: int, rows: int = 8, width: int = 2056, hidden: int = 256,
                 chroma: bool = True, y_freqs: int = 6, y_scale: float = 3.0):
        super().__init__()
        if rois < 1 or rows < 2 or width < 2:
            raise InputError(f"PointCNN needs rois >= 1, rows >= 2, width >= 2; got {rois}, {rows}, {width}")
        if y_freqs < 0 or not y_scale > 0:
            raise InputError(f"PointCNN needs y_freqs >= 0 and y_scale > 0; got {y_freqs}, {y_scale}")
        self.rois, self.rows, self.width, self.chroma = rois, rows, width, chroma
        self.y_scale = float(y_scale)
        self.features = nn.Sequential(
            nn.Conv2d(6 if chroma else 3, 20, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 3, padding=1), nn.ReLU(),
            nn.Conv2d(50, 50, 3, padding=1), nn.ReLU(), nn.Flatten())
        flat = 50 * (rows // 2) * ((9 * rois) // 2)
        self.register_buffer("y_freq", torch.arange(1, y_freqs + 1, dtype=torch.float32) * (torch.pi / 2),
                             persistent=False)
        self.fc1 = nn.Linear(flat + 1 + 2 * y_freqs, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def y_code(self, y01: torch.Tensor) -> torch.Tensor:
        """``(B, 1)`` y in [0, 1] (``y_feature``) → ``(B, 1 + 2 y_freqs)`` first-FC input."""
        t = 2.0 * y01 - 1.0
        return self.y_scale * torch.cat([t, torch.sin(t * self.y_freq), torch.cos(t * self.y_freq)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x[:, 3, 0, 0].unsqueeze(1)
        rgb = x[:, :3]
        if self.chroma:  # per-pixel colour direction (Eq. 9) beside the L∞-normalised patch
            rgb = torch.cat([rgb, rgb / (rgb.norm(dim=1, keepdim=True) + 1e-3)], dim=1)
        h = torch.cat([self.features(rgb), self.y_code(y)], dim=1)
        return self.fc2(F.relu(self.fc1(h)))


class LineMLP(nn.Module):
    """Line decoder: ``(B, 3R + 1)`` features → ``(B, 1)`` xv in virtual pixels.

    Four fully connected layers of ``hidden`` (ReLU) and a linear output. The output is
    ``W/2 + W/2 * net(x)`` so the raw network works on a unit scale.
    """

    def __init__(self, rois: int, width: int = 2056, hidden: int = 300):
        super().__init__()
        if rois < 1 or width < 2:
            raise InputError(f"LineMLP needs rois >= 1 and width >= 2; got {rois}, {width}")
        self.rois, self.width = rois, width
        layers: list[nn.Module] = []
        n_in = 3 * rois + 1
        for _ in range(4):
            layers += [nn.Linear(n_in, hidden), nn.ReLU()]
            n_in = hidden
        layers.append(nn.Linear(hidden, 1))
        self.net = nn.Sequential(*layers)
        self.half = width / 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.half + self.half * self.net(x)


# --------------------------------------------------------------------------------------------
# losses and augmentation
# --------------------------------------------------------------------------------------------
def gaussian_target(xv: torch.Tensor, width: int, sigma: float) -> torch.Tensor:
    """``D(xv, σ)`` of Eq. 13: a Gaussian over the ``width`` virtual columns, summing to 1 per row.

    ``xv``: ``(B,)`` ground-truth columns (px). Returns ``(B, width)``.
    """
    cols = torch.arange(width, dtype=torch.float32, device=xv.device)
    g = torch.exp(-0.5 * ((cols[None, :] - xv[:, None]) / sigma) ** 2)
    return g / g.sum(dim=1, keepdim=True).clamp_min(1e-12)


def point_loss(scores: torch.Tensor, xv: torch.Tensor, sigma: float) -> torch.Tensor:
    """Eq. 13: mean over samples of BCE(softmax(scores), D(xv, σ)), summed over the W columns."""
    target = gaussian_target(xv, scores.shape[1], sigma)
    log_p = F.log_softmax(scores, dim=1)
    # log(1 - p) from log p, stable where p -> 1
    log_1mp = torch.log1p(-torch.exp(log_p).clamp(max=1 - 1e-6))
    return -(target * log_p + (1 - target) * log_1mp).sum(dim=1).mean()


def augment_line_means(means: np.ndarray, rng: np.random.Generator, *, albedo_range: tuple[float, float],
                       shot_noise: float, read_noise: float, threshold: float, channel_floor: float,
                       roi_dropout: float, black_dn: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """§4 augmentation of raw per-ROI mean colours → line features.

    ``means``: ``(M, R, 3)`` float mean colour per ROI (DN, 0..255) and ``y`` is added by the
    caller. Each ROI of each sample is scaled by an albedo drawn uniformly from
    ``albedo_range`` (the signal above the sensor's black level ``black_dn``; the black level
    itself does not scale with albedo); Gaussian noise with variance ``shot_noise * value + read_noise**2`` (DN²)
    is added; an ROI is valid when its max channel exceeds ``threshold`` and at least two
    channels exceed ``channel_floor`` (Eq. 14's set A, the rule of
    ``sdk.lines.preprocess.validity``); then a random
    subset of the valid ROIs is zeroed with probability ``roi_dropout`` each, keeping at least one.
    Returns ``(M, R, 3)`` L2-normalised colours, zero for invalid/dropped ROIs, and the
    ``(M,)`` mask of samples with any valid ROI.
    """
    m, r, _ = means.shape
    scale = rng.uniform(albedo_range[0], albedo_range[1], size=(m, r, 1))
    u = (means - black_dn) * scale + black_dn
    u = u + rng.standard_normal(u.shape) * np.sqrt(shot_noise * np.clip(u, 0, None) + read_noise ** 2)
    u = np.clip(u, 0.0, 255.0)
    valid = (u.max(axis=2) > threshold) & ((u > channel_floor).sum(axis=2) >= 2)
    if roi_dropout > 0 and r > 1:
        drop = rng.random((m, r)) < roi_dropout
        keep_one = rng.integers(0, r, size=m)
        # keep one valid ROI where dropout would remove them all: the first valid at/after keep_one
        kept = valid & ~drop
        empty = valid.any(axis=1) & ~kept.any(axis=1)
        if empty.any():
            order = (np.arange(r)[None, :] - keep_one[:, None]) % r
            cand = np.where(valid, order, r + 1)
            pick = cand.argmin(axis=1)
            kept[np.where(empty)[0], pick[empty]] = True
        valid = kept
    norm = np.linalg.norm(u, axis=2, keepdims=True)
    out = np.where(valid[..., None], u / np.maximum(norm, 1e-9), 0.0).astype(np.float32)
    return out, valid.any(axis=1)


def augment_patches(patches: np.ndarray, rng: np.random.Generator, *, rois: int,
                    scale_range: tuple[float, float], noise: float) -> np.ndarray:
    """Per-ROI intensity scale + additive noise on L∞-normalised ``(B, 3, h, 9R)`` patches, then
    L∞ re-normalisation (the decoder normalises the same way)."""
    b = patches.shape[0]
    scale = rng.uniform(scale_range[0], scale_range[1], size=(b, 1, 1, rois)).repeat(
        patches.shape[3] // rois, axis=3).astype(np.float32)
    p = patches * scale + rng.standard_normal(patches.shape).astype(np.float32) * noise
    p = np.clip(p, 0.0, None)
    peak = p.reshape(b, -1).max(axis=1).reshape(b, 1, 1, 1)
    return (p / np.maximum(peak, 1e-6)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# configurations and cache
# --------------------------------------------------------------------------------------------
# Thresholds for the simulated 8-bit sensor of ``DiffractionCamera.paper_conditions()``: dark
# pixels read 3-5 DN (4 DN black level, 0.5 DN read noise, ~1.5 DN ambient light), so the
# defaults of PreprocessConfig (peak 10 DN on a gray mean over 3 ROIs x 3 channels, channel floor
# 4 DN = the black level itself) would miss dim sources and count dark channels as "on".
POINT_PREPROCESS = {"peak_threshold": 5.5}
LINE_PREPROCESS = {"intensity_threshold": 15.0, "channel_floor": 8.0}

@dataclass(frozen=True)
class PointTrainConfig:
    """Point-CNN recipe: ``n_scans`` simulated scans with ``sources_per_scan`` sources each.

    ``sigma_px``: σ of the Gaussian target of Eq. 13 (virtual px). ``match_px``: a peak is
    labelled by the true source whose sensor row is within this distance; sources closer than
    ``ambiguity_px`` to another source in the same scan are left out (their patches mix two
    rainbows, §5's vertical-overlap ambiguity) and counted. ``scale_range`` / ``noise``: per-ROI
    patch scale and additive noise (in units of the patch maximum) of the augmentation.
    ``y_freqs`` / ``y_scale``: the y code of :class:`PointCNN` at its first FC layer.
    ``threads`` does not enter the cache key.
    """

    n_scans: int = 30000
    chunk_scans: int = 500
    sources_per_scan: tuple[int, int] = (1, 3)
    epochs: int = 24
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-5
    sigma_px: float = 4.0
    hidden: int = 256
    chroma: bool = True
    y_freqs: int = 6
    y_scale: float = 3.0
    match_px: float = 2.0
    ambiguity_px: float = 6.0
    scale_range: tuple[float, float] = (0.6, 1.0)
    noise: float = 0.01
    val_fraction: float = 0.1
    seed: int = 0
    threads: int | None = None
    preprocess: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(POINT_PREPROCESS))

    def __post_init__(self) -> None:
        _check_common(self)
        if self.y_freqs < 0 or not self.y_scale > 0:
            raise InputError(f"PointTrainConfig: y_freqs must be >= 0 and y_scale > 0, got "
                             f"{self.y_freqs}, {self.y_scale}")
        if self.sigma_px <= 0 or self.match_px <= 0:
            raise InputError(f"PointTrainConfig: sigma_px and match_px must be positive, got "
                             f"{self.sigma_px}, {self.match_px}")


@dataclass(frozen=True)
class LineTrainConfig:
    """Line-MLP recipe: ``n_scans`` simulated line scans with surface albedo in ``albedo_range``.

    At most ``max_samples`` valid (y, scan) rows are used. Augmentation per epoch (§4): per-ROI
    albedo scale in ``aug_albedo_range`` (of the signal above the ``aug_black_dn`` black level),
    noise of variance ``shot_noise * DN + read_noise²``, ROI dropout with probability ``roi_dropout`` per valid ROI. ``huber_delta_px``: δ of the
    Huber loss (virtual px).
    """

    n_scans: int = 300
    albedo_range: tuple[float, float] = (0.2, 1.0)
    max_samples: int = 160_000
    epochs: int = 16
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 0.0
    huber_delta_px: float = 2.0
    aug_albedo_range: tuple[float, float] = (0.4, 1.2)
    shot_noise: float = 0.05
    read_noise: float = 0.5
    roi_dropout: float = 0.35
    hidden: int = 300
    val_fraction: float = 0.1
    seed: int = 0
    threads: int | None = None
    aug_black_dn: float = 4.0
    preprocess: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(LINE_PREPROCESS))

    def __post_init__(self) -> None:
        _check_common(self)
        if not 0.0 <= self.roi_dropout < 1.0:
            raise InputError(f"LineTrainConfig.roi_dropout: expected [0, 1), got {self.roi_dropout}")


def _check_common(config) -> None:
    name = type(config).__name__
    for field_name in ("n_scans", "epochs", "batch_size") + (("chunk_scans",) if hasattr(config, "chunk_scans") else ()):
        if getattr(config, field_name) < 1:
            raise InputError(f"{name}.{field_name}: expected >= 1, got {getattr(config, field_name)}")
    if config.lr <= 0:
        raise InputError(f"{name}.lr: expected > 0, got {config.lr}")
    if not 0.0 <= config.val_fraction < 1.0:
        raise InputError(f"{name}.val_fraction: expected [0, 1), got {config.val_fraction}")


def preprocess_config(config: PointTrainConfig | LineTrainConfig):
    """The ``sdk.lines.preprocess.PreprocessConfig`` a recipe trains (and must decode) with."""
    from sdk.lines.preprocess import PreprocessConfig

    return PreprocessConfig(**config.preprocess)


def camera_geometry(camera) -> dict[str, Any]:
    """``rois``, ``rows``, ``q``, ``width`` and the affine ``g = (a, b)`` with ``yv ≈ a y + b``
    (least squares of ``camera.G`` over the sensor; §3.1 says G is affine) of a
    ``DiffractionCamera``."""
    q = int(camera.Q)
    y = np.arange(q, dtype=np.float64)
    yv = np.asarray(camera.G(y), np.float64)
    a, b = np.polyfit(y, yv, 1)
    return {"rois": int(camera.rois), "rows": int(camera.roi_rows), "q": q, "width": int(camera.W),
            "g": (float(a), float(b))}


def camera_fingerprint(camera) -> str:
    """A stable hash of ``camera``'s fields (a dataclass such as ``DiffractionCamera``) for cache
    keys, so two equal cameras share checkpoints and any changed field trains anew."""
    if dataclasses.is_dataclass(camera):
        fields = dataclasses.asdict(camera)
    else:
        fields = {k: v for k, v in vars(camera).items() if not k.startswith("_")}
    fields["type"] = type(camera).__name__
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=repr).encode()).hexdigest()[:16]


def _key(kind: str, config, camera) -> str:
    recipe = dataclasses.asdict(config)
    recipe.pop("threads")
    recipe.update(kind=kind, recipe_version=RECIPE_VERSION[kind], camera=camera_fingerprint(camera))
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=list).encode()).hexdigest()[:16]


def checkpoint_stem(kind: str, config, camera) -> Path:
    """``cache_dir()/checkpoints/line-<kind>-<key>`` (``$PRISM_CACHE_DIR`` honoured)."""
    return cache_dir() / "checkpoints" / f"line-{kind}-{_key(kind, config, camera)}"


def _save(model: nn.Module, meta: dict[str, Any], stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    suffix = f".tmp{os.getpid()}"
    pt, js = stem.with_name(stem.name + ".pt"), stem.with_name(stem.name + ".json")
    torch.save(model.state_dict(), str(pt) + suffix)
    os.replace(str(pt) + suffix, pt)
    Path(str(js) + suffix).write_text(json.dumps(meta, indent=2, sort_keys=True, default=list) + "\n")
    os.replace(str(js) + suffix, js)  # the .json last: a reader that sees it sees a whole .pt


def _load(stem: Path) -> tuple[nn.Module, dict[str, Any]] | None:
    pt, js = stem.with_name(stem.name + ".pt"), stem.with_name(stem.name + ".json")
    if not js.is_file() or not pt.is_file():
        return None
    meta = json.loads(js.read_text())
    arch = meta["architecture"]
    model = (PointCNN if arch["name"] == "PointCNN" else LineMLP)(**arch["kwargs"])
    model.load_state_dict(torch.load(pt, map_location="cpu", weights_only=True))
    return model.eval(), meta


# --------------------------------------------------------------------------------------------
# training sets from the simulator
# --------------------------------------------------------------------------------------------
@dataclass
class PointSamples:
    """Labelled point patches: ``patches (M, 3, h, 9R)`` float32, ``y (M,)`` sub-pixel peak rows
    (px), ``xv (M,)`` true virtual columns (px), ``scan_index (M,)``; ``counts``: ``truth``,
    ``peaks``, ``matched``, ``ambiguous`` (truth too close to another source), ``missed``
    (truth without a peak), ``unmatched_peaks`` (peaks without a truth)."""

    patches: np.ndarray
    y: np.ndarray
    xv: np.ndarray
    scan_index: np.ndarray
    counts: dict[str, int]


def point_samples(scans: np.ndarray, truth, cfg, *, match_px: float = 2.0,
                  ambiguity_px: float = 6.0) -> PointSamples:
    """Peaks of every scan (``sdk.lines.preprocess``), matched to the simulator's truth.

    ``truth``: per-source arrays ``scan_index``, ``xv``, ``y_sensor`` (a ``PointDataset.truth``
    or anything with those attributes / keys). The patches are made exactly as
    ``sdk.lines.PointDecoder`` makes them, so training and decoding see the same input.
    """
    from sdk.lines.preprocess import extract_patches, find_peaks, gray_profile

    t_scan = np.asarray(_field(truth, "scan_index"), np.int64)
    t_xv = np.asarray(_field(truth, "xv"), np.float64)
    t_y = np.asarray(_field(truth, "y_sensor"), np.float64)
    profiles = gray_profile(scans)
    out_p, out_y, out_x, out_s = [], [], [], []
    counts = dict(truth=int(t_scan.size), peaks=0, matched=0, ambiguous=0, missed=0, unmatched_peaks=0)
    order = np.argsort(t_scan, kind="stable")
    bounds = np.searchsorted(t_scan[order], np.arange(scans.shape[0] + 1))
    for n in range(scans.shape[0]):
        rows = order[bounds[n]:bounds[n + 1]]
        y_int, y_sub, _ = find_peaks(profiles[n], cfg)
        counts["peaks"] += int(y_int.size)
        if rows.size == 0:
            counts["unmatched_peaks"] += int(y_int.size)
            continue
        ty = t_y[rows]
        gap = np.abs(ty[:, None] - ty[None, :]) + np.eye(rows.size) * 1e9
        lonely = gap.min(axis=1) > ambiguity_px
        counts["ambiguous"] += int((~lonely).sum())
        if y_int.size == 0:
            counts["missed"] += int(lonely.sum())
            continue
        d = np.abs(y_sub[None, :].astype(np.float64) - ty[:, None])      # (truth, peak)
        nearest = d.argmin(axis=1)
        hit = d[np.arange(rows.size), nearest] <= match_px
        counts["missed"] += int((lonely & ~hit).sum())
        counts["unmatched_peaks"] += int(y_int.size - np.unique(nearest[hit]).size)
        use = lonely & hit
        if not use.any():
            continue
        peaks = nearest[use]
        patches, _ = extract_patches(scans[n], y_int[peaks], cfg)
        out_p.append(patches)
        out_y.append(y_sub[peaks])
        out_x.append(t_xv[rows[use]])
        out_s.append(np.full(int(use.sum()), n, np.int64))
        counts["matched"] += int(use.sum())
    if not out_p:
        raise InputError(f"point_samples: none of the {counts['truth']} sources matched a peak "
                         f"({counts}); check the camera's exposure and PreprocessConfig.peak_threshold")
    return PointSamples(np.concatenate(out_p), np.concatenate(out_y).astype(np.float32),
                        np.concatenate(out_x).astype(np.float32), np.concatenate(out_s), counts)


def _field(obj, name: str):
    if isinstance(obj, dict) and name in obj:
        return obj[name]
    if hasattr(obj, name):
        return getattr(obj, name)
    if isinstance(obj, np.ndarray) and obj.dtype.names and name in obj.dtype.names:
        return obj[name]
    raise InputError(f"truth: no field '{name}' (expected scan_index, xv, y_sensor)")


@dataclass
class LineSamples:
    """Valid line rows: ``means (M, R, 3)`` raw ROI means (DN), ``features (M, 3R+1)`` as
    ``line_features`` makes them, ``y (M,)`` sensor rows (px), ``xv (M,)`` truth (px), and
    ``counts``: ``rows`` (N·Q), ``with_truth`` (finite xv), ``valid`` (valid and finite xv),
    ``invalid_with_truth`` (a surface point the validity test rejects: dark or one-channel)."""

    means: np.ndarray
    features: np.ndarray
    y: np.ndarray
    xv: np.ndarray
    counts: dict[str, int]


def line_samples(scans: np.ndarray, xv: np.ndarray, cfg) -> LineSamples:
    """The valid rows of line scans ``(N, R, h, Q, 3)`` with their truth ``xv (N, Q)`` (NaN
    where the line hits no surface)."""
    from sdk.lines.preprocess import line_features, roi_means

    xv = np.asarray(xv, np.float32)
    if xv.shape != (scans.shape[0], scans.shape[3]):
        raise InputError(f"xv: expected shape (N, Q) = {(scans.shape[0], scans.shape[3])}, "
                         f"received {xv.shape}")
    features, valid, _ = line_features(scans, cfg)
    means = roi_means(scans).transpose(0, 2, 1, 3)                     # (N, Q, R, 3)
    truth = np.isfinite(xv)
    use = valid & truth
    ys = np.broadcast_to(np.arange(scans.shape[3], dtype=np.float32), xv.shape)
    counts = {"rows": int(xv.size), "with_truth": int(truth.sum()), "valid": int(use.sum()),
              "invalid_with_truth": int((truth & ~valid).sum())}
    return LineSamples(means[use], features[use], ys[use], xv[use], counts)


def line_support_features(camera, config: LineTrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Training features and validity mask of the line recipe (what ``sdk.lines.distill``
    needs for the LUT's colour support): the cached simulated training set."""
    data = _line_training_set(camera, config)
    return data.features, np.ones(data.features.shape[0], bool)


def _line_training_set(camera, config: LineTrainConfig) -> LineSamples:
    from firmware_bridge.linescan.diffraction.structured_light import make_line_dataset

    ds = make_line_dataset(camera, config.n_scans, seed=config.seed,
                           albedo_range=tuple(config.albedo_range))
    return line_samples(ds.scans, ds.xv, preprocess_config(config))


def _point_training_set(camera, config: PointTrainConfig, progress: bool = False) -> PointSamples:
    """Simulated in chunks of ``chunk_scans`` (seeds ``seed * 1000 + chunk``) so that only one
    chunk of raw scans is in memory at a time; the patches are kept."""
    from tqdm.auto import tqdm

    from firmware_bridge.linescan.diffraction.points import make_point_dataset

    parts, counts, offset = [], {}, 0
    chunks = range(0, config.n_scans, config.chunk_scans)
    for k, start in enumerate(tqdm(chunks, desc="point scans", unit="chunk", disable=not progress)):
        n = min(config.chunk_scans, config.n_scans - start)
        ds = make_point_dataset(camera, n, sources_per_scan=tuple(config.sources_per_scan),
                                seed=config.seed * 1000 + k)
        part = point_samples(ds.scans, ds.truth, preprocess_config(config), match_px=config.match_px,
                             ambiguity_px=config.ambiguity_px)
        part.scan_index += offset
        offset += n
        parts.append(part)
        counts = {key: counts.get(key, 0) + v for key, v in part.counts.items()}
    return PointSamples(np.concatenate([p.patches for p in parts]), np.concatenate([p.y for p in parts]),
                        np.concatenate([p.xv for p in parts]), np.concatenate([p.scan_index for p in parts]),
                        counts)


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def _split(m: int, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(m)
    n_val = int(round(m * val_fraction))
    return order[n_val:], order[:n_val]


def _seed(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def _point_input(patches: np.ndarray, y: np.ndarray, q: int) -> torch.Tensor:
    k, _, h, w = patches.shape
    x = np.empty((k, 4, h, w), np.float32)
    x[:, :3] = patches
    x[:, 3] = y_feature(y, q)[:, None, None]
    return torch.from_numpy(x)


def point_predict(model: PointCNN, patches: np.ndarray, y: np.ndarray, q: int,
                  batch: int = 2048) -> np.ndarray:
    """Eq. 11 with the PyTorch model: arg max of the scores → xv (px) ``(M,)`` float32."""
    out = np.empty(patches.shape[0], np.float32)
    with torch.no_grad():
        for s in range(0, patches.shape[0], batch):
            out[s:s + batch] = model(_point_input(patches[s:s + batch], y[s:s + batch], q)).argmax(1).numpy()
    return out


def train_point(samples: PointSamples, config: PointTrainConfig, *, rois: int, rows: int,
                q: int, width: int, progress: bool = True) -> tuple[PointCNN, dict[str, Any]]:
    """Train a :class:`PointCNN` on ``samples`` with Eq. 13 (Adam, cosine schedule, seeded).

    Returns the model (eval mode) and metrics: per-epoch ``history`` (loss, val MAE px) and the
    final ``val_mae_px`` / ``val_std_px`` on the held-out ``val_fraction`` of the samples.
    """
    from tqdm.auto import tqdm

    _seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train_idx, val_idx = _split(samples.xv.size, config.val_fraction, rng)
    model = PointCNN(rois, rows, width, config.hidden, config.chroma, config.y_freqs, config.y_scale)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * -(-train_idx.size // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps,
                                                pct_start=0.15)
    history = []
    bar = tqdm(range(config.epochs), desc="point CNN", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        order = rng.permutation(train_idx)
        total = 0.0
        for s in range(0, order.size, config.batch_size):
            idx = order[s:s + config.batch_size]
            p = augment_patches(samples.patches[idx], rng, rois=rois, scale_range=config.scale_range,
                                noise=config.noise)
            loss = point_loss(model(_point_input(p, samples.y[idx], q)),
                              torch.from_numpy(samples.xv[idx]), config.sigma_px)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * idx.size
        model.eval()
        record = {"epoch": epoch + 1, "loss": total / max(order.size, 1)}
        if val_idx.size:
            err = point_predict(model, samples.patches[val_idx], samples.y[val_idx], q) - samples.xv[val_idx]
            record["val_mae_px"] = float(np.abs(err).mean())
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", mae=f"{record.get('val_mae_px', float('nan')):.2f}")
    metrics: dict[str, Any] = {"history": history, "train_samples": int(train_idx.size),
                               "val_samples": int(val_idx.size), "counts": samples.counts}
    if val_idx.size:
        err = np.abs(point_predict(model, samples.patches[val_idx], samples.y[val_idx], q) - samples.xv[val_idx])
        metrics.update(val_mae_px=float(err.mean()), val_std_px=float(err.std()))
    return model.eval(), metrics


def line_predict(model: LineMLP, features: np.ndarray, batch: int = 65536) -> np.ndarray:
    """The MLP on ``(M, 3R + 1)`` features → xv (px) ``(M,)`` float32."""
    out = np.empty(features.shape[0], np.float32)
    with torch.no_grad():
        for s in range(0, features.shape[0], batch):
            out[s:s + batch] = model(torch.from_numpy(np.ascontiguousarray(
                features[s:s + batch], np.float32)))[:, 0].numpy()
    return out


def train_line(samples: LineSamples, config: LineTrainConfig, *, rois: int, q: int, width: int,
               progress: bool = True) -> tuple[LineMLP, dict[str, Any]]:
    """Train a :class:`LineMLP` with the Huber loss and §4 augmentation + ROI dropout (Adam,
    one-cycle schedule, seeded). Validation uses the un-augmented features, as decoded."""
    from tqdm.auto import tqdm

    cfg = preprocess_config(config)
    _seed(config.seed)
    rng = np.random.default_rng(config.seed)
    m = samples.xv.size
    if m > config.max_samples:
        keep = np.sort(rng.permutation(m)[:config.max_samples])
    else:
        keep = np.arange(m)
    train_idx, val_idx = _split(keep.size, config.val_fraction, rng)
    train_idx, val_idx = keep[train_idx], keep[val_idx]
    model = LineMLP(rois, width, config.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * -(-train_idx.size // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps,
                                                pct_start=0.15)
    yf = y_feature(samples.y, q)
    history = []
    bar = tqdm(range(config.epochs), desc="line MLP", unit="epoch", disable=not progress)
    dropped = 0
    for epoch in bar:
        model.train()
        order = rng.permutation(train_idx)
        unit, ok = augment_line_means(samples.means[order], rng, albedo_range=config.aug_albedo_range,
                                      shot_noise=config.shot_noise, read_noise=config.read_noise,
                                      threshold=cfg.intensity_threshold,
                                      channel_floor=cfg.channel_floor, roi_dropout=config.roi_dropout,
                                      black_dn=config.aug_black_dn)
        dropped += int((~ok).sum())  # augmented into darkness: no valid ROI left, not trained on
        feats = np.concatenate([unit.reshape(order.size, 3 * rois), yf[order, None]], axis=1)[ok]
        target = samples.xv[order][ok]
        total = 0.0
        for s in range(0, target.size, config.batch_size):
            x = torch.from_numpy(feats[s:s + config.batch_size])
            t = torch.from_numpy(target[s:s + config.batch_size])
            loss = F.huber_loss(model(x)[:, 0], t, delta=config.huber_delta_px)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * x.shape[0]
        model.eval()
        record = {"epoch": epoch + 1, "loss": total / max(target.size, 1)}
        if val_idx.size:
            err = line_predict(model, samples.features[val_idx]) - samples.xv[val_idx]
            record["val_mae_px"] = float(np.abs(err).mean())
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", mae=f"{record.get('val_mae_px', float('nan')):.2f}")
    metrics: dict[str, Any] = {"history": history, "train_samples": int(train_idx.size),
                               "val_samples": int(val_idx.size), "counts": samples.counts,
                               "augmented_dark_dropped": dropped}
    if val_idx.size:
        err = np.abs(line_predict(model, samples.features[val_idx]) - samples.xv[val_idx])
        metrics.update(val_mae_px=float(err.mean()), val_std_px=float(err.std()))
    return model.eval(), metrics


def _with_threads(config, fn):
    previous = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(previous)


def _get_or_train(kind: str, camera, config, train, architecture) -> tuple[nn.Module, dict[str, Any]]:
    """The cached network ``kind`` ("point"/"line") for ``camera`` and ``config``, else
    ``train(geometry) -> (model, metrics)`` under the config's thread setting, cached with its
    ``architecture(geometry) -> {"name", "kwargs"}``. ``meta["cached"]`` tells which."""
    stem = checkpoint_stem(kind, config, camera)
    hit = _load(stem)
    if hit is not None:
        return hit[0], {**hit[1], "cached": True}
    geo = camera_geometry(camera)
    start = time.perf_counter()
    model, metrics = _with_threads(config, lambda: train(geo))
    meta = {"architecture": architecture(geo), "config": dataclasses.asdict(config), "config_key": stem.name,
            "metrics": metrics, "seconds": time.perf_counter() - start, "torch_version": torch.__version__,
            "recipe_version": RECIPE_VERSION[kind]}
    _save(model, meta, stem)
    return model, {**meta, "cached": False}


def get_or_train_point(camera, config: PointTrainConfig | None = None,
                       progress: bool = True) -> tuple[PointCNN, dict[str, Any]]:
    """The cached point CNN for ``camera`` and ``config``, else simulate, train and cache it.

    Returns ``(model in eval mode, meta)``; ``meta["cached"]`` tells whether it was loaded.
    """
    config = config or PointTrainConfig()

    def train(geo):
        samples = _point_training_set(camera, config, progress)
        return train_point(samples, config, rois=geo["rois"], rows=geo["rows"], q=geo["q"],
                           width=geo["width"], progress=progress)

    return _get_or_train("point", camera, config, train, lambda geo: {
        "name": "PointCNN", "kwargs": {"rois": geo["rois"], "rows": geo["rows"], "width": geo["width"],
                                       "hidden": config.hidden, "chroma": config.chroma,
                                       "y_freqs": config.y_freqs, "y_scale": config.y_scale}})


def get_or_train_line(camera, config: LineTrainConfig | None = None,
                      progress: bool = True) -> tuple[LineMLP, dict[str, Any]]:
    """The cached line MLP for ``camera`` and ``config``, else simulate, train and cache it."""
    config = config or LineTrainConfig()

    def train(geo):
        samples = _line_training_set(camera, config)
        return train_line(samples, config, rois=geo["rois"], q=geo["q"], width=geo["width"],
                          progress=progress)

    return _get_or_train("line", camera, config, train, lambda geo: {
        "name": "LineMLP", "kwargs": {"rois": geo["rois"], "width": geo["width"], "hidden": config.hidden}})
