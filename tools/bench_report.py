"""Reports of a ``prism bench`` suite run: Markdown tables and PNG plots (histogram + CDF of
latency per scenario, keep-up over time for the sensor-paced stream)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _ci(s: dict, p: str) -> str:
    lo, hi = (s.get("ci") or {}).get(p, (None, None))
    f = lambda v: "open" if v is None else f"{v:.3f}"  # noqa: E731
    return f"[{f(lo)}, {f(hi)}]"


def to_markdown(report: dict[str, Any]) -> str:
    host = report["host"]
    lines = [f"# prism bench", "",
             f"Host: {host.get('cpu')} ({host.get('cores')} cores, {host.get('machine')}); "
             f"peak RSS {report['peak_rss_mb']:.0f} MiB; budget {report['budget']}"]
    jet = (report.get("environment") or {}).get("jetson")
    if jet:
        lines.append(f"Jetson: {jet.get('model')}, power mode: {jet.get('power_mode', 'unknown')}")
    lines.append("")
    latency_rows, sensor_rows = [], []
    for c in report["contenders"]:
        for key, r in c["scenarios"].items():
            if r["scenario"] == "sensor":
                e, rt = r["end_to_end_ms"], r["runtime_ms"]
                sensor_rows.append(
                    f"| {c['label']} | {c['backend']} | {r['rate_per_s']:g}/s ({r['period_ms']:.3f} ms) | "
                    f"{r['frames_processed']}/{r['frames_arrived']} ({r['frames_skipped']} skipped) | "
                    f"{e.get('p50', float('nan')):.3f} | {e.get('p90', float('nan')):.3f} | {e.get('p99', float('nan')):.3f} | "
                    f"{rt.get('p99', float('nan')):.3f} | {r['runtime_under_period_share']:.1%} | "
                    f"{r['mean_frame_lag']:.2f} | {r['sustained_rate_per_s']:.1f} | "
                    f"{'yes' if r['keeps_up'] else '**no**'} |")
            else:
                s = r["latency_ms"]
                latency_rows.append(
                    f"| {c['label']} | {c['backend']} | {key} | {s['n']} | {s['min']:.3f} | {s['mean']:.3f} | "
                    f"{s['p50']:.3f} {_ci(s, 'p50')} | {s['p90']:.3f} | {s['p95']:.3f} | "
                    f"{s['p99']:.3f} {_ci(s, 'p99')} | {s['max']:.3f} | {r['throughput_per_s']:.1f} |")
    if latency_rows:
        lines += ["## Latency (ms; [95 % CI] of the percentile)", "",
                  "| bundle | backend | scenario | n | min | mean | p50 | p90 | p95 | p99 | max | items/s |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *latency_rows, ""]
    if sensor_rows:
        lines += ["## Sensor-paced stream (newest frame first, older ones skipped)", "",
                  "| bundle | backend | rate (period) | processed | e2e p50 | e2e p90 | e2e p99 | runtime p99 | "
                  "runtimes < period | mean lag (frames) | sustained /s | keeps up |",
                  "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|", *sensor_rows, ""]
        for c in report["contenders"]:
            for r in c["scenarios"].values():
                if r["scenario"] == "sensor":
                    lines.append(f"- {c['label']}: {r['verdict']}")
        lines.append("")
    cmp_rows = [c for c in report["contenders"] if "compare_to_first" in c]
    if cmp_rows:
        first = report["contenders"][0]["label"]
        lines += [f"## Outputs vs {first}", "",
                  "| bundle | backend | pass (atol, rtol) | max abs | mean abs | max rel | top-1 agreement |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for c in cmp_rows:
            d = c["compare_to_first"]
            if "max_abs" not in d:
                lines.append(f"| {c['label']} | {c['backend']} | no: {d.get('reason')} | | | | |")
                continue
            lines.append(f"| {c['label']} | {c['backend']} | {'yes' if d['pass'] else 'no'} ({d['atol']:g}, {d['rtol']:g}) | "
                         f"{d['max_abs']:.3g} | {d['mean_abs']:.3g} | {d['max_rel']:.3g} | "
                         f"{d.get('top1_agreement', float('nan')):.4f} |")
        lines.append("")
    lines += ["## Per-inference breakdown (mean ms)", ""]
    for c in report["contenders"]:
        b = {k: v for k, v in (c.get("breakdown") or {}).items() if k != "note"}
        lines.append(f"- {c['label']} [{c['backend']}]: " + ", ".join(f"{k} {v:.3f}" for k, v in b.items())
                     + (f" ({c['breakdown']['note']})" if "note" in (c.get("breakdown") or {}) else ""))
    lines.append("")
    for c in report["contenders"]:
        d = c.get("dynamic")
        if d and d["samples"]:
            lines += [f"## Exits of {c['label']} ({d['samples']} samples, mean {d['mean_macs'] / 1e6:.2f} MMACs)", "",
                      "| stage | entered | exited | exit share | ms per call |", "|---:|---:|---:|---:|---:|"]
            lines += [f"| {s['stage']} | {s['entered']} | {s['exited']} | {s['exit_share']:.1%} | {s['ms_per_call']:.3f} |"
                      for s in d["stages"]]
            lines.append("")
    acc = [c for c in report["contenders"] if c.get("accuracy")]
    if acc:
        lines += ["## Accuracy", ""] + [f"- {c['label']} [{c['backend']}]: {c['accuracy']['accuracy']:.4f} on "
                                        f"{c['accuracy']['samples']} {c['accuracy']['dataset']} {c['accuracy']['split']} images"
                                        for c in acc] + [""]
    return "\n".join(lines)


def write_plots(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """latency_<scenario>.png (histogram + CDF, contenders overlaid) and keepup_<label>.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    keys = sorted({k for c in report["contenders"] for k in c["scenarios"]})
    for key in keys:
        fig, (ax_h, ax_c) = plt.subplots(1, 2, figsize=(10, 3.6))
        for c in report["contenders"]:
            r = c["scenarios"].get(key)
            if r is None:
                continue
            s = r.get("_samples")
            if s is None and "_timeline" in r:
                t = r["_timeline"]
                s = t["finish_s"] - t["arrival_s"]
            if s is None or len(s) == 0:
                continue
            ms = np.sort(np.asarray(s) * 1e3)
            ax_h.hist(ms, bins=50, alpha=0.5, label=c["label"])
            ax_c.plot(ms, np.arange(1, len(ms) + 1) / len(ms), label=c["label"])
        what = "end-to-end latency" if key == "sensor" else "latency"
        ax_h.set_xlabel(f"{what} (ms)"), ax_h.set_ylabel("count"), ax_h.set_title(key)
        ax_c.set_xlabel(f"{what} (ms)"), ax_c.set_ylabel("CDF"), ax_c.grid(alpha=0.3)
        ax_c.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"latency_{key.replace('/', '_')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    for i, c in enumerate(report["contenders"]):
        r = c["scenarios"].get("sensor")
        if not r or "_timeline" not in r:
            continue
        t = r["_timeline"]
        fig, ax = plt.subplots(figsize=(10, 3.4))
        e2e = (t["finish_s"] - t["arrival_s"]) * 1e3
        ax.plot(t["arrival_s"], e2e, ".", ms=3, label="end-to-end (processed frames)")
        ax.axhline(r["period_ms"], color="r", lw=1, label=f"sensor period {r['period_ms']:.3f} ms")
        skipped = np.setdiff1d(np.arange(r["frames_arrived"]), t["frame"])
        if len(skipped):
            ax.plot(skipped * r["period_ms"] / 1e3, np.zeros(len(skipped)), "|", color="gray",
                    label=f"skipped frames ({len(skipped)})")
        ax.set_xlabel("arrival time (s)"), ax.set_ylabel("ms")
        ax.set_title(f"{c['label']}: {r['verdict']}", fontsize=8)
        ax.legend(fontsize=7), ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"keepup_{i}_{c['label'].split()[0].replace('.', '_')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
