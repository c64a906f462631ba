"""Smoke test of ``python -m sdk.tools.bench_kernels``: one short round of every contender on
every shape; the report, the README rows and the plot are written and hold what they claim."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from tools import bench_kernels  # noqa: E402


def test_bench_kernels_writes_its_report(tmp_path):
    assert bench_kernels.main(["--rounds", "1", "--batch-seconds", "0.002",
                               "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert "PWLQ integer GEMM" in (tmp_path / "perf.md").read_text()
    shapes = {s[0] for s in bench_kernels.SHAPES}
    for entry in report["results"]:
        assert entry["shape"] in shapes
        assert set(entry["contenders"]) == set(bench_kernels.CONTENDERS)
        # Random 4-bit codes with 10 % tail weights: about 1 - 0.9**4 of the k-blocks.
        assert 0.25 < entry["tail_block_density"] < 0.45
        assert 0.08 < entry["tail_quad_density"] < 0.15  # ~10 % of codes, in fours
        assert 0 <= entry["rounds_quiet"] <= 1 and entry["rounds_used"] == 1  # one round: used
    # The geomean row over the ResNet-20 shapes (which statistic: the synthetic test below).
    for threads in {e["threads"] for e in report["results"]}:
        key = "vs_ort" if threads == 1 else "vs_ort_best"
        resnet = [e[key]["pwlq_sparse"] for e in report["results"]
                  if e["threads"] == threads and e["shape"] in bench_kernels.RESNET]
        tag = "1 thread" if threads == 1 else f"{threads} threads, best wall time"
        row = next(r for r in report["rows"] if r["what"] == (
            "PWLQ W4A8 (folded: dense + sparse tail) vs ORT MatMulInteger, ResNet-20 3x3 GEMMs "
            f"(geomean), {tag}"))
        assert row["value"] == pytest.approx(bench_kernels.geomean(resnet), abs=1e-3)
    gate = report["quiet_gate"]  # one gated round per shape and thread count
    assert gate["rounds"] == len(report["results"]) and 0 <= gate["unquiet_rounds"] <= gate["rounds"]
    whats = [row["what"] for row in report["rows"]]
    assert any(w.startswith("PWLQ W4A8 (folded: dense + sparse tail) vs ORT MatMulInteger, "
                            "ResNet-20") for w in whats)
    if report["host"]["peak_gops_per_thread_measured"]:
        bound = [r for r in report["rows"] if "work bound" in r["what"]]
        assert bound and all(r["value"] > 0 for r in bound)
    else:  # no AVX-512 VNNI: no peak to measure against, and no rows that need one
        assert not any("work bound" in w or "fraction of" in w for w in whats)


def test_summary_rows_use_medians_at_one_thread_and_best_rounds_at_several():
    """Synthetic results whose median and best-round ratios differ: each summary row must carry
    the statistic its text names (one round, as in the smoke test above, cannot tell them
    apart)."""
    results = []
    for threads in (1, 2):
        for i, (label, m, k, n) in enumerate(bench_kernels.SHAPES):
            ratio = {"pwlq_sparse": 1.0 + 0.1 * i, "uniform_int8": 2.0}
            best = {name: 3.0 * v for name, v in ratio.items()}
            results.append({"shape": label, "threads": threads, "vs_ort": ratio,
                            "vs_ort_best": best, "vs_ort_cpu_time": ratio,
                            "sparse_speedup_over_dense2": 1.5})
    rows = {r["what"]: r["value"] for r in bench_kernels.summary_rows(results, [1, 2], {})}
    resnet = [1.0 + 0.1 * i for i, s in enumerate(bench_kernels.SHAPES)
              if s[0] in bench_kernels.RESNET]
    head = "PWLQ W4A8 (folded: dense + sparse tail) vs ORT MatMulInteger, "
    assert rows[head + "ResNet-20 3x3 GEMMs (geomean), 1 thread"] == pytest.approx(
        bench_kernels.geomean(resnet), abs=1e-3)
    assert rows[head + "ResNet-20 3x3 GEMMs (geomean), 2 threads, best wall time"] == (
        pytest.approx(3.0 * bench_kernels.geomean(resnet), abs=1e-3))
    last = 1.0 + 0.1 * (len(bench_kernels.SHAPES) - 1)
    assert rows[head + "1024x576x128, 2 threads, best wall time"] == pytest.approx(3.0 * last)
