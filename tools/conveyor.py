"""``prism conveyor``: the factory conveyor scanner — line-scan source -> objects -> classifier ->
reject gate over Modbus TCP — on a real line or on the simulated one.

    prism conveyor                                   # simulated belt + simulated PLC, 10 s
    prism conveyor --plc 192.168.0.10:502 --source 'genicam+linescan://...' --bundle c.prism
    prism conveyor --soak --duration 600             # benchmark: reports/conveyor/perf.{json,md,png}
    prism conveyor --optics diffraction              # the belt rendered by the diffraction simulator

On the simulated line (``--plc sim``) the PLC is ``firmware_bridge.plc.sim.PlcSimulator`` and the
belt a ``GeometricConveyor`` (boxes and cylinders, some dented or bumped) feeding
``linescan+sim://`` under an encoder trigger; the run is scored against the scene: every defect
must be fired at its gate count and no good object fired.

``--optics diffraction`` runs the real optical path instead: the belt is a diffraction
``ConveyorScene`` (``sdk.runtime.conveyor.optical.OpticalConveyor``, Q = 1024, four ROIs side by
side in ``linescan+sim``, prerendered for the run because the renderer is slower than the line
rate), each line is decoded by the distilled line-MLP LUT and triangulated into heights
(``LutTriangulationExtractor``), and the gate counts are scored within ``OPTICAL_GATE_TOLERANCE_MM``
of the scene's truth (the trailing edge is found where the decoded height crosses the tracker
threshold, which height noise moves by a few lines). Its classifier is the one fine-tuned on
optical height maps; ``--quantize``/``--dynamic`` compress that one (calibration and exit search on
the optical training maps).
"""
from __future__ import annotations

import argparse
import bisect
import dataclasses
import json
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SimulatedLine", "OpticalSimulatedLine", "optical_bundle", "score_run", "rss_mb", "main", "add_arguments",
           "run"]

COLUMNS = 64
BELT_WIDTH_MM = 200.0
MM_PER_COUNT = 0.5
OPTICAL_GATE_TOLERANCE_MM = 6.0
"""Belt travel a firing may be off the optical belt's truth gate count and still match: the
trailing edge is where the decoded height on the back face crosses the tracker threshold, and the
tilted plane descends that face ~0.3 mm per mm of travel, so ~1.5 mm of height noise moves the
edge by ~5 mm (measured: +2..+5 counts at 1 mm per count)."""


