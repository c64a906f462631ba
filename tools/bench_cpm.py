"""``python -m sdk.tools.bench_cpm``: CPM sizes, codec / signature cost, DDS latency across processes.

1. **Sizes** for 0..20 objects + 16 landmarks: the schema-1 body, the signed message (body +
   64-byte Ed25519 signature), the DDS sample (CDR, with the ROS-visible header copies), and a
   peer measured in the same run: the same CPM as compact JSON. Goal: signed <= 300 B for 20 + 16;
   reference: the paper's whole-feature-map CPM, ~14 KB (FPV-RCNN, Sec. IV: "around 0.3 KB ...
   about 50 times smaller than ... the whole feature maps (ca. 14 KB)"), a quoted constant.
2. **CPU cost** (µs per call, median of repeats, 20 + 16 CPM): encode, decode, sign, verify, the
   full receive guard (verify + decode + checks), against JSON dumps/loads of the same CPM.
3. **Latency** across two processes on one host (shipped Cyclone config): a child process
   publishes signed CPMs (encode + sign + DDS) and, interleaved, raw unsigned samples of the same
   size on a second topic (DDS alone, the peer); this process receives both (guard + decode for
   CPMs) and measures capture-to-accept time on the shared host clock. Ratio = CPM p50 / raw p50.

Writes ``reports/coop_messages/{perf.json, bench.json, bench.md, bench.png}``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from sdk.runtime.coop import wire
from sdk.runtime.coop.messages import CPM, DetectedObject, Landmark, Pose2D
from sdk.runtime.coop.security import FleetKeys, GuardConfig, MessageGuard, generate_fleet

COMMAND = "python -m sdk.tools.bench_cpm"
GOAL_BYTES = 300
PAPER_FEATURE_CPM_BYTES = 14_000
PAPER_KEYPOINT_CPM_BYTES = 300
RAW_TOPIC = "rt/prism/bench_raw"


def example_cpm(n_objects: int, n_landmarks: int = 16, seed: int = 0, sender: int = 1, seq: int = 1,
                timestamp_ns: int | None = None) -> CPM:
    """A CPM with random but plausible content (objects within 150 m, sizes 0.3..12 m)."""
    rng = np.random.default_rng(seed)
    objects = [DetectedObject(int(rng.integers(0, 5)), *map(float, rng.uniform(-150, 150, 2)),
                              *map(float, rng.uniform(0.3, 12, 2)), float(rng.uniform(-3, 3)),
                              float(rng.uniform())) for _ in range(n_objects)]
    landmarks = [Landmark(*map(float, rng.uniform(-150, 150, 2)), int(rng.integers(0, 2)),
                          float(rng.uniform())) for _ in range(n_landmarks)]
    return CPM(sender, seq, time.time_ns() if timestamp_ns is None else timestamp_ns,
               Pose2D(812.3, -44.1, 1.2), objects=objects, landmarks=landmarks)


def cpm_json(cpm: CPM) -> bytes:
    """The JSON peer: every field, compact separators, full float precision."""
    return json.dumps({"sender_id": cpm.sender_id, "seq": cpm.seq, "timestamp_ns": cpm.timestamp_ns,
                       "pose": [cpm.pose.x, cpm.pose.y, cpm.pose.heading],
                       "pose_cov": np.asarray(cpm.pose_cov).ravel().tolist(),
                       "objects": [[o.cls, o.x, o.y, o.length, o.width, o.heading, o.score]
                                   for o in cpm.objects],
                       "landmarks": [[m.x, m.y, m.kind, m.strength] for m in cpm.landmarks]},
                      separators=(",", ":")).encode()


def _dds_sample_bytes(signed: bytes, cpm: CPM) -> int:
    from sdk.runtime.coop.transport import CollectivePerception, Time

    sec, nsec = divmod(cpm.timestamp_ns, 1_000_000_000)
    return len(CollectivePerception(Time(sec, nsec), cpm.sender_id, cpm.seq, wire.SCHEMA_VERSION,
                                    signed).serialize())


def measure_sizes(keys: FleetKeys) -> list[dict[str, Any]]:
    rows = []
    for n in range(21):
        cpm = example_cpm(n, 16, seed=n)
        body = wire.encode(cpm)
        signed = keys.sign(body)
        rows.append({"n_objects": n, "n_landmarks": 16, "body_bytes": len(body),
                     "signed_bytes": len(signed), "dds_sample_bytes": _dds_sample_bytes(signed, cpm),
                     "json_bytes": len(cpm_json(cpm))})
    return rows


def _time_us(fn: Callable[[], Any], number: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean µs per call of ``number`` calls."""
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        per_call.append((time.perf_counter() - t0) / number * 1e6)
    return float(statistics.median(per_call))


