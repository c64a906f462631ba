"""``python -m sdk.tools.robot``: a robot program embedding two engines, fused on timestamps.

    python -m sdk.tools.robot --seconds 10 --out out/robot [--fault radar|camera|both]

- **camera** ``genicam://`` (the Viky virtual camera the genicam wheel ships) → a
  :class:`~sdk.runtime.pipeline.Pipeline` on engine A (a digit classifier: ResNet-20 from the
  model zoo, cached; its top-1 class and softmax score stand in for a detector's label), whose
  ``on_result``/``on_drop``/``on_error`` callbacks feed the fusion;
- **radar** a :class:`~firmware_bridge.radar.simulator.SimulatedRadar` (one target sweeping
  2–10 m) serving SDK 3.x packets over UDP → ``radar+udp://`` source → the packet's range profile
  (FMCW range FFT, zero Doppler, dB) → engine B, a small MLP trained here on simulated range
  profiles to estimate the target's range in metres, called with ``await engine.infer_async()``
  from asyncio; the packet's CFAR points give a second range for comparison;
- **fusion** pairs each camera result with the radar result nearest in time within
  ``--window-ms``; a pair is decided once the radar stream has reported past the window, or
  after ``--max-wait-ms`` (a stalled radar). Camera results with no radar in the window, radar
  results paired with nothing and results arriving after their decision are counted.

Faults (``--fault``): ``radar`` makes the simulator lose 1 s of packets mid-run (the source
counts the missing frame numbers); ``camera`` kills the camera's acquisition process mid-run
(the source reopens the device, ``reconnect``). Fused outputs are marked: ``radar_missing`` (no
radar result in the window), ``radar_recovered`` (the radar result is the first after lost
frames), ``camera_recovered`` (the first camera results after a reconnect), ``camera_gap``
(camera frame ids skipped).

Stops after ``--seconds`` (frames in flight are finished) or on SIGINT (aborted, counted as
cancelled); then sources, engines and threads are closed in order. Writes ``summary.json``,
``fused.jsonl`` (one line per fused output) and ``timeline.png`` under ``--out``.
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import concurrent.futures
import contextlib
import glob
import hashlib
import json
import math
import os
import signal
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import sdk

RANGE_MIN_M, RANGE_MAX_M = 1.0, 11.0   # what the range model is trained on (max range 12.5 m)
SWEEP_PERIOD_S = 8.0                   # the simulated target's range sweep (2–10 m) period
DATAGRAM_BYTES = 1024
RECOVERY_MARKED = 3                    # results marked after a sensor recovered (lost frames, reconnect)


# -- engine B: a range estimator trained on simulated radar range profiles ----------------------
def radar_features(range_profile_db: np.ndarray) -> np.ndarray:
    """``(range_bins,)`` dB range profile → ``(1, range_bins) float32`` model input: the profile
    standardised (zero mean, unit std), so the model sees its shape, not the SDK's dB offset."""
    p = np.asarray(range_profile_db, dtype=np.float32)
    if p.ndim != 1 or p.size < 8:
        raise ValueError(f"range profile: expected (range_bins,) with at least 8 bins, got shape {p.shape}")
    return ((p - p.mean()) / (p.std() + 1e-6))[None, :].astype(np.float32)