def rss_mb() -> float:
    """Resident set size of this process, MiB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def _bundle_name(stem: str, quantize: str | None, bits: int, dynamic: bool) -> str:
    """The cached bundle's directory name; a quantized one carries the packed-table format, so a
    bundle cached by a Prism whose tables it can no longer read is rebuilt, not refused."""
    from sdk.formats.packed_tables import FORMAT_VERSION

    precision = f".{quantize}{bits}-t{FORMAT_VERSION}" if quantize else ""
    return f"{stem}.cpu{'.dynamic' if dynamic else ''}{precision}.prism"


def optical_bundle(lut: Path, quantize: str | None = None, bits: int = 4, progress: bool = True, *,
                   dynamic: bool = False, config=None) -> Path:
    """The classifier fine-tuned on height maps measured through the optical path with ``lut``
    (``get_or_train_optical(OpticalTrainConfig())``: rendered, trained and cached on first use,
    minutes) deployed as a ``cpu`` bundle; ``quantize``/``dynamic`` as in ``default_bundle``, the
    exit search and the calibration on the optical training maps (``optical_maps``, cached). The
    manifest's metadata holds the accuracy on the held-out optical maps (static bundles).
    ``config``: the ``OpticalTrainConfig`` (default: the recipe's)."""
    from sdk.models.conveyor_classifier import (OpticalTrainConfig, accuracy, compress_classifier,
                                                deploy_classifier, get_or_train_optical, optical_maps)
    from sdk.models.train import cache_dir

    config = dataclasses.replace(config or OpticalTrainConfig(), lut_key=Path(lut).stem)
    path = cache_dir() / "bundles" / _bundle_name(f"conveyor-optical-{config.key()}", quantize, bits, dynamic)
    if not (path / "manifest.json").exists():
        model, meta = get_or_train_optical(config, lut, progress=progress)
        metadata = {"val_accuracy_optical": meta["val_accuracy"],
                    "val_accuracy_optical_geometric_base": meta["val_accuracy_geometric_base"]}
        if quantize or dynamic:
            maps, labels, _ = optical_maps(config, lut, "train", progress)
            model = compress_classifier(model, quantize=quantize, bits=bits, dynamic=dynamic, maps=maps,
                                        labels=labels, calib=maps, seed=config.seed, progress=progress)
            if not dynamic:
                val_maps, val_labels, _ = optical_maps(config, lut, "val", progress)
                metadata["val_accuracy_optical_fp32"] = metadata["val_accuracy_optical"]
                metadata["val_accuracy_optical"] = accuracy(model, val_maps, val_labels)
        deploy_classifier(model, path, metadata=metadata)
    return path


def default_bundle(quantize: str | None = None, bits: int = 4, progress: bool = True, *,
                   dynamic: bool = False) -> Path:
    """The cached conveyor classifier deployed as a ``cpu`` bundle (trained on first use);
    ``quantize="pwlq"|"uniform"``: its ``bits``-bit post-training quantized version;
    ``dynamic``: made a two-stage S2DNAS network first (``sdk.make_dynamic``, small search on
    height maps of a scene the classifier was not trained on), every stage quantized if asked."""
    from sdk.models.conveyor_classifier import (ConveyorTrainConfig, compress_classifier, deploy_classifier,
                                                get_or_train, height_map_dataset)
    from sdk.models.train import cache_dir

    config = ConveyorTrainConfig()
    path = cache_dir() / "bundles" / _bundle_name(f"conveyor-{config.key()}", quantize, bits, dynamic)
    if not (path / "manifest.json").exists():
        model, meta = get_or_train(config, progress=progress)
        if quantize or dynamic:
            kw = dict(columns=config.columns, belt_width_mm=config.belt_width_mm,
                      mm_per_count=config.mm_per_count, map_shape=config.map_shape)
            maps, labels = height_map_dataset(1500, config.seed + 30_000, **kw) if dynamic else (None, None)
            calib = height_map_dataset(512, config.seed + 20_000, **kw)[0] if quantize else None
            model = compress_classifier(model, quantize=quantize, bits=bits, dynamic=dynamic, maps=maps,
                                        labels=labels, calib=calib, seed=config.seed, progress=progress)
        deploy_classifier(model, path, metadata={"val_accuracy_fp32": meta["val_accuracy"]})
    return path


@dataclass
class SimulatedLine:
    """The simulated line: PLC on loopback, belt, and the line-scan source it feeds.

    ``rate_hz``: lines/s (encoder pulses/s at one count per line); ``duration_s`` sizes the scene.
    """

    rate_hz: float
    duration_s: float
    seed: int = 0
    lines_per_frame: int = 32
    watchdog_s: float = 0.5
    defect_rate: float = 0.4

    def __post_init__(self) -> None:
        from firmware_bridge.plc.sim import GeometricConveyor, PlcSimulator, random_objects

        # mean object pitch ~ 90 mm long + 100 mm gap; enough objects for the whole run
        n = int(math.ceil(self.rate_hz * self.duration_s * MM_PER_COUNT / 150)) + 4
        self.plc = PlcSimulator(watchdog_s=self.watchdog_s)
        self.belt = GeometricConveyor(random_objects(n, self.seed, mm_per_count=MM_PER_COUNT,
                                                     belt_width_mm=BELT_WIDTH_MM, defect_rate=self.defect_rate),
                                      columns=COLUMNS, belt_width_mm=BELT_WIDTH_MM, mm_per_count=MM_PER_COUNT,
                                      plc=self.plc)

    @property
    def source_uri(self) -> str:
        return (f"linescan+sim://?trigger=encoder&encoder_hz={self.rate_hz:g}&width={COLUMNS}"
                f"&lines_per_frame={self.lines_per_frame}")

    def open_source(self):
        import firmware_bridge

        return firmware_bridge.open_source(self.source_uri, line_generator=self.belt.line_generator)


class OpticalSimulatedLine:
    """The simulated line through the optics: PLC on loopback, a diffraction-rendered belt
    (``OpticalConveyor``) prerendered for ``duration_s`` at ``rate_hz``, and the LUT that decodes it.

    ``lut``: a LineLUT .npz (default: ``default_line_lut()``, trained and distilled on first use).
    """

    def __init__(self, rate_hz: float, duration_s: float, seed: int = 0, *, lines_per_frame: int = 32,
                 watchdog_s: float = 0.5, defect_rate: float = 0.4, lut: Path | None = None,
                 progress: bool = True, mm_per_line: float | None = None, n_objects: int | None = None,
                 albedo_range: tuple[float, float] | None = None):
        from firmware_bridge.plc.sim import PlcSimulator
        from sdk.runtime.conveyor.optical import OpticalConveyor, default_line_lut

        self.rate_hz, self.lines_per_frame = rate_hz, lines_per_frame
        self.plc = PlcSimulator(watchdog_s=watchdog_s)
        if n_objects is None:  # mean pitch ~ 125 mm long + 200 mm gap - the plane's tilt; fill the run
            mm = mm_per_line if mm_per_line is not None else 0.5 / 1743.0 * 1000
            n_objects = int(math.ceil(rate_hz * duration_s * mm / 250)) + 2
        self.belt = OpticalConveyor.random(n_objects, seed, line_rate_hz=rate_hz, mm_per_line=mm_per_line,
                                           defect_rate=defect_rate, plc=self.plc, albedo_range=albedo_range)
        self.lut = lut or default_line_lut(progress=progress)
        self.belt.prerender(min(int(rate_hz * duration_s) + 1, self.belt.lines_for()), progress=progress)

    @property
    def source_uri(self) -> str:
        return self.belt.source_uri(self.lines_per_frame)

    def open_source(self):
        import firmware_bridge

        return firmware_bridge.open_source(self.source_uri, line_generator=self.belt.line_generator)

    def config_overrides(self) -> dict:
        """ScannerConfig fields the optical belt fixes (mm/count, column pitch, threshold, gap)."""
        return self.belt.scanner_geometry()

    @property
    def gate_tolerance_counts(self) -> int:
        """``OPTICAL_GATE_TOLERANCE_MM`` in encoder counts."""
        return int(math.ceil(OPTICAL_GATE_TOLERANCE_MM / self.belt.mm_per_count))


def score_run(belt, plc_sim, gate_distance_counts: int, tolerance_counts: int = 0) -> dict:
    """Score the PLC's firings against the scene: for every object whose gate count the belt
    passed, a defect must have fired at trailing edge + gate distance (within
    ``tolerance_counts``; 0 = exactly), a good one not. ``belt.objects``: sorted by ``start``,
    each with ``start``, ``end`` (first count past the trailing edge), ``defect`` (None = good)
    and ``object_id`` (``GeometricConveyor`` or ``OpticalConveyor``)."""
    fired = sorted(f.fired_at for f in plc_sim.firings)
    position = plc_sim.position
    out = {"objects_past_gate": 0, "defects": 0, "defects_rejected": 0, "good_rejected": 0,
           "firings": len(plc_sim.firings), "firings_unmatched": 0, "missed_defect_ids": [],
           "wrongly_rejected_ids": []}
    matched: set[int] = set()  # indices into fired
    for obj in belt.objects:
        gate = obj.end - 1 + gate_distance_counts  # the last line inside the object is end - 1
        if gate + tolerance_counts > position:
            break
        out["objects_past_gate"] += 1
        near = [i for i in range(bisect.bisect_left(fired, gate - tolerance_counts), len(fired))
                if fired[i] <= gate + tolerance_counts and i not in matched]
        hit = bool(near)
        if hit:
            matched.add(min(near, key=lambda i: abs(fired[i] - gate)))
        if obj.defect is not None:
            out["defects"] += 1
            out["defects_rejected"] += hit
            if not hit:
                out["missed_defect_ids"].append(obj.object_id)
        elif hit:
            out["good_rejected"] += 1
            out["wrongly_rejected_ids"].append(obj.object_id)
    out["firings_unmatched"] = len(fired) - len(matched)
    out["tolerance_counts"] = tolerance_counts
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="line-scan source URI (default: the simulated belt's linescan+sim://)")
    p.add_argument("--optics", choices=["geometric", "diffraction"], default="geometric",
                   help="simulated belt: heights written into the rows (geometric, default) or rendered by the "
                        "diffraction simulator and decoded by the line LUT (diffraction)")
    p.add_argument("--lut", type=Path, help="--optics diffraction: line LUT .npz (default: the cached one)")
    p.add_argument("--plc", default="sim", help="HOST:PORT of the PLC (Modbus TCP), or 'sim' (default)")
    p.add_argument("--bundle", type=Path, help="height-map classifier bundle (default: the cached conveyor model; "
                                               "--optics diffraction: the one fine-tuned on optical maps)")
    p.add_argument("--quantize", choices=["pwlq", "uniform"], help="default model (geometric or optical): post-training quantized")
    p.add_argument("--bits", type=int, default=4, help="--quantize: weight bits")
    p.add_argument("--dynamic", action="store_true",
                   help="default model: S2DNAS early exits (two stages; with --quantize every stage quantized)")
    p.add_argument("--gate-distance-mm", type=float, default=400.0, help="scan line -> reject gate, mm")
    p.add_argument("--margin-mm", type=float, default=10.0, help="a reject must reach the PLC this far ahead")
    p.add_argument("--mm-per-count", type=float,
                   help=f"belt travel per encoder count (default {MM_PER_COUNT}; --optics diffraction: the belt's)")
    p.add_argument("--column-pitch-mm", type=float,
                   help=f"belt width per column (default {BELT_WIDTH_MM / COLUMNS}; "
                        "--optics diffraction: the sensor's)")
    p.add_argument("--edge-lead-mm", type=float,
                   help="travel by which the profile loses an object before its trailing edge passes the scan "
                        "line (a light plane tilted along the travel; default 0; --optics diffraction: the rig's)")
    p.add_argument("--rate", type=float, default=1743.0, help="simulated line rate, lines/s (the paper's 1743)")
    p.add_argument("--duration", type=float, help="seconds (default 10; --soak: 600)")
    p.add_argument("--seed", type=int, default=0, help="simulated scene")
    p.add_argument("--unmeasured-policy", default="reject", choices=["reject", "accept"])
    p.add_argument("--log", type=Path, help="JSON-lines run log (replay with sdk.runtime.conveyor.replay)")
    p.add_argument("--soak", action="store_true", help="benchmark: write perf.json/md/png under --out")
    p.add_argument("--warmup", type=float, default=10.0, help="soak: seconds before the RSS baseline")
    p.add_argument("--out", type=Path, default=Path("reports/conveyor"))
    p.add_argument("--quiet", action="store_true")


