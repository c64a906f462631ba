"""A 2D bird's-eye world of moving robots that observe boxes and poles: the test bench of
cooperative perception (pose-error correction and fusion).

    world = World(WorldConfig(robots=3, pose_noise_scale=1.0), seed=0)
    for _ in range(20):
        snap = world.step()            # snap.cpms[i]: what robot i broadcasts this frame

Each robot carries

* radars (three heads for surround coverage) simulated through Prism's FMCW path
  (``firmware_bridge.radar``: ADC cube with each target's range, azimuth and radial velocity ->
  range/Doppler FFT -> CA-CFAR -> angle FFT). Poles (strong static reflectors) and objects in view
  become range-angle detections; they are the CPM's ``landmarks``, in the robot's frame.
* a camera detector with a field of view, a range limit, occlusion by walls and by other objects,
  a detection probability falling with range, centre/size/heading noise and false positives; its
  boxes are the CPM's ``objects``.
* a localization error: the CPM's ``pose`` is the true pose plus N(0, (0.4 s)^2) m in x and y and
  N(0, (4 s)^2) deg in heading (FPV-RCNN's noise model at scale s = ``pose_noise_scale``), plus an
  optional constant bias for faulty devices (the outlier case of the pose-consistency paper).

Frames: global x east, y north, headings counter-clockwise in radians; a robot's frame has x
forward, y left. Everything is deterministic given the seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_bridge.radar.fmcw import ChirpConfig, detect
from firmware_bridge.radar.simulator import SimulatedRadar, Target
from sdk.errors import InputError

from .messages import CPM, DetectedObject, Landmark, ObjectClass, Pose2D

__all__ = ["WorldConfig", "Snapshot", "World", "RADAR_CONFIG", "to_local", "boxes_to_local"]

RADAR_CONFIG = ChirpConfig(slope_hz_per_s=30e12, samples=256, sample_rate_hz=10e6, chirps=16,
                           horizontal_antennas=8, vertical_antennas=2)
"""A small chirp: 0.098 m range bins, 50 m reach (25 m used), 16 chirps (1.2 m/s Doppler bins),
8 + 2 virtual antennas. One frame (cube synthesis + detection) costs about a millisecond."""

NOISE_STD_XY_M = 0.4
NOISE_STD_HEADING_DEG = 4.0

# class -> (length, width) m, speed m/s
_OBJECT_KINDS = {ObjectClass.PERSON: ((0.8, 0.8), 0.8), ObjectClass.VEHICLE: ((2.4, 1.2), 1.5),
                 ObjectClass.OBSTACLE: ((1.2, 1.2), 0.0)}
_ROBOT_SIZE = (1.0, 0.7)


@dataclass(frozen=True)
class WorldConfig:
    """What the world holds and how robots sense it (lengths m, angles deg, times s)."""

    robots: int = 3
    objects: int = 30
    poles: int = 50
    interior_walls: int = 2
    size_m: float = 40.0
    """Side of the square arena; walls on its border."""
    dt_s: float = 0.5
    robot_speed_mps: float = 1.0
    pose_noise_scale: float = 1.0
    """Multiplies the paper's localization noise (0.4 m, 4 deg)."""
    faulty: tuple[tuple[int, float, float, float], ...] = ()
    """(robot index, bias x m, bias y m, bias heading deg) added to that robot's reported pose."""
    camera_fov_deg: float = 120.0
    camera_range_m: float = 20.0
    camera_centre_noise_m: float = 0.05
    """Centre noise std at 0 m; grows by 1 % of the range."""
    camera_false_positives: float = 0.3
    """Mean false positives per frame (Poisson)."""
    radar_heads_deg: tuple[float, ...] = (0.0, 120.0, 240.0)
    """Mounting angles of the robot's radars (surround coverage), each seeing radar_fov_deg."""
    radar_fov_deg: float = 120.0
    radar: ChirpConfig = RADAR_CONFIG
    radar_noise_std: float = 4.0
    eval_radius_m: float = 20.0
    """Ground truth around the ego: every object within this radius counts, seen or not."""

    def check(self) -> None:
        if self.robots < 1:
            raise InputError(f"WorldConfig.robots: need at least 1, received {self.robots}")
        if self.size_m <= 4 or self.dt_s <= 0 or self.pose_noise_scale < 0:
            raise InputError("WorldConfig: size_m > 4, dt_s > 0 and pose_noise_scale >= 0 required, "
                             f"received {self.size_m}, {self.dt_s}, {self.pose_noise_scale}")
        for f in self.faulty:
            if not 0 <= f[0] < self.robots:
                raise InputError(f"WorldConfig.faulty: robot index {f[0]} not in 0..{self.robots - 1}")


