"""Structured light with a 1D source and a 1D camera (§3 "Structured light line scanning", §6, §7).

Frames: the virtual camera is a pinhole at the origin looking along +Z (X right, Y down, metres);
pixel (xv, yv) has ray ((xv − W/2)/f, (yv − H_v/2)/f, 1). A projector at (baseline_m, 0, 0)
emits a light plane containing the direction (sin α, 0, cos α) (α = ``plane_angle_rad``) and the
vertical turned by ``roll_rad`` about Z (a slightly slanted line, as the paper's yv = c·xv + d).

Rendering one exposure. Sensor row y sees the virtual row yv = G(y); the camera rays of that row
meet the light plane in a 3D line, parametrised by depth Z. The scene (a ``Wall``, a
``HeightField``, a ``ConveyorScene``: anything with the ``Scene`` methods) is sampled along that line; the
first sign change of Z − depth(X, Y) is the lit point, refined by linear interpolation (exact on
planar patches; camera occlusion and projector shadows are not modelled). The lit point's virtual
column xv = f·X/Z + W/2 sets the colour every ROI row sees (Eq. 8, the projector's spectrum)
times the surface albedo; the lens PSF blurs along
y; an ambient broadband offset (room light through the grating) adds to every pixel.

Truth per sensor row: ``xv`` (NaN where there is no lit point or it falls outside the helper
camera's W × H_v image, as the paper's calibration had no ground truth there), ``depth`` (m),
``object_id`` (−1: wall/belt), ``defect``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from firmware_bridge.linescan.diffraction.optics import DiffractionCamera
from firmware_bridge.linescan.diffraction.spectra import spectrum_names

__all__ = ["LightPlaneRig", "Wall", "HeightField", "Scene", "LineTruth", "LineDataset", "trace_light_plane",
           "line_electrons", "ambient_electrons", "truth_from_hits", "render_line_scan", "make_line_dataset",
           "LINE_FLUX", "AMBIENT_E_PER_US"]

LINE_FLUX = 10.0
"""e⁻/µs of the projected stripe on an albedo-1 surface (QE 1, spectrum peak): at 300 µs the white
LED's blue peak on a white wall reads ≈ 220 DN, on a 0.2-albedo surface ≈ 45 DN."""
AMBIENT_E_PER_US = 0.05
"""Room light: ≈ 1.5 DN of broadband offset at 300 µs, 0.1 DN/e⁻."""