def measure_cpu(keys: FleetKeys, number: int, repeats: int) -> dict[str, float]:
    cpm = example_cpm(20, 16, seed=20)
    body = wire.encode(cpm)
    signed = keys.sign(body)
    text = cpm_json(cpm)
    bench = {"encode": lambda: wire.encode(cpm), "decode": lambda: wire.decode(body),
             "sign": lambda: keys.sign(body), "verify": lambda: keys.verify(signed),
             "json_dumps (peer)": lambda: cpm_json(cpm), "json_loads (peer)": lambda: json.loads(text)}
    out = {name: _time_us(fn, number, repeats) for name, fn in tqdm(bench.items(), desc="cpu")}
    # The guard needs a fresh seq per message (else the replay check short-circuits): pre-sign
    # one batch per repeat and time admitting it, like the batches above.
    per_call = []
    for r in range(repeats):
        guard = MessageGuard(keys, GuardConfig(rate_hz=1e9, burst=10**9), clock_ns=lambda: cpm.timestamp_ns)
        batch = []
        for seq in range(1, number + 1):
            cpm.seq = seq
            batch.append(keys.sign(wire.encode(cpm)))
        t0 = time.perf_counter()
        for msg in batch:
            guard.admit(msg)
        per_call.append((time.perf_counter() - t0) / number * 1e6)
        if guard.accepted != number:
            raise RuntimeError(f"guard dropped benchmark messages: {guard.stats()}")
    out["guard.admit (verify+decode+checks)"] = float(statistics.median(per_call))
    return out


def _sender(domain: int, keydir: str, count: int, period_s: float) -> None:
    """Child process: signed CPMs on the CPM topic and equal-size raw samples on RAW_TOPIC."""
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.pub import DataWriter
    from cyclonedds.topic import Topic

    from sdk.runtime.coop.transport import CollectivePerception, CpmPublisher, Time, live_cpm_qos

    pub = CpmPublisher(1, FleetKeys.load(keydir, device_id=1), domain_id=domain)
    participant = DomainParticipant(domain)
    raw = DataWriter(participant, Topic(participant, RAW_TOPIC, CollectivePerception),
                     qos=live_cpm_qos(1))
    deadline = time.time() + 10
    while (pub.matched_subscribers() == 0 or len(raw.get_matched_subscriptions()) == 0) \
            and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    template = example_cpm(20, 16, seed=20)
    filler = bytes(298)
    for seq in range(1, count + 1):
        template.seq, template.timestamp_ns = seq, time.time_ns()
        pub.publish(template)
        time.sleep(period_s / 2)
        sec, nsec = divmod(time.time_ns(), 1_000_000_000)
        raw.write(CollectivePerception(Time(sec, nsec), 1, seq, 0, filler))
        time.sleep(period_s / 2)
    time.sleep(0.5)


