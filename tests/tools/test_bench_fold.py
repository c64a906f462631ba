"""Smoke test of ``python -m sdk.tools.bench_fold`` on two of its shapes, one round: every
contender is checked against its reference inside the run, and the report, the README rows and
the plot are written and hold what they claim."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from sdk import _kernels  # noqa: E402
from sdk import fold_conv as fc  # noqa: E402
from tools import bench_fold  # noqa: E402


def test_bench_fold_writes_its_report(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_fold, "SHAPES", ((56, 2), (28, 6)))
    assert bench_fold.main(["--rounds", "1", "--threads", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert [(r["h"], r["dilation"]) for r in report["results"]] == [(56, 2), (28, 6)]
    gate = report["quiet_gate"]  # one gated round per shape
    assert gate["rounds"] == 2 and 0 <= gate["unquiet_rounds"] <= 2 and gate["waits"] >= 0
    assert gate["probe"] == ("vpdpbusd" if _kernels.vpdpbusd_per_second(0.01) > 0 else
                             "vpmaddubsw" if _kernels.vpmaddubsw_per_second(0.01) > 0 else None)
    for r in report["results"]:
        assert set(r["speedup"]) == set(bench_fold.GOALS)
        assert all(v > 0 for v in r["speedup"].values())
        # Random 8-bit codes with 10 % tail weights: about 1 - 0.9**4 of the groups.
        assert 0.25 < r["pwlq_tail_group_density"] < 0.45
        assert 0.08 < r["pwlq_tail_quad_density"] < 0.13  # ~10 % of codes, in fours
        assert r["pwlq_over_int8"] > 0
        assert 0 <= r["rounds_quiet"] <= 1 and r["rounds_used"] == 1  # one round: always used
        weight = np.zeros((4 * bench_fold.CHANNELS,) * 2 + (3, 3), np.float32)
        assert r["fp32_algorithm"] == fc.fp32_algorithm((1, bench_fold.CHANNELS, r["h"], r["w"]),
                                                        weight, dilation=r["dilation"])
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


def test_quiet_rounds_drop_unquiet_ones_only_when_half_are_quiet():
    import numpy as np

    q = np.array([True, False, True, True])
    assert bench_fold.quiet_rounds(q).tolist() == [True, False, True, True]
    # fewer than half quiet: every round counts (the report then says so: rounds_used)
    assert bench_fold.quiet_rounds(np.array([True, False, False, False])).all()
    assert bench_fold.quiet_rounds(np.array([True, False, False])).all()
    assert bench_fold.quiet_rounds(np.array([True, True, False])).tolist() == [True, True, False]
    # a single quiet round is never all a shape's figures rest on
    assert bench_fold.quiet_rounds(np.array([True, False])).all()


def test_bench_fold_forced_integer_path(tmp_path, monkeypatch):
    """``--integer-path avx2 --pwlq-bits 4``: the integer contenders on the AVX2 path with 4-bit
    PWLQ codes, reported as information rows (the peer keeps the host's best FP32 path)."""
    from sdk import fold_conv as fc

    if fc.available_paths(integer=True)["avx2"] is not None:
        pytest.skip(f"avx2: {fc.available_paths(integer=True)['avx2']}")
    monkeypatch.setattr(bench_fold, "SHAPES", ((28, 2),))
    out = tmp_path / "avx2"
    assert bench_fold.main(["--rounds", "1", "--threads", "1", "--integer-path", "avx2",
                            "--pwlq-bits", "4", "--out", str(out)]) == 0
    report = json.loads((out / "bench.json").read_text())
    assert report["paths"]["integer"] == "avx2" and report["integer_path_forced"]
    assert report["command"] == (f"python -m sdk.tools.bench_fold --integer-path avx2 "
                                 f"--pwlq-bits 4 --out {out}")
    # 4-bit codes with 10 % tail weights and tail codes 0..7: fewer zero codes than 8-bit ones.
    assert 0.25 < report["results"][0]["pwlq_tail_group_density"] < 0.45
    perf = json.loads((out / "perf.json").read_text())
    assert perf["command"] == report["command"]  # the table's "reproduce" column
    rows = perf["rows"]
    assert [row["what"].split(",")[0] for row in rows] == [
        "folded conv int8 fused on the avx2 path (forced)",
        "folded conv PWLQ fused (4-bit) on the avx2 path (forced)"]
    assert all(row["goal"] is None and row["met"] is None and row["value"] > 0 for row in rows)


def test_bench_fold_rejects_a_path_this_host_lacks(tmp_path, capsys):
    from sdk import fold_conv as fc

    missing = [p for p, why in fc.available_paths(integer=True).items() if why]
    if not missing:
        pytest.skip("every integer path runs here")
    with pytest.raises(SystemExit):
        bench_fold.main(["--integer-path", missing[0], "--out", str(tmp_path)])
    assert f"--integer-path {missing[0]}" in capsys.readouterr().err
