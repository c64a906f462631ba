"""Objects on a conveyor belt moving through a fixed light plane (§7, Fig. 10: 1743 lines/s, 300 µs).

Belt frame: u along the motion, v across it (= world Y), heights above the belt surface, metres.
The camera looks down at the belt ``belt_depth_m`` away; at scan k the belt has moved
``position_m(k) = speed·k / line_rate`` and a belt point u sits at world X = u − position_m(k).
The default rig puts the projector 0.45 m beside the camera with its plane meeting the belt at
xv = 0.3·W, so an object of height h shifts the stripe by f·h·B / (Z_belt·(Z_belt − h)) pixels
(≈ 580 px for 15 cm at 0.6 m): the disparity the decoders turn back into depth.

Shapes are height fields: ``Box`` (flat top) and ``Cylinder`` (lying along the belt, round
profile across it), each with an albedo and optional ``Defect``s — a dent (paraboloid hollow in
the top), a notch (a slot across the object) or a missing corner (a chamfer around a corner).
The first lit point along each row's light-plane line is what the camera sees, so a flaw on the
side facing away from the projector (low u) can be shadowed by the object itself, as in reality.
Ground truth per sensor row: depth, object id, defect flag (``LineTruth``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
import numpy as np

from firmware_bridge.linescan.diffraction.optics import DiffractionCamera
from firmware_bridge.linescan.diffraction.structured_light import (AMBIENT_E_PER_US, LINE_FLUX, LightPlaneRig,
                                                                   LineTruth, render_line_scan)

__all__ = ["Defect", "Box", "Cylinder", "ConveyorScene", "random_conveyor_scene", "DEFECT_KINDS"]

DEFECT_KINDS = ("dent", "notch", "missing_corner")


@dataclass(frozen=True)
class Defect:
    """A flaw at (u_m, v_m) relative to the object's u = v = 0 corner (for a missing corner: the
    corner itself): ``size_m`` (dent radius, notch width, chamfer leg) and ``depth_m`` (how far
    the surface drops)."""

    kind: str
    u_m: float
    v_m: float
    size_m: float
    depth_m: float

    def __post_init__(self) -> None:
        if self.kind not in DEFECT_KINDS:
            raise ValueError(f"Defect.kind {self.kind!r} unknown; known: {', '.join(DEFECT_KINDS)}")
        if not (self.size_m > 0 and self.depth_m > 0):
            raise ValueError(f"Defect needs size_m > 0 and depth_m > 0, got {self.size_m}, {self.depth_m}")

    def apply(self, du: np.ndarray, dv: np.ndarray, h: np.ndarray, inside: np.ndarray):
        """Lower the height field ``h`` (object frame du, dv) where the defect is: (h, defect mask)."""
        if self.kind == "dent":
            r2 = ((du - self.u_m) ** 2 + (dv - self.v_m) ** 2) / self.size_m ** 2
            drop = self.depth_m * np.maximum(0.0, 1.0 - r2)
        elif self.kind == "notch":
            drop = np.where(np.abs(du - self.u_m) < self.size_m / 2, self.depth_m, 0.0)
        else:  # missing_corner: a chamfer within size_m (L1) of the corner at (u_m, v_m)
            drop = np.where(np.abs(du - self.u_m) + np.abs(dv - self.v_m) < self.size_m, self.depth_m, 0.0)
        hit = inside & (drop > 0)
        return np.where(hit, np.maximum(h - drop, 0.0), h), hit


def _check_shape(name: str, **values: float) -> None:
    for key, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name}.{key} must be positive, got {value!r}")


@dataclass(frozen=True)
class Box:
    """A box whose footprint starts at belt position (u_m, v_m): ``length_m`` along u,
    ``width_m`` along v, ``height_m`` tall."""

    u_m: float
    v_m: float
    length_m: float
    width_m: float
    height_m: float
    albedo: float = 0.8
    defects: tuple[Defect, ...] = ()

    def __post_init__(self) -> None:
        _check_shape("Box", length_m=self.length_m, width_m=self.width_m, height_m=self.height_m)
        if not 0 <= self.albedo <= 1:
            raise ValueError(f"Box.albedo must be in [0, 1], got {self.albedo}")

    @property
    def u_extent(self) -> tuple[float, float]:
        return self.u_m, self.u_m + self.length_m

    @property
    def v_extent(self) -> tuple[float, float]:
        return self.v_m, self.v_m + self.width_m

    @property
    def max_height_m(self) -> float:
        return self.height_m

    def height(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(height above the belt, in-defect mask) at belt points (u, v), metres."""
        du, dv = u - self.u_m, v - self.v_m
        inside = (du >= 0) & (du < self.length_m) & (dv >= 0) & (dv < self.width_m)
        h = np.where(inside, self.height_m, 0.0)
        defect = np.zeros(h.shape, bool)
        for d in self.defects:
            h, hit = d.apply(du, dv, h, inside)
            defect |= hit
        return h, defect