def measure_latency(keydir: Path, count: int, period_s: float, domain: int) -> dict[str, Any]:
    from cyclonedds.core import ReadCondition, SampleState, ViewState, InstanceState, WaitSet
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic
    from cyclonedds.util import duration

    from sdk.runtime.coop.transport import CollectivePerception, CpmSubscriber, live_cpm_qos

    env = {k: v for k, v in os.environ.items() if k != "CYCLONEDDS_URI"}
    child = subprocess.Popen([sys.executable, "-m", "sdk.tools.bench_cpm", "--role", "sender",
                              "--domain", str(domain), "--keys", str(keydir), "--count", str(count),
                              "--period-ms", str(period_s * 1e3)], env=env)
    sub = CpmSubscriber(FleetKeys.load(keydir), GuardConfig(rate_hz=10_000, burst=1000),
                        domain_id=domain)
    participant = DomainParticipant(domain)
    raw_reader = DataReader(participant, Topic(participant, RAW_TOPIC, CollectivePerception),
                            qos=live_cpm_qos(32))
    waitset = WaitSet(participant)
    waitset.attach(ReadCondition(raw_reader, SampleState.Any | ViewState.Any | InstanceState.Any))
    cpm_ms: list[float] = []
    raw_ms: list[float] = []
    stop = threading.Event()

    def raw_loop() -> None:
        while not stop.is_set():
            waitset.wait(duration(milliseconds=100))
            for s in raw_reader.take(N=32):
                if isinstance(s, CollectivePerception):
                    raw_ms.append((time.time_ns() - (s.stamp.sec * 10**9 + s.stamp.nanosec)) / 1e6)

    thread = threading.Thread(target=raw_loop, daemon=True)
    thread.start()
    bar = tqdm(total=count, desc="dds latency")
    deadline = time.time() + 20 + count * period_s
    while time.time() < deadline and child.poll() is None:
        for c in sub.take(0.1):
            cpm_ms.append((time.time_ns() - c.timestamp_ns) / 1e6)
            bar.update(1)
    bar.close()
    stop.set()
    thread.join()
    if child.wait(timeout=10) != 0:
        raise RuntimeError(f"latency sender process exited with {child.returncode}")
    from .bench_stats import latency_summary

    return {"sent": count, "period_ms": period_s * 1e3, "subscriber_stats": sub.stats,
            "cpm": latency_summary(np.array(cpm_ms) / 1e3), "raw": latency_summary(np.array(raw_ms) / 1e3),
            "cpm_ms": cpm_ms, "raw_ms": raw_ms}


