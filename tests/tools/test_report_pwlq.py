"""Smoke test of the PWLQ report (``python -m sdk.tools.report_pwlq``) on a tiny model and grid."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("onnxruntime")
from sdk.toolchain.quant import quantize  # noqa: E402
from sdk.tools import report_pwlq as rp  # noqa: E402

TINY = rp.Plan(table2_bits=(8, 4), table1_bits=(4,), table1_variants=((1, "gaussian_closed"), (2, "empirical")),
               methods=("gaussian_closed", "empirical"), curve_bits=(4, 8), curve_points=6, calibration_images=32,
               test_images=200)
PNGS = ("table2.png", "breakpoints_table1.png", "per_layer_mse.png", "mse_vs_breakpoint.png")


@pytest.fixture(scope="module")
def report(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("pwlq")
    subject = rp.Subject("tiny", tiny_model, key="test")
    results = rp.run_report([subject], TINY, root / "report", root / "cache", progress=False)
    return subject, results, root


def test_writes_report_results_perf_and_plots(report):
    _, results, root = report
    out = root / "report"
    for name in ("report.md", "results.json", "perf.json") + PNGS:
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    runs = saved["models"]["tiny"]["runs"]
    assert set(runs) == {s.key for s in TINY.settings()}
    assert all(0 <= r["accuracy"] <= 1 and "predictions" not in r for r in runs.values())
    tiny = saved["models"]["tiny"]
    assert tiny["deployment"]["packed_weight_pct"] == pytest.approx(100 * 5 / 32, abs=0.5)  # 4 + 1 bits of 32
    assert tiny["deployment"]["ort_agreement"] > 0.99  # the integer ONNX computes what the simulation does
    assert len(tiny["layers"]) == 2 and {"ratio_eq1", "ratio_expected", "bound"} <= set(tiny["layers"][0])
    assert saved["curve_model"] == "tiny" and set(tiny["curve"]["bits"]) == {"4", "8"}

    perf = json.loads((out / "perf.json").read_text())
    assert perf["command"] == "python -m sdk.tools.report_pwlq"
    assert set(perf["host"]) == {"cpu", "cores", "simd"}
    assert len(perf["rows"]) == 3
    for row in perf["rows"]:
        assert set(row) == {"what", "value", "unit", "peer", "goal", "met"} and isinstance(row["met"], bool)

    text = (out / "report.md").read_text()
    for section in range(1, 9):
        assert f"## {section}. " in text
    for png in PNGS:
        assert f"]({png})" in text


def test_second_run_resumes_from_the_cache(report, monkeypatch):
    subject, results, root = report

    def no_quantize(*args, **kwargs):
        raise AssertionError("a cached configuration was quantized again")

    monkeypatch.setattr(rp, "quantize", no_quantize)
    again = rp.run_report([subject], TINY, root / "again", root / "cache", progress=False)
    assert again["models"]["tiny"]["runs"].keys() == results["models"]["tiny"]["runs"].keys()
    assert again["models"]["tiny"]["goal"] == results["models"]["tiny"]["goal"]


def test_shared_calibration_gives_identical_tables(tiny_model):
    x = np.random.default_rng(0).standard_normal((48, 1, 28, 28)).astype(np.float32)
    plain = quantize(tiny_model, x, weight_bits=4, progress=False)
    with rp.shared_calibration():
        quantize(tiny_model, x, scheme="uniform", weight_bits=8, progress=False)  # fills the memo
        shared = quantize(tiny_model, x, weight_bits=4, progress=False)
    for name, t in plain.tables.items():
        s = shared.tables[name]
        assert (t.act_scale, t.act_zero_point) == (s.act_scale, s.act_zero_point)
        np.testing.assert_array_equal(t.codes, s.codes)
    with torch.no_grad():
        np.testing.assert_array_equal(plain(torch.from_numpy(x)).numpy(), shared(torch.from_numpy(x)).numpy())


def test_lemma2_holds_for_gaussian_weights():
    torch.manual_seed(0)
    layer = torch.nn.Linear(512, 16)
    with torch.no_grad():
        layer.weight.normal_()
    x = torch.randn(64, 512)
    qmodel = quantize(torch.nn.Sequential(layer), x, weight_bits=4, bias_correction=False, progress=False)
    (row,) = rp.layer_analysis(qmodel)
    assert row["bound"] == pytest.approx(225 / 784)  # C(3) / (16 C(4)) = 15^2 / (16 * 7^2)
    assert row["ratio_expected"] < row["bound"] and row["ratio_eq1"] < row["bound"]
    assert row["ratio_deployed"] < row["ratio_eq1"]  # the deployed uniform step is the coarser one


def test_goal_needs_both_the_drop_and_a_win_over_uniform():
    labels = np.array([0, 1, 2, 3])
    fp32 = {"accuracy": 1.0}
    plan = rp.Plan()
    runs = {plan.goal.key: {"accuracy": 0.996, "predictions": "0122"},
            plan.goal_peer.key: {"accuracy": 0.996, "predictions": "0113"}}
    goal = rp.goal_check(runs, fp32, plan, labels)
    assert goal["within_goal"] and not goal["better_than_peer"] and not goal["met"]
    assert goal["vs_peer"] == {"only_first_right": 1, "only_second_right": 1, "p_value": 1.0}
    runs[plan.goal_peer.key]["accuracy"] = 0.99
    assert rp.goal_check(runs, fp32, plan, labels)["met"]


def test_full_plan_lists_each_setting_once_goal_first():
    keys = [s.key for s in rp.FULL.settings()]
    assert len(keys) == len(set(keys)) == 35  # 16 + 10 + 7 + 2 after overlaps
    assert keys[:2] == ["pwlq-w4-bp1-gaussian_closed-bc", "uniform-w4-bc"]
