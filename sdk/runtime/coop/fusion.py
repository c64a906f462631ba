"""Ego fusion: other devices' objects, pose-corrected, merged into the ego's object list.

    coop = CooperativePerception(ego_id=0, mode="consistency")
    fused = coop.process(ego_cpm, received_cpms)     # FusedFrame: objects with their sources

Modes (the report's four settings):

* ``"ego"``: the ego's own objects only.
* ``"none"``: other devices' objects placed with the relative pose from the reported global
  poses (no correction).
* ``"consensus"``: that relative pose corrected by maximum consensus between the ego and each
  sender (``consensus.py``); a failed consensus keeps the uncorrected pose.
* ``"consistency"``: all pairs corrected, made globally consistent by the robust pose graph
  (``posegraph.py``); each message's scores are multiplied by its sender's consistency weight,
  and senders reported as outliers are dropped.

Merging (as in FPV-RCNN's Algorithm 1, but over boxes): each sender's boxes are matched to the
current fused list with the Hungarian algorithm (scipy, when installed; else a greedy
nearest-first matcher, ``greedy_assignment``) on centre distance, gated by
``match_gate_m`` and equal class; a match is merged by a score-weighted mean of centre, size and
heading (heading folded by pi onto the stronger box), its score becomes 1 - prod(1 - s_k) and its
sources gain the sender id; unmatched boxes start new fused objects.

Bad input never raises from ``process``: a CPM with a non-finite or absurd pose, or from the ego's
own id or a sender already seen this frame, is dropped; an object or landmark with non-finite or
absurd fields is dropped before pose correction and fusion; objects and landmarks beyond the
per-message limits and messages beyond ``max_messages`` are dropped. Every drop is
counted in ``counters`` by reason. Work per call is bounded by those two limits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

try:  # optimal assignment when scipy is installed (the toolchain has it; devices may not)
    from scipy.optimize import linear_sum_assignment as _hungarian
except ImportError:  # pragma: no cover - exercised through greedy_assignment in the tests
    _hungarian = None

from sdk.errors import InputError

from .consensus import ConsensusConfig, keypoints, max_consensus, se2_compose, se2_inverse, wrap_angle
from .messages import CPM, DetectedObject, Landmark
from .posegraph import PoseGraphConfig, consistent_relative_poses

__all__ = ["FusionConfig", "FusedObject", "FusedFrame", "EgoFusion", "CooperativePerception", "MODES",
           "objects_to_arrays", "greedy_assignment", "assign"]

MODES = ("ego", "none", "consensus", "consistency")


@dataclass(frozen=True)
class FusionConfig:
    match_gate_m: float = 1.5
    """Largest centre distance for two boxes to be the same object, m."""
    max_objects_per_message: int = 256
    max_landmarks_per_message: int = 256
    max_messages: int = 16
    """Per call; with the ego, at most 17 devices and 136 consensus pairs in ``consistency`` mode."""
    max_abs_position_m: float = 1.0e5
    """Reported poses farther from the origin than this are absurd."""
    max_object_range_m: float = 200.0
    """Objects farther than this from their sender are absurd."""
    max_object_size_m: float = 50.0
    min_weight: float = 0.05
    """Messages with a lower consistency weight are dropped."""
    ego_radius_m: float = 1.0
    """Other devices' boxes centred this close to the ego are the ego itself: dropped."""


@dataclass
class FusedObject(DetectedObject):
    """A :class:`DetectedObject` in the ego frame (m, rad), with the devices that saw it."""

    sources: tuple[int, ...] = ()
    """Device ids whose boxes were merged into this one (the ego's id first when it saw it)."""

    def as_box(self) -> np.ndarray:
        return np.array([self.x, self.y, self.length, self.width, self.heading])


@dataclass
class FusedFrame:
    objects: list[FusedObject]
    relative_poses: dict[int, np.ndarray]
    """Pose of each used sender in the ego frame (after correction)."""
    weights: dict[int, float]
    """Score multiplier per used sender."""
    outliers: list[int]
    """Senders reported inconsistent with the rest (``consistency`` mode)."""


def _finite(values) -> bool:
    """Are all values real finite numbers (Python or NumPy scalars)?"""
    try:
        return all(math.isfinite(float(v)) for v in values)
    except (TypeError, ValueError):
        return False


