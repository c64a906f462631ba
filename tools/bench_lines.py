"""``python -m sdk.tools.bench_lines``: lines/s of the diffraction line decoder (issue 6's goal:
>= 45,000 lines/s on ONE core for preprocessing + LUT decode of 3 ROIs x 8 x 2056 RGB lines).

Input: realistic scans from the simulator (``firmware_bridge.linescan.diffraction``'s
``make_line_dataset``: a white-wall calibration sweep with the paper's camera) when it imports,
otherwise a synthetic structured-light pattern (a rainbow streak across y with sensor noise).
The unique scans are tiled to ``--lines`` lines (default 512, ~76 MB: larger than the caches, so
the kernel streams from memory as it would from a camera).

Contenders, timed in interleaved rounds (the load of a shared machine hits all alike):

- ``cpp_lut_1t``: :meth:`sdk.lines.LineLUT.decode` on one thread, best SIMD path (the goal),
  writing into the same output arrays every call (``out=``, as a streaming pipeline does);
- ``cpp_lut_<path>_1t``: the same on each SIMD path this CPU runs;
- ``cpp_lut_all``: the same on every core;
- ``read_only_1t``: the memory floor of any decoder on this host: one thread that only reads
  every byte of the same lines once (``_kernels.read_checksum``, an XOR over 64-bit words that
  the compiler vectorises). On a host whose single-core memory bandwidth is low this ceiling,
  not the decoder's arithmetic, decides whether the goal can be met;
- ``numpy_twin``: :meth:`LineLUT.decode_reference` (on ``--twin-lines`` lines);
- ``mlp_ort`` (the peer): the paper's line network (Eq. 14: 4 fully connected layers of 300)
  on ONNX Runtime with one thread, fed by the C++ feature kernel over the valid y's only. With
  ``--mlp-bundle`` a trained line-decoder bundle (``sdk.lines.decoders.LineDecoder``) is timed;
  otherwise a random-weight MLP is exported from PyTorch. The LUT is distilled from the same
  network (:meth:`LineLUT.from_function`, ny = 33, nc = 64), so both decode the same map.

Before timing, the C++ result is checked bit for bit against the NumPy twin. Writes
``reports/lines_speed/perf.json`` (+ ``perf.md``, ``perf.png``); never asserts on time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sdk import _kernels
from sdk.lines import LineLUT, PreprocessConfig, line_features, line_paths

COMMAND = "python -m sdk.tools.bench_lines"
GOAL_LINES_PER_S = 45_000.0
ROIS, ROWS, PIXELS = 3, 8, 2056


def realistic_scans(count: int, seed: int) -> tuple[np.ndarray, str]:
    """``count`` unique scans (N, 3, 8, 2056, 3) and where they came from."""
    try:
        from firmware_bridge.linescan.diffraction import DiffractionCamera, make_line_dataset
    except ImportError:
        return synthetic_scans(count, seed), "synthetic rainbow streak (simulator not importable)"
    camera = DiffractionCamera.paper_conditions()
    data = make_line_dataset(camera, count, seed=seed)
    return data.scans, "firmware_bridge.linescan.diffraction.make_line_dataset (paper camera, wall)"


def synthetic_scans(count: int, seed: int) -> np.ndarray:
    """A structured-light-like pattern: per scan a rainbow streak crossing the ROIs at a random
    horizontal position (hue along the ROI index and y), on a dark noisy background."""
    rng = np.random.default_rng(seed)
    y = np.arange(PIXELS)
    scans = np.empty((count, ROIS, ROWS, PIXELS, 3), np.uint8)
    for n in range(count):
        centre = rng.uniform(-1.0, ROIS)                      # streak position in ROI units
        albedo = rng.uniform(0.2, 1.0)
        hue = (np.arange(ROIS)[:, None] - centre) * 0.35 + y[None, :] / PIXELS * 0.1
        rgb = np.stack([np.clip(1 - np.abs(hue - c) * 3, 0, 1) for c in (0.0, 0.3, 0.6)], -1)
        signal = 240 * albedo * rgb                            # (R, Q, 3)
        noise = rng.normal(4, 2, (ROIS, ROWS, PIXELS, 3))
        scans[n] = np.clip(signal[:, None] + noise, 0, 255).astype(np.uint8)
    return scans


def random_mlp_onnx(path: Path, seed: int) -> None:
    """The paper's line network (4 FC layers of 300, ReLU, scalar output) with random weights."""
    import torch

    torch.manual_seed(seed)
    inputs = 3 * ROIS + 1
    net = torch.nn.Sequential(
        torch.nn.Linear(inputs, 300), torch.nn.ReLU(), torch.nn.Linear(300, 300), torch.nn.ReLU(),
        torch.nn.Linear(300, 300), torch.nn.ReLU(), torch.nn.Linear(300, 300), torch.nn.ReLU(),
        torch.nn.Linear(300, 1)).eval()
    with torch.no_grad():  # outputs on the scale of xv pixels
        net[-1].weight.mul_(400.0)
        net[-1].bias.fill_(1000.0)
    torch.onnx.export(net, torch.zeros(1, inputs), str(path), input_names=["features"],
                      output_names=["xv"], dynamic_axes={"features": {0: "m"}, "xv": {0: "m"}},
                      opset_version=17, dynamo=False)


