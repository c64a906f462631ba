"""sdk.deploy of a multi-stage network: one verified ONNX graph per stage, the manifest lists
stages, the cached features each reads and writes, thresholds and MACs."""
import pytest

torch = pytest.importorskip("torch")
import sdk  # noqa: E402
from sdk.errors import InputError  # noqa: E402
from sdk.toolchain.s2dnas import Architecture  # noqa: E402
from tests.toolchain.quant_nets import small_dynamic_net  # noqa: E402


@pytest.fixture(scope="module")
def net():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield small_dynamic_net(thresholds=(0.8, 0.9))
    torch.set_num_threads(before)


def test_bundle_lists_stages_features_thresholds_and_macs(net, tmp_path):
    bundle = sdk.deploy(net, example_input=torch.randn(2, 1, 28, 28), out=tmp_path / "d.prism", name="vggish")
    dyn = bundle.manifest["dynamic"]
    assert [g.name for g in bundle.graphs] == ["stage0", "stage1", "stage2"]
    assert dyn["thresholds"] == [0.8, 0.9]
    assert [s["macs"] for s in dyn["stages"]] == net.stage_macs and dyn["static_macs"] == net.static_macs
    assert bundle.manifest["export"]["max_abs_diff"] < 1e-4
    written = set()
    for j, (stage, graph) in enumerate(zip(dyn["stages"], bundle.graphs)):
        assert [t.name for t in graph.inputs] == ["input", *stage["reuses"]]
        assert [t.name for t in graph.outputs] == ["logits", *stage["exports"]]
        assert set(stage["reuses"]) <= written  # only features earlier stages wrote
        assert all(name.startswith(f"s{j}.") for name in stage["exports"])
        written |= set(stage["exports"])
    assert dyn["stages"][-1]["exports"] == []
    assert Architecture.from_dict(dyn["architecture"]) == net.arch


def test_quantized_precisions_are_refused_for_now(net, tmp_path):
    with pytest.raises(InputError, match="dynamic models deploy in float"):
        sdk.deploy(net, example_input=torch.randn(1, 1, 28, 28), out=tmp_path / "q.prism", precision="pwlq4")


def test_cli_accuracy_and_bench_work_on_a_dynamic_bundle(net, tmp_path):
    from sdk.preprocess import PreprocessRecipe
    from sdk.tools.bench import bench_bundle
    from sdk.tools.cli import evaluate_bundle

    recipe = PreprocessRecipe(mean=(0.1316,), std=(0.3088,))
    bundle = sdk.deploy(net, out=tmp_path / "d.prism", preprocess=recipe, name="vggish")
    with sdk.load(bundle.path) as engine:
        acc = evaluate_bundle(engine, "mnist5k", "test")  # uses the per-sample predictions
    assert 0.0 <= acc["accuracy"] <= 1.0 and acc["samples"] == 1000
    report = bench_bundle(bundle.path, iterations=20, warmup=2, progress=False)
    assert "onnxruntime" not in report["results"]  # no raw peer: it would time stage 0 alone