def _plot(sizes: list[dict], latency: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    n = [r["n_objects"] for r in sizes]
    for key, label in (("signed_bytes", "signed CPM (wire + Ed25519)"), ("body_bytes", "wire body"),
                       ("dds_sample_bytes", "DDS sample (CDR)"), ("json_bytes", "JSON (peer)")):
        a.plot(n, [r[key] for r in sizes], marker=".", label=label)
    a.axhline(GOAL_BYTES, color="g", ls="--", label="goal 300 B")
    a.axhline(PAPER_FEATURE_CPM_BYTES, color="r", ls=":", label="paper: feature-map CPM ~14 KB")
    a.set_yscale("log")
    a.set_xlabel("objects per CPM (+16 landmarks)")
    a.set_ylabel("bytes")
    a.set_title("CPM size")
    a.legend(fontsize=8)
    data = [latency["cpm_ms"], latency["raw_ms"]]
    b.boxplot(data, whis=(1, 99), showfliers=False)
    b.set_xticks([1, 2], ["signed CPM\n(encode+sign+DDS+guard)", "raw bytes\n(DDS only, peer)"])
    b.set_yscale("log")
    b.set_ylabel("one-way latency, ms (box p25..p75, whiskers p1..p99)")
    b.set_title("two processes, one host")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", choices=["main", "sender"], default="main", help=argparse.SUPPRESS)
    parser.add_argument("--domain", type=int, default=None,
                        help="DDS domain id (default: derived from the pid, 10..189)")
    parser.add_argument("--keys", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=400, help="CPMs sent in the latency test")
    parser.add_argument("--period-ms", type=float, default=10.0, help="time between CPMs, ms")
    parser.add_argument("--number", type=int, default=200, help="calls per CPU timing repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("reports/coop_messages"))
    args = parser.parse_args(argv)
    domain = args.domain if args.domain is not None else 10 + os.getpid() % 180
    if args.role == "sender":
        _sender(domain, str(args.keys), args.count, args.period_ms / 1e3)
        return 0

    from .bench import host_info

    with tempfile.TemporaryDirectory() as keydir:
        generate_fleet(2, keydir)
        keys = FleetKeys.load(keydir, device_id=1)
        sizes = measure_sizes(keys)
        cpu = measure_cpu(keys, args.number, args.repeats)
        latency = measure_latency(Path(keydir), args.count, args.period_ms / 1e3, domain)

    full = sizes[-1]
    lat_ratio = latency["cpm"]["p50"] / latency["raw"]["p50"]
    rows = [
        {"what": "signed CPM, 20 objects + 16 landmarks", "value": full["signed_bytes"], "unit": "B",
         "peer": f"JSON {full['json_bytes']} B ({full['json_bytes'] / full['signed_bytes']:.1f}x larger); "
                 f"paper feature-map CPM ~14 KB ({PAPER_FEATURE_CPM_BYTES / full['signed_bytes']:.0f}x)",
         "goal": f"<= {GOAL_BYTES} B", "met": full["signed_bytes"] <= GOAL_BYTES},
        {"what": "encode + sign (20+16)", "value": cpu["encode"] + cpu["sign"], "unit": "us",
         "peer": f"json_dumps {cpu['json_dumps (peer)']:.0f} us", "goal": "-", "met": None},
        {"what": "receive guard (verify+decode+checks)", "value": cpu["guard.admit (verify+decode+checks)"],
         "unit": "us", "peer": f"json_loads {cpu['json_loads (peer)']:.0f} us", "goal": "-", "met": None},
        {"what": "DDS one-way latency p50, 2 processes", "value": latency["cpm"]["p50"], "unit": "ms",
         "peer": f"raw DDS sample p50 {latency['raw']['p50']:.3f} ms (ratio {lat_ratio:.2f}x)",
         "goal": "-", "met": None},
        {"what": "DDS one-way latency p99, 2 processes", "value": latency["cpm"]["p99"], "unit": "ms",
         "peer": f"raw DDS sample p99 {latency['raw']['p99']:.3f} ms", "goal": "-", "met": None},
    ]
    host = host_info()
    host["load_average"] = list(os.getloadavg())
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "perf.json").write_text(json.dumps({"host": host, "command": COMMAND, "rows": rows}, indent=2))
    (out / "bench.json").write_text(json.dumps(
        {"host": host, "command": COMMAND, "args": {k: str(v) for k, v in vars(args).items()},
         "sizes": sizes, "cpu_us": cpu, "latency": latency,
         "paper": {"keypoint_cpm_bytes": PAPER_KEYPOINT_CPM_BYTES,
                   "feature_map_cpm_bytes": PAPER_FEATURE_CPM_BYTES}}, indent=2))
    _plot(sizes, latency, out / "bench.png")
    md = ["# CPM messages: size, CPU cost, DDS latency", "",
          f"Reproduce: `{COMMAND}`. Host: {host['cpu']}, {host['cores']} cores, load {host['load_average']}.",
          "", "## Size (16 landmarks)", "",
          "| objects | body B | signed B | DDS sample B | JSON B (peer) | JSON / signed |",
          "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    md += [f"| {r['n_objects']} | {r['body_bytes']} | {r['signed_bytes']} | {r['dds_sample_bytes']} | "
           f"{r['json_bytes']} | {r['json_bytes'] / r['signed_bytes']:.1f}x |" for r in sizes]
    md += ["", f"Goal <= {GOAL_BYTES} B signed for 20 + 16: **{full['signed_bytes']} B** "
               f"({'met' if full['signed_bytes'] <= GOAL_BYTES else 'NOT met'}); the paper's "
               f"feature-map CPM is ~14 KB, {PAPER_FEATURE_CPM_BYTES / full['signed_bytes']:.0f}x larger.",
           "", "## CPU per call, 20 objects + 16 landmarks (median)", "", "| operation | µs |", "| --- | ---: |"]
    md += [f"| {k} | {v:.1f} |" for k, v in cpu.items()]
    c, r = latency["cpm"], latency["raw"]
    md += ["", f"## DDS latency, two processes on one host ({latency['sent']} CPMs every "
               f"{latency['period_ms']:g} ms, shipped config)", "",
           "| path | n | p50 ms | p90 ms | p99 ms | max ms |", "| --- | ---: | ---: | ---: | ---: | ---: |",
           f"| signed CPM (encode+sign+DDS+guard) | {c['n']} | {c['p50']:.3f} | {c['p90']:.3f} | "
           f"{c['p99']:.3f} | {c['max']:.3f} |",
           f"| raw bytes, same size (DDS only, peer) | {r['n']} | {r['p50']:.3f} | {r['p90']:.3f} | "
           f"{r['p99']:.3f} | {r['max']:.3f} |",
           "", f"CPM / raw p50: {lat_ratio:.2f}x. Subscriber stats: `{json.dumps(latency['subscriber_stats'])}`.",
           "", "![sizes and latency](bench.png)", ""]
    (out / "bench.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
