"""The conveyor scanner: line-scan source -> profiles -> objects -> classifier -> reject gate.

    scanner = ConveyorScanner(source, HeightCodedExtractor(), EngineClassifier(sdk.load(b)), plc,
                              ScannerConfig(gate_distance_counts=1600, mm_per_count=0.5,
                                            column_pitch_mm=3.125), log_path="run.jsonl")
    stats = scanner.run(duration_s=60)            # scanner.stop() from any thread
    print(stats.format())
    replay("run.jsonl").mismatches               # [] : the log reproduces every decision

Two threads: acquisition (read frames, extract profiles, unwrap the encoder, segment objects) and
decision (classify height maps in batches, schedule rejects). Objects are never lost: a full
decision queue decides its oldest object by the unmeasured policy ("queue overflow"), and every
object ends in exactly one decision status (scheduler.STATUSES). A source that fails mid-run is
restarted (up to ``max_source_restarts`` times); the object it was building is unmeasured.
The run log (JSON lines) holds every object's measurement and height map, every decision and
every fault event, so ``replay`` re-derives the decisions offline.
"""
from __future__ import annotations

import base64
import collections
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import numpy as np

from firmware_bridge.plc.encoder import EncoderTracker
from firmware_bridge.plc.modbus import STATUS_DEGRADED, STATUS_RUNNING

from .scheduler import STATUSES, Decision, RejectScheduler
from .tracker import LineProfile, ObjectTracker, TrackedObject

log = logging.getLogger(__name__)

__all__ = ["ProfileExtractor", "HeightCodedExtractor", "LutTriangulationExtractor", "EngineClassifier",
           "ScannerConfig", "ScannerStats", "ConveyorScanner", "replay", "ReplayResult"]

_LATENCY_WINDOW = 20_000  # samples kept per stage: memory stays flat over a soak
_ENCODER_MODULUS = 1 << 32
STAGES = ("extract", "track", "classify", "schedule", "decision")


class ProfileExtractor(Protocol):
    """frame -> one LineProfile per line (``encoder_count`` raw, as the camera/PLC counter reads)."""

    def __call__(self, frame: Any) -> list[LineProfile]: ...


def _line_meta(frame) -> tuple[np.ndarray, np.ndarray]:
    meta = frame.meta
    if "line_ids" not in meta or "line_valid" not in meta:
        raise ValueError(f"frame {frame.frame_id} from {frame.source}: line-scan meta (line_ids, "
                         "line_valid) missing; the conveyor needs a linescan source")
    return np.asarray(meta["line_ids"], np.int64), np.asarray(meta["line_valid"], bool)


class HeightCodedExtractor:
    """Reads rows whose pixels *are* heights (``firmware_bridge.plc.sim.GeometricConveyor``: 0.01 mm
    units, low byte R, high byte G, B = 255 where there is data). Not an optical decoder: it lets
    the tracker, scheduler and PLC side be tested exactly. Encoder count = line id x
    ``counts_per_line`` (the camera's LineStart trigger from the encoder, EncoderDivider)."""

    def __init__(self, counts_per_line: int = 1, unit_mm: float = 0.01):
        self.counts_per_line, self.unit_mm = counts_per_line, unit_mm

    def __call__(self, frame) -> list[LineProfile]:
        rows = frame.data
        if rows.ndim != 3 or rows.shape[2] != 3:
            raise ValueError(f"frame {frame.frame_id}: expected (lines, columns, 3) RGB8, got {rows.shape}")
        ids, valid = _line_meta(frame)
        code = rows[..., 0].astype(np.uint16) | (rows[..., 1].astype(np.uint16) << 8)
        heights = np.where(rows[..., 2] == 255, code * np.float32(self.unit_mm), np.nan).astype(np.float32)
        t = frame.host_timestamp_ns
        return [LineProfile(int(i) * self.counts_per_line % _ENCODER_MODULUS, int(i), t, heights[k], bool(valid[k]))
                for k, i in enumerate(ids)]


def _nanmedian_last(a: np.ndarray) -> np.ndarray:
    """NaN-median over the last axis, NaN (no warning) where all entries are NaN."""
    ok = np.isfinite(a).any(axis=-1)
    out = np.full(a.shape[:-1], np.nan, np.float32)
    if ok.any():
        out[ok] = np.nanmedian(a[ok], axis=-1)
    return out