@dataclass(frozen=True)
class LightPlaneRig:
    """The virtual camera (intrinsics of ``camera``) and the projector's light plane (metres, radians)."""

    camera: DiffractionCamera
    baseline_m: float = 0.45
    plane_angle_rad: float = 0.0
    roll_rad: float = 0.0

    def __post_init__(self) -> None:
        for name in ("baseline_m", "plane_angle_rad", "roll_rad"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"LightPlaneRig.{name} must be finite, got {getattr(self, name)!r}")
        if abs(self.plane_angle_rad) >= math.pi / 2 or abs(self.roll_rad) >= math.pi / 4:
            raise ValueError(f"LightPlaneRig: plane_angle_rad {self.plane_angle_rad} must be within ±π/2 and "
                             f"roll_rad {self.roll_rad} within ±π/4 (a near-vertical plane facing the scene)")

    def plane(self) -> tuple[np.ndarray, float]:
        """(n, c): the light plane n·(X, Y, Z) = c, |n| = 1."""
        v = np.array([math.sin(self.roll_rad), math.cos(self.roll_rad), 0.0])
        w = np.array([math.sin(self.plane_angle_rad), 0.0, math.cos(self.plane_angle_rad)])
        n = np.cross(v, w)
        n /= np.linalg.norm(n)
        return n, float(n[0] * self.baseline_m)

    def aimed_at(self, xv: float, depth_m: float) -> "LightPlaneRig":
        """The same rig with the plane turned to pass through the point at ``depth_m`` on the ray
        of virtual pixel (xv, H_v/2)."""
        x = depth_m * (xv - self.camera.W / 2) / self.camera.f_px
        return dataclasses.replace(self, plane_angle_rad=math.atan2(x - self.baseline_m, depth_m))

    def rays(self, xv, yv):
        """Unnormalised camera rays (a, b, 1) of virtual pixels: arrays a, b."""
        cam = self.camera
        return ((np.asarray(xv, np.float64) - cam.W / 2) / cam.f_px,
                (np.asarray(yv, np.float64) - cam.H_v / 2) / cam.f_px)

    def triangulate(self, xv, yv):
        """Ray–plane intersection: the lit 3D point (X, Y, Z) in metres seen at virtual pixel
        (xv, yv); NaN where the ray is parallel to the plane or meets it behind the camera."""
        a, b = self.rays(xv, yv)
        n, c = self.plane()
        denom = n[0] * a + n[1] * b + n[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(np.abs(denom) > 1e-12, c / denom, np.nan)
        z = np.where(z > 0, z, np.nan)
        return a * z, b * z, z

    def project(self, X, Y, Z):
        """Pinhole projection of (X, Y, Z) metres to virtual pixels (xv, yv); NaN for Z <= 0."""
        X, Y, Z = (np.asarray(v, np.float64) for v in (X, Y, Z))
        with np.errstate(divide="ignore", invalid="ignore"):
            Zs = np.where(Z > 0, Z, np.nan)
            return self.camera.f_px * X / Zs + self.camera.W / 2, self.camera.f_px * Y / Zs + self.camera.H_v / 2


class Scene(Protocol):
    """What ``trace_light_plane`` needs from a scene: a height field seen from the camera."""

    z_range: tuple[float, float]
    """Depths (m) between which every surface point of interest lies."""

    def depth(self, X: np.ndarray, Y: np.ndarray, scan_index: np.ndarray) -> np.ndarray:
        """Surface depth Z (m) under (X, Y) at the time of scan ``scan_index`` (broadcast)."""

    def material(self, X: np.ndarray, Y: np.ndarray, scan_index: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(object_id int, albedo float, defect bool) of the surface at (X, Y)."""

    def needs_fine_sampling(self, scan_index: np.ndarray, x_bounds: np.ndarray, y_bounds: np.ndarray) -> np.ndarray:
        """(N, Q) bool: rows whose light-plane segment (world X within ``x_bounds`` (N, Q, 2), Y
        within ``y_bounds`` (Q, 2), metres) may meet anything but the scene's base plane; the
        others are traced exactly with two samples."""


@dataclass(frozen=True)
class Wall:
    """A plane Z = depth_m + tilt_x·X + tilt_y·Y of uniform ``albedo`` (object id −1)."""

    depth_m: float = 1.0
    albedo: float = 1.0
    tilt_x: float = 0.0
    tilt_y: float = 0.0

    def __post_init__(self) -> None:
        if not (self.depth_m > 0 and 0 <= self.albedo <= 1):
            raise ValueError(f"Wall needs depth_m > 0 and albedo in [0, 1], got {self.depth_m}, {self.albedo}")

    @property
    def z_range(self) -> tuple[float, float]:
        return 0.25 * self.depth_m, 4.0 * self.depth_m

    def depth(self, X, Y, scan_index):
        return self.depth_m + self.tilt_x * X + self.tilt_y * Y

    def material(self, X, Y, scan_index):
        shape = np.broadcast(X, Y).shape
        return np.full(shape, -1, np.int32), np.full(shape, self.albedo, np.float32), np.zeros(shape, bool)

    def needs_fine_sampling(self, scan_index, x_bounds, y_bounds):
        return np.zeros(x_bounds.shape[:2], bool)


@dataclass(frozen=True)
class HeightField:
    """A static surface ``height(X, Y)`` metres (≥ 0, vectorised) in front of a plane
    ``base_depth_m`` away: depth = base_depth_m − height. Points with height > 0 are object 0."""

    height: Callable[[np.ndarray, np.ndarray], np.ndarray]
    base_depth_m: float = 1.0
    max_height_m: float = 0.2
    albedo: float = 1.0

    def __post_init__(self) -> None:
        if not (0 < self.max_height_m < self.base_depth_m and 0 <= self.albedo <= 1):
            raise ValueError(f"HeightField needs 0 < max_height_m < base_depth_m and albedo in [0, 1], got "
                             f"{self.max_height_m}, {self.base_depth_m}, {self.albedo}")

    @property
    def z_range(self) -> tuple[float, float]:
        return self.base_depth_m - self.max_height_m - 0.01, self.base_depth_m + 0.01

    def depth(self, X, Y, scan_index):
        return self.base_depth_m - np.clip(self.height(X, Y), 0.0, self.max_height_m)

    def material(self, X, Y, scan_index):
        raised = np.asarray(self.height(X, Y)) > 0
        return (np.where(raised, 0, -1).astype(np.int32), np.full(raised.shape, self.albedo, np.float32),
                np.zeros(raised.shape, bool))

    def needs_fine_sampling(self, scan_index, x_bounds, y_bounds):
        return np.ones(x_bounds.shape[:2], bool)


@dataclass
class LineTruth:
    """Ground truth of one exposure, one entry per sensor row y: (Q,) arrays."""

    xv: np.ndarray
    """float32 virtual column of the lit point; NaN where none is visible in the helper image."""
    depth: np.ndarray
    """float32 metres (Z of the lit point); NaN where ``xv`` is NaN."""
    object_id: np.ndarray
    """int32: −1 wall/belt (or nothing), else the object's index."""
    defect: np.ndarray
    """bool: the lit point lies in a defect (dent, notch, missing corner)."""


@dataclass
class LineDataset:
    """§6 calibration / test data: ``scans`` (N, R, h, Q, 3) uint8; per row truth (N, Q):
    ``xv`` float32 (NaN invalid), ``depth`` float32 m, ``object_id`` int32; ``albedo`` (N,)."""

    scans: np.ndarray
    xv: np.ndarray
    depth: np.ndarray
    object_id: np.ndarray
    albedo: np.ndarray
    camera: DiffractionCamera

    def __len__(self) -> int:
        return len(self.scans)


_FINE_SAMPLES = 48


def _first_crossing(zs: np.ndarray, xs: np.ndarray, ys: np.ndarray, scene: Scene, scans: np.ndarray) -> np.ndarray:
    """Depth where Z − depth(X, Y) first turns non-negative along (M, S) samples; NaN if never
    (or already at the first sample). Linear interpolation between the bracketing samples."""
    f = zs - scene.depth(xs, ys, scans[:, None])
    behind = f >= 0
    first = np.argmax(behind, axis=-1)
    hit = behind.any(-1) & (first > 0)
    i1 = np.maximum(first, 1)[:, None]
    f0, f1 = np.take_along_axis(f, i1 - 1, -1)[:, 0], np.take_along_axis(f, i1, -1)[:, 0]
    z0, z1 = np.take_along_axis(zs, i1 - 1, -1)[:, 0], np.take_along_axis(zs, i1, -1)[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        root = z0 + (z1 - z0) * (-f0) / (f1 - f0)
    return np.where(hit, root, np.nan)


def trace_light_plane(camera: DiffractionCamera, planes: np.ndarray, scene: Scene,
                      scan_index: np.ndarray) -> dict[str, np.ndarray]:
    """The lit point seen on every sensor row of N exposures.

    planes: (N, 4) [n_x, n_y, n_z, c] (n·X = c per exposure); scan_index (N,) int (the scene's
    clock). Returns (N, Q) arrays: ``xv`` (float64, NaN where no surface in ``scene.z_range``),
    ``X``, ``Y``, ``Z`` (m), ``object_id``, ``albedo``, ``defect``."""
    planes = np.asarray(planes, np.float64)
    scan_index = np.asarray(scan_index, np.int64)
    if planes.ndim != 2 or planes.shape[1] != 4 or len(planes) != len(scan_index):
        raise ValueError(f"planes must be (N, 4) with N = len(scan_index) = {len(scan_index)}, got {planes.shape}")
    if np.any(np.abs(planes[:, 0]) < 1e-9):
        raise ValueError("a light plane parallel to the X axis never crosses the camera rows")
    z_lo, z_hi = scene.z_range
    b = (camera.G(np.arange(camera.Q)) - camera.H_v / 2) / camera.f_px  # (Q,) row ray slopes Y/Z
    N, Q = len(planes), camera.Q
    # On row q of exposure n the light plane meets the camera rays Y = b·Z along X = x0 + x1·Z.
    x0 = np.broadcast_to((planes[:, 3] / planes[:, 0])[:, None], (N, Q))
    x1 = -(planes[:, 1, None] * b[None, :] + planes[:, 2, None]) / planes[:, 0, None]
    ends = x0[..., None] + x1[..., None] * np.array([z_lo, z_hi])
    x_bounds = np.stack([ends.min(-1), ends.max(-1)], -1)
    y_bounds = np.sort(b[:, None] * np.array([z_lo, z_hi]), axis=-1)
    fine = scene.needs_fine_sampling(scan_index, x_bounds, y_bounds)
    Z = np.full((N, Q), np.nan)
    for group, samples in ((~fine, 2), (fine, _FINE_SAMPLES)):
        n_idx, q_idx = np.nonzero(group)
        if len(n_idx) == 0:
            continue
        zs = np.broadcast_to(np.linspace(z_lo, z_hi, samples), (len(n_idx), samples))
        xs = x0[n_idx, q_idx, None] + x1[n_idx, q_idx, None] * zs
        Z[n_idx, q_idx] = _first_crossing(zs, xs, b[q_idx, None] * zs, scene, scan_index[n_idx])
    X = x0 + x1 * Z
    Y = b[None, :] * Z
    object_id, albedo, defect = scene.material(np.nan_to_num(X), np.nan_to_num(Y), scan_index[:, None])
    hit = np.isfinite(Z)
    with np.errstate(divide="ignore", invalid="ignore"):
        xv = camera.f_px * X / Z + camera.W / 2
    return {"xv": xv, "X": X, "Y": Y, "Z": Z, "object_id": np.where(hit, object_id, -1).astype(np.int32),
            "albedo": np.where(hit, albedo, 0.0).astype(np.float32), "defect": defect & hit}


def line_electrons(camera: DiffractionCamera, hits: dict[str, np.ndarray], line_flux: float = LINE_FLUX,
                   spectrum: str = "white_led") -> np.ndarray:
    """Photo-electrons of the stripe in the exposures ``hits`` describes (``trace_light_plane``):
    (N, Q, R, h, 3) float32 — Eq. 8 per row, blurred along y by the PSF (ambient excluded: pass
    ``ambient_electrons`` to ``camera.expose``)."""
    names = spectrum_names()
    if spectrum not in names:
        raise ValueError(f"unknown spectrum {spectrum!r}; known: {', '.join(names)}")
    xv, albedo = hits["xv"], hits["albedo"]
    N, Q = xv.shape
    electrons = np.zeros((N, Q, camera.rois, camera.roi_rows, 3), np.float32)
    lit = np.isfinite(xv) & (albedo > 0)
    n_idx, q_idx = np.nonzero(lit)
    if len(n_idx):
        electrons[n_idx, q_idx] = camera.streak_electrons(
            xv[lit], q_idx.astype(np.float64), np.full(len(n_idx), names.index(spectrum)), line_flux * albedo[lit])
    sigma = camera.psf_sigma_px
    reach = int(math.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-reach, reach + 1) / sigma) ** 2).astype(np.float32)
    kernel /= kernel.sum()  # a continuous stripe keeps its brightness under the blur
    blurred = np.zeros_like(electrons)
    for k, weight in zip(range(-reach, reach + 1), kernel):
        if k >= 0:
            blurred[:, k:] += weight * electrons[:, :Q - k]
        else:
            blurred[:, :k] += weight * electrons[:, -k:]
    return blurred


def ambient_electrons(camera: DiffractionCamera, ambient_e_per_us: float = AMBIENT_E_PER_US) -> np.ndarray:
    """Room light through the grating: the same broadband (daylight) offset on every pixel, (3,) e⁻."""
    if not ambient_e_per_us >= 0:
        raise ValueError(f"ambient_e_per_us must be >= 0, got {ambient_e_per_us}")
    return camera.broadband_electrons_per_us("daylight") * np.float32(ambient_e_per_us * camera.exposure_us)


def truth_from_hits(camera: DiffractionCamera, hits: dict[str, np.ndarray]) -> list[LineTruth]:
    """One ``LineTruth`` per exposure of ``trace_light_plane`` output."""
    xv = hits["xv"]
    yv = camera.G(np.arange(camera.Q))[None, :]
    visible = np.isfinite(xv) & (xv >= 0) & (xv < camera.W) & (yv >= 0) & (yv < camera.H_v)
    out = [LineTruth(xv=np.where(visible[k], xv[k], np.nan).astype(np.float32),
                     depth=np.where(visible[k], hits["Z"][k], np.nan).astype(np.float32),
                     object_id=np.where(visible[k], hits["object_id"][k], -1).astype(np.int32),
                     defect=hits["defect"][k] & visible[k]) for k in range(len(xv))]
    return out


def _plane_row(rig: LightPlaneRig) -> np.ndarray:
    n, c = rig.plane()
    return np.array([n[0], n[1], n[2], c])


def render_line_scan(camera: DiffractionCamera, rig: LightPlaneRig, scene: Scene, rng: np.random.Generator,
                     albedo: float | None = None, scan_index: int = 0, line_flux: float = LINE_FLUX,
                     ambient_e_per_us: float = AMBIENT_E_PER_US) -> tuple[np.ndarray, LineTruth]:
    """One exposure of the light plane on ``scene``: ((R, h, Q, 3) uint8, LineTruth).
    ``albedo`` overrides the scene's albedo everywhere (None: the scene's own)."""
    if albedo is not None and not 0 <= albedo <= 1:
        raise ValueError(f"albedo must be in [0, 1], got {albedo}")
    hits = trace_light_plane(camera, _plane_row(rig)[None], scene, np.array([scan_index]))
    if albedo is not None:
        hits["albedo"] = np.where(np.isfinite(hits["Z"]), np.float32(albedo), np.float32(0))
    electrons = line_electrons(camera, hits, line_flux=line_flux)
    scan = camera.expose(electrons, rng, ambient_electrons(camera, ambient_e_per_us))[0].transpose(1, 2, 0, 3)
    return scan, truth_from_hits(camera, hits)[0]


_LINE_CHUNK = 16


def make_line_dataset(camera: DiffractionCamera, n_scans: int, seed: int = 0,
                      albedo_range: tuple[float, float] = (0.2, 1.0), scene: str = "wall",
                      depth_m: float = 1.0, progress: bool = False) -> LineDataset:
    """§6 calibration: ``n_scans`` exposures of a vertical light line at a random position (its
    centre-row column uniform over [−40, W + 40), roll within ±1°) on a white wall ``depth_m`` away,
    with a random albedo per scan (``albedo_range``) — the training set of the line MLP.
    ``scene="objects"``: the test variant, the same sweep over a random conveyor scene (boxes and
    cylinders on a belt ``depth_m`` away, their own albedos scaled by the per-scan factor)."""
    lo, hi = albedo_range
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"albedo_range must satisfy 0 <= low <= high <= 1, got {albedo_range}")
    if n_scans < 0:
        raise ValueError(f"n_scans must be >= 0, got {n_scans}")
    rng = np.random.default_rng(seed)
    if scene == "wall":
        target: Scene = Wall(depth_m=depth_m, albedo=1.0)
    elif scene == "objects":
        # conveyor.py builds on this module, so it is imported here rather than at the top
        from firmware_bridge.linescan.diffraction.conveyor import random_conveyor_scene
        half_view = 0.9 * depth_m * (camera.W / 2) / camera.f_px  # belt X the camera sees
        target = random_conveyor_scene(seed, n_objects=4, defect_rate=0.3, camera=camera, belt_depth_m=depth_m,
                                       speed_m_s=0.0, start_m=-half_view, gap_range=(0.01, 0.04))
    else:
        raise ValueError(f"scene must be 'wall' or 'objects', got {scene!r}")
    scan_index = np.zeros(n_scans, np.int64)  # a static scene: one instant
    base = LightPlaneRig(camera)
    xv0 = rng.uniform(-40, camera.W + 40, n_scans)
    roll = rng.uniform(-math.radians(1), math.radians(1), n_scans)
    scan_albedo = rng.uniform(lo, hi, n_scans).astype(np.float32)
    planes = np.stack([_plane_row(dataclasses.replace(base, roll_rad=r).aimed_at(x, depth_m))
                       for x, r in zip(xv0, roll)]) if n_scans else np.zeros((0, 4))
    Q, ambient = camera.Q, ambient_electrons(camera)
    scans = np.empty((n_scans, camera.rois, camera.roi_rows, Q, 3), np.uint8)
    xv = np.empty((n_scans, Q), np.float32)
    depth = np.empty((n_scans, Q), np.float32)
    object_id = np.empty((n_scans, Q), np.int32)
    starts = range(0, n_scans, _LINE_CHUNK)
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc="line scans", unit="chunk")
    for start in starts:
        part = slice(start, min(start + _LINE_CHUNK, n_scans))
        hits = trace_light_plane(camera, planes[part], target, scan_index[part])
        hits["albedo"] = hits["albedo"] * scan_albedo[part, None]
        scans[part] = camera.expose(line_electrons(camera, hits), rng, ambient).transpose(0, 2, 3, 1, 4)
        for k, t in enumerate(truth_from_hits(camera, hits)):
            xv[start + k], depth[start + k], object_id[start + k] = t.xv, t.depth, t.object_id
    return LineDataset(scans=scans, xv=xv, depth=depth, object_id=object_id, albedo=scan_albedo, camera=camera)