@dataclass
class Snapshot:
    """One frame of the world."""

    time_s: float
    true_poses: np.ndarray
    """(R, 3) x, y, heading of every robot."""
    cpms: list[CPM]
    """cpms[i] is what robot i broadcasts (sender_id = i)."""
    gt_boxes: np.ndarray
    """(M, 5) x, y, length, width, heading of every object and robot, global frame."""
    gt_cls: np.ndarray
    """(M,) ObjectClass codes."""
    gt_owner: np.ndarray
    """(M,) robot index for robot boxes, -1 for objects."""

    def ground_truth(self, ego: int, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (K, 5) and classes (K,) within radius_m of robot ``ego``, in its true frame,
        the ego's own box excluded."""
        local = boxes_to_local(self.gt_boxes, self.true_poses[ego])
        keep = (np.hypot(local[:, 0], local[:, 1]) <= radius_m) & (self.gt_owner != ego)
        return local[keep], self.gt_cls[keep]


def to_local(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """(N, 2) global points -> the frame of ``pose`` (x, y, heading)."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    d = np.asarray(points, np.float64) - pose[:2]
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)


def boxes_to_local(boxes: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """(N, 5) global boxes (x, y, length, width, heading) -> the frame of ``pose``."""
    out = np.array(boxes, np.float64, copy=True).reshape(-1, 5)
    out[:, :2] = to_local(out[:, :2], pose)
    out[:, 4] = np.angle(np.exp(1j * (out[:, 4] - pose[2])))
    return out


def _ray_blocked(origin: np.ndarray, targets: np.ndarray, seg_a: np.ndarray, seg_b: np.ndarray) -> np.ndarray:
    """(N,) bool: does the segment origin->target cross any wall segment (seg_a[k], seg_b[k])?"""
    if len(seg_a) == 0 or len(targets) == 0:
        return np.zeros(len(targets), bool)
    p, r = origin[None, None, :], (targets - origin)[:, None, :]
    q, s = seg_a[None], (seg_b - seg_a)[None]
    cross = lambda u, v: u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]  # noqa: E731
    denom = cross(r, s)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = cross(q - p, s) / denom
        u = cross(q - p, r) / denom
    hit = (np.abs(denom) > 1e-12) & (t > 1e-6) & (t < 1 - 1e-6) & (u >= 0) & (u <= 1)
    return hit.any(axis=1)


def _shadowed(origin: np.ndarray, targets: np.ndarray, blockers: np.ndarray, radii: np.ndarray,
              own: np.ndarray) -> np.ndarray:
    """(N,) bool: does the ray to target n pass within radii[k] of a blocker k that lies before
    the target (k != own[n])? Objects are discs for occlusion."""
    if len(blockers) == 0 or len(targets) == 0:
        return np.zeros(len(targets), bool)
    d = targets - origin                                     # (N, 2)
    length = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
    u = d / length[:, None]
    b = blockers - origin                                    # (K, 2)
    along = u @ b.T                                          # (N, K)
    perp = np.abs(u[:, 0:1] * b[None, :, 1] - u[:, 1:2] * b[None, :, 0])
    ahead = (along > 0.3) & (along < length[:, None] - 0.3)
    hit = ahead & (perp < radii[None]) & (np.arange(len(blockers))[None] != own[:, None])
    return hit.any(axis=1)


class World:
    """The arena, its walls, poles, objects and robots; ``step()`` advances and senses."""

    def __init__(self, config: WorldConfig = WorldConfig(), seed: int = 0):
        config.check()
        self.config, self.seed = config, seed
        self._rng = np.random.default_rng(seed)
        # a stream of its own: the same seed gives the same world at every pose-noise scale
        self._pose_rng = np.random.default_rng([seed, 1])
        self._frame = 0
        rng, size = self._rng, config.size_m
        corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
        walls_a, walls_b = [corners], [np.roll(corners, -1, axis=0)]
        for _ in range(config.interior_walls):
            a = rng.uniform(0.2 * size, 0.8 * size, 2)
            ang = rng.uniform(0, np.pi)
            walls_a.append(a[None])
            walls_b.append((a + rng.uniform(3.0, 6.0) * np.array([np.cos(ang), np.sin(ang)]))[None])
        self.walls = (np.concatenate(walls_a), np.concatenate(walls_b))
        self.poles = rng.uniform(1.0, size - 1.0, (config.poles, 2))
        kinds = rng.choice(list(_OBJECT_KINDS), config.objects, p=[0.5, 0.3, 0.2])
        self.obj_cls = np.array(kinds, np.int64)
        self.obj_size = np.array([_OBJECT_KINDS[k][0] for k in kinds], np.float64).reshape(-1, 2)
        self.obj_speed = np.array([_OBJECT_KINDS[k][1] for k in kinds], np.float64)
        self.obj_pose = np.column_stack([rng.uniform(2, size - 2, (config.objects, 2)),
                                         rng.uniform(-np.pi, np.pi, config.objects)])
        self.robot_pose = np.column_stack([rng.uniform(0.35 * size, 0.65 * size, (config.robots, 2)),
                                           rng.uniform(-np.pi, np.pi, config.robots)])
        self._seq = np.zeros(config.robots, np.int64)

    # -- motion ------------------------------------------------------------------------------
    def _move(self, pose: np.ndarray, speed: np.ndarray, turn_std: float) -> None:
        """Random-walk heading, constant speed, reflect off the arena border (in place)."""
        dt, size = self.config.dt_s, self.config.size_m
        pose[:, 2] += self._rng.normal(0, turn_std, len(pose))
        pose[:, 0] += speed * dt * np.cos(pose[:, 2])
        pose[:, 1] += speed * dt * np.sin(pose[:, 2])
        for axis in (0, 1):
            low, high = pose[:, axis] < 1.0, pose[:, axis] > size - 1.0
            pose[low, axis] = 2.0 - pose[low, axis]
            pose[high, axis] = 2 * (size - 1.0) - pose[high, axis]
            flip = low | high
            pose[flip, 2] = (np.pi - pose[flip, 2]) if axis == 0 else -pose[flip, 2]
        pose[:, 2] = np.angle(np.exp(1j * pose[:, 2]))

    # -- sensing -----------------------------------------------------------------------------
    def _all_boxes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        robots = np.column_stack([self.robot_pose[:, :2], np.tile(_ROBOT_SIZE, (len(self.robot_pose), 1)),
                                  self.robot_pose[:, 2]])
        objects = np.column_stack([self.obj_pose[:, :2], self.obj_size, self.obj_pose[:, 2]])
        boxes = np.concatenate([objects, robots])
        cls = np.concatenate([self.obj_cls, np.full(len(robots), ObjectClass.ROBOT)])
        owner = np.concatenate([np.full(len(objects), -1), np.arange(len(robots))])
        return boxes, cls, owner

    def _visible_from(self, pose: np.ndarray, points: np.ndarray, fov_deg: float, range_m: float,
                      boxes: np.ndarray, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which global points a sensor at ``pose`` sees: (mask (N,), sensor-frame coordinates
        (N, 2)). Walls block; object discs (radius half the box width) shadow what lies behind."""
        local = to_local(points, pose)
        rng_m = np.hypot(local[:, 0], local[:, 1])
        bearing = np.arctan2(local[:, 1], local[:, 0])
        mask = (rng_m <= range_m) & (np.abs(bearing) <= np.radians(fov_deg) / 2) & (rng_m > 0.5)
        mask &= ~_ray_blocked(pose[:2], points, *self.walls)
        mask &= ~_shadowed(pose[:2], points, boxes[:, :2], 0.5 * boxes[:, 3], own)
        return mask, local

    def _camera(self, r: int, boxes: np.ndarray, cls: np.ndarray, owner: np.ndarray) -> list[DetectedObject]:
        cfg, rng = self.config, self._rng
        own = np.arange(len(boxes))
        mask, local = self._visible_from(self.robot_pose[r], boxes[:, :2], cfg.camera_fov_deg,
                                         cfg.camera_range_m, boxes, own)
        mask &= owner != r
        out = []
        for k in np.nonzero(mask)[0]:
            dist = float(np.hypot(*local[k]))
            p_detect = 0.95 - 0.35 * dist / cfg.camera_range_m
            if rng.random() > p_detect:
                continue
            sigma = cfg.camera_centre_noise_m + 0.01 * dist
            x, y = local[k] + rng.normal(0, sigma, 2)
            length, width = boxes[k, 2:4] * (1 + rng.normal(0, 0.04, 2))
            heading = boxes[k, 4] - self.robot_pose[r, 2] + rng.normal(0, np.radians(3.0))
            score = float(np.clip(p_detect + rng.normal(0, 0.08), 0.05, 1.0))
            out.append(DetectedObject(int(cls[k]), float(x), float(y), float(length), float(width),
                                      float(np.angle(np.exp(1j * heading))), score))
        half = np.radians(cfg.camera_fov_deg) / 2
        for _ in range(rng.poisson(cfg.camera_false_positives)):
            d, b = rng.uniform(2, cfg.camera_range_m), rng.uniform(-half, half)
            kind = int(rng.choice(list(_OBJECT_KINDS)))
            (length, width), _ = _OBJECT_KINDS[kind]
            out.append(DetectedObject(kind, float(d * np.cos(b)), float(d * np.sin(b)), length, width,
                                      float(rng.uniform(-np.pi, np.pi)), float(rng.uniform(0.05, 0.5))))
        return out

    def _radar(self, r: int, boxes: np.ndarray, owner: np.ndarray) -> list[Landmark]:
        """Range-angle detections of poles and objects through the FMCW simulation + CFAR, one
        radar per mounting angle in ``radar_heads_deg``."""
        cfg = self.config
        reach = min(cfg.radar.max_range_m * 0.9, 25.0)
        points = np.concatenate([self.poles, boxes[:, :2]])
        amplitude = np.concatenate([np.full(len(self.poles), 400.0), np.full(len(boxes), 150.0)])
        own = np.concatenate([np.full(len(self.poles), -1), np.arange(len(boxes))])
        # radial velocity (receding positive) separates targets in Doppler before CFAR
        speed = np.concatenate([self.obj_speed, np.full(cfg.robots, cfg.robot_speed_mps)])
        velocity = np.concatenate([np.zeros((len(self.poles), 2)),
                                   speed[:, None] * np.column_stack([np.cos(boxes[:, 4]), np.sin(boxes[:, 4])])])
        pose = self.robot_pose[r]
        velocity -= cfg.robot_speed_mps * np.array([np.cos(pose[2]), np.sin(pose[2])])
        v_max = cfg.radar.velocity_resolution_mps * cfg.radar.chirps / 2
        out = []
        for head in np.radians(cfg.radar_heads_deg):
            mount = pose + np.array([0.0, 0.0, head])
            mask, local = self._visible_from(mount, points, cfg.radar_fov_deg, reach, boxes, own)
            mask &= np.concatenate([np.ones(len(self.poles), bool), owner != r])
            targets = []
            for k in np.nonzero(mask)[0]:
                dist = float(np.hypot(*local[k]))
                line_of_sight = (points[k] - pose[:2]) / max(dist, 1e-9)
                radial = float(np.clip(velocity[k] @ line_of_sight, -0.9 * v_max, 0.9 * v_max))
                targets.append(Target(range_m=dist, azimuth_deg=float(np.degrees(np.arctan2(local[k, 1], local[k, 0]))),
                                      velocity_mps=radial, amplitude=float(amplitude[k] / (1 + (dist / 10.0) ** 2))))
            radar = SimulatedRadar(targets, cfg.radar, noise_std=cfg.radar_noise_std,
                                   seed=int(self._rng.integers(2 ** 31)))
            found = detect(radar.adc_cube(0), cfg.radar)
            snr = np.clip(found.snr_db / 40.0, 0.0, 1.0)
            angle = found.azimuth_rad + head             # back to the robot frame
            out += [Landmark(float(d * np.cos(a)), float(d * np.sin(a)), kind=1, strength=float(s))
                    for d, a, s in zip(found.range_m, angle, snr)]
        return out

    def step(self) -> Snapshot:
        """Advance by dt and return every robot's CPM and the ground truth."""
        cfg = self.config
        moving = self.obj_speed > 0
        sub = self.obj_pose[moving]
        self._move(sub, self.obj_speed[moving], 0.3)
        self.obj_pose[moving] = sub
        self._move(self.robot_pose, np.full(cfg.robots, cfg.robot_speed_mps), 0.2)
        self._frame += 1
        time_s = self._frame * cfg.dt_s
        boxes, cls, owner = self._all_boxes()
        bias = np.zeros((cfg.robots, 3))
        for idx, bx, by, bh in cfg.faulty:
            bias[idx] = (bx, by, np.radians(bh))
        s = cfg.pose_noise_scale
        cpms = []
        for r in range(cfg.robots):
            noise = self._pose_rng.normal(0, 1, 3) * (NOISE_STD_XY_M * s, NOISE_STD_XY_M * s,
                                           np.radians(NOISE_STD_HEADING_DEG) * s)
            est = self.robot_pose[r] + noise + bias[r]
            self._seq[r] += 1
            sx, sh = max(NOISE_STD_XY_M * s, 0.02), max(np.radians(NOISE_STD_HEADING_DEG) * s, 0.002)
            cpms.append(CPM(sender_id=r, seq=int(self._seq[r]), timestamp_ns=int(time_s * 1e9),
                            pose=Pose2D(float(est[0]), float(est[1]), float(np.angle(np.exp(1j * est[2])))),
                            pose_cov=np.diag([sx ** 2, sx ** 2, sh ** 2]),
                            objects=self._camera(r, boxes, cls, owner),
                            landmarks=self._radar(r, boxes, owner)))
        return Snapshot(time_s=time_s, true_poses=self.robot_pose.copy(), cpms=cpms, gt_boxes=boxes,
                        gt_cls=cls, gt_owner=owner)
