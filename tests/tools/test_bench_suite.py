"""`prism bench` suite: statistics, scenarios (virtual clock), comparison, reports, CLI."""
import json

import numpy as np
import pytest

from sdk.errors import InputError
from tools.bench_scenarios import Budget, multi_stream, offline, sensor_paced, single_stream
from tools.bench_stats import differ, latency_summary, quantile_ci
from tools.bench_suite import compare_outputs, dynamic_report, run_suite, strip_private


# -- statistics -------------------------------------------------------------------------------
def test_percentile_ci_covers_the_true_quantile():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(40):
        s = np.sort(rng.exponential(1.0, 400))
        lo, hi = quantile_ci(s, 0.9)
        hits += lo <= np.log(10) <= hi  # exponential(1): q90 = ln 10
    assert hits >= 34  # 95 % nominal coverage, 40 trials


def test_latency_summary_fields_and_open_tail():
    s = latency_summary(np.linspace(1e-3, 2e-3, 20))
    assert s["n"] == 20 and s["min"] <= s["p50"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"]
    assert s["ci"]["p99"][1] is None  # 20 samples cannot bound p99 from above
    a = latency_summary(np.full(500, 1e-3) + np.random.default_rng(0).random(500) * 1e-5)
    b = latency_summary(np.full(500, 2e-3) + np.random.default_rng(1).random(500) * 1e-5)
    assert differ(a, b) is True and differ(a, a) is False


def test_legacy_latency_stats_has_p95():
    from tools.bench import LatencyStats

    st = LatencyStats.from_seconds(np.linspace(0, 1, 101))
    assert st.p90 <= st.p95 <= st.p99


# -- scenarios on a virtual clock ------------------------------------------------------------
class VirtualDevice:
    """A fake engine on a virtual clock: each inference takes ``runtime`` seconds."""

    def __init__(self, runtime):
        self.now, self.runtime, self.calls = 0.0, runtime, 0

    def clock(self):
        return self.now

    def sleep(self, dt):
        self.now += dt

    def infer(self, x):
        self.now += self.runtime(self.calls) if callable(self.runtime) else self.runtime
        self.calls += 1
        return x


def test_sensor_paced_keeps_up():
    dev = VirtualDevice(0.004)
    r = sensor_paced(dev.infer, np.zeros((1, 2)), Budget(iterations=50, warmup=0), rate=100,
                     clock=dev.clock, sleep=dev.sleep)
    assert r["keeps_up"] and r["frames_skipped"] == 0 and r["frames_processed"] == 50
    assert r["end_to_end_ms"]["p99"] == pytest.approx(4.0, abs=1e-6)
    assert r["runtime_under_period_share"] == 1.0 and r["mean_frame_lag"] == pytest.approx(1.0, abs=0.05)
    assert r["sustained_rate_per_s"] == pytest.approx(100, rel=0.03)


def test_sensor_paced_rate_that_cannot_be_met_is_a_result():
    dev = VirtualDevice(0.025)  # 25 ms per frame at 100 fps: every ~2.5th frame
    r = sensor_paced(dev.infer, np.zeros((1, 2)), Budget(iterations=100, warmup=0), rate=100,
                     clock=dev.clock, sleep=dev.sleep)
    assert not r["keeps_up"] and "cannot keep up" in r["verdict"]
    assert r["frames_arrived"] == 100 and r["frames_processed"] + r["frames_skipped"] == 100
    assert 35 <= r["frames_processed"] <= 42 and r["sustained_rate_per_s"] == pytest.approx(40, rel=0.1)
    assert 25.0 <= r["end_to_end_ms"]["p50"] <= 35.0 and r["runtime_under_period_share"] == 0.0
    assert r["mean_frame_lag"] > 2


def test_sensor_paced_line_rate_and_occasional_spikes():
    # 1743 lines/s (period 0.574 ms); a 0.3 ms kernel with a 3 ms hiccup every 50th line
    dev = VirtualDevice(lambda i: 3e-3 if i % 50 == 49 else 3e-4)
    r = sensor_paced(dev.infer, np.zeros((1, 2)), Budget(iterations=500, warmup=0), rate=1743,
                     clock=dev.clock, sleep=dev.sleep)
    assert r["period_ms"] == pytest.approx(1000 / 1743)
    assert r["frames_skipped"] > 0 and 0.9 < r["runtime_under_period_share"] < 1.0
    assert not r["keeps_up"]  # p99 runtime (3 ms) is over the period, although p50 is well under
    with pytest.raises(InputError, match="rate"):
        sensor_paced(dev.infer, np.zeros((1, 2)), Budget(iterations=5), rate=0)


def test_loadgen_style_scenarios():
    calls = []
    infer = lambda x: calls.append(x.shape[0])  # noqa: E731
    x = np.zeros((3, 2), np.float32)
    assert single_stream(infer, x[:1], Budget(iterations=7, warmup=2))["latency_ms"]["n"] == 7
    m = multi_stream(infer, x, Budget(iterations=4, warmup=0), streams=5)
    assert m["streams"] == 5 and calls[-1] == 5
    o = offline(infer, x, Budget(iterations=3, warmup=0), batch=8)
    assert o["batch"] == 8 and calls[-1] == 8 and o["throughput_per_s"] > 0
    timed = single_stream(infer, x[:1], Budget(min_seconds=0.05, min_queries=3, warmup=0))
    assert timed["latency_ms"]["n"] >= 3 and timed["seconds"] >= 0.05


# -- comparison, dynamic, host ----------------------------------------------------------------
def test_compare_outputs_polygraphy_style():
    ref = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)
    ok = compare_outputs(ref, ref + 1e-4, atol=1e-3, rtol=0)
    assert ok["pass"] and ok["top1_agreement"] == 1.0 and ok["max_abs"] == pytest.approx(1e-4, rel=1e-2)
    bad = compare_outputs(ref, ref * np.array([[1, 1], [-1, 1]], np.float32), atol=1e-3, rtol=1e-3)
    assert not bad["pass"] and bad["mismatched"] == 1 and bad["top1_agreement"] == 0.5
    assert not compare_outputs(ref, ref[:1], 1, 1)["pass"]


