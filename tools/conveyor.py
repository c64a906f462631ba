"""``prism conveyor``: the factory conveyor scanner — line-scan source -> objects -> classifier ->
reject gate over Modbus TCP — on a real line or on the simulated one.

    prism conveyor                                   # simulated belt + simulated PLC, 10 s
    prism conveyor --plc 192.168.0.10:502 --source 'genicam+linescan://...' --bundle c.prism
    prism conveyor --soak --duration 600             # benchmark: reports/conveyor/perf.{json,md,png}

On the simulated line (``--plc sim``) the PLC is ``firmware_bridge.plc.sim.PlcSimulator`` and the
belt a ``GeometricConveyor`` (boxes and cylinders, some dented or bumped) feeding
``linescan+sim://`` under an encoder trigger; the run is scored against the scene: every defect
must be fired at its gate count and no good object fired.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SimulatedLine", "score_run", "rss_mb", "main", "add_arguments", "run"]

COLUMNS = 64
BELT_WIDTH_MM = 200.0
MM_PER_COUNT = 0.5


def rss_mb() -> float:
    """Resident set size of this process, MiB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def default_bundle(quantize: str | None = None, bits: int = 4, progress: bool = True, *,
                   dynamic: bool = False) -> Path:
    """The cached conveyor classifier deployed as a ``cpu`` bundle (trained on first use);
    ``quantize="pwlq"|"uniform"``: its ``bits``-bit post-training quantized version;
    ``dynamic``: made a two-stage S2DNAS network first (``sdk.make_dynamic``, small search on
    height maps of a scene the classifier was not trained on), every stage quantized if asked."""
    import torch

    from sdk.models.conveyor_classifier import (ConveyorTrainConfig, deploy_classifier, get_or_train,
                                                height_map_dataset, quantize_classifier)
    from sdk.models.train import cache_dir

    config = ConveyorTrainConfig()
    precision = f".{quantize}{bits}" if quantize else ""
    kind = ".dynamic" if dynamic else ""
    path = cache_dir() / "bundles" / f"conveyor-{config.key()}.cpu{kind}{precision}.prism"
    if not (path / "manifest.json").exists():
        model, meta = get_or_train(config, progress=progress)
        if dynamic:
            import sdk

            kw = dict(columns=config.columns, belt_width_mm=config.belt_width_mm,
                      mm_per_count=config.mm_per_count, map_shape=config.map_shape)
            maps, labels = height_map_dataset(1500, config.seed + 30_000, **kw)
            # the stages are retrained from the static weights: SGD at lr 0.01 (0.1, the paper's
            # ImageNet/CIFAR rate, leaves these small maps' stages at chance)
            model = sdk.make_dynamic(model, (maps[:, None], labels), stages=2, candidates=4,
                                     finetune_epochs=0.5, epochs=15, lr=0.01, seed=config.seed,
                                     progress=progress)
            if quantize:
                calib, _ = height_map_dataset(512, config.seed + 20_000, **kw)
                model = sdk.quantize(model, torch.from_numpy(calib[:, None]), scheme=quantize,
                                     weight_bits=bits, progress=progress)
        elif quantize:
            model = quantize_classifier(model, config, scheme=quantize, bits=bits, progress=progress)
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


