"""Dynamic exits compose with PWLQ: ``sdk.deploy(sdk.quantize(multi_stage_net))`` writes one
quantized graph per stage; ONNX Runtime and the native backend run the exits, and the native
backend's integer stages match ONNX Runtime's integer form bit for bit."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import sdk  # noqa: E402
from sdk.errors import InputError  # noqa: E402
from tests.toolchain.quant_nets import small_dynamic_net  # noqa: E402


@pytest.fixture(scope="module")
def nets():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    net = small_dynamic_net(thresholds=(0.3, 0.35), bn_statistics=True)
    qnet = sdk.quantize(net, torch.rand(64, 1, 28, 28), scheme="pwlq", weight_bits=4, progress=False)
    yield net, qnet
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bundles(nets, tmp_path_factory):
    _, qnet = nets
    out = tmp_path_factory.mktemp("qdyn")
    x = torch.rand(2, 1, 28, 28)
    return {form: sdk.deploy(qnet, example_input=x, out=out / f"{form}.prism", form=form)
            for form in ("qdq", "integer")}


def test_every_stage_is_quantized_and_listed(nets, bundles):
    net, qnet = nets
    b = bundles["integer"]
    assert b.manifest["precision"] == "pwlq4"
    dyn, quant = b.manifest["dynamic"], b.manifest["quantization"]
    assert [g.name for g in b.graphs] == ["stage0", "stage1", "stage2"]
    assert dyn["thresholds"] == pytest.approx([0.3, 0.35])
    layers = {layer["name"] for layer in quant["layers"]}
    assert all(any(n.startswith(f"stages.{j}.") for n in layers) for j in range(3))
    assert set(b.manifest["native"]["plans"]) == {"stage0", "stage1", "stage2"}
    import onnx
    for j in range(3):
        ops = {n.op_type for n in onnx.load(str(b.file(f"stage{j}.onnx"))).graph.node}
        assert {"ConvInteger", "MatMulInteger"} <= ops and "Conv" not in ops
    assert b.manifest["export"]["max_abs_diff"] < 1e-2


def _median_thresholds(qnet, x) -> list[float]:
    """Thresholds at the median top-1 confidence of stages 0 and 1, so every stage answers."""
    with torch.no_grad():
        logits = qnet(x)
    return [float(torch.softmax(z, 1).max(1).values.median()) for z in logits[:2]]


@pytest.mark.parametrize("form", ["qdq", "integer"])
def test_ort_exits_match_the_pytorch_simulation(nets, bundles, form):
    _, qnet = nets
    x = torch.rand(40, 1, 28, 28)
    thresholds = _median_thresholds(qnet, x)
    with torch.no_grad():
        ref_logits, ref_exit = type(qnet.model).infer(qnet.model, x, thresholds)
    with sdk.load(bundles[form].path, backend="onnxruntime") as engine:
        engine.set_thresholds(thresholds)
        res = engine.infer(x.numpy())
    assert set(ref_exit.tolist()) == {0, 1, 2}
    agree = np.mean(res.exit_stage == ref_exit.numpy())
    assert agree >= 0.95  # a confidence within float rounding of a threshold may flip
    same = res.exit_stage == ref_exit.numpy()
    np.testing.assert_allclose(res.logits[same], ref_logits.numpy()[same], atol=1e-2 * float(ref_logits.abs().max()))


def test_native_backend_runs_the_stages_bit_exact_with_ort_integer(nets, bundles):
    x = np.random.default_rng(1).random((33, 1, 28, 28), dtype=np.float32)
    thresholds = _median_thresholds(nets[1], torch.from_numpy(x))
    path = bundles["integer"].path
    with sdk.load(path, backend="onnxruntime") as ort_engine, sdk.load(path, backend="native") as native:
        assert native.backend_name == "native"
        ort_engine.set_thresholds(thresholds)
        native.set_thresholds(thresholds)
        a, b = ort_engine.infer(x), native.infer(x)
        assert np.array_equal(a.exit_stage, b.exit_stage) and len(set(a.exit_stage.tolist())) == 3
        assert np.array_equal(a.logits, b.logits)
        native.set_thresholds([1.0, 1.0])  # everything runs to the last stage
        assert (native.infer(x).exit_stage == 2).all()


def test_float_precision_on_a_dynamic_net_points_at_quantize(nets, tmp_path):
    net, _ = nets
    with pytest.raises(InputError, match="quantize the network first"):
        sdk.deploy(net, example_input=torch.rand(1, 1, 28, 28), out=tmp_path / "q.prism", precision="pwlq4")