def test_dynamic_report_duck_typed():
    class Dyn:
        def stats(self):
            return {"samples": 10, "mean_macs": 5e6, "stages": [
                {"stage": 0, "entered": 10, "exited": 7, "calls": 2, "seconds": 0.002, "macs": 3e6},
                {"stage": 1, "entered": 3, "exited": 3, "calls": 2, "seconds": 0.004, "macs": 9e6}]}

    d = dynamic_report(Dyn())
    assert d["exit_histogram"] == [7, 3] and d["stages"][0]["exit_share"] == 0.7
    assert d["stages"][1]["ms_per_call"] == pytest.approx(2.0)
    assert dynamic_report(object()) is None


def test_jetson_info_from_a_fake_tree(tmp_path):
    from tools.bench_host import jetson_info, peak_rss_mb

    assert jetson_info(str(tmp_path)) is None
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_text("NVIDIA Jetson AGX Orin Developer Kit\x00")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0\n")
    (tmp_path / "nvpmodel.txt").write_text("NV Power Mode: MAXN\n0\n")
    gpu = tmp_path / "sys/class/devfreq/17000000.gpu"
    gpu.mkdir(parents=True)
    (gpu / "cur_freq").write_text("1300500000")
    (gpu / "max_freq").write_text("1300500000")
    (gpu / "governor").write_text("nvhost_podgov")
    info = jetson_info(str(tmp_path))
    assert info["model"] == "NVIDIA Jetson AGX Orin Developer Kit" and "R36" in info["l4t"]
    assert "MAXN" in info["power_mode"] and info["devfreq"]["17000000.gpu"]["cur_mhz"] == pytest.approx(1300.5)
    assert peak_rss_mb() > 10


# -- the suite on real bundles ----------------------------------------------------------------
@pytest.fixture(scope="module")
def fp16_bundle(tiny_model, tmp_path_factory):
    torch = pytest.importorskip("torch")
    import sdk
    from sdk.preprocess import PreprocessRecipe

    recipe = PreprocessRecipe(pixel_format="Mono8", channels="gray", size=(28, 28), mean=(0.13,), std=(0.31,))
    return sdk.deploy(tiny_model, target="jetson", example_input=torch.zeros(1, 1, 28, 28), preprocess=recipe,
                      out=tmp_path_factory.mktemp("j") / "tiny.jetson.prism", name="tiny")


