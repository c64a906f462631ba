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