class LutTriangulationExtractor:
    """Diffraction line imaging: a LUT decoder and a triangulating rig turn each line into heights.

    Written against ``decoder.decode(scans (N, R, h, Q, 3) uint8).xv -> (N, Q)`` (virtual
    column of the light plane per sensor row y, NaN where undecodable; ``sdk.lines.LUTLineDecoder``)
    and ``rig.triangulate(xv, yv) -> (X, Y, Z)`` in the rig's unit; ``rig_unit_mm`` converts it
    (1000 for ``firmware_bridge.linescan.diffraction.LightPlaneRig``, which works in metres).
    ``to_scans(frame)`` cuts a frame into scans (default: the ROIs side by side in
    ``frame.meta["rois"]`` -> (N, R, 1, Q, 3), as ``linescan+sim`` with a
    ``DiffractionLineGenerator`` delivers them: each ROI's rows already averaged into one);
    ``yv`` (Q,) is the virtual row of each sensor row (``camera.G(arange(Q))``); height =
    ``belt_z_mm - Z`` (the rig looks down at the belt ``belt_z_mm`` away).

    ``bin_columns``: adjacent sensor rows merged into one profile column by their NaN-median (a
    profile has ``Q // bin_columns`` columns; the column pitch grows by the same factor), which
    also removes single-row decoding outliers; ``median_columns`` (odd) then takes a running
    NaN-median over that many profile columns, so that a lone noisy column on the empty belt does
    not open a phantom object (the tracker opens one on any column above its threshold).
    ``undecoded_columns`` counts the sensor rows the decoder could not give an xv.
    """

    def __init__(self, decoder, rig, yv: np.ndarray, *, counts_per_line: int = 1, belt_z_mm: float = 0.0,
                 rig_unit_mm: float = 1.0, bin_columns: int = 1, median_columns: int = 1,
                 to_scans: Callable[[Any], np.ndarray] | None = None):
        if bin_columns < 1 or len(yv) % bin_columns:
            raise ValueError(f"bin_columns={bin_columns} must be >= 1 and divide the {len(yv)} sensor rows (yv)")
        if median_columns < 1 or median_columns % 2 == 0:
            raise ValueError(f"median_columns must be an odd number >= 1, got {median_columns}")
        if not rig_unit_mm > 0:
            raise ValueError(f"rig_unit_mm must be positive, got {rig_unit_mm}")
        self.decoder, self.rig, self.yv = decoder, rig, np.asarray(yv, np.float32)
        self.counts_per_line, self.belt_z_mm = counts_per_line, belt_z_mm
        self.rig_unit_mm, self.bin_columns, self.median_columns = float(rig_unit_mm), int(bin_columns), median_columns
        self.to_scans = to_scans or self._roi_scans
        self.undecoded_columns = 0
        """Sensor rows (summed over lines) for which the decoder gave no xv (NaN)."""

    @property
    def columns(self) -> int:
        """Profile columns per line."""
        return len(self.yv) // self.bin_columns

    @staticmethod
    def _roi_scans(frame) -> np.ndarray:
        if "rois" not in frame.meta:
            raise ValueError(f"frame {frame.frame_id} from {frame.source}: meta['rois'] missing; "
                             "pass to_scans= for this layout")
        rois = [frame.data[:, r["column"]:r["column"] + r["width"]] for r in frame.meta["rois"]]
        widths = {r.shape[1] for r in rois}
        if len(widths) != 1:
            raise ValueError(f"frame {frame.frame_id}: ROIs of unequal widths {sorted(widths)}; "
                             "pass to_scans= for this layout")
        return np.stack(rois, axis=1)[:, :, None]  # (N, R, 1, Q, 3)

    def heights(self, scans: np.ndarray) -> np.ndarray:
        """Scans (N, R, h, Q, 3) -> heights above the belt (N, Q // bin_columns) float32 mm, NaN
        where no sensor row of a column decoded."""
        xv = np.asarray(self.decoder.decode(scans).xv, np.float32)
        if xv.shape != (len(scans), len(self.yv)):
            raise ValueError(f"decoder gave xv {xv.shape}, expected ({len(scans)}, {len(self.yv)}) "
                             "(lines, sensor rows = len(yv))")
        self.undecoded_columns += int(np.isnan(xv).sum())
        _, _, z = self.rig.triangulate(xv, np.broadcast_to(self.yv, xv.shape))
        h = (self.belt_z_mm - np.asarray(z, np.float64) * self.rig_unit_mm).astype(np.float32)
        if self.bin_columns > 1:
            h = _nanmedian_last(h.reshape(len(h), -1, self.bin_columns))
        if self.median_columns > 1:
            r = self.median_columns // 2
            padded = np.pad(h, ((0, 0), (r, r)), constant_values=np.nan)
            h = _nanmedian_last(np.lib.stride_tricks.sliding_window_view(padded, self.median_columns, axis=1))
        return h

    def __call__(self, frame) -> list[LineProfile]:
        ids, valid = _line_meta(frame)
        try:
            heights = self.heights(self.to_scans(frame))
        except ValueError as e:
            raise ValueError(f"frame {frame.frame_id}: {e}") from e
        t = frame.host_timestamp_ns
        return [LineProfile(int(i) * self.counts_per_line % _ENCODER_MODULUS, int(i), t, heights[k], bool(valid[k]))
                for k, i in enumerate(ids)]


