"""The conveyor through the real optical path: a diffraction-simulated belt, its LUT, the extractor.

    camera = optical_camera()                                   # paper conditions, 4 ROIs of Q = 1024
    lut = default_line_lut(camera)                              # line MLP trained + distilled (cached)
    line = OpticalConveyor.random(8, seed=0, camera=camera, line_rate_hz=1743, plc=plc)
    line.prerender(line.lines_for(), progress=True)             # the renderer is slower than 1743 lines/s
    source = firmware_bridge.open_source(line.source_uri(), line_generator=line.line_generator)
    extractor = line.extractor(lut)                             # LutTriangulationExtractor, mm
    config = ScannerConfig(..., **line.scanner_geometry())      # mm/count, column pitch, threshold, gap

Geometry (``firmware_bridge.linescan.diffraction.conveyor``): one encoder count per line (the
scene's ``encoder_counts_per_m`` is set to lines per metre of travel), so line id = count, as on
the geometric belt. The light plane is tilted (it meets the belt at xv = 0.3·W), so the top of an
object of height h is lit ``h·tan θ`` of travel *before* the belt under it, and its back face is
swept from the top down to the belt: the lines an object occupies run from where the plane meets
its top leading edge to where it meets its trailing edge at belt level. ``objects``
(``TruthObject``) gives those extents in counts (what ``tools.conveyor.score_run`` scores against) together with
the scene's true length, height and defect flag.

Profile columns are sensor rows y (the camera's y axis runs across the belt), binned by
``bin_columns``; their pitch is the virtual-row pitch ``dG/dy`` seen at the belt's depth (an
object's top, nearer the camera, is seen ``Z_top / Z_belt`` narrower: up to 25 % at 150 mm).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .scanner import LutTriangulationExtractor

__all__ = ["OPTICAL_Q", "OPTICAL_ROIS", "GAP_MM", "DIM_RESPONSE_FLOOR", "optical_camera", "dim_xv_bands",
           "line_train_config", "default_line_lut", "TruthObject", "OpticalConveyor"]

OPTICAL_Q = 1024
"""Sensor rows per ROI: 4 ROIs side by side fill the linescan sim's 4096-px sensor (its 4 regions)."""
OPTICAL_ROIS = 4
"""ROIs of the conveyor camera. With the paper's 3 the bands of neighbouring ROIs meet where both
see a band end (ROI 0 near 440 nm, ROI 1 near 660 nm): at xv ≈ 650–800 the best ROI collects 5 %
of the peak white-LED response, the stripe of 10–50 mm tops read 10–15 DN there and went
undecoded (3-ROI soak: 9/13 defects rejected, 2 good objects rejected). A fourth ROI on the same
sensor puts a band centre on every seam: over the belt's xv ≈ 550–1050 the weakest column keeps
15 % of the peak (``dim_xv_bands`` is empty there). The paper itself trades ROIs for accuracy
(§4, §8; its 3D scans use five)."""
GAP_MM = 40.0
"""Belt travel without data that closes an object: the tilted plane leaves dark, undecodable
stretches on back faces and in notches, which must not split an object."""
DIM_RESPONSE_FLOOR = 0.1
"""White-LED response (sum of R, G, B quantum efficiency × spectrum, peak ≈ 0.9) under which the
best ROI reads a virtual column too dimly to decode on a mid-albedo surface: the 3-ROI camera's
seam (≈ 0.05 at xv ≈ 730) reads 10–15 DN there, under the line decoder's threshold."""

DIM_MARGIN_PX = 20.0
"""A crest this close to a dim band counts as in it: the stripe is a few pixels wide and the
band's edge is where the response crosses ``DIM_RESPONSE_FLOOR``, not a cliff."""


def optical_camera(rois: int = OPTICAL_ROIS):
    """The paper's diffraction camera with ``rois`` ROIs of Q = 1024 rows (``DiffractionCamera``);
    the exit angles tile the visible band across the virtual width."""
    from firmware_bridge.linescan.diffraction import DiffractionCamera

    return DiffractionCamera.paper_conditions().with_(Q=OPTICAL_Q, rois=rois)


