"""Collective perception messages (CPMs): what one Prism device tells the others about a frame.

The in-memory form shared by the wire codec (``wire.py``), the DDS transport (``transport.py``),
pose-error correction (``consensus.py``, ``posegraph.py``) and fusion (``fusion.py``).

Frames and units: positions in metres, headings in radians (counter-clockwise, x forward), times
in nanoseconds since the Unix epoch. ``pose`` is the sender's *own estimate* of its global pose
(it carries the sender's localization error); objects and landmarks are in the *sender's* frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Pose2D", "DetectedObject", "Landmark", "CPM", "ObjectClass"]


class ObjectClass:
    """Object class codes carried on the wire (one byte)."""
    UNKNOWN = 0
    ROBOT = 1
    PERSON = 2
    VEHICLE = 3
    OBSTACLE = 4
    NAMES = {0: "unknown", 1: "robot", 2: "person", 3: "vehicle", 4: "obstacle"}


@dataclass
class Pose2D:
    x: float
    y: float
    heading: float

    def as_array(self) -> np.ndarray:
        return np.array([self.x, self.y, self.heading], np.float64)


@dataclass
class DetectedObject:
    cls: int
    """``ObjectClass`` code."""
    x: float
    y: float
    """Box centre in the sender's frame, m."""
    length: float
    width: float
    """Box size, m (length along ``heading``)."""
    heading: float
    """Box heading in the sender's frame, rad."""
    score: float
    """Detection confidence in [0, 1]."""


@dataclass
class Landmark:
    x: float
    y: float
    """Position in the sender's frame, m."""
    kind: int = 0
    """0 = pole / generic static keypoint, 1 = radar-strong static reflector."""
    strength: float = 1.0
    """Detection strength in [0, 1] (e.g. normalised radar SNR)."""


@dataclass
class CPM:
    sender_id: int
    """Device id within the fleet (0..65535)."""
    seq: int
    """Per-sender sequence number, strictly increasing (replays are dropped)."""
    timestamp_ns: int
    """Capture time of the frame the message describes."""
    pose: Pose2D
    """The sender's own global pose estimate."""
    pose_cov: np.ndarray = field(default_factory=lambda: np.diag([0.16, 0.16, np.deg2rad(4.0) ** 2]))
    """3x3 covariance of ``pose`` (x, y, heading)."""
    objects: list[DetectedObject] = field(default_factory=list)
    landmarks: list[Landmark] = field(default_factory=list)
    keypoint_features: bytes | None = None
    """Optional compressed feature keypoints (opaque to the fusion)."""