class EngineClassifier:
    """An ``sdk.load``-ed bundle on height maps: (N, H, W) float32 -> p(defect) (N,).

    The bundle takes (N, 1, H, W) float32 and returns logits (a dynamic S2DNAS bundle: its
    ``DynamicResult.logits``); ``defect_class`` is the defect's index; the softmax probability
    of it is returned."""

    def __init__(self, engine, defect_class: int = 1):
        self.engine, self.defect_class = engine, defect_class
        shape = engine.input_spec.shape
        if len(shape) != 4 or shape[1] != 1:
            raise ValueError(f"{engine!r}: a height-map classifier takes (N, 1, H, W), "
                             f"the bundle takes {tuple(shape)}")
        self.map_shape = (int(shape[2]), int(shape[3]))

    def __call__(self, maps: np.ndarray) -> np.ndarray:
        if maps.shape[1:] != self.map_shape:
            raise ValueError(f"height maps are {maps.shape[1:]}, the classifier takes {self.map_shape}")
        out = self.engine.infer(np.ascontiguousarray(maps[:, None], np.float32))
        # a dynamic (S2DNAS) bundle answers DynamicResult(logits, exit_stage): exits are real
        logits = np.asarray(getattr(out, "logits", out), np.float64)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e[:, self.defect_class] / e.sum(axis=1)).astype(np.float32)


@dataclass
class ScannerConfig:
    gate_distance_counts: int
    """Encoder counts from the scan line to the reject gate."""
    mm_per_count: float
    column_pitch_mm: float
    margin_counts: int = 20
    """The command must reach the PLC this many counts before the gate count."""
    threshold: float = 0.5
    """Reject when p(defect) >= threshold."""
    unmeasured_policy: str = "reject"
    """"reject" or "accept": what happens to an object that could not be measured."""
    counts_per_line: int = 1
    jump_tolerance_counts: int = 0
    min_height_mm: float = 2.0
    gap_lines: int = 3
    max_lines: int = 4096
    map_shape: tuple[int, int] = (32, 32)
    queue_depth: int = 64
    batch: int = 16
    read_timeout_s: float = 0.5
    max_source_restarts: int = 3
    edge_lead_counts: int = 0
    """Counts by which the tracker sees an object's trailing edge before the edge itself passes
    the scan line: a light plane tilted along the travel meets the back face at the height
    threshold (``min_height_mm``) that much before it meets the edge at belt level. The reject
    is scheduled at last_count + edge_lead_counts + gate_distance_counts."""

    def __post_init__(self) -> None:
        if self.unmeasured_policy not in ("reject", "accept"):
            raise ValueError(f"unmeasured_policy must be 'reject' or 'accept', got {self.unmeasured_policy!r}")