def score_run(belt, plc_sim, gate_distance_counts: int) -> dict:
    """Score the PLC's firings against the scene: for every object whose gate count the belt
    passed, a defect must have fired exactly at trailing edge + gate distance, a good one not."""
    fired = {f.fired_at for f in plc_sim.firings}
    position = plc_sim.position
    out = {"objects_past_gate": 0, "defects": 0, "defects_rejected": 0, "good_rejected": 0,
           "firings": len(plc_sim.firings), "firings_unmatched": 0, "missed_defect_ids": [],
           "wrongly_rejected_ids": []}
    matched = set()
    for obj in belt.objects:
        gate = obj.end - 1 + gate_distance_counts  # the last line inside the object is end - 1
        if gate > position:
            break
        out["objects_past_gate"] += 1
        hit = gate in fired
        if hit:
            matched.add(gate)
        if obj.defect is not None:
            out["defects"] += 1
            out["defects_rejected"] += hit
            if not hit:
                out["missed_defect_ids"].append(obj.object_id)
        elif hit:
            out["good_rejected"] += 1
            out["wrongly_rejected_ids"].append(obj.object_id)
    out["firings_unmatched"] = len(fired - matched)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="line-scan source URI (default: the simulated belt's linescan+sim://)")
    p.add_argument("--plc", default="sim", help="HOST:PORT of the PLC (Modbus TCP), or 'sim' (default)")
    p.add_argument("--bundle", type=Path, help="height-map classifier bundle (default: the cached conveyor model)")
    p.add_argument("--quantize", choices=["pwlq", "uniform"], help="default model: post-training quantized")
    p.add_argument("--bits", type=int, default=4, help="--quantize: weight bits")
    p.add_argument("--dynamic", action="store_true",
                   help="default model: S2DNAS early exits (two stages; with --quantize every stage quantized)")
    p.add_argument("--gate-distance-mm", type=float, default=400.0, help="scan line -> reject gate, mm")
    p.add_argument("--margin-mm", type=float, default=10.0, help="a reject must reach the PLC this far ahead")
    p.add_argument("--mm-per-count", type=float, default=MM_PER_COUNT, help="belt travel per encoder count")
    p.add_argument("--column-pitch-mm", type=float, default=BELT_WIDTH_MM / COLUMNS)
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
    sim = SimulatedLine(args.rate, duration + 5, seed=args.seed) if args.plc == "sim" else None
    if sim is None and args.source is None:
        raise SystemExit("prism conveyor: a real PLC needs --source (the line-scan camera URI)")
    if sim is not None and args.source is not None:
        raise SystemExit("prism conveyor: --source goes with a real PLC; the simulated line makes its own")
    host, port = (sim.plc.host, sim.plc.port) if sim else _parse_plc(args.plc)
    config = ScannerConfig(gate_distance_counts=int(round(args.gate_distance_mm / args.mm_per_count)),
                           margin_counts=int(round(args.margin_mm / args.mm_per_count)),
                           mm_per_count=args.mm_per_count, column_pitch_mm=args.column_pitch_mm,
                           unmeasured_policy=args.unmeasured_policy)
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
        with PlcClient(host, port) as plc, sdk.load(bundle := args.bundle or default_bundle(
                args.quantize, args.bits, progress=not args.quiet, dynamic=args.dynamic)) as engine:
            source = sim.open_source() if sim else firmware_bridge.open_source(args.source)
            try:
                scanner = ConveyorScanner(source, HeightCodedExtractor(), EngineClassifier(engine), plc, config,
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
    result = {"bundle": str(bundle), "source": sim.source_uri if sim else args.source,
              "plc": f"{host}:{port}" + (" (simulated)" if sim else ""), "duration_s": duration,
              "rate_hz": args.rate, "log": str(log_path), "stats": stats.to_dict(),
              "source_stats": {k: getattr(src, k) for k in ("lines_acquired", "lines_dropped", "last_line_id")
                               if hasattr(src, k)},
              "rss_mb": rss}
    if sim is not None:
        result["score"] = score_run(sim.belt, sim.plc, config.gate_distance_counts)
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
    budget_ms = args.gate_distance_mm / args.mm_per_count / args.rate * 1e3  # scan line -> gate
    produced = result["source_stats"].get("last_line_id", -1) + 1
    perf = {
        "command": "prism conveyor --soak " + " ".join(f"--{k} {v}" for k, v in
                                                      (("duration", result["duration_s"]), ("rate", args.rate))),
        "rate_hz": args.rate, "duration_s": result["duration_s"],
        "lines_processed": s["lines"], "lines_produced": produced,
        "keep_up_ratio": s["lines_per_s"] / args.rate,
        "lines_dropped_counted": s["lines_dropped"], "source_lines_dropped": result["source_stats"].get("lines_dropped"),
        "uncounted_drops": s["lines_unaccounted"],
        "objects": s["objects"], "objects_per_min": s["objects_per_min"], "decisions": s["decisions"],
        "late_rejects": s["decisions"].get("late", 0), "score": result.get("score"),
        "decision_latency_ms": lat, "gate_budget_ms": budget_ms,
        "latency_p99_vs_budget": lat.get("p99", float("nan")) / budget_ms,
        "stage_latency_ms": s["latency_ms"], "slack_counts": s["slack_counts"],
        "rss_mb_start": float(rss[0, 1]), "rss_mb_after_warmup": base, "rss_mb_end": float(rss[-1, 1]),
        "rss_growth_after_warmup_pct": growth, "rss_mb": result["rss_mb"], "plc": s["plc"]}
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "perf.json").write_text(json.dumps(perf, indent=2))
    md = [f"# Conveyor scanner soak ({perf['duration_s']:.0f} s at {args.rate:g} lines/s)", "",
          f"`{perf['command']}` on the simulated belt + simulated PLC (Modbus TCP on loopback).", "",
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