def simulate_profiles(samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``samples`` radar packets of one target at a random range (RANGE_MIN_M..RANGE_MAX_M) and
    azimuth (±40°), decoded like the live stream: (features (N, bins) float32, ranges (N,) m)."""
    from tqdm import tqdm

    from firmware_bridge.radar import PacketStream
    from firmware_bridge.radar.simulator import SimulatedRadar, Target

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in tqdm(range(samples), desc="simulating radar profiles", unit="frame", leave=False):
        r = float(rng.uniform(RANGE_MIN_M, RANGE_MAX_M))
        target = Target(range_m=r, azimuth_deg=float(rng.uniform(-40, 40)),
                        amplitude=float(rng.uniform(50, 150)))
        (frame,) = PacketStream().feed(SimulatedRadar([target], seed=seed * 100_003 + i).packet(i))
        xs.append(radar_features(frame.range_profile)[0])
        ys.append(r)
    return np.stack(xs), np.asarray(ys, np.float32)


def train_radar_bundle(out: str | os.PathLike, samples: int = 1500, epochs: int = 400,
                       seed: int = 0) -> Path:
    """Train the range MLP on ``samples`` simulated profiles (80 % train, 20 % held out), deploy
    it to ``out`` (a ``cpu`` bundle) and return the path; the held-out RMSE (m) is in its metadata."""
    import torch

    x, y = simulate_profiles(samples, seed)
    split = int(0.8 * samples)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (N, 128) batches: more threads only add contention
    try:
        model, rmse = _fit_range_model(torch, x, y, split, epochs, seed)
    finally:
        torch.set_num_threads(threads)
    bundle = sdk.deploy(model, target="cpu", example_input=np.zeros((1, x.shape[1]), np.float32), out=out,
                        name="radar-range", metadata={"task": "target range (m) from a radar range profile",
                                                      "samples": samples, "epochs": epochs, "seed": seed,
                                                      "heldout_rmse_m": rmse})
    return Path(bundle.path)


def _fit_range_model(torch, x: np.ndarray, y: np.ndarray, split: int, epochs: int, seed: int):
    """A 3-layer MLP fitted full-batch (Adam, MSE in m²) on the first ``split`` samples;
    returns (model in eval mode, RMSE in m on the rest)."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    bins = x.shape[1]
    model = torch.nn.Sequential(torch.nn.Linear(bins, 96), torch.nn.ReLU(), torch.nn.Linear(96, 96),
                                torch.nn.ReLU(), torch.nn.Linear(96, 1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x[:split]), torch.from_numpy(y[:split, None])
    for _ in tqdm(range(epochs), desc="training the radar range model", unit="epoch", leave=False):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(xt), yt)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x[split:]))[:, 0].numpy()
    return model, float(np.sqrt(np.mean((pred - y[split:]) ** 2)))


def camera_bundle(cache: Path) -> Path:
    """ResNet-20 on MNIST-5k from the zoo (trained once, cached) deployed with the u8 Mono8
    preprocessing recipe, cached under ``cache``."""
    from sdk.models.train import default_config, get_or_train

    from .cli import _recipe_from_meta

    config = default_config("resnet20")
    out = cache / f"camera-resnet20-{config.key()}.prism"
    if not (out / "manifest.json").exists():
        model, meta = get_or_train(config)
        sdk.deploy(model, target="cpu", out=out, preprocess=_recipe_from_meta(meta), name="camera-resnet20")
    return out


def radar_bundle(cache: Path, samples: int, epochs: int, seed: int) -> Path:
    """The range model for (samples, epochs, seed), trained once and cached under ``cache``."""
    key = hashlib.sha256(f"{samples}-{epochs}-{seed}-{RANGE_MIN_M}-{RANGE_MAX_M}".encode()).hexdigest()[:12]
    out = cache / f"radar-range-{key}.prism"
    if not (out / "manifest.json").exists():
        train_radar_bundle(out, samples, epochs, seed)
    return out


# -- sensors ------------------------------------------------------------------------------------
def sweep_range_m(t_s: float) -> float:
    """Ground-truth range of the simulated target at scene time ``t_s`` (2–10 m sweep)."""
    return 6.0 - 4.0 * math.cos(2 * math.pi * t_s / SWEEP_PERIOD_S)


