"""Localization-error correction between two devices by maximum consensus (FPV-RCNN, Sec. III-D).

Device j reports its pose estimate and its keypoints (radar landmarks and object centres) in its
own frame; the reference device i does the same. The relative pose computed from the two reported
poses is wrong by both devices' localization errors. The correction:

1. **coarse maximum consensus**: a grid over a translation (x, y) and a heading correction
   (paper: [-1, 1] m at 1 m, [-6, 6] deg at 1 deg). Each hypothesis moves j's keypoints into i's
   frame; the hypothesis with the most keypoints landing within ``inlier_radius_m`` of an
   i keypoint of the same kind (landmark to landmark, object centre to object centre of the same
   class) wins; ties go to the smaller residuals.
2. **refinement**: mutual nearest neighbours within shrinking radii, each stage a closed-form
   least-squares rigid fit (2D Kabsch) on the consensus inliers.

The heading correction rotates about j's reported position in i's frame, so j's own heading error
maps to a pure rotation and does not spill into the translation grid.

SE(2) poses are ``(x, y, heading)`` float64 arrays (m, m, rad); ``se2_compose(a, b)`` is a∘b, and
``relative = se2_compose(se2_inverse(pose_i), pose_j)`` maps j-frame points into i's frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdk.errors import InputError

from .messages import CPM

__all__ = ["wrap_angle", "se2_compose", "se2_inverse", "se2_apply", "ConsensusConfig",
           "ConsensusResult", "keypoints", "max_consensus", "LANDMARK_LABEL"]

LANDMARK_LABEL = -1
"""Keypoint label of radar landmarks; object centres carry their ObjectClass code."""

_GRID_CHUNK = 16  # grid hypotheses scored at once: bounds memory for keypoint-heavy messages


def wrap_angle(a):
    """Angle(s) wrapped to [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def se2_compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a∘b: apply b, then a."""
    c, s = np.cos(a[2]), np.sin(a[2])
    return np.array([a[0] + c * b[0] - s * b[1], a[1] + s * b[0] + c * b[1], wrap_angle(a[2] + b[2])])


def se2_inverse(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a[2]), np.sin(a[2])
    return np.array([-c * a[0] - s * a[1], s * a[0] - c * a[1], wrap_angle(-a[2])])


def se2_apply(a: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2) points in frame b -> frame a, where ``a`` is the pose of b in a."""
    c, s = np.cos(a[2]), np.sin(a[2])
    p = np.asarray(points, np.float64).reshape(-1, 2)
    return np.stack([a[0] + c * p[:, 0] - s * p[:, 1], a[1] + s * p[:, 0] + c * p[:, 1]], axis=1)


@dataclass(frozen=True)
class ConsensusConfig:
    """Search grid and inlier radii (m, deg). Defaults are the FPV-RCNN paper's grid."""

    translation_range_m: float = 1.0
    translation_step_m: float = 1.0
    heading_range_deg: float = 6.0
    heading_step_deg: float = 1.0
    inlier_radius_m: float = 1.0
    """Coarse stage: a grid hypothesis is at most half a step (0.5 m, 0.5 deg) off, plus noise."""
    refine_radii_m: tuple[float, ...] = (1.0, 0.6, 0.4)
    min_inliers: int = 4
    min_inlier_ratio: float = 0.15
    """A correction is accepted (``success``) only when every refinement stage, the tightest
    radius included, keeps at least max(min_inliers, min_inlier_ratio * candidates) pairs: a chance
    alignment of unrelated keypoints keeps a few loose pairs, a true one many tight ones."""

    def grid(self) -> np.ndarray:
        """(H, 3) hypotheses dx, dy (m), dheading (rad)."""
        t = np.arange(-self.translation_range_m, self.translation_range_m + 1e-9, self.translation_step_m)
        h = np.radians(np.arange(-self.heading_range_deg, self.heading_range_deg + 1e-9, self.heading_step_deg))
        gx, gy, gh = np.meshgrid(t, t, h, indexing="ij")
        return np.stack([gx.ravel(), gy.ravel(), gh.ravel()], axis=1)


@dataclass
class ConsensusResult:
    relative_pose: np.ndarray
    """(3,) the corrected pose of device j in device i's frame (the initial one if not success)."""
    initial_pose: np.ndarray
    """(3,) the relative pose from the reported global poses."""
    inliers: int
    """Keypoint pairs supporting the final estimate."""
    candidates: int
    """j keypoints that could have matched (min of both sides' counts)."""
    rms_m: float
    """RMS residual of the inlier pairs after refinement, m (nan without inliers)."""
    spread_m: float
    """RMS distance of the inliers from their centroid, m: how well they pin the heading."""
    success: bool

    @property
    def inlier_ratio(self) -> float:
        return self.inliers / self.candidates if self.candidates else 0.0


def keypoints(cpm: CPM) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) keypoints of a CPM in its sender's frame and (N,) labels: radar landmarks
    (LANDMARK_LABEL) then object centres (class code). Non-finite entries are skipped."""
    pts = [(lm.x, lm.y) for lm in cpm.landmarks] + [(o.x, o.y) for o in cpm.objects]
    labels = [LANDMARK_LABEL] * len(cpm.landmarks) + [int(o.cls) for o in cpm.objects]
    p = np.asarray(pts, np.float64).reshape(-1, 2)
    lab = np.asarray(labels, np.int64)
    ok = np.isfinite(p).all(axis=1)
    return p[ok], lab[ok]


def _kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The SE(2) pose T minimising sum |T(src) - dst|^2 (closed form)."""
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - ms, dst - md
    h = a.T @ b
    theta = np.arctan2(h[0, 1] - h[1, 0], h[0, 0] + h[1, 1])
    c, s = np.cos(theta), np.sin(theta)
    t = md - np.array([c * ms[0] - s * ms[1], s * ms[0] + c * ms[1]])
    return np.array([t[0], t[1], theta])