def _percentiles(values: Iterable[float]) -> dict:
    a = np.fromiter(values, np.float64)
    if not len(a):
        return {"n": 0}
    return {"n": int(len(a)), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max()), "mean": float(a.mean())}


@dataclass
class ScannerStats:
    elapsed_s: float = 0.0
    lines: int = 0
    frames: int = 0
    lines_per_s: float = 0.0
    lines_dropped: int = 0
    """Lines lost on the way (the source's count; also the invalid + missing lines the tracker saw)."""
    invalid_lines: int = 0
    missing_lines: int = 0
    lines_unaccounted: int = 0
    """Line ids between the first and the last line seen that are neither processed nor counted
    missing: 0 unless something is lost silently."""
    objects: int = 0
    objects_per_min: float = 0.0
    measured: int = 0
    unmeasured: int = 0
    decisions: dict = field(default_factory=dict)
    """Count per status (scheduled, accepted, late, unsent, stale)."""
    queue_overflows: int = 0
    source_failures: int = 0
    source_restarts: int = 0
    encoder_backwards: int = 0
    encoder_jumps: int = 0
    plc: dict = field(default_factory=dict)
    latency_ms: dict = field(default_factory=dict)
    """Per stage: n, p50, p99, max, mean (extract/track per frame, classify per batch, schedule
    per object, decision = closing line -> decision)."""
    slack_counts: dict = field(default_factory=dict)
    """Encoder counts to spare at decision time (p50/p99/max over decisions; negative = late)."""

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        d = self.decisions
        lat = self.latency_ms.get("decision", {})
        return "\n".join([
            f"lines {self.lines} ({self.lines_per_s:.0f}/s), dropped {self.lines_dropped} "
            f"(invalid {self.invalid_lines}, missing {self.missing_lines}, unaccounted {self.lines_unaccounted}), "
            f"frames {self.frames}",
            f"objects {self.objects} ({self.objects_per_min:.0f}/min): measured {self.measured}, "
            f"unmeasured {self.unmeasured}",
            "decisions " + ", ".join(f"{k} {d.get(k, 0)}" for k in STATUSES)
            + f"; queue overflows {self.queue_overflows}",
            f"decision latency ms p50 {lat.get('p50', float('nan')):.2f} p99 {lat.get('p99', float('nan')):.2f} "
            f"max {lat.get('max', float('nan')):.2f}",
            f"encoder backwards {self.encoder_backwards}, jumps {self.encoder_jumps}; source failures "
            f"{self.source_failures} (restarts {self.source_restarts}); PLC outages {self.plc.get('outages', 0)}"])


def _encode_map(m: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(m, np.float32).tobytes()).decode()


def _decode_map(text: str, shape) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), np.float32).reshape(shape)


class _RunLog:
    """JSON lines, one record per line, written as they happen (nothing held in memory)."""

    def __init__(self, path: str | Path | None):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "w") if path is not None else None
        self._lock = threading.Lock()

    def write(self, record: dict) -> None:
        if self._f is not None:
            with self._lock:
                self._f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _policy(measured: bool, p_defect: float | None, threshold: float, unmeasured_policy: str,
            unmeasured_reason: str | None) -> tuple[bool, str]:
    if not measured:
        return unmeasured_policy == "reject", f"unmeasured: {unmeasured_reason}"
    reject = p_defect >= threshold
    return reject, f"{'defect' if reject else 'ok'} p={p_defect:.4f}"


