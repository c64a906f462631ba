"""`prism conveyor`: the PLC-unreachable error, and a short soak on the simulated line writing
its reports."""
import json

import pytest

pytest.importorskip("pymodbus")
pytest.importorskip("torch")
from firmware_bridge.plc.sim import free_port  # noqa: E402
from sdk.tools.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from sdk.models.conveyor_classifier import ConveyorTrainConfig, deploy_classifier, get_or_train

    model, _ = get_or_train(ConveyorTrainConfig(samples=1200, epochs=10, width=8), progress=False)
    return deploy_classifier(model, tmp_path_factory.mktemp("bundles") / "conveyor.prism").path


def test_unreachable_plc_is_a_clear_error(capsys):
    port = free_port()
    assert main(["conveyor", "--plc", f"127.0.0.1:{port}", "--source", "linescan+sim://", "--quiet"]) == 2
    assert f"PLC at 127.0.0.1:{port} is unreachable" in capsys.readouterr().err


def test_bad_plc_address():
    with pytest.raises(SystemExit, match="HOST:PORT"):
        main(["conveyor", "--plc", "nowhere", "--source", "linescan+sim://", "--quiet"])


def test_short_soak_writes_reports(bundle, tmp_path, capsys):
    out = tmp_path / "reports"
    log = tmp_path / "run.jsonl"
    rc = main(["conveyor", "--soak", "--duration", "3", "--warmup", "1", "--rate", "4000", "--bundle", str(bundle),
               "--out", str(out), "--log", str(log), "--quiet"])
    assert rc == 0
    perf = json.loads((out / "perf.json").read_text())
    assert (out / "perf.md").read_text().startswith("# Conveyor scanner soak")
    assert (out / "perf.png").stat().st_size > 10_000
    assert perf["objects"] > 10 and perf["lines_processed"] > 0
    assert perf["uncounted_drops"] == 0
    assert sum(perf["decisions"].values()) == perf["objects"]
    score = perf["score"]
    assert score["defects"] > 0 and score["good_rejected"] == 0 and score["firings_unmatched"] == 0
    assert perf["decision_latency_ms"]["n"] == perf["objects"]
    assert log.exists() and "keep-up" in capsys.readouterr().out


def test_a_pwlq_dynamic_exit_classifier_runs_the_line(tmp_path, capsys):
    """The classifier trained with Prism, made a two-stage S2DNAS network, every stage PWLQ
    4-bit: the scanner takes its DynamicResult and still rejects every defect at the gate."""
    import torch

    import sdk
    from sdk.models.conveyor_classifier import ConveyorTrainConfig, deploy_classifier, get_or_train, height_map_dataset

    config = ConveyorTrainConfig(samples=1200, epochs=10, width=8)
    model, _ = get_or_train(config, progress=False)
    kw = dict(columns=config.columns, belt_width_mm=config.belt_width_mm, mm_per_count=config.mm_per_count,
              map_shape=config.map_shape)
    maps, labels = height_map_dataset(1500, 30_000, **kw)
    net = sdk.make_dynamic(model, (maps[:, None], labels), stages=2, groups=4, candidates=2,
                           finetune_epochs=0.3, epochs=15, lr=0.01, threads=1, progress=False)
    qnet = sdk.quantize(net, torch.from_numpy(maps[:256, None]), scheme="pwlq", weight_bits=4, progress=False)
    bundle = deploy_classifier(qnet, tmp_path / "dyn.prism")
    assert bundle.manifest["precision"] == "pwlq4" and "dynamic" in bundle.manifest
    out = tmp_path / "reports"
    rc = main(["conveyor", "--soak", "--duration", "3", "--warmup", "1", "--rate", "4000", "--bundle", str(bundle.path),
               "--out", str(out), "--quiet"])
    assert rc == 0
    perf = json.loads((out / "perf.json").read_text())
    assert perf["objects"] > 10 and perf["uncounted_drops"] == 0
    score = perf["score"]
    assert score["defects"] > 0 and score["good_rejected"] == 0 and score["firings_unmatched"] == 0
    assert score["defects_rejected"] == score["defects"]


def test_compress_classifier_names_the_missing_data():
    from sdk.models.conveyor_classifier import ConveyorNet, compress_classifier

    with pytest.raises(ValueError, match="calibration maps"):
        compress_classifier(ConveyorNet(8), quantize="pwlq")
    with pytest.raises(ValueError, match="maps and labels"):
        compress_classifier(ConveyorNet(8), dynamic=True)
