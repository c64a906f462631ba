"""Bird's-eye-view detection metrics: rotated-box IoU and average precision.

Boxes are ``(x, y, length, width, heading)`` rows (m, m, m, m, rad). AP is the VOC 2010+ /
OpenCOOD definition used by FPV-RCNN's tables: detections of all frames sorted by score, each
greedily matched to the unmatched ground-truth box of its frame with the highest IoU (a hit when
IoU >= threshold and the class agrees), then the area under the precision-recall curve with
precision made monotone (all-point interpolation, no 11/101-point sampling).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sdk.errors import InputError

__all__ = ["box_corners", "rotated_iou", "iou_matrix", "APAccumulator", "average_precision", "within_range"]


def box_corners(box: np.ndarray) -> np.ndarray:
    """(4, 2) corners, counter-clockwise, of one (x, y, length, width, heading) box."""
    x, y, length, width, h = box
    c, s = np.cos(h), np.sin(h)
    dx = np.array([1, -1, -1, 1]) * length / 2
    dy = np.array([1, 1, -1, -1]) * width / 2
    return np.stack([x + c * dx - s * dy, y + s * dx + c * dy], axis=1)


def _area(poly: np.ndarray) -> float:
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _clip(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: subject polygon clipped by a convex counter-clockwise polygon."""
    out = list(subject)
    for k in range(len(clip)):
        a, b = clip[k], clip[(k + 1) % len(clip)]
        inp, out = out, []
        if not inp:
            break
        side = lambda p: (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])  # noqa: E731
        prev = inp[-1]
        for cur in inp:
            sc, sp = side(cur), side(prev)
            if sc >= 0:
                if sp < 0:
                    out.append(prev + (cur - prev) * (sp / (sp - sc)))
                out.append(cur)
            elif sp >= 0:
                out.append(prev + (cur - prev) * (sp / (sp - sc)))
            prev = cur
    return np.array(out).reshape(-1, 2)


def rotated_iou(a: np.ndarray, b: np.ndarray) -> float:
    """BEV IoU of two rotated boxes (x, y, length, width, heading)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if np.hypot(a[0] - b[0], a[1] - b[1]) > 0.5 * (np.hypot(a[2], a[3]) + np.hypot(b[2], b[3])):
        return 0.0
    inter = _area(_clip(box_corners(a), box_corners(b)))
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoUs between two box arrays (N, 5) and (M, 5)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 5), np.asarray(b, np.float64).reshape(-1, 5)
    return np.array([[rotated_iou(p, q) for q in b] for p in a]).reshape(len(a), len(b))


@dataclass
class APAccumulator:
    """Collects (score, hit) per detection over frames for several IoU thresholds."""

    thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    scores: list[float] = field(default_factory=list)
    hits: dict[float, list[bool]] = field(default_factory=dict)
    ground_truths: int = 0

    def add(self, det_boxes: np.ndarray, det_scores: np.ndarray, det_cls: np.ndarray,
            gt_boxes: np.ndarray, gt_cls: np.ndarray) -> None:
        """One frame: detections (N, 5) + scores (N,) + classes (N,), ground truth (M, 5) + (M,)."""
        det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 5)
        gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 5)
        det_scores, det_cls = np.asarray(det_scores).reshape(-1), np.asarray(det_cls).reshape(-1)
        gt_cls = np.asarray(gt_cls).reshape(-1)
        if len(det_scores) != len(det_boxes) or len(det_cls) != len(det_boxes) or len(gt_cls) != len(gt_boxes):
            raise InputError(f"APAccumulator.add: {len(det_boxes)} boxes, {len(det_scores)} scores, "
                             f"{len(det_cls)} classes; {len(gt_boxes)} gt boxes, {len(gt_cls)} gt classes")
        if not np.isfinite(det_boxes).all() or not np.isfinite(det_scores).all():
            raise InputError("APAccumulator.add: detections contain NaN or inf")
        self.ground_truths += len(gt_boxes)
        ious = iou_matrix(det_boxes, gt_boxes)
        ious[det_cls[:, None] != gt_cls[None, :]] = 0.0
        order = np.argsort(-det_scores, kind="stable")
        for t in self.thresholds:
            taken = np.zeros(len(gt_boxes), bool)
            hit = np.zeros(len(det_boxes), bool)
            for k in order:
                if len(gt_boxes) == 0:
                    break
                cand = np.where(taken, -1.0, ious[k])
                g = int(np.argmax(cand))
                if cand[g] >= t:
                    taken[g], hit[k] = True, True
            self.hits.setdefault(t, []).extend(hit.tolist())
        self.scores.extend(det_scores.tolist())

    def ap(self) -> dict[float, float]:
        """AP per threshold (0 when there is no ground truth)."""
        return {t: average_precision(np.array(self.scores), np.array(self.hits.get(t, []), bool),
                                     self.ground_truths) for t in self.thresholds}


def average_precision(scores: np.ndarray, hits: np.ndarray, ground_truths: int) -> float:
    """All-point interpolated AP of detections (scores (N,), hits (N,) bool) against
    ``ground_truths`` boxes."""
    if ground_truths <= 0 or len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(hits[order])
    fp = np.cumsum(~hits[order])
    recall = tp / ground_truths
    precision = tp / np.maximum(tp + fp, 1)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def within_range(boxes: np.ndarray, scores: np.ndarray, cls: np.ndarray, radius_m: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The detections whose centre lies within radius_m of the origin (the evaluation region:
    ground truth is taken over the same disc, so detections beyond it are neither hits nor
    false positives)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 5)
    keep = np.hypot(boxes[:, 0], boxes[:, 1]) <= radius_m
    return boxes[keep], np.asarray(scores).reshape(-1)[keep], np.asarray(cls).reshape(-1)[keep]