class OrtMlp:
    """The random-weight MLP on ONNX Runtime, one thread: features (M, 3R+1) -> xv (M,)."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"features": features})[0][:, 0]


def mlp_decode(mlp: Callable[[np.ndarray], np.ndarray], config: PreprocessConfig):
    """Peer decode: the C++ feature kernel, then the MLP on the valid y's (Eq. 14)."""
    def decode(scans: np.ndarray) -> np.ndarray:
        features, valid, _ = line_features(scans, config)
        xv = np.full(valid.shape, np.nan, np.float32)
        xv[valid] = mlp(features[valid])
        return xv
    return decode


def distilled_lut(mlp: Callable[[np.ndarray], np.ndarray], config: PreprocessConfig) -> LineLUT:
    """The LUT of the same network: ROI r's colour in its slot of the feature vector, zeros in
    the other ROIs' slots, y / (Q - 1) last."""
    def fn(roi: int, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        f = np.zeros((y.shape[0], 3 * ROIS + 1), np.float32)
        f[:, 3 * roi:3 * roi + 3] = u
        f[:, -1] = y / (PIXELS - 1)
        return mlp(f)
    return LineLUT.from_function(fn, rois=ROIS, Q=PIXELS, ny=33, nc=64, config=config,
                                 meta={"distilled_from": "bench MLP"})


def time_interleaved(calls: dict[str, tuple[Callable[[], Any], int]], rounds: int
                     ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per round and call (function, lines it decodes): lines per wall-clock second and lines
    per CPU-second of this process (all its threads). On a shared, loaded machine a single-thread
    call's CPU-time rate is its speed on one core; the wall-clock rate also counts the time the
    scheduler gave to other processes. The calls run in a new random order every round."""
    from tqdm import tqdm

    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    for fn, _ in calls.values():  # warm-up: page in inputs, build sessions
        fn()
    names = list(calls)
    order = np.random.default_rng(0)
    for _ in tqdm(range(rounds), desc="bench_lines rounds", unit="round"):
        # A new order every round: a fixed one always puts the same contender after the NumPy
        # twin and the MLP, which leave the LUT out of the caches (measured: ~3 % slower).
        for name in order.permutation(names):
            fn, lines = calls[name]
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            t1, c1 = time.perf_counter(), time.process_time()
            wall[name].append(lines / (t1 - t0))
            cpu[name].append(lines / max(c1 - c0, 1e-9))
    return wall, cpu


def run(lines: int, unique: int, twin_lines: int, rounds: int, mlp_bundle: str | None,
        seed: int) -> dict[str, Any]:
    from sdk.tools.bench_kernels import host_details

    host = host_details()
    host["line_paths"] = line_paths()
    config = PreprocessConfig()
    base, source = realistic_scans(unique, seed)
    scans = np.ascontiguousarray(np.resize(base, (lines, *base.shape[1:])))

    with tempfile.TemporaryDirectory() as tmp:
        if mlp_bundle:
            from sdk.lines.decoders import LineDecoder

            decoder = LineDecoder(mlp_bundle)
            mlp, peer_name = decoder.predict_features, f"trained line MLP bundle {mlp_bundle}"
            peer = lambda s: decoder.decode(s).xv  # noqa: E731
        else:
            onnx_path = Path(tmp) / "line_mlp.onnx"
            random_mlp_onnx(onnx_path, seed)
            mlp = OrtMlp(onnx_path)
            peer_name = "MLP 4x300 FC (random weights) on ONNX Runtime, 1 thread"
            peer = mlp_decode(mlp, config)
        lut = distilled_lut(mlp, config)

        check = scans[:min(16, lines)]
        got, want = lut.decode(check), lut.decode_reference(check)
        bit_exact = bool(np.array_equal(got.xv, want.xv, equal_nan=True)
                         and np.array_equal(got.roi, want.roi)
                         and np.array_equal(got.flags, want.flags))
        peer_xv = peer(check)
        both = np.isfinite(got.xv) & np.isfinite(peer_xv)
        lut_vs_mlp = float(np.median(np.abs(got.xv[both] - peer_xv[both]))) if both.any() else None

        peer_lines = min(lines, 64)
        twin = scans[:twin_lines]
        out = lut.decode(scans)  # the output buffers every C++ call reuses, as a stream does
        calls: dict[str, tuple[Callable[[], Any], int]] = {
            "cpp_lut_1t": (lambda: lut.decode(scans, num_threads=1, out=out), lines),
            "cpp_lut_all": (lambda: lut.decode(scans, num_threads=0, out=out), lines),
        }
        for path, why in line_paths().items():
            if not why:
                calls[f"cpp_lut_{path}_1t"] = (
                    lambda p=path: lut.decode(scans, path=p, num_threads=1, out=out), lines)
        calls["read_only_1t"] = (lambda: _kernels.read_checksum(scans), lines)
        calls["numpy_twin"] = (lambda: lut.decode_reference(twin), twin_lines)
        calls["mlp_ort"] = (lambda: peer(scans[:peer_lines]), peer_lines)
        wall, cpu = time_interleaved(calls, rounds)
        counts = lut.decode(scans).counts

    host["load_average_at_end"] = list(os.getloadavg())
    median = {name: statistics.median(r) for name, r in wall.items()}
    best_wall = {name: max(r) for name, r in wall.items()}
    per_cpu = {name: statistics.median(r) for name, r in cpu.items()}
    core = per_cpu["cpp_lut_1t"]
    rows = [
        {"what": "LUT decode, 3x8x2056 RGB lines, 1 core (lines per CPU-second, median)",
         "value": core, "unit": "lines/s", "peer": peer_name,
         "goal": f">= {GOAL_LINES_PER_S:.0f}", "met": core >= GOAL_LINES_PER_S},
        {"what": "LUT decode 1 core vs MLP peer (speed-up, CPU time)",
         "value": core / per_cpu["mlp_ort"], "unit": "x", "peer": "mlp_ort", "goal": "-",
         "met": None},
        {"what": "memory floor: reading each 3x8x2056 RGB line once, 1 core (lines per "
                 "CPU-second, median)",
         "value": per_cpu["read_only_1t"], "unit": "lines/s", "peer": "-",
         "goal": f"{'>=' if per_cpu['read_only_1t'] >= GOAL_LINES_PER_S else '<'} "
                 f"{GOAL_LINES_PER_S:.0f} (the decoder's ceiling)", "met": None},
        {"what": "LUT decode as a fraction of the memory floor's rate, 1 core",
         "value": core / per_cpu["read_only_1t"], "unit": "of floor", "peer": "read_only_1t",
         "goal": "-", "met": None},
    ]
    return {"command": COMMAND, "host": host, "input": source,
            "lines": lines, "unique_scans": unique, "twin_lines": twin_lines, "rounds": rounds,
            "lut": {"rois": lut.rois, "ny": lut.ny, "nc": lut.nc, "combine": lut.combine,
                    "bytes": int(lut.table.nbytes)},
            "bit_exact_vs_twin": bit_exact, "lut_vs_mlp_median_abs_px": lut_vs_mlp,
            "decode_counts": counts, "lines_per_cpu_s_median": per_cpu,
            "lines_per_s_median": median, "lines_per_s_best": best_wall,
            "lines_per_s_rounds": wall, "lines_per_cpu_s_rounds": cpu,
            "goal_lines_per_s": GOAL_LINES_PER_S, "ratio_vs_goal": core / GOAL_LINES_PER_S,
            "ratio_vs_peer": {name: v / per_cpu["mlp_ort"] for name, v in per_cpu.items()},
            "rows": rows}


def to_markdown(report: dict[str, Any]) -> str:
    host = report["host"]
    out = ["# Diffraction line decoder: lines/s", "",
           f"Command: `{report['command']}`. Input: {report['input']}; {report['lines']} lines "
           f"(3 ROIs x 8 x 2056 RGB). Host: {host.get('cpu')}, {host.get('cores')} cores, flags "
           f"{' '.join(host.get('cpu_flags', []))}; load average "
           f"{host.get('load_average_at_start')}"
           f" at start, {host.get('load_average_at_end')} at end (a shared machine: absolute "
           "numbers are lower bounds).", "",
           f"C++ equals the NumPy twin bit for bit: {report['bit_exact_vs_twin']}. LUT "
           f"{report['lut']} distilled from the peer MLP; median |xv_LUT - xv_MLP| = "
           f"{report['lut_vs_mlp_median_abs_px']} px.", "",
           "Rates: lines per CPU-second of the process (median of rounds; for one thread the "
           "speed on one core, independent of how much of the shared machine the scheduler "
           "gave us), and wall-clock lines/s (median and best round). `cpp_lut_all` uses every "
           "core: its CPU-time rate is per core, its wall rate the total.", "",
           "| contender | lines/CPU-s (median) | wall lines/s (median) | wall lines/s (best) "
           "| CPU rate vs goal 45k | CPU rate vs MLP peer |",
           "| --- | --- | --- | --- | --- | --- |"]
    for name, v in report["lines_per_cpu_s_median"].items():
        out.append(f"| {name} | {v:,.0f} | {report['lines_per_s_median'][name]:,.0f} | "
                   f"{report['lines_per_s_best'][name]:,.0f} | "
                   f"{v / report['goal_lines_per_s']:.2f} | {report['ratio_vs_peer'][name]:.1f}x |")
    out += ["", f"Decode counts: {report['decode_counts']}", ""]
    return "\n".join(out)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["lines_per_cpu_s_median"])
    values = [report["lines_per_cpu_s_median"][n] for n in names]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh(names, values, color=["C0" if n.startswith("cpp") else
                                  "C7" if n.startswith("read_only") else "C1" for n in names])
    ax.axvline(report["goal_lines_per_s"], color="red", linestyle="--", label="goal 45k lines/s")
    ax.set_xscale("log")
    ax.set_xlabel("lines per CPU-second (3 ROIs x 8 x 2056 RGB), median of rounds")
    ax.set_title(f"Line decoder on {report['host'].get('cpu')} (shared, loaded machine)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=512, help="lines per timed C++ call")
    parser.add_argument("--unique", type=int, default=128, help="distinct simulated scans")
    parser.add_argument("--twin-lines", type=int, default=16, help="lines for the NumPy twin")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--mlp-bundle", default=None,
                        help="a trained line-decoder bundle (sdk.lines.build_line_bundles) as peer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("reports/lines_speed"))
    args = parser.parse_args(argv)
    for name in ("lines", "unique", "twin_lines", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    report = run(args.lines, args.unique, args.twin_lines, args.rounds, args.mlp_bundle, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "perf.json").write_text(json.dumps(report, indent=2))
    (args.out / "perf.md").write_text(to_markdown(report))
    plot(report, args.out / "perf.png")
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
