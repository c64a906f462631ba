"""The `prism` command end to end: train → deploy → infer → bench, on the public API."""
import json

import numpy as np
import pytest

pytest.importorskip("torch")
from sdk.tools.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("PRISM_CACHE_DIR", str(cache))
    yield cache
    mp.undo()


def test_train_deploy_infer_bench(trained, tmp_path, capsys):
    assert main(["train", "--model", "lenet5", "--epochs", "3", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cached"] is False and out["test_accuracy"] > 0.5  # three epochs are well above chance (0.1)
    ckpt = out["checkpoint"]

    assert main(["train", "--model", "lenet5", "--epochs", "3", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["cached"] is True

    bundle = tmp_path / "lenet.prism"
    assert main(["deploy", ckpt, "--out", str(bundle)]) == 0
    dep = json.loads(capsys.readouterr().out)
    assert dep["target"] == "cpu" and dep["max_abs_diff"] < 1e-3

    assert main(["infer", str(bundle), "--dataset", "mnist5k"]) == 0
    acc = json.loads(capsys.readouterr().out)
    # the engine reproduces the PyTorch test accuracy from raw u8 frames through the recipe
    assert abs(acc["accuracy"] - out["test_accuracy"]) < 0.005

    frames = np.zeros((3, 28, 28), np.uint8)
    np.save(tmp_path / "frames.npy", frames)
    assert main(["infer", str(bundle), "--input", str(tmp_path / "frames.npy"),
                 "--output", str(tmp_path / "y.npy")]) == 0
    assert np.load(tmp_path / "y.npy").shape == (3, 10)
    capsys.readouterr()

    report_path = tmp_path / "bench.json"
    assert main(["bench", str(bundle), "--iterations", "40", "--warmup", "2", "--quiet",
                 "--json", str(report_path)]) == 0
    text = capsys.readouterr().out
    assert "Prism overhead vs raw onnxruntime" in text
    report = json.loads(report_path.read_text())
    for name in ("prism", "onnxruntime"):
        lat = report["results"][name]["latency_ms"]
        assert lat["n"] == 40 and lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert report["results"][name]["throughput_per_s"] > 0
    assert report["overhead"]["p50_ratio"] > 0
    assert report["host"]["cores"] >= 1


def test_quantize_command(trained, tmp_path, capsys):
    from sdk.models.train import checkpoint_path, default_config

    assert main(["train", "--model", "lenet5", "--epochs", "3", "--quiet"]) == 0
    fp32 = json.loads(capsys.readouterr().out)["test_accuracy"]
    stem = checkpoint_path(default_config("lenet5", epochs=3))
    out = tmp_path / "q.prism"
    assert main(["quantize", str(stem), "--bits", "8", "--calibration-samples", "128",
                 "--out", str(out), "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["precision"] == "pwlq8" and res["form"] == "integer"
    assert abs(res["test_accuracy"] - fp32) < 0.01  # 8-bit PWLQ keeps the FP32 accuracy
    # an existing ONNX model (the FP32 bundle's graph) quantizes the same way
    assert main(["deploy", str(stem), "--out", str(tmp_path / "fp32.prism")]) == 0
    capsys.readouterr()
    assert main(["quantize", str(tmp_path / "fp32.prism" / "model.onnx"), "--bits", "8",
                 "--calibration-samples", "128", "--out", str(tmp_path / "o.prism"), "--quiet"]) == 0
    res_onnx = json.loads(capsys.readouterr().out)
    assert abs(res_onnx["test_accuracy"] - fp32) < 0.01
    assert main(["quantize", str(stem), "--bits", "12", "--out", str(out), "--quiet"]) == 2
    assert "12" in capsys.readouterr().err


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["infer", str(tmp_path / "missing.prism"), "--dataset", "mnist5k"]) == 2
    assert "bundle not found" in capsys.readouterr().err


def test_unknown_target(trained, tmp_path, capsys):
    from sdk.models.train import checkpoint_path, default_config

    stem = checkpoint_path(default_config("lenet5", epochs=3))
    assert main(["deploy", str(stem), "--target", "tpu", "--out", str(tmp_path / "x")]) == 2
    assert "unknown target 'tpu'" in capsys.readouterr().err