def _mutual_pairs(moved: np.ndarray, src_lab: np.ndarray, ref: np.ndarray, ref_lab: np.ndarray,
                  radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours of the same label within radius: (src idx, ref idx)."""
    d = np.hypot(moved[:, None, 0] - ref[None, :, 0], moved[:, None, 1] - ref[None, :, 1])
    d[src_lab[:, None] != ref_lab[None, :]] = np.inf
    fwd, back = d.argmin(axis=1), d.argmin(axis=0)
    rows = np.arange(len(moved))
    ok = (back[fwd] == rows) & (d[rows, fwd] <= radius)
    return rows[ok], fwd[ok]


def max_consensus(ref_points: np.ndarray, ref_labels: np.ndarray, src_points: np.ndarray,
                  src_labels: np.ndarray, initial_pose: np.ndarray,
                  config: ConsensusConfig = ConsensusConfig()) -> ConsensusResult:
    """Correct ``initial_pose`` (pose of the source device in the reference device's frame, from
    their reported global poses) so that the source keypoints land on the reference keypoints.

    ref_points (N, 2) / src_points (M, 2): keypoints in each device's own frame, m; labels (N,) /
    (M,): LANDMARK_LABEL or an object class (only equal labels match).
    """
    ref = np.asarray(ref_points, np.float64).reshape(-1, 2)
    src = np.asarray(src_points, np.float64).reshape(-1, 2)
    ref_lab, src_lab = np.asarray(ref_labels).reshape(-1), np.asarray(src_labels).reshape(-1)
    init = np.asarray(initial_pose, np.float64).reshape(-1)
    if len(ref_lab) != len(ref) or len(src_lab) != len(src):
        raise InputError(f"max_consensus: labels must match points, received {len(ref)} points / "
                         f"{len(ref_lab)} labels and {len(src)} points / {len(src_lab)} labels")
    if init.shape != (3,) or not np.isfinite(init).all():
        raise InputError(f"max_consensus: initial_pose must be 3 finite numbers, received {initial_pose!r}")
    candidates = min(len(ref), len(src))
    failed = ConsensusResult(init.copy(), init.copy(), 0, candidates, float("nan"), 0.0, False)
    if candidates < config.min_inliers or not config.refine_radii_m:
        return failed

    # 1. coarse grid: hypotheses (H,), scored in chunks so memory stays ~chunk x M x N floats
    grid = config.grid()
    base = se2_apply(init, src) - init[:2]                 # about the source device's position
    other_label = src_lab[:, None] != ref_lab[None, :]
    r = config.inlier_radius_m
    score = np.empty(len(grid))
    for lo in range(0, len(grid), _GRID_CHUNK):
        g = grid[lo:lo + _GRID_CHUNK]
        c, s = np.cos(g[:, 2]), np.sin(g[:, 2])
        moved = np.stack([c[:, None] * base[None, :, 0] - s[:, None] * base[None, :, 1],
                          s[:, None] * base[None, :, 0] + c[:, None] * base[None, :, 1]], axis=-1)
        moved += init[:2] + g[:, None, :2]
        d = np.hypot(moved[:, :, None, 0] - ref[None, None, :, 0], moved[:, :, None, 1] - ref[None, None, :, 1])
        d[:, other_label] = np.inf
        nearest = d.min(axis=2)                            # (chunk, M)
        inlier = nearest <= r
        # inlier count first; the residuals (always < 1 in total) only break ties
        score[lo:lo + len(g)] = inlier.sum(axis=1) - (np.where(inlier, nearest, 0.0) ** 2).sum(axis=1) / (
            r * r * (len(src) + 1))
    best = grid[int(np.argmax(score))]
    # the winning hypothesis as a full relative pose: rotated about the source device's position
    pose = init.copy()
    pose[2] = wrap_angle(init[2] + best[2])
    pose[:2] = init[:2] + best[:2]

    # 2. refinement: Kabsch on mutual nearest neighbours, shrinking radius
    need = max(config.min_inliers, int(np.ceil(config.min_inlier_ratio * candidates)))
    for radius in config.refine_radii_m:
        si, ri = _mutual_pairs(se2_apply(pose, src), src_lab, ref, ref_lab, radius)
        if len(si) < need:
            return failed
        pose = _kabsch(src[si], ref[ri])
    si, ri = _mutual_pairs(se2_apply(pose, src), src_lab, ref, ref_lab, config.refine_radii_m[-1])
    if len(si) < need:
        return failed
    resid = se2_apply(pose, src[si]) - ref[ri]
    rms = float(np.sqrt((resid ** 2).sum(axis=1).mean()))
    spread = float(np.sqrt(((ref[ri] - ref[ri].mean(axis=0)) ** 2).sum(axis=1).mean()))
    return ConsensusResult(pose, init.copy(), int(len(si)), candidates, rms, spread, True)