def _parse_plc(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"prism conveyor: --plc must be HOST:PORT or 'sim', got {text!r}")
    return host, int(port)


def run(args) -> dict:
    """Run the scanner as the arguments say; returns the result dict (stats, score, rss)."""
    import firmware_bridge
    import sdk
    from firmware_bridge.plc import PlcClient
    from sdk.runtime.conveyor import ConveyorScanner, EngineClassifier, HeightCodedExtractor, ScannerConfig

    duration = args.duration if args.duration is not None else (600.0 if args.soak else 10.0)
    optical = getattr(args, "optics", "geometric") == "diffraction"
    if args.plc != "sim" and args.source is None:
        raise SystemExit("prism conveyor: a real PLC needs --source (the line-scan camera URI)")
    if args.plc == "sim" and args.source is not None:
        raise SystemExit("prism conveyor: --source goes with a real PLC; the simulated line makes its own")
    if optical and args.plc != "sim":
        raise SystemExit("prism conveyor: --optics diffraction is the simulated optical belt; it needs --plc sim")
    sim = None
    if args.plc == "sim":
        sim = (OpticalSimulatedLine(args.rate, duration + 2, seed=args.seed, lut=getattr(args, "lut", None),
                                    progress=not args.quiet) if optical
               else SimulatedLine(args.rate, duration + 5, seed=args.seed))
    host, port = (sim.plc.host, sim.plc.port) if sim else _parse_plc(args.plc)
    geometry = sim.config_overrides() if optical else {}
    mm_per_count = args.mm_per_count or geometry.get("mm_per_count", MM_PER_COUNT)
    if args.edge_lead_mm is not None:
        if not (math.isfinite(args.edge_lead_mm) and args.edge_lead_mm >= 0):
            raise SystemExit(f"prism conveyor: --edge-lead-mm must be >= 0, got {args.edge_lead_mm}")
        geometry["edge_lead_counts"] = int(round(args.edge_lead_mm / mm_per_count))
    geometry.update(mm_per_count=mm_per_count,
                    column_pitch_mm=args.column_pitch_mm or geometry.get("column_pitch_mm", BELT_WIDTH_MM / COLUMNS))
    config = ScannerConfig(gate_distance_counts=int(round(args.gate_distance_mm / mm_per_count)),
                           margin_counts=int(round(args.margin_mm / mm_per_count)),
                           unmeasured_policy=args.unmeasured_policy, **geometry)
    log_path = args.log or Path(tempfile.mkdtemp(prefix="prism-conveyor-")) / "run.jsonl"
    rss: list[tuple[float, float]] = []
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=int(duration), desc="conveyor", unit="s")

    def progress(stats) -> None:
        rss.append((stats.elapsed_s, rss_mb()))
        if bar is not None:
            bar.n = min(int(stats.elapsed_s), bar.total)
            bar.set_postfix(lines_s=f"{stats.lines_per_s:.0f}", objects=stats.objects,
                            late=stats.decisions.get("late", 0), dropped=stats.lines_dropped)

    if sim is not None:
        sim.plc.start()
    try:
        # the PLC first: an unreachable PLC is reported before anything is trained or loaded
        if args.bundle is not None:
            bundle = args.bundle
        elif optical:
            bundle = optical_bundle(sim.lut, args.quantize, args.bits, progress=not args.quiet,
                                    dynamic=args.dynamic)
        else:
            bundle = None
        with PlcClient(host, port) as plc, sdk.load(bundle := bundle or default_bundle(
                args.quantize, args.bits, progress=not args.quiet, dynamic=args.dynamic)) as engine:
            source = sim.open_source() if sim else firmware_bridge.open_source(args.source)
            try:
                extractor = sim.belt.extractor(sim.lut) if optical else HeightCodedExtractor()
                scanner = ConveyorScanner(source, extractor, EngineClassifier(engine), plc, config,
                                          log_path=log_path)
                rss.append((0.0, rss_mb()))
                stats = scanner.run(duration_s=duration, on_progress=progress)
            finally:
                source.close()
            src = source.stats
    finally:
        if bar is not None:
            bar.close()
        if sim is not None:
            sim.plc.close()
    manifest = Path(bundle) / "manifest.json"
    result = {"bundle": str(bundle), "source": sim.source_uri if sim else args.source,
              "classifier": json.loads(manifest.read_text()).get("metadata", {}) if manifest.exists() else {},
              "optics": "diffraction" if optical else "geometric", "mm_per_count": mm_per_count,
              "plc": f"{host}:{port}" + (" (simulated)" if sim else ""), "duration_s": duration,
              "rate_hz": args.rate, "log": str(log_path), "stats": stats.to_dict(),
              "source_stats": {k: getattr(src, k) for k in ("lines_acquired", "lines_dropped", "last_line_id")
                               if hasattr(src, k)},
              "rss_mb": rss}
    if sim is not None:
        result["score"] = score_run(sim.belt, sim.plc, config.gate_distance_counts,
                                    sim.gate_tolerance_counts if optical else 0)
    if optical:
        result["prerendered_lines"] = sim.belt.prerendered
        result["undecoded_sensor_rows"] = extractor.undecoded_columns
    result["stats_text"] = stats.format()
    return result