class ConveyorScanner:
    """Wires ``source`` -> ``extractor`` -> ObjectTracker -> ``classifier`` -> RejectScheduler -> ``plc``.

    ``classifier(maps (N, H, W) float32) -> p(defect) (N,)`` (e.g. EngineClassifier);
    ``plc``: an object with ``send_reject(count) -> bool``, ``stats`` (``outages``), and
    optionally ``status.encoder_position``, ``set_status(bits)``, ``arm()`` (PlcClient).
    """

    def __init__(self, source, extractor: ProfileExtractor, classifier: Callable[[np.ndarray], np.ndarray],
                 plc, config: ScannerConfig, *, log_path: str | Path | None = None):
        self.source, self.extractor, self.classifier, self.plc, self.config = source, extractor, classifier, plc, config
        c = config
        self.tracker = ObjectTracker(mm_per_count=c.mm_per_count, column_pitch_mm=c.column_pitch_mm,
                                     min_height_mm=c.min_height_mm, gap_lines=c.gap_lines,
                                     max_lines=c.max_lines, map_shape=c.map_shape)
        self.encoder = EncoderTracker(jump_tolerance=c.jump_tolerance_counts)
        self.scheduler = RejectScheduler(c.gate_distance_counts + c.edge_lead_counts, c.margin_counts,
                                         plc.send_reject)
        self._log = _RunLog(log_path)
        self._queue: collections.deque[TrackedObject] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._acquisition_done = False
        self._position = 0  # freshest unwrapped encoder position from the line stream
        self._first_line_id: int | None = None
        self._last_line_id: int | None = None
        self._latency = {s: collections.deque(maxlen=_LATENCY_WINDOW) for s in STAGES}
        self._slack: collections.deque[int] = collections.deque(maxlen=_LATENCY_WINDOW)
        self.decisions: collections.deque[Decision] = collections.deque(maxlen=4096)
        """The most recent decisions (the run log has all of them)."""
        self._n = collections.Counter()
        self._plc_outages = 0
        self._t0 = 0.0

    # -- control --------------------------------------------------------------------------------
    def stop(self) -> None:
        """End run() (any thread): acquisition stops, queued objects are still decided."""
        self._stop.set()

    def run(self, duration_s: float | None = None, max_objects: int | None = None,
            on_progress: Callable[["ScannerStats"], None] | None = None) -> ScannerStats:
        """Acquire until ``duration_s`` passed, ``max_objects`` objects closed, or stop(); every
        object closed is decided before it returns. ``on_progress(stats)`` is called about once a second."""
        self._log.write({"type": "start", "config": asdict(self.config), "time": time.time()})
        if hasattr(self.plc, "arm"):
            self.plc.arm()
        decider = threading.Thread(target=self._decide_loop, name="prism-conveyor-decide", daemon=True)
        self._t0 = time.monotonic()
        decider.start()
        try:
            self._acquire(duration_s, max_objects, on_progress)
        finally:
            with self._cond:
                self._acquisition_done = True
                self._cond.notify_all()
            decider.join()
            stats = self.stats()
            self._log.write({"type": "stats", **stats.to_dict()})
            self._log.close()
        return stats

    # -- acquisition thread ---------------------------------------------------------------------
    def _acquire(self, duration_s, max_objects, on_progress) -> None:
        deadline = None if duration_s is None else self._t0 + duration_s
        next_progress = time.monotonic() + 1.0
        self.source.start()
        while not self._stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if max_objects is not None and self._n["objects"] >= max_objects:
                break
            if on_progress is not None and now >= next_progress:
                on_progress(self.stats())
                next_progress = now + 1.0
            self._watch_plc()
            try:
                frame = self.source.read(self.config.read_timeout_s)
            except TimeoutError:
                self._n["timeouts"] += 1
                continue
            except Exception as e:  # the source failed: recover it, the open object is unmeasured
                if self._stop.is_set():
                    break
                self._source_failed(e)
                continue
            self._process(frame)

    def _process(self, frame) -> None:
        t0 = time.perf_counter_ns()
        profiles = self.extractor(frame)
        t1 = time.perf_counter_ns()
        self._n["frames"] += 1
        for p in profiles:
            self._feed(p)
        t2 = time.perf_counter_ns()
        self._latency["extract"].append((t1 - t0) / 1e6)
        self._latency["track"].append((t2 - t1) / 1e6)

    def process_profiles(self, profiles: Iterable[LineProfile]) -> list[TrackedObject]:
        """Feed profiles directly (no source), e.g. a recorded profile stream; returns the objects
        they closed (also queued for decision)."""
        return [obj for p in profiles for obj in self._feed(p)]

    def _feed(self, p: LineProfile) -> list[TrackedObject]:
        expected = None
        if self._last_line_id is not None:
            expected = (p.line_id - self._last_line_id) * self.config.counts_per_line
        else:
            self._first_line_id = p.line_id
        self._last_line_id = p.line_id
        position, event = self.encoder.update(p.encoder_count, expected)
        if event is not None:
            # the open object's geometry and the gate counts of undecided objects are unreliable
            self.tracker.invalidate(f"encoder {event.kind} by {event.delta} counts")
            self.scheduler.invalidate_before(self.tracker.next_object_id)
            self._log.write({"type": "event", "kind": f"encoder_{event.kind}", "line_id": p.line_id,
                             "invalidate_before": self.tracker.next_object_id, **event.to_dict()})
            log.warning("encoder %s by %d counts at line %d", event.kind, event.delta, p.line_id)
        self._position = position
        p.encoder_count = position
        self._n["lines"] += 1
        closed = self.tracker.feed(p)
        for obj in closed:
            self._enqueue(obj)
        return closed

    def _enqueue(self, obj: TrackedObject) -> None:
        self._n["objects"] += 1
        self._n["measured" if obj.measured else "unmeasured"] += 1
        self._log.write({"type": "object", **obj.summary(), "map_shape": list(obj.height_map.shape),
                         "height_map": _encode_map(obj.height_map)})
        with self._cond:
            if len(self._queue) >= self.config.queue_depth:
                oldest = self._queue.popleft()  # decided now by the policy, never silently lost
                self._n["queue_overflows"] += 1
                self._log.write({"type": "event", "kind": "queue_overflow", "object_id": oldest.object_id})
                self._finish(oldest, None, overflow=True)
            self._queue.append(obj)
            self._cond.notify_all()

    def _source_failed(self, error: Exception) -> None:
        self._n["source_failures"] += 1
        self.tracker.invalidate(f"source failure: {error}")
        self._log.write({"type": "event", "kind": "source_failure", "error": repr(error),
                         "position": self._position})
        log.error("source %s failed: %r", getattr(self.source, "uri", self.source), error)
        if self._n["source_restarts"] >= self.config.max_source_restarts:
            raise RuntimeError(f"source failed {self._n['source_failures']} times, "
                               f"{self._n['source_restarts']} restarts used up: {error!r}") from error
        self._n["source_restarts"] += 1
        try:
            self.source.stop()
        except Exception as e:
            log.warning("stopping the failed source: %r", e)
        self.source.start()

    def _watch_plc(self) -> None:
        outages = getattr(self.plc.stats, "outages", 0)
        if outages != self._plc_outages:
            self._log.write({"type": "event", "kind": "plc_outage", "outages": outages,
                             "position": self._position})
            self._plc_outages = outages
        if hasattr(self.plc, "set_status"):
            degraded = self._n["source_failures"] or self.scheduler.counts["late"] or \
                self.encoder.backwards or self.encoder.jumps
            self.plc.set_status(STATUS_RUNNING | (STATUS_DEGRADED if degraded else 0))

    # -- decision thread ------------------------------------------------------------------------
    def _now_count(self) -> int:
        plc_position = getattr(getattr(self.plc, "status", None), "encoder_position", None)
        return max(self._position, plc_position or 0)

    def _decide_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._acquisition_done:
                    self._cond.wait(0.1)
                if not self._queue and self._acquisition_done:
                    return
                batch = [self._queue.popleft() for _ in range(min(self.config.batch, len(self._queue)))]
            measured = [o for o in batch if o.measured]
            p = {}
            if measured:
                t0 = time.perf_counter_ns()
                probs = self.classifier(np.stack([o.height_map for o in measured]))
                self._latency["classify"].append((time.perf_counter_ns() - t0) / 1e6)
                p = {o.object_id: float(v) for o, v in zip(measured, probs)}
            for obj in batch:
                self._finish(obj, p.get(obj.object_id))

    def _finish(self, obj: TrackedObject, p_defect: float | None, overflow: bool = False) -> None:
        c = self.config
        if overflow:
            reject, reason = _policy(False, None, c.threshold, c.unmeasured_policy, "classifier queue overflow")
        else:
            reject, reason = _policy(obj.measured, p_defect, c.threshold, c.unmeasured_policy,
                                     obj.unmeasured_reason)
        t0 = time.perf_counter_ns()
        latency_ns = time.monotonic_ns() - obj.closed_ns
        d = self.scheduler.decide(obj.object_id, obj.last_count, reject, reason, self._now_count(), latency_ns)
        self._latency["schedule"].append((time.perf_counter_ns() - t0) / 1e6)
        self._latency["decision"].append(latency_ns / 1e6)
        self._slack.append(d.slack_counts)
        self.decisions.append(d)
        self._log.write({"type": "decision", **d.to_dict(), "p_defect": p_defect, "overflow": overflow})
        if d.status == "late":
            log.warning("object %d: decision %d counts late, not fired", obj.object_id, -d.slack_counts)

    # -- stats ----------------------------------------------------------------------------------
    def stats(self) -> ScannerStats:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        src = getattr(self.source, "stats", None)
        plc = self.plc.stats
        n = self._n
        return ScannerStats(
            elapsed_s=elapsed, lines=n["lines"], frames=n["frames"], lines_per_s=n["lines"] / elapsed,
            lines_dropped=max(getattr(src, "lines_dropped", 0), self.tracker.invalid_lines + self.tracker.missing_lines),
            invalid_lines=self.tracker.invalid_lines, missing_lines=self.tracker.missing_lines,
            lines_unaccounted=0 if self._last_line_id is None else
            self._last_line_id - self._first_line_id + 1 - n["lines"] - self.tracker.missing_lines,
            objects=n["objects"], objects_per_min=n["objects"] / elapsed * 60, measured=n["measured"],
            unmeasured=n["unmeasured"], decisions=dict(self.scheduler.counts),
            queue_overflows=n["queue_overflows"], source_failures=n["source_failures"],
            source_restarts=n["source_restarts"], encoder_backwards=self.encoder.backwards,
            encoder_jumps=self.encoder.jumps, plc=plc.to_dict() if hasattr(plc, "to_dict") else dict(plc),
            latency_ms={s: _percentiles(v) for s, v in self._latency.items()},
            slack_counts=_percentiles(self._slack))