def objects_to_arrays(objects: list[FusedObject] | list[DetectedObject]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 5) boxes, (N,) scores, (N,) classes of a list of objects."""
    boxes = np.array([[o.x, o.y, o.length, o.width, o.heading] for o in objects], np.float64).reshape(-1, 5)
    return boxes, np.array([o.score for o in objects], np.float64), np.array([o.cls for o in objects], np.int64)


def greedy_assignment(cost: np.ndarray, gate: float) -> list[tuple[int, int]]:
    """(row, col) pairs with cost <= gate, cheapest first, each row and column used once."""
    rows, cols = np.nonzero(cost <= gate)
    order = np.argsort(cost[rows, cols], kind="stable")
    used_r, used_c, out = set(), set(), []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            out.append((r, c))
    return out


def assign(cost: np.ndarray, gate: float) -> list[tuple[int, int]]:
    """Minimum-cost matching of the (N, M) cost matrix, pairs above ``gate`` left out."""
    if _hungarian is None:
        return greedy_assignment(cost, gate)
    big = np.where(cost <= gate, cost, gate * 1e3 + 1.0)
    rows, cols = _hungarian(big)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] <= gate]


class EgoFusion:
    """Stateless-per-frame box fusion with drop counters that persist across frames."""

    def __init__(self, ego_id: int, config: FusionConfig = FusionConfig()):
        self.ego_id, self.config = ego_id, config
        self.counters: dict[str, int] = {}

    def _drop(self, reason: str, n: int = 1) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + n

    def pose_ok(self, cpm: CPM) -> bool:
        """Is the CPM's reported pose usable? Counts the drop when not."""
        p = (cpm.pose.x, cpm.pose.y, cpm.pose.heading)
        if not _finite(p):
            self._drop("pose_not_finite")
            return False
        if max(abs(p[0]), abs(p[1])) > self.config.max_abs_position_m:
            self._drop("pose_absurd")
            return False
        return True

    def _object_ok(self, o: DetectedObject) -> bool:
        c = self.config
        vals = (o.x, o.y, o.length, o.width, o.heading, o.score)
        if not _finite(vals):
            self._drop("object_not_finite")
            return False
        if (math.hypot(o.x, o.y) > c.max_object_range_m or not 0 < o.length <= c.max_object_size_m
                or not 0 < o.width <= c.max_object_size_m or not 0.0 <= o.score <= 1.0):
            self._drop("object_absurd")
            return False
        return True

    def clean(self, objects: list[DetectedObject]) -> list[DetectedObject]:
        """The valid objects, at most max_objects_per_message of them (drops counted)."""
        limit = self.config.max_objects_per_message
        if len(objects) > limit:
            self._drop("object_over_limit", len(objects) - limit)
            objects = objects[:limit]
        return [o for o in objects if self._object_ok(o)]

    def _landmark_ok(self, lm: Landmark) -> bool:
        if not _finite((lm.x, lm.y, lm.strength)):
            self._drop("landmark_not_finite")
            return False
        if math.hypot(lm.x, lm.y) > self.config.max_object_range_m:
            self._drop("landmark_absurd")
            return False
        return True

    def sanitize(self, cpm: CPM) -> CPM | None:
        """A copy of the CPM with only valid objects and landmarks, or None when its pose is
        unusable. Drops are counted."""
        if not self.pose_ok(cpm):
            return None
        landmarks = cpm.landmarks
        limit = self.config.max_landmarks_per_message
        if len(landmarks) > limit:
            self._drop("landmark_over_limit", len(landmarks) - limit)
            landmarks = landmarks[:limit]
        return replace(cpm, objects=self.clean(cpm.objects),
                       landmarks=[lm for lm in landmarks if self._landmark_ok(lm)])

    def fuse(self, ego_objects: list[DetectedObject],
             incoming: list[tuple[int, list[DetectedObject], np.ndarray, float]]) -> list[FusedObject]:
        """Merge. incoming: (sender id, its objects in its frame, its pose in the ego frame,
        score weight). The ego's objects go in as they are."""
        fused = [FusedObject(o.cls, o.x, o.y, o.length, o.width, o.heading, o.score, (self.ego_id,))
                 for o in self.clean(ego_objects)]
        for sender, objects, pose, weight in incoming:
            objs = self.clean(objects)
            if not objs:
                continue
            boxes, scores, cls = objects_to_arrays(objs)
            c, s = np.cos(pose[2]), np.sin(pose[2])
            xy = np.stack([pose[0] + c * boxes[:, 0] - s * boxes[:, 1], pose[1] + s * boxes[:, 0] + c * boxes[:, 1]], 1)
            heading = wrap_angle(boxes[:, 4] + pose[2])
            scores = np.clip(scores * weight, 0.0, 1.0)
            is_ego = np.hypot(xy[:, 0], xy[:, 1]) < self.config.ego_radius_m
            if is_ego.any():
                self._drop("object_is_ego", int(is_ego.sum()))
            new = [FusedObject(int(cls[k]), float(xy[k, 0]), float(xy[k, 1]), float(boxes[k, 2]), float(boxes[k, 3]),
                               float(heading[k]), float(scores[k]), (sender,)) for k in np.nonzero(~is_ego)[0]]
            if new:
                fused = self._merge(fused, new)
        return fused

    def _merge(self, fused: list[FusedObject], new: list[FusedObject]) -> list[FusedObject]:
        if not fused:
            return new
        a = np.array([[f.x, f.y] for f in fused])
        b = np.array([[n.x, n.y] for n in new])
        dist = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
        same = np.array([f.cls for f in fused])[:, None] == np.array([n.cls for n in new])[None, :]
        cost = np.where(same, dist, np.inf)
        used = set()
        out = list(fused)
        for r, k in assign(cost, self.config.match_gate_m):
            out[r] = _merge_pair(fused[r], new[k])
            used.add(k)
        out += [n for k, n in enumerate(new) if k not in used]
        return out