def soak_report(result: dict, args) -> dict:
    """perf.json + perf.md + perf.png under ``args.out``: keep-up ratio against the camera's line
    clock, drops, late rejects, decision latency distribution, RSS over time."""
    s = result["stats"]
    rss = np.asarray(result["rss_mb"], np.float64)
    after = rss[rss[:, 0] >= args.warmup] if len(rss) else rss
    base = float(after[0, 1]) if len(after) else float("nan")
    growth = (float(after[-1, 1]) / base - 1) * 100 if len(after) else float("nan")
    lat = s["latency_ms"]["decision"]
    budget_ms = args.gate_distance_mm / result["mm_per_count"] / args.rate * 1e3  # scan line -> gate
    produced = result["source_stats"].get("last_line_id", -1) + 1
    perf = {
        "command": "prism conveyor --soak " + " ".join(f"--{k} {v}" for k, v in
                                                      (("optics", result["optics"]), ("duration", result["duration_s"]),
                                                       ("rate", args.rate))),
        "optics": result["optics"], "prerendered_lines": result.get("prerendered_lines"),
        "undecoded_sensor_rows": result.get("undecoded_sensor_rows"),
        "rate_hz": args.rate, "duration_s": result["duration_s"],
        "lines_processed": s["lines"], "lines_produced": produced,
        "keep_up_ratio": s["lines_per_s"] / args.rate,
        "lines_dropped_counted": s["lines_dropped"], "source_lines_dropped": result["source_stats"].get("lines_dropped"),
        "uncounted_drops": s["lines_unaccounted"],
        "objects": s["objects"], "objects_per_min": s["objects_per_min"], "decisions": s["decisions"],
        "late_rejects": s["decisions"].get("late", 0), "score": result.get("score"),
        "bundle": result["bundle"], "classifier": result.get("classifier", {}),
        "decision_latency_ms": lat, "gate_budget_ms": budget_ms,
        "latency_p99_vs_budget": lat.get("p99", float("nan")) / budget_ms,
        "stage_latency_ms": s["latency_ms"], "slack_counts": s["slack_counts"],
        "rss_mb_start": float(rss[0, 1]), "rss_mb_after_warmup": base, "rss_mb_end": float(rss[-1, 1]),
        "rss_growth_after_warmup_pct": growth, "rss_mb": result["rss_mb"], "plc": s["plc"]}
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "perf.json").write_text(json.dumps(perf, indent=2))
    md = [f"# Conveyor scanner soak ({perf['duration_s']:.0f} s at {args.rate:g} lines/s)", "",
          f"`{perf['command']}` on the simulated belt ({perf['optics']} optics) + simulated PLC "
          "(Modbus TCP on loopback).", "",
          "| metric | value |", "| --- | --- |",
          f"| lines processed / line ids up to the last read | {perf['lines_processed']} / {perf['lines_produced']} |",
          f"| keep-up ratio (processed lines/s ÷ camera line rate) | {perf['keep_up_ratio']:.4f} |",
          f"| lines dropped (counted) / uncounted | {perf['lines_dropped_counted']} / {perf['uncounted_drops']} |",
          f"| objects (per min) | {perf['objects']} ({perf['objects_per_min']:.0f}) |",
          f"| decisions | {', '.join(f'{k} {v}' for k, v in perf['decisions'].items())} |",
          f"| late rejects | {perf['late_rejects']} |",
          f"| decision latency ms p50 / p99 / max | {lat.get('p50', 0):.2f} / {lat.get('p99', 0):.2f} / "
          f"{lat.get('max', 0):.2f} |",
          f"| gate time budget (distance ÷ belt speed), ms | {budget_ms:.1f} (p99 uses "
          f"{perf['latency_p99_vs_budget']:.3f} of it) |",
          f"| RSS MiB start / after warm-up / end | {perf['rss_mb_start']:.1f} / {base:.1f} / {perf['rss_mb_end']:.1f} |",
          f"| RSS growth after warm-up | {growth:.2f} % |"]
    if perf["score"]:
        sc = perf["score"]
        md.append(f"| defects rejected at their gate count / defects | {sc['defects_rejected']} / {sc['defects']} |")
        md.append(f"| good objects rejected | {sc['good_rejected']} |")
        md.append(f"| firings matching no object's gate count (tolerance {sc.get('tolerance_counts', 0)} counts) | "
                  f"{sc['firings_unmatched']} |")
    clf = perf["classifier"]
    if "val_accuracy_optical" in clf:
        md.append(f"| classifier accuracy on held-out optical height maps: fine-tuned / geometric base (peer) | "
                  f"{clf['val_accuracy_optical']:.3f} / {clf['val_accuracy_optical_geometric_base']:.3f} |")
    md += ["", "Per-stage latency (ms):", "", "| stage | n | p50 | p99 | max |", "| --- | --- | --- | --- | --- |"]
    md += [f"| {k} | {v.get('n', 0)} | {v.get('p50', 0):.3f} | {v.get('p99', 0):.3f} | {v.get('max', 0):.3f} |"
           for k, v in s["latency_ms"].items()]
    (out / "perf.md").write_text("\n".join(md) + "\n")
    _plot(perf, result, out / "perf.png")
    return perf