class RadarScene:
    """Serves the simulated radar over UDP from a thread: frame ``i`` (scene time ``i * period``)
    one packet every ``period_s``; frames in ``lose`` (a range of frame numbers) are not sent."""

    def __init__(self, address: tuple[str, int], period_s: float, lose: range = range(0), seed: int = 0):
        from firmware_bridge.radar.simulator import SimulatedRadar, Target

        self.address, self.period_s, self.lose, self.seed = address, period_s, lose, seed
        self._radar, self._target = SimulatedRadar, Target
        self._stop = threading.Event()
        self.sent = self.lost = 0
        self._thread = threading.Thread(target=self._serve, name="prism-robot-radar-sim", daemon=True)

    def truth_m(self, frame_number: int) -> float:
        return sweep_range_m(frame_number * self.period_s)

    def packet(self, i: int) -> bytes:
        target = self._target(range_m=self.truth_m(i), azimuth_deg=15.0 * math.sin(i * self.period_s))
        return self._radar([target], seed=self.seed * 100_003 + i).packet(i)

    def _serve(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            t0, i = time.monotonic(), 0
            while not self._stop.is_set():
                if i in self.lose:
                    self.lost += 1
                else:
                    p = self.packet(i)
                    for k in range(0, len(p), DATAGRAM_BYTES):
                        sock.sendto(p[k:k + DATAGRAM_BYTES], self.address)
                    self.sent += 1
                i += 1
                self._stop.wait(max(0.0, t0 + i * self.period_s - time.monotonic()))

    def start(self) -> "RadarScene":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def acquisition_children() -> list[int]:
    """Our child processes started by multiprocessing 'spawn' (the camera's acquisition process)."""
    pids = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(stat.replace("stat", "cmdline"), "rb") as f:
                spawned = b"spawn_main" in f.read()
        except OSError:
            continue
        if parent == os.getpid() and spawned:
            pids.append(int(stat.split("/")[2]))
    return pids


# -- fusion -------------------------------------------------------------------------------------
@dataclass
class CameraResult:
    t_ns: int
    """Host time (monotonic ns) the frame reached the host."""
    frame_id: int
    label: int
    score: float
    """Top-1 softmax probability."""
    marks: list[str] = field(default_factory=list)


@dataclass
class RadarResult:
    t_ns: int
    """Host time (monotonic ns) the packet was read."""
    frame_number: int
    range_m: float
    """Engine B's estimate."""
    cfar_range_m: float
    """Range of the strongest CFAR point of the packet (NaN: no point)."""
    truth_m: float
    marks: list[str] = field(default_factory=list)


class TimeFuser:
    """Nearest-in-time pairing of camera results with radar results within ``window_ms``.

    A camera result is decided when a radar result later than its time + window arrived (none
    nearer can come) or ``max_wait_ms`` after its time + window (radar stalled). Counts:
    ``fused`` (camera results decided), ``matched``, ``radar_missing`` (no radar result in the
    window), ``radar_unused`` (radar results no camera result chose), ``radar_late`` (radar
    results arriving after every camera result they could pair with was decided), ``camera_late``
    (camera results decided on arrival because their wait had already run out).
    """

    def __init__(self, window_ms: float, max_wait_ms: float):
        self.window_ns, self.max_wait_ns = int(window_ms * 1e6), int(max_wait_ms * 1e6)
        self._lock = threading.Lock()
        self._radar: list[tuple[int, int, RadarResult]] = []   # (t_ns, seq, result) sorted by time
        self._used: set[int] = set()
        self._seq = 0
        self._pending: collections.deque[CameraResult] = collections.deque()
        self._decided_until = -(1 << 62)
        self._watermark = -(1 << 62)
        self.out: list[dict] = []
        self.counts = dict.fromkeys(("fused", "matched", "radar_missing", "radar_unused", "radar_late",
                                     "camera_late", "radar_results", "camera_results"), 0)

    def add_radar(self, r: RadarResult) -> None:
        with self._lock:
            self.counts["radar_results"] += 1
            if r.t_ns < self._decided_until - self.window_ns:
                self.counts["radar_late"] += 1
                return
            bisect.insort(self._radar, (r.t_ns, self._seq, r))
            self._seq += 1
            self._watermark = max(self._watermark, r.t_ns)

    def add_camera(self, c: CameraResult, now_ns: int) -> None:
        with self._lock:
            self.counts["camera_results"] += 1
            if now_ns > c.t_ns + self.window_ns + self.max_wait_ns:
                self.counts["camera_late"] += 1
                c.marks.append("late")
            self._pending.append(c)

    def poll(self, now_ns: int, flush: bool = False) -> int:
        """Decide every camera result that can be decided now (all of them if ``flush``); prune
        radar results nothing can pair with any more. Returns how many were decided."""
        decided = 0
        with self._lock:
            while self._pending:
                c = self._pending[0]
                horizon = c.t_ns + self.window_ns
                if not (flush or self._watermark > horizon or now_ns > horizon + self.max_wait_ns
                        or "late" in c.marks):
                    break
                self._pending.popleft()
                self._decide(c)
                decided += 1
            keep_after = (self._pending[0].t_ns if self._pending else self._decided_until) - self.window_ns
            if flush:
                keep_after = 1 << 62
            while self._radar and self._radar[0][0] < keep_after:
                _, seq, _ = self._radar.pop(0)
                if seq not in self._used:
                    self.counts["radar_unused"] += 1
                self._used.discard(seq)
        return decided

    def _decide(self, c: CameraResult) -> None:
        lo = bisect.bisect_left(self._radar, (c.t_ns - self.window_ns, -1))
        hi = bisect.bisect_right(self._radar, (c.t_ns + self.window_ns, 1 << 62))
        best = min(self._radar[lo:hi], key=lambda e: abs(e[0] - c.t_ns), default=None)
        self._decided_until = max(self._decided_until, c.t_ns)
        self.counts["fused"] += 1
        record: dict[str, Any] = {"t_ns": c.t_ns, "camera": asdict(c), "radar": None, "dt_ms": None,
                                  "marks": list(c.marks)}
        if best is None:
            self.counts["radar_missing"] += 1
            record["marks"].append("radar_missing")
        else:
            t, seq, r = best
            self._used.add(seq)
            self.counts["matched"] += 1
            record.update(radar=asdict(r), dt_ms=(t - c.t_ns) / 1e6)
            record["marks"] += [m for m in r.marks if m not in record["marks"]]
        self.out.append(record)


# -- the program --------------------------------------------------------------------------------
@dataclass
class Sensors:
    """What the sensor loops saw that the fusion marks and the summary reports."""

    events: list[dict] = field(default_factory=list)
    camera_drops: int = 0
    camera_errors: int = 0
    radar_frames: int = 0
    radar_lost_frames: int = 0
    radar_timeouts: int = 0


def _softmax_top1(logits: np.ndarray) -> tuple[int, float]:
    z = np.asarray(logits, np.float64).ravel()
    p = np.exp(z - z.max())
    p /= p.sum()
    k = int(p.argmax())
    return k, float(p[k])


def _cfar_range(points: np.ndarray, snr_db: np.ndarray | None) -> float:
    if points is None or len(points) == 0:
        return float("nan")
    k = int(np.argmax(snr_db)) if snr_db is not None and len(snr_db) == len(points) else 0
    return float(np.linalg.norm(points[k, :3]))


async def run_robot(args: argparse.Namespace) -> tuple[dict, list[dict]]:
    """Run both sensors, both engines and the fusion until ``args.seconds`` or SIGINT; returns
    (summary, fused outputs)."""
    import firmware_bridge as fb
    from firmware_bridge.camera.discovery import bundled_producers, find_producers

    loop = asyncio.get_running_loop()
    t_start = time.monotonic_ns()
    stop = asyncio.Event()
    interrupted = False

    def on_sigint() -> None:
        nonlocal interrupted
        interrupted = True
        stop.set()

    if args.cti:
        producers = find_producers(args.cti)
    else:  # producers on $GENICAM_GENTL64_PATH first, else the genicam wheel's Viky
        try:
            producers = find_producers()
        except fb.ProducerNotFound:
            producers = bundled_producers()
    if not producers:
        raise SystemExit("no GenTL producer found: install the genicam wheel (it ships the Viky "
                         "virtual camera) or pass --cti")
    camera_uri = (f"genicam://{args.camera}?cti={producers[0]}&width=320&height=240&pixel_format=Mono8"
                  f"&fps={args.camera_fps:g}&reconnect=5")
    # everything opened is closed by `closing`, last opened first: radar reader thread, camera
    # pipeline, simulator, camera, radar source, engine B, engine A (each waits for its calls)
    closing = contextlib.ExitStack()
    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        closing.callback(_remove_sigint_handler, loop)
    except (NotImplementedError, RuntimeError):  # not the main thread: --seconds only
        pass
    with closing:
        return await _run(args, loop, closing, camera_uri, t_start, stop, lambda: interrupted)


def _remove_sigint_handler(loop: asyncio.AbstractEventLoop) -> None:
    try:
        loop.remove_signal_handler(signal.SIGINT)
    except (NotImplementedError, RuntimeError):
        pass


async def _run(args, loop, closing: contextlib.ExitStack, camera_uri: str, t_start: int,
               stop: asyncio.Event, interrupted) -> tuple[dict, list[dict]]:
    import firmware_bridge as fb
    from firmware_bridge.errors import AcquisitionTimeout, SourceStopped
    from sdk.runtime.pipeline import Pipeline

    engine_a = closing.enter_context(sdk.load(args.camera_bundle, backend="onnxruntime"))
    engine_b = closing.enter_context(sdk.load(args.radar_bundle, backend="onnxruntime"))
    fuser = TimeFuser(args.window_ms, args.max_wait_ms)
    seen = Sensors()
    seen_lock = threading.Lock()
    period_s = 0.05
    # faults at 30 % (radar) and 60 % (camera) of the run, so their marks can be told apart
    radar_fault_s, camera_fault_s = 0.3 * args.seconds, 0.6 * args.seconds
    lose = (range(int(radar_fault_s / period_s), int((radar_fault_s + 1.0) / period_s))
            if args.fault in ("radar", "both") else range(0))

    radar = closing.enter_context(fb.open_source("radar+udp://127.0.0.1:0", timeout=0.2))
    camera = closing.enter_context(fb.open_source(camera_uri))  # slow (a process opens the device)
    scene = RadarScene(radar.info["address"], period_s, lose=lose, seed=args.seed).start()
    closing.callback(scene.stop)

    def event(kind: str, **detail: Any) -> None:
        with seen_lock:
            seen.events.append({"t_s": (time.monotonic_ns() - t_start) / 1e9, "event": kind, **detail})

    last_camera = {"frame_id": None, "reconnects": 0, "recovered_left": 0}

    def on_result(frame, logits) -> None:  # camera pipeline's sink thread
        label, score = _softmax_top1(logits)
        marks = []
        reconnects = camera.stats.reconnects
        if reconnects > last_camera["reconnects"]:
            event("camera_recovered", reconnects=reconnects, frame_id=frame.frame_id)
            last_camera["reconnects"] = reconnects
            last_camera["recovered_left"] = RECOVERY_MARKED
        if last_camera["recovered_left"]:
            marks.append("camera_recovered")
            last_camera["recovered_left"] -= 1
        previous = last_camera["frame_id"]
        if previous is not None and frame.frame_id > previous + 1 and not marks:
            marks.append("camera_gap")
        last_camera["frame_id"] = frame.frame_id
        fuser.add_camera(CameraResult(frame.host_timestamp_ns, int(frame.frame_id), label, score, marks),
                         time.monotonic_ns())

    def on_drop(stage, frames) -> None:
        with seen_lock:
            seen.camera_drops += len(frames)

    def on_error(stage, frames, error) -> None:
        with seen_lock:
            seen.camera_errors += len(frames)
        event("camera_error", stage=stage, frame_ids=[f.frame_id for f in frames], error=repr(error))

    pipeline = Pipeline(camera, engine_a, queue_depth=2, drop="newest", on_result=on_result,
                        on_drop=on_drop, on_error=on_error)
    closing.callback(pipeline.stop)
    camera_task = loop.run_in_executor(None, pipeline.run, None, args.seconds)
    reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="prism-robot-radar-read")
    closing.callback(reader.shutdown, wait=True)

    async def radar_loop() -> None:
        last_number, recovered_left = None, 0
        while not stop.is_set():
            try:
                frame = await loop.run_in_executor(reader, radar.read, 0.2)
            except AcquisitionTimeout:
                seen.radar_timeouts += 1
                continue
            except SourceStopped:
                return
            rf = frame.meta["radar"]
            marks = []
            if last_number is not None and rf.frame_number > last_number + 1:
                lost = rf.frame_number - last_number - 1
                seen.radar_lost_frames += lost
                recovered_left = RECOVERY_MARKED
                event("radar_recovered", lost_frames=lost, frame_number=rf.frame_number)
            if recovered_left:
                marks.append("radar_recovered")
                recovered_left -= 1
            last_number = rf.frame_number
            estimate = await engine_b.infer_async(radar_features(rf.range_profile))
            seen.radar_frames += 1
            fuser.add_radar(RadarResult(frame.host_timestamp_ns, rf.frame_number, float(estimate[0, 0]),
                                        _cfar_range(rf.points, rf.snr_db), scene.truth_m(rf.frame_number),
                                        marks))

    async def camera_fault() -> None:
        await asyncio.sleep(camera_fault_s)
        pids = acquisition_children()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        event("camera_fault_injected", killed=pids)

    async def report() -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            fuser.poll(time.monotonic_ns())
            c, a, b = fuser.counts, engine_a.call_stats(), engine_b.call_stats()
            print(f"[{(time.monotonic_ns() - t_start) / 1e9:5.1f} s] camera {c['camera_results']} "
                  f"(dropped {seen.camera_drops}) radar {c['radar_results']} (lost {seen.radar_lost_frames}) "
                  f"fused {c['fused']} matched {c['matched']} radar_missing {c['radar_missing']} | "
                  f"A p50 {a.latency_ms['p50']:.1f} ms  B p50 {b.latency_ms['p50']:.2f} ms", flush=True)

    radar_task = asyncio.ensure_future(radar_loop())
    report_task = asyncio.ensure_future(report())
    fault_task = asyncio.ensure_future(camera_fault()) if args.fault in ("camera", "both") else None
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({camera_task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        # shutdown, in order: camera pipeline (--seconds: frames in flight finish; SIGINT: abort)
        # → radar loop → live report → fusion flush; `closing` then closes the rest
        if interrupted():
            pipeline.stop()
        stop.set()
        camera_stats = await camera_task
    finally:
        stop.set()
        for task in (fault_task, stopped):
            if task is not None:
                task.cancel()
        await asyncio.gather(radar_task, report_task, return_exceptions=True)
    fuser.poll(time.monotonic_ns(), flush=True)
    summary = summarize(args, fuser, seen, camera_stats, radar.stats, scene, engine_a, engine_b,
                        (time.monotonic_ns() - t_start) / 1e9, interrupted(), camera_uri.split("?")[0])
    return summary, fuser.out


def _p(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarize(args, fuser: TimeFuser, seen: Sensors, camera_stats, radar_stats, scene: RadarScene,
              engine_a, engine_b, wall_s: float, interrupted: bool, camera_uri: str) -> dict:
    """Everything the run measured, JSON-ready."""
    matched = [r for r in fuser.out if r["radar"] is not None]
    dts = [abs(r["dt_ms"]) for r in matched]
    model_err = [r["radar"]["range_m"] - r["radar"]["truth_m"] for r in matched]
    cfar_err = [r["radar"]["cfar_range_m"] - r["radar"]["truth_m"] for r in matched
                if not math.isnan(r["radar"]["cfar_range_m"])]
    marks = collections.Counter(m for r in fuser.out for m in r["marks"])
    rmse = (lambda e: float(np.sqrt(np.mean(np.square(e)))) if e else None)
    return {
        "wall_s": wall_s, "interrupted": interrupted, "fault": args.fault,
        "window_ms": args.window_ms, "max_wait_ms": args.max_wait_ms,
        "camera": {"uri": camera_uri, "bundle": str(args.camera_bundle), "pipeline": camera_stats.to_dict(),
                   "drops_seen_by_callback": seen.camera_drops, "errors_seen_by_callback": seen.camera_errors,
                   "engine": engine_a.call_stats().to_dict()},
        "radar": {"bundle": str(args.radar_bundle), "frames": seen.radar_frames, "sent": scene.sent,
                  "lost_by_simulator": scene.lost, "lost_frames_seen": seen.radar_lost_frames,
                  "read_timeouts": seen.radar_timeouts, "source": asdict(radar_stats),
                  "engine": engine_b.call_stats().to_dict(),
                  "range_rmse_m": {"model": rmse(model_err), "cfar": rmse(cfar_err)}},
        "fusion": {**fuser.counts, "dt_ms": {"p50": _p(dts, 50), "p99": _p(dts, 99)},
                   "marks": dict(marks)},
        "events": seen.events,
    }


def write_outputs(summary: dict, fused: list[dict], out: Path) -> None:
    """summary.json, fused.jsonl and timeline.png under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    with open(out / "fused.jsonl", "w") as f:
        for r in fused:
            f.write(json.dumps(r) + "\n")
    t0 = fused[0]["t_ns"] if fused else 0
    fig, (ax_r, ax_c) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    m = [r for r in fused if r["radar"] is not None]
    t = [(r["t_ns"] - t0) / 1e9 for r in m]
    ax_r.plot(t, [r["radar"]["truth_m"] for r in m], "k-", lw=1, label="truth (simulator)")
    ax_r.plot(t, [r["radar"]["cfar_range_m"] for r in m], ".", ms=3, label="CFAR strongest point")
    ax_r.plot(t, [r["radar"]["range_m"] for r in m], ".", ms=3, label="engine B (range model)")
    ax_r.set_ylabel("range (m)")
    ax_r.legend(loc="upper right", fontsize=8)
    for r in fused:
        x = (r["t_ns"] - t0) / 1e9
        if "radar_missing" in r["marks"]:
            ax_r.axvline(x, color="tab:red", alpha=0.15, lw=1)
        if "camera_recovered" in r["marks"] or "radar_recovered" in r["marks"]:
            ax_r.axvline(x, color="tab:green", alpha=0.6, lw=1)
    ax_c.scatter([(r["t_ns"] - t0) / 1e9 for r in fused], [r["camera"]["label"] for r in fused],
                 c=[r["camera"]["score"] for r in fused], s=6, cmap="viridis", vmin=0, vmax=1)
    ax_c.set_ylim(-0.5, 9.5)
    ax_c.set_ylabel("camera class (colour: score)")
    ax_c.set_xlabel("time (s); red: no radar in window, green: first outputs after a recovery")
    f = summary["fusion"]
    fig.suptitle(f"robot: {f['fused']} fused, {f['matched']} matched, {f['radar_missing']} radar missing, "
                 f"fault={summary['fault']}")
    fig.tight_layout()
    fig.savefig(out / "timeline.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="run time (s); SIGINT stops earlier")
    p.add_argument("--out", type=Path, default=Path("out/robot"))
    p.add_argument("--camera", default="1", help="Viky device serial (0, 1, 2) or another camera's")
    p.add_argument("--cti", default=None, help="GenTL producer (default: $GENICAM_GENTL64_PATH, else Viky)")
    p.add_argument("--camera-fps", type=float, default=15.0)
    p.add_argument("--camera-bundle", type=Path, default=None, help="default: ResNet-20 from the zoo (cached)")
    p.add_argument("--radar-bundle", type=Path, default=None, help="default: the range model (trained, cached)")
    p.add_argument("--radar-samples", type=int, default=1500, help="simulated profiles to train the range model on")
    p.add_argument("--radar-epochs", type=int, default=400)
    p.add_argument("--window-ms", type=float, default=40.0, help="fusion window: |t_radar - t_camera| at most")
    p.add_argument("--max-wait-ms", type=float, default=300.0, help="how long a camera result waits for radar")
    p.add_argument("--fault", choices=("none", "radar", "camera", "both"), default="none")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.window_ms <= 0 or args.max_wait_ms < 0:
        p.error("--seconds and --window-ms must be positive, --max-wait-ms not negative")

    if args.camera_bundle is None or args.radar_bundle is None:
        from sdk.models.train import cache_dir

        cache = cache_dir() / "robot"
        if args.camera_bundle is None:
            args.camera_bundle = camera_bundle(cache)
        if args.radar_bundle is None:
            args.radar_bundle = radar_bundle(cache, args.radar_samples, args.radar_epochs, args.seed)
    summary, fused = asyncio.run(run_robot(args))
    write_outputs(summary, fused, args.out)
    f, r = summary["fusion"], summary["radar"]
    print(f"fused {f['fused']} camera results: {f['matched']} matched (|dt| p50 {f['dt_ms']['p50']} ms), "
          f"{f['radar_missing']} without radar, {f['radar_unused']} radar results unused, "
          f"{f['radar_late']} radar / {f['camera_late']} camera late; marks {f['marks']}")
    print(f"range RMSE vs truth: engine B {r['range_rmse_m']['model']} m, CFAR {r['range_rmse_m']['cfar']} m; "
          f"wrote {args.out}/summary.json, fused.jsonl, timeline.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