@dataclass(frozen=True)
class Cylinder:
    """A cylinder lying on the belt with its axis along u: it starts at u_m, its axis is at
    v = v_m, ``length_m`` long, ``radius_m`` (top 2·radius above the belt)."""

    u_m: float
    v_m: float
    length_m: float
    radius_m: float
    albedo: float = 0.8
    defects: tuple[Defect, ...] = ()

    def __post_init__(self) -> None:
        _check_shape("Cylinder", length_m=self.length_m, radius_m=self.radius_m)
        if not 0 <= self.albedo <= 1:
            raise ValueError(f"Cylinder.albedo must be in [0, 1], got {self.albedo}")

    @property
    def u_extent(self) -> tuple[float, float]:
        return self.u_m, self.u_m + self.length_m

    @property
    def v_extent(self) -> tuple[float, float]:
        return self.v_m - self.radius_m, self.v_m + self.radius_m

    @property
    def max_height_m(self) -> float:
        return 2 * self.radius_m

    def height(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(height above the belt, in-defect mask); defects in the frame du = u − u_m,
        dv = v − (v_m − radius_m)."""
        du, off = u - self.u_m, v - self.v_m
        inside = (du >= 0) & (du < self.length_m) & (np.abs(off) < self.radius_m)
        h = np.where(inside, self.radius_m + np.sqrt(np.maximum(self.radius_m ** 2 - off ** 2, 0.0)), 0.0)
        defect = np.zeros(h.shape, bool)
        for d in self.defects:
            h, hit = d.apply(du, off + self.radius_m, h, inside)
            defect |= hit
        return h, defect


Shape = Box | Cylinder


@dataclass(frozen=True)
class ConveyorScene:
    """Objects on a belt at ``speed_m_s`` scanned at ``line_rate_hz`` (one exposure per line) by
    ``camera`` through ``rig`` (default: projector 0.45 m aside, plane on the belt at xv = 0.3·W).
    An encoder with ``encoder_counts_per_m`` counts gives the same belt position
    (``position_from_encoder``); 40 000 counts/m is the sim's 20 kHz encoder at 0.5 m/s."""

    objects: tuple[Shape, ...]
    speed_m_s: float = 0.5
    line_rate_hz: float = 1743.0
    camera: DiffractionCamera = field(default_factory=DiffractionCamera.paper_conditions)
    rig: LightPlaneRig | None = None
    belt_depth_m: float = 0.6
    belt_albedo: float = 0.25
    encoder_counts_per_m: float = 40000.0
    line_flux: float = LINE_FLUX
    ambient_e_per_us: float = AMBIENT_E_PER_US

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        for k, obj in enumerate(self.objects):
            if not isinstance(obj, (Box, Cylinder)):
                raise ValueError(f"ConveyorScene.objects[{k}] is a {type(obj).__name__}, not a Box or Cylinder")
        if not (self.speed_m_s >= 0 and self.line_rate_hz > 0 and self.belt_depth_m > 0
                and self.encoder_counts_per_m > 0):
            raise ValueError(f"ConveyorScene needs speed_m_s >= 0, line_rate_hz > 0, belt_depth_m > 0, "
                             f"encoder_counts_per_m > 0; got {self.speed_m_s}, {self.line_rate_hz}, "
                             f"{self.belt_depth_m}, {self.encoder_counts_per_m}")
        tallest = max((o.max_height_m for o in self.objects), default=0.0)
        if tallest >= 0.8 * self.belt_depth_m:
            raise ValueError(f"ConveyorScene: an object {tallest} m tall reaches the camera "
                             f"(belt_depth_m={self.belt_depth_m})")
        if self.rig is None:
            object.__setattr__(self, "rig", LightPlaneRig(self.camera).aimed_at(0.3 * self.camera.W,
                                                                                self.belt_depth_m))
        lo, hi = zip(*(o.u_extent for o in self.objects)) if self.objects else ((), ())
        object.__setattr__(self, "_u_lo", np.array(lo, np.float64))
        object.__setattr__(self, "_u_hi", np.array(hi, np.float64))

    # -- belt clock ------------------------------------------------------------------------------
    def position_m(self, scan_index) -> np.ndarray:
        """Belt travel (m) at exposure ``scan_index`` (line id)."""
        return self.speed_m_s * np.asarray(scan_index, np.float64) / self.line_rate_hz

    def position_from_encoder(self, count) -> np.ndarray:
        """Belt travel (m) after ``count`` encoder counts."""
        return np.asarray(count, np.float64) / self.encoder_counts_per_m

    def scan_index_at(self, position_m) -> np.ndarray:
        """The (fractional) exposure at which the belt has moved ``position_m``."""
        if self.speed_m_s == 0:
            raise ValueError("a belt with speed_m_s = 0 never moves")
        return np.asarray(position_m, np.float64) * self.line_rate_hz / self.speed_m_s

    def scan_index_under_plane(self, u_m, height_m=0.0) -> np.ndarray:
        """The (fractional) exposure at which the light plane crosses belt point ``u_m`` at
        ``height_m`` above the belt (on the row through the optical axis, Y = 0)."""
        n, c = self.rig.plane()
        z = self.belt_depth_m - np.asarray(height_m, np.float64)
        return self.scan_index_at(np.asarray(u_m, np.float64) - (c - n[2] * z) / n[0])

    # -- the Scene protocol (structured_light.trace_light_plane) ---------------------------------
    @property
    def z_range(self) -> tuple[float, float]:
        tallest = max((o.max_height_m for o in self.objects), default=0.0)
        return self.belt_depth_m - tallest - 0.01, self.belt_depth_m + 0.01

    def needs_fine_sampling(self, scan_index: np.ndarray, x_bounds: np.ndarray, y_bounds: np.ndarray) -> np.ndarray:
        p = self.position_m(scan_index)[:, None]  # (N, 1)
        fine = np.zeros(x_bounds.shape[:2], bool)
        for k, obj in enumerate(self.objects):
            v_lo, v_hi = obj.v_extent
            rows = (y_bounds[:, 1] >= v_lo) & (y_bounds[:, 0] <= v_hi)  # (Q,)
            fine |= rows[None] & (x_bounds[..., 1] + p >= self._u_lo[k]) & (x_bounds[..., 0] + p <= self._u_hi[k])
        return fine

    def _heights(self, X, Y, scan_index):
        u = X + self.position_m(scan_index)
        lo, hi = float(np.min(u)), float(np.max(u))
        shape = np.broadcast(u, Y).shape
        best = np.zeros(shape)
        best_id = np.full(shape, -1, np.int32)
        defect = np.zeros(shape, bool)
        for k, obj in enumerate(self.objects):
            if self._u_hi[k] < lo or self._u_lo[k] > hi:
                continue  # not under this call's samples
            h, d = obj.height(u, Y)
            higher = h > best
            best = np.where(higher, h, best)
            best_id = np.where(higher, k, best_id)
            defect = np.where(higher, d, defect)
        return best, best_id, defect

    def depth(self, X, Y, scan_index):
        return self.belt_depth_m - self._heights(X, Y, scan_index)[0]

    def material(self, X, Y, scan_index):
        _, ids, defect = self._heights(X, Y, scan_index)
        albedos = np.array([o.albedo for o in self.objects] + [self.belt_albedo], np.float32)
        return ids, albedos[ids], defect  # id −1 picks the belt's albedo (last entry)

    # -- exposures -------------------------------------------------------------------------------
    def scan(self, k: int, rng: np.random.Generator) -> tuple[np.ndarray, LineTruth]:
        """Exposure ``k``: ((R, h, Q, 3) uint8, LineTruth with depth, object_id, defect)."""
        if k < 0:
            raise ValueError(f"scan index must be >= 0, got {k}")
        return render_line_scan(self.camera, self.rig, self, rng, scan_index=k, line_flux=self.line_flux,
                                ambient_e_per_us=self.ambient_e_per_us)


def _random_defect(rng: np.random.Generator, length: float, width: float, height: float) -> Defect:
    kind = DEFECT_KINDS[int(rng.integers(len(DEFECT_KINDS)))]
    size = float(rng.uniform(0.15, 0.3) * min(length, width))
    depth = float(rng.uniform(0.2, 0.5) * height)
    if kind == "missing_corner":
        return Defect(kind, length * float(rng.integers(2)), width * float(rng.integers(2)), 2 * size, depth)
    return Defect(kind, float(rng.uniform(0.3, 0.7) * length), float(rng.uniform(0.3, 0.7) * width), size, depth)


def random_conveyor_scene(seed: int, n_objects: int = 6, defect_rate: float = 0.3,
                          camera: DiffractionCamera | None = None, belt_depth_m: float = 0.6,
                          speed_m_s: float = 0.5, line_rate_hz: float = 1743.0, start_m: float = 0.05,
                          gap_range: tuple[float, float] = (0.03, 0.15)) -> ConveyorScene:
    """``n_objects`` boxes and cylinders in a row along the belt from ``start_m``, gaps in
    ``gap_range`` (m), across the belt inside the rows the camera sees (boxes 30–80 % of that
    width, cylinders 15–40 % in radius), each with a defect with
    probability ``defect_rate``. Deterministic in ``seed``."""
    if n_objects < 0 or not 0 <= defect_rate <= 1:
        raise ValueError(f"need n_objects >= 0 and defect_rate in [0, 1], got {n_objects}, {defect_rate}")
    camera = camera or DiffractionCamera.paper_conditions()
    rng = np.random.default_rng(seed)
    rows = (np.array(camera.visible_yv_range()) - camera.H_v / 2) / camera.f_px
    v_lo, v_hi = 0.9 * (belt_depth_m - 0.15 * belt_depth_m / 0.6) * rows  # belt width seen at object height
    u = start_m
    objects: list[Shape] = []
    for _ in range(n_objects):
        length = float(rng.uniform(0.05, 0.2))
        albedo = float(rng.uniform(0.3, 0.95))
        if rng.random() < 0.5:
            width = float(rng.uniform(0.3, 0.8) * (v_hi - v_lo))
            height = float(rng.uniform(0.02, 0.15 * belt_depth_m / 0.6))
            v = float(rng.uniform(v_lo, v_hi - width))
            defects = (_random_defect(rng, length, width, height),) if rng.random() < defect_rate else ()
            objects.append(Box(u, v, length, width, height, albedo, defects))
        else:
            radius = float(rng.uniform(0.15, 0.4) * (v_hi - v_lo) / 2)
            v = float(rng.uniform(v_lo + radius, v_hi - radius))
            has_defect = rng.random() < defect_rate
            defects = (_random_defect(rng, length, 2 * radius, 2 * radius),) if has_defect else ()
            objects.append(Cylinder(u, v, length, radius, albedo, defects))
        u += length + float(rng.uniform(*gap_range))
    return ConveyorScene(tuple(objects), speed_m_s=speed_m_s, line_rate_hz=line_rate_hz, camera=camera,
                         belt_depth_m=belt_depth_m)

