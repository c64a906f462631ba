"""``python -m sdk.tools.bench_kernels``: the PWLQ integer GEMM against its peers.

Shapes (M × K × N): the 3×3 convolutions of ResNet-20 on 28×28 inputs as im2col GEMMs
(M = output pixels, K = 9·C_in, N = C_out; 16, 32 and 64 channels), plus 1024×576×128 as a
reference GEMM shape.

Contenders, each timed as one Python call per GEMM (what a runtime layer pays), in interleaved
rounds so that the noise of a shared machine hits all of them alike:

- ``pwlq_sparse``: PWLQ W4A8 (4-bit codes, ~10 % tail weights) in the folded form (the tail
  offset carried by the center codes as 7·sign), a dense GEMM over the center codes + a sparse
  tail pass (one dot product per tail block), float32 output
  (:class:`sdk.kernels_int.PwlqGemm`, built once like a session);
- ``pwlq_dense2``: the same weights as two dense GEMMs (the naive form);
- ``uniform_int8``: uniform int8 weights (one dense GEMM), float32 output;
- ``ort_matmulinteger``: ONNX Runtime MatMulInteger (u8 × s8 -> int32, zero point of A, constant
  B), timing only ``session.run``;
- ``torch_fp32``: PyTorch float32 ``torch.mm`` with a preallocated output.

GOP/s counts the nominal 2·M·N·K operations of the GEMM for every contender (the tail pass's
extra work is not credited). Ratios "vs ORT" are ORT's time over ours (> 1: faster than ORT).
With one thread they are ratios of wall-clock medians (``vs_ort``), and the ratios in process CPU
time are recorded too (``vs_ort_cpu_time``), as a shared machine's load (recorded in ``host``)
stretches wall-clock time. With several threads the summary rows use the ratio of the best
rounds' wall times (``vs_ort_best``; a round's time is its batch mean), as ``bench_fold`` does:
other jobs only ever add time, and on this 2-vCPU host the 2-thread medians of one run swung
±25 % against the next (PWLQ geomean 0.98× and 1.19×) while the best rounds agree with the
C++ harness; ``vs_ort`` keeps the medians. Each round first waits
for a quiet host (``tools.bench_gate.QuietGate``: a short ``vpdpbusd`` probe on as many threads
as the round uses must run at 90 % of the run's best), and a shape's medians use its quiet rounds
when at least half were (``rounds_quiet``, ``rounds_used``; ``quiet_gate`` in ``bench.json``).

Peak: one AVX-512 VNNI ``vpdpbusd zmm`` does 64 u8·s8 multiply-adds (128 ops). The estimate from
``/proc/cpuinfo`` is cores × MHz × 2 (two vector pipes that execute it, Zen 4/5 and Ice Lake+) ×
128; on a VM the MHz shown is the nominal clock, not the boost clock, so the measured peak of a
dependency-free ``vpdpbusd`` loop per CPU-second of one thread (``_kernels.vpdpbusd_per_second``)
times the thread count is the denominator used for "fraction of peak" (with one thread the
numerator is in CPU time too); both are recorded.

Writes ``reports/kernels/bench.json`` (all timings), ``reports/kernels/perf.json`` (the summary
rows for the README table, see ``sdk.tools.perf_table``), ``reports/kernels/perf.md`` (those rows
as Markdown) and ``reports/kernels/bench.png``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sdk import _kernels
from sdk import kernels_int as ki

from .bench import info_row, measured_vpdpbusd_peak
from .bench_gate import QuietGate, quiet_rounds
from .perf_table import render

COMMAND = "python -m sdk.tools.bench_kernels"
# (name, M, K, N)
SHAPES = [
    ("resnet20 stage1 3x3 16->16 @28x28", 784, 144, 16),
    ("resnet20 stage2 3x3 16->32 s2 @14x14", 196, 144, 32),
    ("resnet20 stage2 3x3 32->32 @14x14", 196, 288, 32),
    ("resnet20 stage3 3x3 32->64 s2 @7x7", 49, 288, 64),
    ("resnet20 stage3 3x3 64->64 @7x7", 49, 576, 64),
    ("reference GEMM 1024x576x128", 1024, 576, 128),
]
RESNET = [s[0] for s in SHAPES if s[0].startswith("resnet20")]
CONTENDERS = ["pwlq_sparse", "pwlq_dense2", "uniform_int8", "ort_matmulinteger", "torch_fp32"]
PEER = "ort_matmulinteger"
TAIL_FRACTION = 0.1
ZX = 128
# Pause before each multi-threaded batch. ONNX Runtime's worker thread keeps spinning for
# several milliseconds after a run; with 10 ms it still held the second vCPU of this 2-vCPU host
# while our next batch ran (49x576x64 at 2 threads: 31 us instead of 15.5).
SETTLE_S = 0.05


def host_details() -> dict[str, Any]:
    """CPU model, cores, nominal MHz, SIMD flags, the kernel path and a measured VNNI peak."""
    info: dict[str, Any] = {"machine": platform.machine(), "cpu": platform.processor(),
                            "cores": os.cpu_count(), "python": platform.python_version()}
    flags: list[str] = []
    mhz = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key in ("model name", "Model") and not info.get("cpu_model"):
                    info["cpu_model"] = value
                elif key == "cpu MHz" and mhz is None:
                    mhz = float(value)
                elif key in ("flags", "Features") and not flags:
                    flags = value.split()
    except OSError:
        pass
    info["cpu"] = info.pop("cpu_model", None) or info["cpu"]
    info["cpu_mhz_nominal"] = mhz
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
              "avx512_bf16", "asimd", "asimddp", "i8mm", "sve")
    info["cpu_flags"] = [f for f in flags if f in wanted]
    info["simd"] = {k: v for k, v in _kernels.cpu_features().items() if k != "arch"}
    info["kernel_path"] = ki.simd_path()
    info["load_average_at_start"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    per_thread = measured_vpdpbusd_peak()
    info["vpdpbusd_per_second_per_thread"] = per_thread
    info["peak_gops_per_thread_measured"] = per_thread * 128 / 1e9 if per_thread else None
    info["peak_gops_per_thread_nominal"] = (mhz * 1e6 * 2 * 128 / 1e9
                                            if mhz and info["simd"].get("avx512_vnni") else None)
    return info


def pwlq_weights(rng, n: int, k: int):
    """Folded 4-bit PWLQ codes (W0, W1, in_tail): |code| ≤ 7, a TAIL_FRACTION of the weights in
    the tail with a non-zero tail code (as the quantizer guarantees) and 7·sign in W0."""
    in_tail = rng.random((n, k)) < TAIL_FRACTION
    sign = np.where(in_tail, rng.choice(np.array([-1, 1], np.int8), (n, k)), 0).astype(np.int8)
    tail = (sign * rng.integers(1, 8, (n, k))).astype(np.int8)
    center = np.where(in_tail, 7 * sign, rng.integers(-7, 8, (n, k))).astype(np.int8)
    return center, tail, in_tail


def ort_session(b: np.ndarray, m: int, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k, n = b.shape
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B", "a_zero_point"], ["Y"])], "qgemm",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])],
        [numpy_helper.from_array(b, "B"), numpy_helper.from_array(np.array(ZX, np.uint8),
                                                                  "a_zero_point")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), sess_options=opts,
                                providers=["CPUExecutionProvider"])


def contenders_for(m: int, k: int, n: int, threads: int, rng) -> tuple[dict, dict]:
    import torch

    center, tail, in_tail = pwlq_weights(rng, n, k)
    int8_codes = rng.integers(-127, 128, (n, k)).astype(np.int8)
    x = rng.integers(0, 256, (m, k), dtype=np.uint8)
    scales = dict(s1=0.01, s2=0.02, bias=0.0)
    sparse = ki.pack_pwlq_weights(center, tail, tail_form="sparse")
    layers = {
        "pwlq_sparse": ki.PwlqGemm(sparse, 0.02, ZX, **scales),
        "pwlq_dense2": ki.PwlqGemm(ki.pack_pwlq_weights(center, tail, tail_form="dense"),
                                   0.02, ZX, **scales),
        "uniform_int8": ki.PwlqGemm(ki.pack_pwlq_weights(int8_codes), 0.02, ZX, 0.01),
    }
    calls: dict[str, Callable[[], Any]] = {
        name: (lambda layer=layer: layer(x, num_threads=threads)) for name, layer in layers.items()}
    session = ort_session(np.ascontiguousarray(int8_codes.T), m, threads)
    feeds = {"A": x}
    calls["ort_matmulinteger"] = lambda: session.run(None, feeds)
    xf = torch.from_numpy(x.astype(np.float32))
    wf = torch.from_numpy(int8_codes.T.astype(np.float32)).contiguous()
    out = torch.empty((m, n), dtype=torch.float32)
    # Set once per thread count: set_num_threads on every call rebuilds PyTorch's pool.
    torch.set_num_threads(threads)
    calls["torch_fp32"] = lambda: torch.mm(xf, wf, out=out)
    meta = {"tail_block_density": sparse.tail_block_density,
            "tail_quad_density": sparse.tail_quad_density,
            "tail_weight_fraction": float(in_tail.mean())}
    return calls, meta


def time_interleaved(calls: dict[str, Callable[[], Any]], rounds: int, batch_seconds: float,
                     settle_seconds: float, gate: QuietGate | None = None,
                     threads: int = 1) -> dict[str, Any]:
    """Seconds per call: the median over rounds of each contender's batch mean (and the best),
    in wall-clock and in process CPU time. ``settle_seconds`` of sleep after each batch lets the
    previous contender's spinning worker threads (ORT, OpenMP, ours) go idle first; then a
    quarter batch runs untimed, so the timed calls find the contender's own pool awake. With a
    ``gate``, each round first waits for a quiet host on ``threads`` threads, and the figures
    use the quiet rounds when at least half were (``quiet_rounds``); ``"rounds"`` says how many
    were quiet and used."""
    counts = {}
    for name, fn in calls.items():
        for _ in range(3):
            fn()  # warm-up: packing scratch, thread pools, caches
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < batch_seconds / 4:
            fn()
            n += 1
        per_call = (time.perf_counter() - t0) / n
        counts[name] = max(1, int(batch_seconds / per_call))
    samples: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    quiet = np.ones(rounds, dtype=bool)
    for r in range(rounds):
        if gate is not None:
            quiet[r] = gate.wait(threads)
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
            fn, n = calls[name], counts[name]
            if settle_seconds:
                time.sleep(settle_seconds)
                # Multi-threaded: a quarter batch untimed first, so that the timed calls find
                # this contender's pool awake and the previous one's threads done spinning.
                for _ in range(max(1, n // 4)):
                    fn()
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
            cpu[name].append((time.process_time() - c0) / n)
    used = quiet_rounds(quiet)
    out: dict[str, Any] = {
        name: {"median_s": float(np.median(np.array(s)[used])), "best_s": float(np.min(s)),
               "cpu_median_s": float(np.median(np.array(cpu[name])[used]))}
        for name, s in samples.items()}
    out["rounds"] = {"quiet": int(quiet.sum()), "used": int(used.sum())}
    return out


def geomean(values: list[float]) -> float:
    return float(math.exp(sum(math.log(v) for v in values) / len(values)))


def run(rounds: int, batch_seconds: float, out_dir: Path) -> dict[str, Any]:
    host = host_details()
    cores = os.cpu_count() or 1
    thread_counts = sorted({1, cores})
    rng = np.random.default_rng(0)
    results = []
    gate = QuietGate()
    for threads in thread_counts:
        for label, m, k, n in SHAPES:
            calls, meta = contenders_for(m, k, n, threads, rng)
            timing = time_interleaved(calls, rounds, batch_seconds,
                                      settle_seconds=SETTLE_S if threads > 1 else 0.0,
                                      gate=gate, threads=threads)
            used = timing.pop("rounds")
            ops = 2.0 * m * n * k
            entry = {"shape": label, "M": m, "K": k, "N": n, "threads": threads, **meta,
                     "rounds_quiet": used["quiet"], "rounds_used": used["used"],
                     "contenders": {}}
            for name, t in timing.items():
                entry["contenders"][name] = {"us_per_call": t["median_s"] * 1e6,
                                             "best_us_per_call": t["best_s"] * 1e6,
                                             "cpu_us_per_call": t["cpu_median_s"] * 1e6,
                                             "gops": ops / t["median_s"] / 1e9,
                                             "gops_best": ops / t["best_s"] / 1e9}
            peer = timing[PEER]["median_s"]
            entry["vs_ort"] = {name: peer / timing[name]["median_s"] for name in timing}
            entry["vs_ort_best"] = {name: timing[PEER]["best_s"] / timing[name]["best_s"]
                                    for name in timing}
            if threads == 1:
                # Process CPU time is blind to time the OS gave to other processes (a busy
                # shared machine); with one thread it is the time the call really ran.
                cpu_peer = timing[PEER]["cpu_median_s"]
                entry["vs_ort_cpu_time"] = {name: cpu_peer / timing[name]["cpu_median_s"]
                                            for name in timing}
            stat = "median_s" if threads == 1 else "best_s"  # the ratios' statistic
            entry["sparse_speedup_over_dense2"] = (timing["pwlq_dense2"][stat]
                                                   / timing["pwlq_sparse"][stat])
            entry["pwlq_cost_over_uniform"] = (timing["pwlq_sparse"][stat]
                                               / timing["uniform_int8"][stat])
            peak = host["peak_gops_per_thread_measured"]
            if peak:
                # The probe counts CPU time; so does the one-thread numerator. With more threads
                # the wall clock is all there is (spinning workers make CPU time meaningless):
                # the best round's, as in the ratios.
                wall = "cpu_median_s" if threads == 1 else stat

                def achieved(name):
                    return ops / timing[name][wall] / 1e9

                entry["fraction_of_measured_peak"] = {
                    name: achieved(name) / (peak * threads)
                    for name in ("pwlq_sparse", "uniform_int8", PEER)}
                # The work bound: the folded PWLQ GEMM issues one vpdpbusd per 16 rows and
                # 4-deep k-block of every channel (dense pass) plus, on this path, one per quad
                # of tail codes, i.e. (1 + tail quad density) times uniform int8's count. Even
                # at 100 % of the measured peak it cannot beat ORT by more than this ratio (the
                # quads' byte shuffles, 2 per vpdpbusd, are not counted).
                dps = m * n * k / 64 * (1.0 + meta["tail_quad_density"])
                t_floor = dps / (peak * 1e9 / 128) / threads
                entry["pwlq_bound_vs_ort"] = timing[PEER][wall] / t_floor
            results.append(entry)
            ratio = entry["vs_ort" if threads == 1 else "vs_ort_best"]
            gops = "gops" if threads == 1 else "gops_best"
            print(f"{threads}T {label:38s} " + "  ".join(
                f"{name}={entry['contenders'][name][gops]:7.1f}" for name in CONTENDERS)
                  + f"  GOP/s | sparse/ORT {ratio['pwlq_sparse']:.2f}x "
                  f"uniform/ORT {ratio['uniform_int8']:.2f}x "
                  f"sparse/dense2 {entry['sparse_speedup_over_dense2']:.2f}x",
                  flush=True)
    gate.close()
    host["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    rows = summary_rows(results, thread_counts, host)
    report = {"host": host, "command": COMMAND, "quiet_gate": gate.summary(),
              "config": {"rounds": rounds, "batch_seconds": batch_seconds, "zx": ZX,
                         "tail_fraction": TAIL_FRACTION, "pwlq_codes": "4-bit, |code| <= 7",
                         "uniform_codes": "int8, |code| <= 127"},
              "rows": rows, "results": results}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "perf.json").write_text(json.dumps(
        {"host": {k: host[k] for k in ("machine", "cpu", "cores", "python", "simd")},
         "command": COMMAND, "rows": rows}, indent=2) + "\n")
    plot(results, thread_counts, out_dir / "bench.png", host)
    return report


def summary_rows(results: list[dict], thread_counts: list[int], host: dict) -> list[dict]:
    rows = []

    def pick(threads, shapes):
        return [r for r in results if r["threads"] == threads and r["shape"] in shapes]

    for threads in thread_counts:
        tag = "1 thread" if threads == 1 else f"{threads} threads, best wall time"
        key = "vs_ort" if threads == 1 else "vs_ort_best"
        resnet = pick(threads, RESNET)
        ref = pick(threads, [SHAPES[-1][0]])[0]
        for name, what in (("pwlq_sparse", "PWLQ W4A8 (folded: dense + sparse tail)"),
                           ("uniform_int8", "uniform int8")):
            value = geomean([r[key][name] for r in resnet])
            rows.append({"what": f"{what} vs ORT MatMulInteger, ResNet-20 3x3 GEMMs (geomean), "
                                 f"{tag}", "value": round(value, 3), "unit": "x", "peer": PEER,
                         "goal": ">= 1.0", "met": value >= 1.0})
            value = ref[key][name]
            rows.append({"what": f"{what} vs ORT MatMulInteger, 1024x576x128, {tag}",
                         "value": round(value, 3), "unit": "x", "peer": PEER, "goal": ">= 1.0",
                         "met": value >= 1.0})
        if threads == 1:
            for name, what in (("pwlq_sparse", "PWLQ W4A8"), ("uniform_int8", "uniform int8")):
                value = geomean([r["vs_ort_cpu_time"][name] for r in pick(1, RESNET)])
                rows.append({"what": f"{what} vs ORT MatMulInteger in process CPU time, "
                                     f"ResNet-20 3x3 GEMMs (geomean), 1 thread",
                             "value": round(value, 3), "unit": "x", "peer": PEER,
                             "goal": ">= 1.0", "met": value >= 1.0})
        value = geomean([r["sparse_speedup_over_dense2"] for r in pick(
            threads, [s[0] for s in SHAPES])])
        rows.append({"what": f"dense + sparse tail vs naive two dense GEMMs (geomean), {tag}",
                     "value": round(value, 3), "unit": "x", "peer": "pwlq_dense2",
                     "goal": "> 1.0", "met": value > 1.0})
        if "pwlq_bound_vs_ort" in ref:
            rows.append(info_row(f"PWLQ W4A8 at 100% of the vpdpbusd peak vs ORT MatMulInteger "
                                 f"(the work bound), 1024x576x128, {tag}",
                                 round(ref["pwlq_bound_vs_ort"], 3), "x", PEER))
        if "fraction_of_measured_peak" in ref:
            for name in ("uniform_int8", "pwlq_sparse"):
                rows.append(info_row(f"{name} 1024x576x128 fraction of measured vpdpbusd peak, "
                                     f"{tag}", round(ref["fraction_of_measured_peak"][name], 3),
                                     "of peak", "vpdpbusd loop"))
    return rows


def plot(results: list[dict], thread_counts: list[int], path: Path, host: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(thread_counts), 1, figsize=(12, 4.2 * len(thread_counts)),
                             squeeze=False)
    width = 0.8 / len(CONTENDERS)
    for ax, threads in zip(axes[:, 0], thread_counts):
        rows = [r for r in results if r["threads"] == threads]
        gops = "gops" if threads == 1 else "gops_best"  # the statistic of the ratios
        x = np.arange(len(rows))
        for i, name in enumerate(CONTENDERS):
            ax.bar(x + (i - (len(CONTENDERS) - 1) / 2) * width,
                   [r["contenders"][name][gops] for r in rows], width, label=name)
        peak = host.get("peak_gops_per_thread_measured")
        if peak:
            ax.axhline(peak * threads, color="k", linestyle="--", linewidth=0.8,
                       label="measured vpdpbusd peak")
        ax.set_xticks(x, [f"{r['M']}x{r['K']}x{r['N']}" for r in rows])
        ax.set_ylabel("GOP/s (2·M·N·K / time)")
        ax.set_title(f"{threads} thread{'s, best round' if threads > 1 else ', median'} — "
                     f"{host['cpu']}, "
                     f"path {host['kernel_path']}")
        ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(out: Path) -> None:
    """``out/perf.md``: the summary rows of ``perf.json`` as a table."""
    perf = json.loads((out / "perf.json").read_text())
    text = (f"# PWLQ integer GEMM vs ONNX Runtime MatMulInteger\n\nReproduce: "
            f"`{perf.get('command', 'python -m sdk.tools.bench_kernels')}`. Contenders are timed "
            f"in interleaved rounds on a machine shared with other jobs: the ratios are the "
            f"result; bench.json holds every timing.\n\n{render([('kernels', perf)])}\n")
    (out / "perf.md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds")
    parser.add_argument("--batch-seconds", type=float, default=0.025,
                        help="time of one contender's batch of calls in a round")
    parser.add_argument("--out", type=Path, default=Path("reports/kernels"),
                        help="folder for bench.json, perf.json and bench.png")
    args = parser.parse_args(argv)
    # PyTorch's OpenMP threads otherwise spin after each call and take the second vCPU from the
    # next contender's timed batch (PyTorch's own 2-thread calls then measured 3-7 ms instead of
    # ~20 µs). Set before PyTorch is imported; a value from the caller's environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    t0 = time.perf_counter()
    report = run(args.rounds, args.batch_seconds, args.out)
    for row in report["rows"]:
        met = {True: "met", False: "NOT met", None: ""}[row["met"]]
        print(f"{row['what']}: {row['value']} {row['unit']} {met}")
    write_markdown(args.out)
    print(f"wrote {args.out}/bench.json, perf.json, perf.md, bench.png in "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