@dataclass
class ReplayResult:
    decisions: list[dict]
    """The re-derived decisions, in log order."""
    mismatches: list[dict]
    """Decisions where the replay disagrees with the log ({"object_id", "logged", "replayed"})."""


def replay(log_path: str | Path, classifier: Callable[[np.ndarray], np.ndarray] | None = None) -> ReplayResult:
    """Re-derive every decision of a run log. Timing facts (the encoder position when each
    decision was ready, whether the PLC accepted the command) come from the log; the
    classification is recomputed by ``classifier`` on the logged height maps when given, else
    taken from the logged p(defect)."""
    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    if not records or records[0].get("type") != "start":
        raise ValueError(f"{log_path}: not a conveyor run log (no start record)")
    config = records[0]["config"]
    objects: dict[int, dict] = {}
    pending_send: list[bool] = []
    scheduler = RejectScheduler(config["gate_distance_counts"] + config.get("edge_lead_counts", 0),
                                config["margin_counts"],
                                lambda gate: pending_send.pop())
    decisions, mismatches = [], []
    for r in records[1:]:
        if r["type"] == "object":
            objects[r["object_id"]] = r
        elif r["type"] == "event" and "invalidate_before" in r:
            scheduler.invalidate_before(r["invalidate_before"])
        elif r["type"] == "decision":
            obj = objects.pop(r["object_id"])
            p = r["p_defect"]
            if classifier is not None and obj["measured"] and not r["overflow"]:
                p = float(classifier(_decode_map(obj["height_map"], obj["map_shape"])[None])[0])
            reason = "classifier queue overflow" if r["overflow"] else obj["unmeasured_reason"]
            reject, why = _policy(obj["measured"] and not r["overflow"], p, config["threshold"],
                                  config["unmeasured_policy"], reason)
            pending_send[:] = [r["status"] != "unsent"]
            d = scheduler.decide(r["object_id"], obj["last_count"], reject, why, r["decided_at_count"],
                                 r["latency_ns"]).to_dict()
            decisions.append(d)
            keys = ("reject", "status", "gate_count")
            if any(d[k] != r[k] for k in keys):
                mismatches.append({"object_id": r["object_id"], "logged": {k: r[k] for k in keys},
                                   "replayed": {k: d[k] for k in keys}})
    return ReplayResult(decisions, mismatches)