def dim_xv_bands(camera, spectrum: str = "white_led", floor: float = DIM_RESPONSE_FLOOR,
                 step_px: float = 2.0) -> list[tuple[float, float]]:
    """Virtual-column intervals [(xv_lo, xv_hi)] where the best of ``camera``'s ROIs collects less
    than ``floor`` of ``spectrum``'s light (sum over R, G, B of c_σ(λ)·s(λ), Eq. 8) on the centre
    row: where a stripe is dim in every ROI. Computed from the optics, not measured."""
    from firmware_bridge.linescan.diffraction.optics import spectral_response
    from firmware_bridge.linescan.diffraction.spectra import SPECTRA

    if spectrum not in SPECTRA:
        raise ValueError(f"unknown spectrum {spectrum!r}; known: {', '.join(SPECTRA)}")
    xv = np.arange(0.0, camera.W, step_px)
    y = camera.G_inv(camera.H_v / 2)
    best = np.zeros_like(xv)
    for r in range(camera.rois):
        lam = camera.wavelength_nm(xv, y, r)
        best = np.maximum(best, (spectral_response(lam) * SPECTRA[spectrum](lam)[:, None]).sum(-1))
    dim = np.concatenate([[False], best < floor, [False]])
    edges = np.flatnonzero(np.diff(dim.astype(np.int8)))
    return [(float(xv[a]), float(xv[b - 1])) for a, b in zip(edges[::2], edges[1::2])]


def line_train_config(small: bool = False):
    """The line-MLP recipe (``sdk.models.line_decoders.LineTrainConfig``): the default one, or
    ``small`` (80 scans, 4 epochs, ~20 s to train; ~11 px validation MAE instead of ~4) for tests."""
    from sdk.models.line_decoders import LineTrainConfig

    return LineTrainConfig(n_scans=80, epochs=4, max_samples=40_000) if small else LineTrainConfig()


def default_line_lut(camera=None, config=None, *, ny: int = 65, nc: int = 96, progress: bool = True) -> Path:
    """The LUT decoder for ``camera`` (default ``optical_camera()``): the line MLP of ``config``
    (default ``line_train_config()``) trained on ``make_line_dataset`` (cached by
    ``sdk.models.line_decoders.get_or_train_line``) and distilled (``sdk.lines.distill_line_lut``,
    training-colour support mask) into ``cache_dir()/luts/conveyor-line-<key>.npz``."""
    from sdk.lines import colour_support, distill_line_lut
    from sdk.models import line_decoders as ld
    from sdk.models.train import cache_dir

    camera = camera or optical_camera()
    config = config or line_train_config()
    stem = ld.checkpoint_stem("line", config, camera).name
    key = hashlib.sha256(json.dumps({"mlp": stem, "ny": ny, "nc": nc}).encode()).hexdigest()[:16]
    path = cache_dir() / "luts" / f"conveyor-line-{key}.npz"
    if path.exists():
        return path
    mlp, meta = ld.get_or_train_line(camera, config, progress=progress)
    geo = ld.camera_geometry(camera)
    feats, valid = ld.line_support_features(camera, config)
    support = colour_support(feats, valid, q=geo["q"], ny=ny, nc=nc)
    lut = distill_line_lut(lambda f: ld.line_predict(mlp, f), rois=geo["rois"], q=geo["q"], ny=ny, nc=nc,
                           config=ld.preprocess_config(config), support=support,
                           meta={"distilled_from": stem, "ny": ny, "nc": nc,
                                 "mlp_val_mae_px": meta.get("metrics", {}).get("val_mae_px")})
    path.parent.mkdir(parents=True, exist_ok=True)
    return lut.save(path)


@dataclass(frozen=True)
class TruthObject:
    """One scene object in encoder counts (= line ids), as ``score_run`` and the tests need it."""

    object_id: int
    shape: str
    start: int
    """First line on which the plane lights the object's top (its leading edge at full height)."""
    end: int
    """First line past the one where the plane leaves its trailing edge at belt level (the
    tracker's threshold is crossed a few mm of travel earlier or later, depending on noise)."""
    length_mm: float
    """True length along travel."""
    height_mm: float
    """True top height (box height, cylinder diameter)."""
    defect: str | None
    """The defect's kind (dent, notch, missing_corner) or None."""
    crest_xv: float
    """Virtual column where the plane lights the object's top."""
    crest_in_dim_seam: bool = False
    """Whether the crest's stripe lands in one of the camera's ``dim_xv_bands`` (its top may be
    undecoded)."""


