"""Smoke test of ``python -m sdk.tools.bench_fold`` on two of its shapes, one round: every
contender is checked against its reference inside the run, and the report, the README rows and
the plot are written and hold what they claim."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from sdk import _kernels  # noqa: E402
from tools import bench_fold  # noqa: E402


def test_bench_fold_writes_its_report(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_fold, "SHAPES", ((56, 2), (28, 6)))
    assert bench_fold.main(["--rounds", "1", "--threads", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert [(r["h"], r["dilation"]) for r in report["results"]] == [(56, 2), (28, 6)]
    gate = report["quiet_gate"]  # one gated round per shape
    assert gate["rounds"] == 2 and 0 <= gate["unquiet_rounds"] <= 2 and gate["waits"] >= 0
    for r in report["results"]:
        assert set(r["speedup"]) == set(bench_fold.GOALS)
        assert all(v > 0 for v in r["speedup"].values())
        # Random 8-bit codes with 10 % tail weights: about 1 - 0.9**4 of the groups.
        assert 0.25 < r["pwlq_tail_group_density"] < 0.45
        assert r["pwlq_over_int8"] > 0
    rows = json.loads((tmp_path / "perf.json").read_text())["rows"]
    goals = [row for row in rows if row["goal"] is not None]
    assert {row["what"].split(",")[0] for row in goals} == {
        f"folded conv {bench_fold.LABELS[n]}" for n in bench_fold.GOALS}
    assert all(row["met"] == (row["value"] >= float(row["goal"].split()[-1])) for row in goals)
    fractions = [row for row in rows if "fraction of the measured vpdpbusd peak" in row["what"]]
    if _kernels.vpdpbusd_per_second(0.05) > 0:
        assert len(fractions) == 2 and all(0 < row["value"] for row in fractions)
    else:  # no AVX-512 VNNI: no peak to measure against, and no rows that need one
        assert not fractions
