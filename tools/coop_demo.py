"""Three simulated robots as three processes exchanging signed CPMs over Cyclone DDS; the ego
fuses them and prints and plots its map.

    python -m sdk.tools.coop_demo [--frames 20] [--period 0.5] [--out reports/coop/demo]

The launcher writes a fleet of Ed25519 keys to a temporary folder and starts three processes
(``--role robot --device N``). Each process simulates the same seeded world
(``sdk.runtime.coop.world``, paper-level pose noise) and owns one robot: robots 1 and 2 publish
their CPM every ``--period`` seconds; robot 0, the ego, publishes too, takes what arrived for the
same frame (matched by sequence number, waiting at most 80 % of a period: a missing robot never
stalls it; a frame that starts more than a period late is skipped and counted, so an overloaded
host does not build up a backlog), corrects the poses (maximum consensus + pose-graph consistency), fuses, and prints one
line per frame. At the end the ego prints its drop counters and the AP of its fused map against
its ego-only map, and writes ``fused_map.png`` (last frame) and ``demo.json`` to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sdk.runtime.coop.fusion import CooperativePerception, objects_to_arrays
from sdk.runtime.coop.metrics import APAccumulator, box_corners, within_range
from sdk.runtime.coop.world import World, WorldConfig

ROBOTS = 3
EGO = 0


def run_robot(device: int, keydir: Path, frames: int, period_s: float, start_ns: int, domain: int, seed: int,
              out: Path) -> None:
    """One robot's process: step the shared world at the common schedule, publish its CPM; the
    ego also receives, fuses and reports."""
    from sdk.runtime.coop.security import FleetKeys, GuardConfig
    from sdk.runtime.coop.transport import CpmPublisher, CpmSubscriber

    keys = FleetKeys.load(keydir, device)
    world = World(WorldConfig(robots=ROBOTS, pose_noise_scale=1.0), seed=seed)
    ego = device == EGO
    sub = CpmSubscriber(keys, guard=GuardConfig(max_age_s=2 * period_s + 1.0), domain_id=domain) if ego else None
    pub = CpmPublisher(device, keys, domain_id=domain)
    coop = CooperativePerception(EGO, "consistency")
    alone = CooperativePerception(EGO, "ego")
    acc = {"fused": APAccumulator(), "ego only": APAccumulator()}
    pending: dict[int, dict[int, object]] = {}
    latencies, log, skipped = [], [], 0
    frame = snap = None
    for k in range(frames):
        snap = world.step()
        wake = start_ns + int(k * period_s * 1e9)
        time.sleep(max(0.0, (wake - time.time_ns()) / 1e9))
        cpm = snap.cpms[device]
        cpm.timestamp_ns = time.time_ns()
        pub.publish(cpm)
        if not ego:
            continue
        if time.time_ns() - wake > period_s * 1e9:
            # behind schedule (an overloaded host): skip this frame's fusion to catch up, never queue
            skipped += 1
            for msg in sub.take():
                if msg.sender_id != EGO:
                    pending.setdefault(msg.seq, {})[msg.sender_id] = msg
            pending = {s: v for s, v in pending.items() if s > cpm.seq}
            print(f"frame {k:3d}: skipped, the ego is {(time.time_ns() - wake) / 1e6:.0f} ms behind", flush=True)
            continue
        deadline = time.monotonic() + 0.8 * period_s
        while time.monotonic() < deadline and len(pending.get(cpm.seq, {})) < ROBOTS - 1:
            for msg in sub.take(timeout_s=0.02):
                if msg.sender_id != EGO:                     # DDS hands us our own CPMs too
                    pending.setdefault(msg.seq, {})[msg.sender_id] = msg
        received = list(pending.pop(cpm.seq, {}).values())
        pending = {s: v for s, v in pending.items() if s > cpm.seq}  # late leftovers are dropped
        frame = coop.process(cpm, received)
        done = time.time_ns()
        if received:
            latencies.append((done - min(m.timestamp_ns for m in received)) / 1e6)
        gt, gc = snap.ground_truth(EGO, world.config.eval_radius_m)
        radius = world.config.eval_radius_m
        acc["fused"].add(*within_range(*objects_to_arrays(frame.objects), radius), gt, gc)
        acc["ego only"].add(*within_range(*objects_to_arrays(alone.process(cpm, []).objects), radius), gt, gc)
        shared = sum(len(o.sources) > 1 for o in frame.objects)
        others = sum(0 not in o.sources for o in frame.objects)
        line = (f"frame {k:3d}: {len(frame.objects):2d} objects ({shared} seen by several robots, "
                f"{others} only by others), from robots {sorted(m.sender_id for m in received)}, "
                f"weights {({d: round(w, 2) for d, w in frame.weights.items()})}, outliers {frame.outliers}, "
                f"latency {latencies[-1] if received else float('nan'):.1f} ms")
        print(line, flush=True)
        log.append(line)
    pub.close()
    if ego:
        time.sleep(0.5)  # let the others' last samples land so the subscriber stats are complete
        sub.take()
    if not ego:
        return
    stats = sub.stats
    sub.close()
    ap = {name: {str(t): v for t, v in a.ap().items()} for name, a in acc.items()}
    lat = np.array(latencies)
    summary = {"frames": frames, "fused_with_others": len(lat), "skipped_behind_schedule": skipped, "ap": ap,
               "latency_ms": {"p50": float(np.percentile(lat, 50)) if len(lat) else None,
                              "p99": float(np.percentile(lat, 99)) if len(lat) else None},
               "subscriber": stats, "fusion_drops": coop.counters, "log": log}
    print(f"AP@0.5 fused {100 * ap['fused']['0.5']:.1f} % vs ego only {100 * ap['ego only']['0.5']:.1f} %; "
          f"latency p50 {summary['latency_ms']['p50']} ms; subscriber {stats}; fusion drops {coop.counters}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.json").write_text(json.dumps(summary, indent=1) + "\n")
    _plot(out / "fused_map.png", frame, snap, world)
    print(f"wrote {out / 'fused_map.png'} and {out / 'demo.json'}")


def _plot(path: Path, frame, snap, world: World) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon

    gt, _ = snap.ground_truth(EGO, world.config.eval_radius_m)
    fig, ax = plt.subplots(figsize=(6, 6))
    for box in gt:
        ax.add_patch(Polygon(box_corners(box), fill=False, edgecolor="0.6"))
    for o in frame.objects:
        color = "tab:red" if len(o.sources) > 1 else ("tab:blue" if o.sources == (EGO,) else "tab:green")
        ax.add_patch(Polygon(box_corners(o.as_box()), fill=False, edgecolor=color, linewidth=1.5))
        ax.text(o.x, o.y, ",".join(map(str, o.sources)), fontsize=6, clip_on=True)
    for d, pose in frame.relative_poses.items():
        ax.plot(*pose[:2], "k^")
        ax.text(pose[0], pose[1] + 0.7, f"robot {d}", fontsize=7)
    ax.plot(0, 0, "b^")
    r = world.config.eval_radius_m
    ax.set(xlim=(-r, r), ylim=(-r, r), aspect="equal", xlabel="x, m (ego frame)", ylabel="y, m")
    ax.set_title("ego fused map over DDS (grey truth, blue ego, green others, red merged)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--period", type=float, default=0.5, help="seconds between frames")
    parser.add_argument("--out", type=Path, default=Path("reports/coop/demo"))
    parser.add_argument("--domain", type=int, default=43, help="DDS domain id")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--role", choices=("launcher", "robot"), default="launcher", help=argparse.SUPPRESS)
    parser.add_argument("--device", type=int, default=EGO, help=argparse.SUPPRESS)
    parser.add_argument("--keys", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--start-ns", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "robot":
        run_robot(args.device, args.keys, args.frames, args.period, args.start_ns, args.domain, args.seed, args.out)
        return 0
    from sdk.runtime.coop.security import generate_fleet

    with tempfile.TemporaryDirectory() as keydir:
        generate_fleet(ROBOTS, keydir)
        start_ns = time.time_ns() + int(4e9)   # interpreter start-up + DDS discovery
        common = ["--frames", str(args.frames), "--period", str(args.period), "--out", str(args.out),
                  "--domain", str(args.domain), "--seed", str(args.seed), "--keys", keydir,
                  "--start-ns", str(start_ns), "--role", "robot"]
        procs = [subprocess.Popen([sys.executable, "-m", "sdk.tools.coop_demo", *common, "--device", str(d)])
                 for d in range(ROBOTS)]
        timeout = 30 + args.frames * args.period
        codes = []
        for p in procs:
            try:
                codes.append(p.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
    if any(codes):
        print(f"robot processes exited with {codes}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
