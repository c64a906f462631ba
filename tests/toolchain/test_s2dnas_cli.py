"""`prism dynamic`: checkpoint → search (tiny budget) → trained multi-stage bundle → test accuracy."""
import json

import pytest

torch = pytest.importorskip("torch")

from sdk.data import dataset_info  # noqa: E402
from sdk.models import build_model  # noqa: E402
from sdk.models.train import save_checkpoint  # noqa: E402
from sdk.tools.cli import main  # noqa: E402


@pytest.mark.parametrize("extra", [[], ["--quantize", "pwlq4", "--backend", "native"]],
                         ids=["float", "pwlq4-native"])
def test_prism_dynamic(tmp_path, capsys, extra):
    torch.manual_seed(0)
    stem = save_checkpoint(build_model("lenet5"), {
        "architecture": {"name": "lenet5", "kwargs": {}}, "dataset": dataset_info("mnist5k"),
        "accuracy": {"test": 0.1, "val": 0.1}}, tmp_path / "lenet")
    out = tmp_path / "lenet.dynamic.prism"
    before = torch.get_num_threads()
    try:
        code = main(["dynamic", str(stem), "--stages", "2", "--groups", "3", "--candidates", "2",
                     "--finetune-epochs", "0.1", "--epochs", "0.2", "--threads", "1", "--quiet",
                     "--out", str(out), "--log", str(tmp_path / "log"), *extra])
    finally:
        torch.set_num_threads(before)
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res["bundle"] == str(out) and len(res["thresholds"]) == 1
    assert len(res["stage_mflops"]) == 2 and sum(res["exit_fractions"]) == pytest.approx(1.0)
    assert 0.0 <= res["test_accuracy"] <= 1.0
    if extra:  # every stage quantized, the exits run on the integer kernels
        assert res["precision"] == "pwlq4" and res["backend"] == "native"
    assert len((tmp_path / "log" / "search_log.jsonl").read_text().splitlines()) == 2


def test_prism_dynamic_names_the_layer_it_cannot_split(tmp_path, capsys):
    stem = save_checkpoint(build_model("lenet5"), {
        "architecture": {"name": "lenet5", "kwargs": {}}, "dataset": dataset_info("mnist5k"),
        "accuracy": {"test": 0.1, "val": 0.1}}, tmp_path / "lenet")
    assert main(["dynamic", str(stem), "--candidates", "1", "--quiet"]) == 2
    assert "layer 'features.0' (Conv2d) has 6 channels, fewer than the 8 groups" in capsys.readouterr().err


def test_prism_dynamic_rejects_an_unknown_precision(tmp_path):
    stem = save_checkpoint(build_model("lenet5"), {
        "architecture": {"name": "lenet5", "kwargs": {}}, "dataset": dataset_info("mnist5k"),
        "accuracy": {"test": 0.1, "val": 0.1}}, tmp_path / "lenet")
    with pytest.raises(SystemExit, match="expected pwlq<bits> or uniform<bits>"):
        main(["dynamic", str(stem), "--stages", "2", "--groups", "3", "--candidates", "1",
              "--finetune-epochs", "0.1", "--epochs", "0.1", "--threads", "1", "--quiet", "--quantize", "int3"])