def test_run_suite_side_by_side(tiny_bundle, fp16_bundle, tmp_path):
    from tools.bench_report import to_markdown, write_plots

    with pytest.warns(RuntimeWarning, match="CPU"):
        report = run_suite([tiny_bundle.path, fp16_bundle.path],
                           scenarios=("single-stream", "multi-stream", "offline", "sensor"), batches=(1,),
                           rate=400, streams=2, offline_batch=4, budget=Budget(iterations=8, warmup=1),
                           dataset="mnist5k", accuracy_limit=64, atol=1e-2, rtol=1e-2, progress=False)
    first, second = report["contenders"]
    assert first["backend"] == "onnxruntime" and second["backend"] == "onnxruntime-cpu"
    assert second["precision"] == "fp16" and second["compare_to_first"]["top1_agreement"] >= 0.9
    assert set(first["scenarios"]) == {"single-stream", "multi-stream", "offline", "sensor"}
    assert first["scenarios"]["sensor"]["frames_arrived"] >= 8
    assert {"preprocess", "infer", "postprocess"} <= set(first["breakdown"])
    assert 0 <= first["accuracy"]["accuracy"] <= 1 and first["accuracy"]["samples"] == 64
    assert report["peak_rss_mb"] > 0 and report["host"]["cores"] >= 1
    clean = strip_private(report)
    json.dumps(clean)  # JSON-ready: no arrays left
    assert "_samples" not in clean["contenders"][0]["scenarios"]["single-stream"]
    md = to_markdown(report)
    for heading in ("## Latency", "## Sensor-paced stream", "## Outputs vs", "## Per-inference breakdown", "## Accuracy"):
        assert heading in md
    plots = write_plots(report, tmp_path / "plots")
    names = {p.name for p in plots}
    assert "latency_single-stream.png" in names and any(n.startswith("keepup_") for n in names)
    assert all(p.stat().st_size > 1000 for p in plots)


def test_sensor_needs_a_rate(tiny_bundle):
    with pytest.raises(InputError, match="rate"):
        run_suite([tiny_bundle.path], scenarios=("sensor",), budget=Budget(iterations=2), progress=False)


def test_cli_bench_suite_and_backends(tiny_bundle, tmp_path, capsys):
    from tools.cli import main

    out = tmp_path / "r.json"
    assert main(["bench", str(tiny_bundle.path), "--backend", "onnxruntime,onnxruntime-cpu", "--rate", "300",
                 "--iterations", "10", "--warmup", "1", "--quiet", "--json", str(out), "--md",
                 str(tmp_path / "r.md"), "--plots", str(tmp_path / "p")]) == 0
    text = capsys.readouterr().out
    assert "Sensor-paced stream" in text and "keeps up" in text
    report = json.loads(out.read_text())
    assert [c["backend"] for c in report["contenders"]] == ["onnxruntime", "onnxruntime-cpu"]
    assert report["contenders"][1]["compare_to_first"]["pass"]
    assert (tmp_path / "r.md").read_text().startswith("# prism bench")
    assert main(["bench", str(tiny_bundle.path), "--scenario", "single-stream", "--batch", "1,4",
                 "--iterations", "5", "--warmup", "1", "--quiet"]) == 0
    assert "single-stream/b4" in capsys.readouterr().out


def test_dynamic_bundle_exits_and_jetson_multi_graph(tmp_path):
    """A multi-stage S2DNAS bundle: per-stage latency and exit shares in the suite; the Jetson path
    converts and lints every stage graph."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sdk.toolchain.s2dnas")
    import sdk
    from sdk.toolchain.s2dnas import Architecture, transform
    from torch import nn

    class TinyRes(nn.Module):  # as in tests/runtime/test_dynamic.py
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
            self.conv = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
            self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32),
                                      nn.ReLU())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            x = self.stem(x)
            x = torch.relu(x + self.conv(x))
            return self.fc(torch.flatten(self.pool(self.down(x)), 1))

    torch.manual_seed(0)
    arch = Architecture(3, 8, ((2, 5), (3, 6)), ((True, True, False), (True, False, True)))
    net = transform(TinyRes().eval(), arch).eval()
    net.set_thresholds([0.3, 0.3])
    x = torch.randn(4, 1, 28, 28)
    cpu = sdk.deploy(net, example_input=x[:2], out=tmp_path / "d.prism", name="d")
    report = run_suite([cpu.path], scenarios=("single-stream",), budget=Budget(iterations=5, warmup=1),
                       batches=(4,), progress=False)
    dyn = report["contenders"][0]["dynamic"]
    assert dyn and dyn["samples"] > 0 and len(dyn["stages"]) == 3
    assert sum(s["exit_share"] for s in dyn["stages"]) == pytest.approx(1.0)
    jet = sdk.deploy(net, target="jetson", example_input=x[:2], out=tmp_path / "dj.prism", name="d")
    graphs = jet.manifest["tensorrt"]["graphs"]
    assert len(graphs) == 3 and all(g["lint"]["ok"] and "fp16" in g for g in graphs.values())
