"""``python -m sdk.tools.bench_fold``: the fused folded convolution against PyTorch's unfused
FP32 sequence ``pixel_unshuffle → conv2d(dilation) → pixel_shuffle``.

Shapes are Fold-ASPP's (N = 1, C = 64 → 64, 56×56 and 28×28 inputs, K = 3, dilations 2, 4, 6,
"same" padding), at one thread and at all threads (PyTorch gets the same count through
``torch.set_num_threads``). Contenders, all producing float32 ``(1, 64, H, W)``:

- ``fp32``: :func:`sdk.fold_conv.fold_conv2d` with weights packed once (goal ≥ 1.5× the peer);
- ``int8``: :func:`sdk.fold_conv.fold_qconv2d` as a layer prepared once
  (:func:`sdk.fold_conv.prepare_fold_qconv2d`: codes packed, epilogue checked, as a deployed
  network runs it), uint8 activations × uniform int8 weights, float epilogue (goal ≥ 3×);
- ``pwlq``: the same with PWLQ weights (~10 % tail weights: dense pass + sparse tail pass),
  8-bit codes by default (``--pwlq-bits 4``: the toolchain's default 4-bit PWLQ, W4A8).

``--integer-path`` forces the integer contenders onto one SIMD path (e.g. ``avx2`` on an
AVX-512 host, to see what an AVX2-only host runs); their rows are then information, not goals,
since the peer keeps this host's best FP32 path, and the FP32 rows are left out. To measure what
a lesser host runs, cap every library instead: ``PRISM_MAX_ISA=avx2 ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2`` makes this run an AVX2-only one, peer included (``reports/fold_avx2``);
the caps in force are recorded with the host and lead the report's command.

Every contender is checked against the peer first (FP32 within 1e-4; integer against its NumPy
twin, bit for bit). Timing runs interleaved rounds, so machine noise hits all contenders alike:
each round calls every contender ``block`` times back to back (order rotated per round), once
:class:`~tools.bench_gate.QuietGate` has seen the host at full speed (``bench.json``
``quiet_gate``); a shape's figures use only its quiet rounds when at least half of them were
(``rounds_quiet``, ``rounds_used`` per shape: a round the gate gave up on ran on a slowed host).
The first call of a block runs with caches the previous contender polluted ("cold"); the others are
warm, the conventional steady state of a layer benchmark. Each call's wall time and the calling
thread's CPU time are recorded. The ``speedup`` of a shape (the one ``perf.json`` reports) is,
with one thread, the median over rounds of the ratio of the round's median warm CPU times (both
sides then run entirely on the calling thread, so time stolen by other jobs on a shared host
does not count); with several threads, the ratio of the best warm wall times (other jobs only
ever add time). ``bench.json`` also keeps wall-time and cold-call ratios. Writes ``bench.json``
(every shape), ``bench.png`` and ``perf.json`` (the worst shape per contender and thread count,
against its goal) to ``reports/fold/``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .bench_gate import QuietGate, quiet_rounds

SHAPES = ((56, 2), (56, 4), (56, 6), (28, 2), (28, 4), (28, 6))  # (H = W, dilation)
CHANNELS = 64
PEER = "PyTorch FP32 unfused"
GOALS = {"fp32": 1.5, "int8": 3.0, "pwlq": 3.0}
LABELS = {"fp32": "FP32 fused", "int8": "int8 fused", "pwlq": "PWLQ fused"}
COMMAND = "python -m sdk.tools.bench_fold"


def _pwlq_codes(rng, shape, tail_fraction=0.1, bits=8):
    """Random folded ``bits``-bit PWLQ codes ``(W0, W1)``: ~10 % tail weights, where W0 holds
    ``Q·sign`` (Q = 2^(bits−1) − 1) and W1 the tail code; center codes elsewhere."""
    q = 2 ** (bits - 1) - 1
    in_tail = rng.random(shape) < tail_fraction
    sign = np.where(in_tail, np.where(rng.random(shape) < 0.5, -1, 1), 0).astype(np.int8)
    tail = (sign * rng.integers(0, q + 1, shape)).astype(np.int8)
    center = np.where(in_tail, q * sign, rng.integers(-q, q + 1, shape)).astype(np.int8)
    return center, tail


def make_case(h: int, dilation: int, threads: int, seed: int = 0, integer_path: str = "auto",
              pwlq_bits: int = 8) -> dict[str, Callable[[], Any]]:
    """The peer and the contenders for one shape, checked for correctness."""
    import torch
    import torch.nn.functional as F

    from sdk import fold_conv as fc

    rng = np.random.default_rng(seed)
    c = CHANNELS
    x = rng.standard_normal((1, c, h, h), dtype=np.float32)
    w = (rng.standard_normal((4 * c, 4 * c, 3, 3)) / np.sqrt(4 * c * 9)).astype(np.float32)
    b = rng.standard_normal(4 * c).astype(np.float32)
    xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)

    def peer():
        with torch.no_grad():
            return F.pixel_shuffle(F.conv2d(F.pixel_unshuffle(xt, 2), wt, bt, padding=dilation,
                                            dilation=dilation), 2)

    packed = fc.pack_fold_weights(w, b)
    fp32 = lambda: fc.fold_conv2d(x, packed, dilation=dilation, num_threads=threads)  # noqa: E731
    err = float(np.abs(fp32() - peer().numpy()).max())
    if err > 1e-4:
        raise RuntimeError(f"fold_conv2d differs from PyTorch by {err} at H={h} d={dilation}")

    X = rng.integers(0, 256, (1, c, h, h), dtype=np.uint8)
    params = dict(s1=rng.uniform(0.002, 0.01, 4 * c).astype(np.float32), s2=0.02, bias=b)
    int8 = fc.pack_fold_qweights(rng.integers(-127, 128, (4 * c, 4 * c, 3, 3), dtype=np.int8))
    pwlq = fc.pack_fold_qweights(*_pwlq_codes(rng, (4 * c, 4 * c, 3, 3), bits=pwlq_bits))
    calls = {"peer": peer, "fp32": fp32}
    for name, codes in (("int8", int8), ("pwlq", pwlq)):
        layer = fc.prepare_fold_qconv2d(codes, 0.02, 128, **params, dilation=dilation)
        call = (lambda layer=layer: layer(X, path=integer_path, num_threads=threads))
        want = fc.fold_qconv2d_reference(X, codes, 0.02, 128, **params, dilation=dilation)
        if not np.array_equal(call(), want):
            raise RuntimeError(f"fold_qconv2d ({name}) differs from its twin at H={h} "
                               f"d={dilation}")
        calls[name] = call
    calls["tail_group_density"] = pwlq.tail_group_density
    calls["tail_quad_density"] = pwlq.tail_quad_density
    calls["fp32_algorithm"] = fc.fp32_algorithm(x.shape, packed, dilation=dilation)
    return calls


def time_interleaved(calls: dict[str, Callable[[], Any]], rounds: int, block: int = 4,
                     warmup: int = 2, gate: QuietGate | None = None, threads: int = 1
                     ) -> dict[str, Any]:
    """Per-call seconds, ``{"wall" | "cpu": {name: (rounds, block) array}}``: every round calls
    each function ``block`` times back to back, in an order rotated every round; column 0 is the
    call after another function ran (cold caches). ``"quiet"``: per round, whether ``gate``
    found the host quiet before it (all True without a gate)."""
    names = list(calls)
    for _ in range(warmup):
        for n in names:
            calls[n]()
    wall = {n: np.empty((rounds, block)) for n in names}
    cpu = {n: np.empty((rounds, block)) for n in names}
    clock, thread_clock = time.perf_counter, time.thread_time
    quiet = np.ones(rounds, dtype=bool)
    for r in range(rounds):
        if gate is not None:
            quiet[r] = gate.wait(threads)
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            for k in range(block):
                c0, t0 = thread_clock(), clock()
                calls[n]()
                wall[n][r, k] = clock() - t0
                cpu[n][r, k] = thread_clock() - c0
    return {"wall": wall, "cpu": cpu, "quiet": quiet}


def run(rounds: int = 25, thread_counts: tuple[int, ...] | None = None,
        integer_path: str = "auto", pwlq_bits: int = 8) -> dict[str, Any]:
    import torch

    from sdk import fold_conv as fc

    from .bench import host_info, measured_vpdpbusd_peak

    all_threads = os.cpu_count() or 1
    thread_counts = thread_counts or tuple(sorted({1, all_threads}))
    results = []
    gate = QuietGate()
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for h, d in SHAPES:
            calls = make_case(h, d, threads, integer_path=integer_path, pwlq_bits=pwlq_bits)
            density = calls.pop("tail_group_density")
            quad_density = calls.pop("tail_quad_density")
            algorithm = calls.pop("fp32_algorithm")
            times = time_interleaved(calls, rounds, gate=gate, threads=threads)
            used = quiet_rounds(times["quiet"])
            wall = {n: t[used, 1:] for n, t in times["wall"].items()}  # warm calls
            cpu = {n: t[used, 1:] for n, t in times["cpu"].items()}
            cold = {n: t[used, 0] for n, t in times["wall"].items()}

            def per_round(t, n):  # the round's median warm time of n
                return np.median(t[n], axis=1)

            row = {"h": h, "w": h, "channels": CHANNELS, "kernel": 3, "dilation": d,
                   "threads": threads, "pwlq_tail_group_density": density,
                   "pwlq_tail_quad_density": quad_density,
                   "fp32_algorithm": algorithm,
                   "rounds_quiet": int(times["quiet"].sum()), "rounds_used": int(used.sum()),
                   "ms_median": {n: float(np.median(t) * 1e3) for n, t in wall.items()},
                   "ms_min": {n: float(t.min() * 1e3) for n, t in wall.items()},
                   "cpu_ms_median": {n: float(np.median(t) * 1e3) for n, t in cpu.items()},
                   "cold_ms_median": {n: float(np.median(t) * 1e3) for n, t in cold.items()}}
            row["speedup_cpu_median"] = {
                n: float(np.median(per_round(cpu, "peer") / per_round(cpu, n))) for n in GOALS}
            row["speedup_wall_best"] = {n: float(wall["peer"].min() / wall[n].min())
                                        for n in GOALS}
            row["speedup_wall_median"] = {
                n: float(np.median(per_round(wall, "peer") / per_round(wall, n))) for n in GOALS}
            row["speedup_cold_median"] = {n: float(np.median(cold["peer"] / cold[n]))
                                          for n in GOALS}
            row["speedup"] = row["speedup_cpu_median" if threads == 1 else "speedup_wall_best"]
            # What the sparse tail pass adds: PWLQ over int8 time (same dense pass).
            row["pwlq_over_int8"] = float(
                np.median(per_round(cpu, "pwlq") / per_round(cpu, "int8")) if threads == 1
                else wall["pwlq"].min() / wall["int8"].min())
            results.append(row)
            print(f"threads={threads} {h}x{h} d={d}: peer {row['ms_median']['peer']:.2f} ms; "
                  + ", ".join(f"{n} {row['ms_median'][n]:.2f} ms ({row['speedup'][n]:.2f}x, "
                              f"cold {row['speedup_cold_median'][n]:.2f}x)" for n in GOALS),
                  flush=True)
    gate.close()
    # The integer kernels' fraction of the measured vpdpbusd peak at 1 thread. Work counted as
    # the unfused sequence's multiply-adds / 64 (PWLQ: times 1 + the tail quad density, one
    # vpdpbusd per quad and 16 pixels on this path); the kernels
    # skip kernel rows that lie wholly in the padding, so shapes with much padding (d = 4, 6)
    # count work not done.
    integer = fc.simd_path(integer=True) if integer_path == "auto" else integer_path
    peak = measured_vpdpbusd_peak()
    for row in results:
        if row["threads"] != 1 or not peak or integer != "avx512vnni":
            continue
        dps = 4 * CHANNELS * (row["h"] // 2) ** 2 * 4 * CHANNELS * 9 / 64
        work = {"int8": dps, "pwlq": dps * (1 + row["pwlq_tail_quad_density"])}
        row["fraction_of_vpdpbusd_peak"] = {
            n: work[n] / (row["cpu_ms_median"][n] * 1e-3) / peak for n in work}
    return {"host": {**host_info(), "vpdpbusd_per_second_per_thread": peak},
            "quiet_gate": gate.summary(), "command": command(integer_path, pwlq_bits),
            "peer": PEER, "rounds": rounds, "torch": torch.__version__,
            "paths": {"fp32": fc.simd_path(), "integer": integer},
            "integer_path_forced": integer_path != "auto", "pwlq_bits": pwlq_bits,
            "goals": GOALS, "results": results}


def command(integer_path: str = "auto", pwlq_bits: int = 8) -> str:
    """The command line that reproduces a run with these options."""
    extra = "" if integer_path == "auto" else f" --integer-path {integer_path}"
    extra += "" if pwlq_bits == 8 else f" --pwlq-bits {pwlq_bits}"
    return COMMAND + extra


def perf_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per contender and thread count: the worst of the shapes, against its goal."""
    from .bench import info_row

    rows = []
    threads = sorted({r["threads"] for r in report["results"]})
    forced = report.get("integer_path_forced", False)
    bits = report.get("pwlq_bits", 8)
    for name, goal in GOALS.items():
        if forced and name == "fp32":
            continue
        label = LABELS[name]
        if name == "pwlq" and bits != 8:
            label += f" ({bits}-bit)"
        if forced:
            label += f" on the {report['paths']['integer']} path (forced)"
        for t in threads:
            mine = [r for r in report["results"] if r["threads"] == t]
            worst = min(mine, key=lambda r: r["speedup"][name])
            value = round(worst["speedup"][name], 2)
            when = ("1 thread, warm CPU time" if t == 1
                    else f"{t} threads (all), best warm wall time")
            algorithm = f", {worst['fp32_algorithm']}" if name == "fp32" and \
                "fp32_algorithm" in worst else ""
            what = (f"folded conv {label}, {when}, worst of {len(mine)} shapes "
                    f"({worst['h']}x{worst['w']} d={worst['dilation']}{algorithm})")
            if forced:  # the peer keeps this host's best FP32 path: no goal
                rows.append(info_row(what, value, "x", report["peer"]))
                continue
            rows.append({"what": what, "value": value, "unit": "x", "peer": report["peer"],
                         "goal": f">= {goal}", "met": bool(value >= goal)})
    for r in report["results"]:  # the shape with the least padding
        if r["threads"] == 1 and r["dilation"] == 2 and r["h"] == 56 and \
                "fraction_of_vpdpbusd_peak" in r:
            for name in ("int8", "pwlq"):
                rows.append(info_row(f"folded conv {LABELS[name]} 56x56 d=2, 1 thread: fraction "
                                     f"of the measured vpdpbusd peak",
                                     round(r["fraction_of_vpdpbusd_peak"][name], 3), "of peak",
                                     "vpdpbusd loop"))
    return rows


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    threads = sorted({r["threads"] for r in report["results"]})
    fig, axes = plt.subplots(1, len(threads), figsize=(6 * len(threads), 4), squeeze=False)
    for ax, t in zip(axes[0], threads):
        rows = [r for r in report["results"] if r["threads"] == t]
        x = np.arange(len(rows))
        for k, name in enumerate(GOALS):
            ax.bar(x + (k - 1) * 0.27, [r["speedup"][name] for r in rows], 0.27,
                   label=LABELS[name])
        for goal, style in ((1.5, "--"), (3.0, ":")):
            ax.axhline(goal, color="k", linestyle=style, linewidth=1)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_yscale("log")  # ratios; a peer stalled by a busy host must not hide the rest
        top = max(max(r["speedup"].values()) for r in rows)
        ticks = [v for v in (0.5, 1, 1.5, 2, 3, 5, 10, 30, 100, 300) if v <= 1.5 * top]
        ax.set_yticks(ticks, [f"{v:g}" for v in ticks])
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(x, [f"{r['h']}² d={r['dilation']}" for r in rows])
        ax.set_title(f"{t} thread{'s' if t > 1 else ''}")
        ax.set_ylabel(f"speedup vs {report['peer']} (×)")
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.suptitle("Fold → 3×3 dilated conv → Unfold, N=1, C=64→64 (goals: FP32 1.5×, integer 3×)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    perf = {"host": report["host"], "command": report.get("command", COMMAND),
            "rows": perf_rows(report)}
    (out / "perf.json").write_text(json.dumps(perf, indent=2) + "\n")
    plot(report, out / "bench.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=25, help="interleaved timing rounds per shape")
    p.add_argument("--threads", type=int, nargs="*", default=None,
                   help="thread counts (default: 1 and all cores)")
    p.add_argument("--integer-path", default="auto",
                   help="force the integer contenders onto this SIMD path (sdk.fold_conv."
                        "INTEGER_PATHS); their rows are then information, not goals")
    p.add_argument("--pwlq-bits", type=int, choices=(4, 8), default=8,
                   help="code width of the PWLQ contender")
    p.add_argument("--out", type=Path, default=Path("reports/fold"))
    args = p.parse_args(argv)
    from sdk import fold_conv as fc

    from .bench import capped_command

    if args.integer_path != "auto":
        why = fc.available_paths(integer=True).get(args.integer_path, "unknown path")
        if why:
            p.error(f"--integer-path {args.integer_path}: {why} (paths: "
                    f"{', '.join(fc.INTEGER_PATHS)})")
    report = run(args.rounds, tuple(args.threads) if args.threads else None,
                 args.integer_path, args.pwlq_bits)
    if args.out != Path("reports/fold"):
        report["command"] += f" --out {args.out}"
    report["command"] = capped_command(report["command"], report["host"])
    write_reports(report, args.out)
    for row in perf_rows(report):
        if row["goal"] is None:
            print(f"{row['what']}: {row['value']} {row['unit']}")
            continue
        print(f"{row['what']}: {row['value']}x (goal {row['goal']}, "
              f"{'met' if row['met'] else 'NOT met'})")
    print(f"wrote {args.out}/bench.json, bench.png, perf.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