def _merge_pair(a: FusedObject, b: FusedObject) -> FusedObject:
    """Score-weighted mean of two boxes; heading folded by pi onto the stronger box's."""
    wa, wb = max(a.score, 1e-6), max(b.score, 1e-6)
    ref, other = (a.heading, b.heading) if wa >= wb else (b.heading, a.heading)
    if abs(wrap_angle(other - ref)) > np.pi / 2:
        other = wrap_angle(other + np.pi)
    wr, wo = (wa, wb) if wa >= wb else (wb, wa)
    heading = float(wrap_angle(ref + wo / (wr + wo) * wrap_angle(other - ref)))
    mean = lambda u, v: (wa * u + wb * v) / (wa + wb)  # noqa: E731
    sources = a.sources + tuple(s for s in b.sources if s not in a.sources)
    return FusedObject(a.cls, mean(a.x, b.x), mean(a.y, b.y), mean(a.length, b.length), mean(a.width, b.width),
                       heading, 1.0 - (1.0 - a.score) * (1.0 - b.score), sources)


@dataclass
class CooperativePerception:
    """One ego device's pose correction + fusion loop (see the module docstring for modes)."""

    ego_id: int
    mode: str = "consistency"
    fusion: FusionConfig = field(default_factory=FusionConfig)
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    posegraph: PoseGraphConfig = field(default_factory=PoseGraphConfig)

    def __post_init__(self):
        if self.mode not in MODES:
            raise InputError(f"CooperativePerception.mode: expected one of {MODES}, received {self.mode!r}")
        self._fuser = EgoFusion(self.ego_id, self.fusion)

    @property
    def counters(self) -> dict[str, int]:
        """Dropped messages/objects by reason, since construction."""
        return self._fuser.counters

    def _usable(self, received: list[CPM]) -> list[CPM]:
        f = self._fuser
        if len(received) > self.fusion.max_messages:
            f._drop("message_over_limit", len(received) - self.fusion.max_messages)
            received = received[:self.fusion.max_messages]
        seen, out = {self.ego_id}, []
        for c in received:
            if c.sender_id in seen:
                f._drop("message_duplicate_sender")
                continue
            clean = f.sanitize(c)
            if clean is not None:
                seen.add(c.sender_id)
                out.append(clean)
        return out

    def process(self, ego_cpm: CPM, received: list[CPM]) -> FusedFrame:
        """Fuse one frame: the ego's CPM (its own objects, landmarks and pose) and the CPMs
        received from others for the same frame."""
        if ego_cpm.sender_id != self.ego_id:
            raise InputError(f"process: ego_cpm.sender_id {ego_cpm.sender_id} is not ego {self.ego_id}")
        if self.mode == "ego":
            return FusedFrame(self._fuser.fuse(ego_cpm.objects, []), {}, {}, [])
        ego = self._fuser.sanitize(ego_cpm)
        if ego is None:                          # no usable ego pose: its own objects only
            if received:
                self._fuser._drop("message_no_ego_pose", len(received))
            return FusedFrame(self._fuser.fuse(ego_cpm.objects, []), {}, {}, [])
        others = self._usable(received)
        ego_pose = ego.pose.as_array()
        poses, weights, outliers = {}, {}, []
        if self.mode == "consistency" and others:
            graph = consistent_relative_poses([ego] + others, self.ego_id, self.posegraph)
            outliers = list(graph.outliers)
            for c in others:
                poses[c.sender_id] = graph.relative(self.ego_id, c.sender_id)
                weights[c.sender_id] = graph.device_weights[c.sender_id]
        else:
            ego_kp = keypoints(ego) if self.mode == "consensus" else None
            for c in others:
                init = se2_compose(se2_inverse(ego_pose), c.pose.as_array())
                if self.mode == "consensus":
                    init = max_consensus(*ego_kp, *keypoints(c), init, self.consensus).relative_pose
                poses[c.sender_id], weights[c.sender_id] = init, 1.0
        incoming = []
        for c in others:
            if c.sender_id in outliers or weights[c.sender_id] < self.fusion.min_weight:
                self._fuser._drop("message_outlier")
                continue
            incoming.append((c.sender_id, c.objects, poses[c.sender_id], weights[c.sender_id]))
        return FusedFrame(self._fuser.fuse(ego.objects, incoming), poses, weights, outliers)