def _plot(perf: dict, result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    log_path = Path(result["log"])
    lat = [json.loads(line)["latency_ns"] / 1e6 for line in log_path.read_text().splitlines()
           if '"type": "decision"' in line]
    a.hist(lat, bins=50, color="tab:blue")
    a.set_xlabel("decision latency (closing line -> decision), ms")
    a.set_ylabel("objects")
    a.set_yscale("log")
    a.set_title(f"gate budget {perf['gate_budget_ms']:.0f} ms; p99 {perf['decision_latency_ms'].get('p99', 0):.1f} ms")
    rss = np.asarray(result["rss_mb"])
    b.plot(rss[:, 0], rss[:, 1], color="tab:green")
    b.set_xlabel("time, s")
    b.set_ylabel("RSS, MiB")
    b.set_title(f"RSS growth after warm-up {perf['rss_growth_after_warmup_pct']:.2f} %")
    fig.suptitle(f"prism conveyor soak: {perf['rate_hz']:g} lines/s, {perf['duration_s']:.0f} s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="prism conveyor", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run_command(p.parse_args(argv))


def run_command(args) -> int:
    """The ``prism conveyor`` command on parsed arguments (also called by tools/cli.py)."""
    from firmware_bridge.plc import PlcUnreachable

    try:
        result = run(args)
    except PlcUnreachable as e:
        print(f"prism conveyor: error: {e}", file=sys.stderr)
        return 2
    print(result["stats_text"])
    if "score" in result:
        sc = result["score"]
        print(f"score: defects rejected {sc['defects_rejected']}/{sc['defects']}, good rejected "
              f"{sc['good_rejected']}, unmatched firings {sc['firings_unmatched']}")
    if args.soak:
        perf = soak_report(result, args)
        print(f"keep-up x{perf['keep_up_ratio']:.4f} of {args.rate:g} lines/s, late rejects "
              f"{perf['late_rejects']}, uncounted drops {perf['uncounted_drops']}, RSS growth "
              f"{perf['rss_growth_after_warmup_pct']:.2f} % -> {args.out}/perf.{{json,md,png}}")
    print(json.dumps({"log": result["log"], "decisions": result["stats"]["decisions"],
                      "score": result.get("score")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
