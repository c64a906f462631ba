"""The diffraction simulator as the line generator of the ``linescan+sim`` source.

    cam = DiffractionCamera.paper_conditions().with_(Q=1024)
    scene = random_conveyor_scene(seed=1, camera=cam)
    gen = DiffractionLineGenerator(cam, scene.rig, scene, seed=7)
    with firmware_bridge.open_source("linescan+sim://?rate=1743&rois=3&width=3072&lines_per_frame=64",
                                     line_generator=gen) as src:
        frame = src.read()          # (64, 3072, 3): ROI r in columns r·Q .. (r+1)·Q
    truth = gen.truth(frame.meta["line_ids"][0])

The sim's sensor is one row wide (``SensorWidth`` 4096, at most 4 regions), so each line is one
exposure of the diffraction camera with each ROI's ``roi_rows`` rows averaged (and rounded) into
one, the ROIs side by side. Q = 1024 per ROI (3 × 1024 = 3072 ≤ 4096; the sim cuts ROIs in
multiples of 8 px) replaces the paper's 2056. Line id k is exposure k of the scene (the belt has
moved ``scene.position_m(k)``), so the scene's ``line_rate_hz`` should equal the source's rate.
Each line's noise comes from ``default_rng([seed, line_id])``: a line renders identically
whenever and in whatever batch it is asked for, so ``render``/``truth`` reproduce what the source
delivered.

Speed: lines are traced and rendered vectorised per batch, and lines whose geometry repeats (the
empty belt, a static wall) reuse their photo-electrons, but the per-pixel sensor noise still costs
≈ 1–4 ms per line at Q = 1024 on the shared 2-core dev box — a few hundred lines/s. At the
paper's 1743 lines/s call ``prerender(first, count)`` before streaming: the sim then reads
finished lines from memory (a renderer that falls behind makes the sim hand it ever larger
batches, and its frames arrive late).
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from firmware_bridge.linescan.diffraction.optics import DiffractionCamera
from firmware_bridge.linescan.diffraction.structured_light import (AMBIENT_E_PER_US, LINE_FLUX, LightPlaneRig,
                                                                   LineTruth, Scene, ambient_electrons,
                                                                   line_electrons, trace_light_plane, truth_from_hits)

__all__ = ["DiffractionLineGenerator"]

_SIM_WIDTH_INC = 8  # the linescan sim's Width/OffsetX increment
_PRERENDER_BATCH = 32  # lines per vectorised call: larger batches only add memory traffic
_CACHE_LINES = 64  # recent lines' electrons kept for reuse (≈ 0.3 MB each at Q = 1024)


class DiffractionLineGenerator:
    """``(line_ids, device_timestamps_ns, width) -> (n, width, 3) uint8`` for the linescan sim,
    width = rois · Q; ``truth(line_id)`` and ``render(line_id)`` give each line's ground truth and
    its full (R, h, Q, 3) exposure."""

    def __init__(self, camera: DiffractionCamera, rig: LightPlaneRig, scene: Scene, seed: int = 0,
                 line_flux: float | None = None, ambient_e_per_us: float | None = None):
        if camera.Q % _SIM_WIDTH_INC:
            raise ValueError(f"camera.Q={camera.Q} must be a multiple of {_SIM_WIDTH_INC} (the linescan sim's "
                             f"ROI width increment) so its ROIs line up with the camera's")
        if rig.camera != camera:
            raise ValueError("rig.camera differs from camera: the rig's intrinsics must be the camera's")
        self.camera, self.rig, self.scene, self.seed = camera, rig, scene, int(seed)
        self.line_flux = getattr(scene, "line_flux", LINE_FLUX) if line_flux is None else line_flux
        self.ambient_e_per_us = (getattr(scene, "ambient_e_per_us", AMBIENT_E_PER_US)
                                 if ambient_e_per_us is None else ambient_e_per_us)
        n, c = rig.plane()
        self._plane = np.array([n[0], n[1], n[2], c])
        self._ambient = ambient_electrons(camera, self.ambient_e_per_us)
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()  # the sim's producer thread and a caller of render() share it
        self._stored: tuple[int, np.ndarray] = (0, np.empty((0, self.width, 3), np.uint8))  # (first id, rows)

    @property
    def width(self) -> int:
        """The sensor width this generator fills: rois · Q."""
        return self.camera.rois * self.camera.Q

    def _hits(self, line_ids: np.ndarray) -> dict[str, np.ndarray]:
        ids = np.asarray(line_ids, np.int64)
        if ids.ndim != 1 or np.any(ids < 0):
            raise ValueError(f"line_ids must be a 1-D array of ids >= 0, got shape {ids.shape}")
        return trace_light_plane(self.camera, np.repeat(self._plane[None], len(ids), 0), self.scene, ids)

    def _electrons(self, hits: dict[str, np.ndarray]) -> np.ndarray:
        """(n, Q, R, h, 3) stripe electrons of traced lines; a line whose geometry and albedo
        equal a recent one's (the empty belt, a static wall) reuses its electrons."""
        n = len(hits["xv"])
        out = np.empty((n, self.camera.Q, self.camera.rois, self.camera.roi_rows, 3), np.float32)
        keys = [hashlib.blake2b(hits["xv"][k].tobytes() + hits["albedo"][k].tobytes(), digest_size=16).digest()
                for k in range(n)]
        todo = []
        with self._cache_lock:
            for k, key in enumerate(keys):
                if key in self._cache:
                    self._cache.move_to_end(key)
                    out[k] = self._cache[key]
                else:
                    todo.append(k)
        if todo:
            out[todo] = line_electrons(self.camera, {name: hits[name][todo] for name in ("xv", "albedo")},
                                       line_flux=self.line_flux)
            with self._cache_lock:
                for k in todo:
                    self._cache[keys[k]] = out[k].copy()  # not a view: it would pin the whole batch
                    if len(self._cache) > _CACHE_LINES:
                        self._cache.popitem(last=False)
        return out

    def _exposures(self, line_ids: np.ndarray) -> np.ndarray:
        """(n, R, h, Q, 3) uint8 exposures of ``line_ids``."""
        electrons = self._electrons(self._hits(line_ids))
        out = np.empty((len(electrons), self.camera.rois, self.camera.roi_rows, self.camera.Q, 3), np.uint8)
        for k, line_id in enumerate(np.asarray(line_ids, np.int64)):
            rng = np.random.default_rng([self.seed, int(line_id)])
            out[k] = self.camera.expose(electrons[k], rng, self._ambient).transpose(1, 2, 0, 3)
        return out

    def __call__(self, line_ids: np.ndarray, device_timestamps_ns: np.ndarray, width: int) -> np.ndarray:
        if width != self.width:
            raise ValueError(f"linescan width {width} != rois·Q = {self.camera.rois}·{self.camera.Q} = {self.width}: "
                             f"open the source with rois={self.camera.rois}&width={self.width}")
        if len(device_timestamps_ns) != len(line_ids):
            raise ValueError(f"{len(line_ids)} line ids but {len(device_timestamps_ns)} timestamps")
        ids = np.asarray(line_ids, np.int64)
        first, prerendered = self._stored
        stored = (ids >= first) & (ids < first + len(prerendered))
        if stored.all():
            return prerendered[ids - first]
        rows = self._rows(ids[~stored])
        if not stored.any():
            return rows
        out = np.empty((len(ids), self.width, 3), np.uint8)
        out[stored] = prerendered[ids[stored] - first]
        out[~stored] = rows
        return out

    def _rows(self, line_ids: np.ndarray) -> np.ndarray:
        scans = self._exposures(line_ids)
        rows = np.rint(scans.mean(axis=2, dtype=np.float32)).astype(np.uint8)  # (n, R, Q, 3)
        return rows.reshape(len(scans), self.width, 3)

    def prerender(self, first: int, count: int, progress: bool = False) -> None:
        """Render lines ``first`` .. ``first + count − 1`` now (batches of 32; ``progress``: a tqdm
        bar) and serve them from memory (rois·Q·3 bytes each), so a source can run at line rates
        the renderer alone does not reach on this machine (it renders a few hundred lines/s
        at Q = 1024 on one loaded core; the paper's conveyor runs at 1743). Replaces any earlier
        prerendered range."""
        if first < 0 or count < 0:
            raise ValueError(f"prerender needs first >= 0 and count >= 0, got {first}, {count}")
        stored = np.empty((count, self.width, 3), np.uint8)
        starts = range(0, count, _PRERENDER_BATCH)
        if progress:
            from tqdm import tqdm
            starts = tqdm(starts, desc="prerender lines", unit="batch")
        for start in starts:
            stop = min(start + _PRERENDER_BATCH, count)
            stored[start:stop] = self._rows(np.arange(first + start, first + stop))
        self._stored = (first, stored)

    def render(self, line_id: int) -> np.ndarray:
        """The full exposure behind line ``line_id``: (R, h, Q, 3) uint8."""
        return self._exposures(np.array([line_id]))[0]

    def truth(self, line_id: int) -> LineTruth:
        """Ground truth of line ``line_id``: per sensor row xv, depth, object_id, defect."""
        return truth_from_hits(self.camera, self._hits(np.array([line_id])))[0]