class OpticalConveyor:
    """A diffraction ``ConveyorScene`` feeding ``linescan+sim`` under the encoder trigger; the
    simulated PLC's encoder follows the lines exactly as on ``GeometricConveyor`` (it is advanced
    to each batch's last line id as the batch is made). ``min_height_mm``: the tracker threshold
    to scan it with (the default LUT's decoded empty belt reaches ~3 mm at its 99.9th percentile)."""

    def __init__(self, scene, *, seed: int = 0, plc=None, min_height_mm: float = 6.0):
        from firmware_bridge.linescan.diffraction import DiffractionLineGenerator

        lines_per_m = scene.line_rate_hz / scene.speed_m_s
        if not math.isclose(scene.encoder_counts_per_m, lines_per_m, rel_tol=1e-9):
            raise ValueError(f"scene.encoder_counts_per_m={scene.encoder_counts_per_m} must equal lines per metre "
                             f"(line_rate_hz / speed_m_s = {lines_per_m}): one encoder count per line")
        self.scene, self.plc, self.min_height_mm = scene, plc, float(min_height_mm)
        self.camera = scene.camera
        self.generator = DiffractionLineGenerator(self.camera, scene.rig, scene, seed=seed)
        self.objects = self._truth()
        self._prerendered = 0

    @classmethod
    def random(cls, n_objects: int, seed: int = 0, *, camera=None, line_rate_hz: float = 1743.0,
               mm_per_line: float | None = None, defect_rate: float = 0.4, plc=None,
               gap_range_m: tuple[float, float] = (0.15, 0.25), min_height_mm: float = 6.0,
               albedo_range: tuple[float, float] | None = (0.5, 0.95),
               aim_xv_frac: float = 0.3) -> "OpticalConveyor":
        """``random_conveyor_scene(seed, n_objects)`` on a belt moving ``mm_per_line`` per line
        (default: the paper's 0.5 m/s at 1743 lines/s, 0.287 mm). Gaps ``gap_range_m`` are wider
        than the scene's default so that the tilted plane never sees two objects on one line.
        ``albedo_range``: redraw the objects' albedos (seeded) from it; None keeps the scene's
        0.3–0.95, whose darkest objects leave most of the stripe under the decoder's intensity
        threshold where their tops fall in a dim band (measured with 3 ROIs in a 20 s soak at seed 0:
        such objects lose >40 mm stretches and split in two), hence 0.5–0.95 by default.
        ``aim_xv_frac``: the light plane meets the belt at xv = aim_xv_frac·W (the scene's 0.3:
        belt at xv ≈ 617, a 100 mm top at ≈ 965). With 3 ROIs, tops whose stripe lands in the seam
        (10–50 mm tall at 0.3) are dim and partly undecoded. Aiming at 0.4 moves the belt itself
        to xv ≈ 820, where the 0.25-albedo belt is too dark to decode (two thirds of its rows
        NaN, the rest noisy enough to keep objects open), so 0.3 stays the default."""
        from firmware_bridge.linescan.diffraction import LightPlaneRig, random_conveyor_scene

        mm = mm_per_line if mm_per_line is not None else 0.5 / 1743.0 * 1000
        speed = mm / 1000 * line_rate_hz
        scene = random_conveyor_scene(seed, n_objects=n_objects, defect_rate=defect_rate,
                                      camera=camera or optical_camera(), speed_m_s=speed,
                                      line_rate_hz=line_rate_hz, start_m=0.02, gap_range=gap_range_m)
        objects = scene.objects
        if albedo_range is not None:
            lo, hi = albedo_range
            if not 0 <= lo <= hi <= 1:
                raise ValueError(f"albedo_range must satisfy 0 <= low <= high <= 1, got {albedo_range}")
            albedo = np.random.default_rng([seed, 1]).uniform(lo, hi, len(objects))
            objects = tuple(dataclasses.replace(o, albedo=float(a)) for o, a in zip(objects, albedo))
        rig = LightPlaneRig(scene.camera).aimed_at(aim_xv_frac * scene.camera.W, scene.belt_depth_m)
        scene = dataclasses.replace(scene, objects=objects, rig=rig, encoder_counts_per_m=1000.0 / mm)
        return cls(scene, seed=seed, plc=plc, min_height_mm=min_height_mm)

    # -- geometry -------------------------------------------------------------------------------
    @property
    def mm_per_count(self) -> float:
        return 1000.0 / self.scene.encoder_counts_per_m

    def column_pitch_mm(self, bin_columns: int) -> float:
        """Belt width per profile column at the belt's depth: ``dG/dy · Z_belt / f``, times the bin."""
        y = np.arange(self.camera.Q, dtype=np.float64)
        slope = float(np.polyfit(y, self.camera.G(y), 1)[0])
        return slope * self.scene.belt_depth_m * 1000 / self.camera.f_px * bin_columns

    def edge_lead_counts(self) -> int:
        """Counts between the line on which the tilted plane meets a back face at the tracker's
        height threshold and the line on which it meets the same edge at belt level (the truth
        ``end``): the tracker closes an object that much early (~5 mm of travel at 6 mm)."""
        lead = self.scene.scan_index_under_plane(0.0, 0.0) - self.scene.scan_index_under_plane(
            0.0, self.min_height_mm / 1000)
        return int(round(abs(float(lead))))

    def scanner_geometry(self, bin_columns: int = 4) -> dict:
        """``ScannerConfig`` / ``ObjectTracker`` fields this belt fixes: mm_per_count,
        column_pitch_mm, min_height_mm, gap_lines (``GAP_MM`` of travel), edge_lead_counts."""
        return {"mm_per_count": self.mm_per_count, "column_pitch_mm": self.column_pitch_mm(bin_columns),
                "min_height_mm": self.min_height_mm, "gap_lines": int(math.ceil(GAP_MM / self.mm_per_count)),
                "edge_lead_counts": self.edge_lead_counts()}

    def _truth(self) -> list[TruthObject]:
        from firmware_bridge.linescan.diffraction import Box

        n, c = self.scene.rig.plane()
        dim = dim_xv_bands(self.camera)
        out = []
        for k, obj in enumerate(self.scene.objects):
            z_top = self.scene.belt_depth_m - obj.max_height_m
            crest_xv, _ = self.scene.rig.project((c - n[2] * z_top) / n[0], 0.0, z_top)
            u0, u1 = obj.u_extent
            first = float(self.scene.scan_index_under_plane(u0, obj.max_height_m))
            last = float(self.scene.scan_index_under_plane(u1, 0.0))
            out.append(TruthObject(object_id=k, shape="box" if isinstance(obj, Box) else "cylinder",
                                   start=int(math.ceil(first)), end=int(math.floor(last)) + 1,
                                   length_mm=(u1 - u0) * 1000, height_mm=obj.max_height_m * 1000,
                                   defect=obj.defects[0].kind if obj.defects else None,
                                   crest_xv=float(crest_xv),
                                   crest_in_dim_seam=any(lo - DIM_MARGIN_PX <= crest_xv <= hi + DIM_MARGIN_PX
                                                         for lo, hi in dim)))
        out.sort(key=lambda o: o.start)
        for a, b in zip(out, out[1:]):
            if b.start <= a.end:
                raise ValueError(f"objects {a.object_id} and {b.object_id} overlap in line space (lines "
                                 f"{a.start}..{a.end - 1} and {b.start}..): widen the gaps")
        if out and out[0].start < 1:
            raise ValueError(f"object {out[0].object_id} is under the plane at line {out[0].start}: start it later")
        return out

    def lines_for(self, n_objects: int | None = None, tail: int = 200) -> int:
        """Lines until ``tail`` lines past the ``n_objects``-th object (default: all)."""
        objs = self.objects[:n_objects] if n_objects is not None else self.objects
        return (objs[-1].end if objs else 0) + tail

    # -- the source side ------------------------------------------------------------------------
    def source_uri(self, lines_per_frame: int = 32) -> str:
        """``linescan+sim://`` under the encoder trigger at the scene's line rate, its ROIs side by side."""
        cam = self.camera
        return (f"linescan+sim://?trigger=encoder&encoder_hz={self.scene.line_rate_hz:g}&rois={cam.rois}"
                f"&width={cam.rois * cam.Q}&lines_per_frame={lines_per_frame}")

    def prerender(self, count: int, progress: bool = False) -> None:
        """Render lines 0 .. count − 1 now (``DiffractionLineGenerator.prerender``; tqdm bar with
        ``progress``) so the source can run at the line rate; later lines render live (slowly)."""
        self.generator.prerender(0, count, progress=progress)
        self._prerendered = count

    @property
    def prerendered(self) -> int:
        return self._prerendered

    def line_generator(self, line_ids: np.ndarray, device_timestamps_ns: np.ndarray, width: int) -> np.ndarray:
        """``line_generator=`` for ``linescan+sim://``: the diffraction rows; the PLC's encoder
        follows (line k at count k)."""
        rows = self.generator(line_ids, device_timestamps_ns, width)
        if self.plc is not None and len(line_ids):
            self.plc.advance_to(int(np.asarray(line_ids)[-1]))
        return rows

    def extractor(self, lut, *, bin_columns: int = 4, median_columns: int = 5,
                  num_threads: int = 1) -> LutTriangulationExtractor:
        """The measurement chain for this camera and rig: ``LUTLineDecoder(lut)`` (a LineLUT or
        its .npz) -> ``rig.triangulate`` (metres) -> mm above the belt, sensor rows binned by
        ``bin_columns``, then a running median over ``median_columns`` profile columns."""
        from sdk.lines import LUTLineDecoder

        y = np.arange(self.camera.Q, dtype=np.float64)
        return LutTriangulationExtractor(LUTLineDecoder(lut, num_threads=num_threads), self.scene.rig,
                                         self.camera.G(y), counts_per_line=1,
                                         belt_z_mm=self.scene.belt_depth_m * 1000, rig_unit_mm=1000.0,
                                         bin_columns=bin_columns, median_columns=median_columns)
