"""Quantized models through sdk.deploy: forms, tables, manifest, and the runtime on real digits."""
import numpy as np
import pytest

import sdk

torch = pytest.importorskip("torch")
from sdk.data import load_dataset, normalize  # noqa: E402
from sdk.toolchain.quant import unpack_tables  # noqa: E402


@pytest.fixture(scope="module")
def calib():
    return torch.from_numpy(normalize(load_dataset("mnist5k", "train").images[:128], "mnist5k"))


@pytest.fixture(scope="module")
def qmodel(tiny_model, calib):
    return sdk.quantize(tiny_model, calib, scheme="pwlq", weight_bits=4, progress=False)


@pytest.mark.parametrize("form", ["integer", "qdq"])
def test_quantized_bundle_matches_simulation(qmodel, form, tmp_path):
    bundle = sdk.deploy(qmodel, out=tmp_path / f"{form}.prism", form=form,
                        example_input=torch.zeros(1, 1, 28, 28))
    assert bundle.precision == "pwlq4"
    q = bundle.manifest["quantization"]
    assert q["scheme"] == "pwlq" and q["weight_bits"] == 4 and q["breakpoints"] == 1
    assert q["form"] == form and q["tables"] == "tables.npz"
    assert {layer["name"] for layer in q["layers"]} == set(qmodel.tables)
    assert q["sizes"]["packed_weight_ratio"] < 0.2
    assert set(bundle.manifest["files"]) == {"model.onnx", "tables.npz", "plan.json"}
    assert bundle.manifest["native"] == {"plan": "plan.json", "tables": "tables.npz"}
    assert bundle.entry.extra["form"] == form

    x = normalize(load_dataset("mnist5k", "test").images[:64], "mnist5k")
    with sdk.load(bundle.path) as engine:
        got = engine.infer(x)
    with torch.no_grad():
        ref = qmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-3 * np.abs(ref).max())
    assert (got.argmax(1) == ref.argmax(1)).mean() == 1.0


def test_integer_form_uses_integer_ops(qmodel, tmp_path):
    import onnx

    bundle = sdk.deploy(qmodel, out=tmp_path / "i.prism", example_input=torch.zeros(1, 1, 28, 28))
    ops = {n.op_type for n in onnx.load(str(bundle.file("model.onnx"))).graph.node}
    assert {"ConvInteger", "MatMulInteger"} & ops and "QuantizeLinear" in ops


def test_packed_tables_round_trip(qmodel, tmp_path):
    bundle = sdk.deploy(qmodel, out=tmp_path / "t.prism", example_input=torch.zeros(1, 1, 28, 28))
    tables = unpack_tables(np.load(bundle.file("tables.npz")))
    assert list(tables) == list(qmodel.tables)
    for name, t in tables.items():
        np.testing.assert_array_equal(t.codes, qmodel.tables[name].codes)
        np.testing.assert_array_equal(t.regions, qmodel.tables[name].regions)


def test_precision_and_form_errors(tiny_model, qmodel, tmp_path):
    x = torch.zeros(1, 1, 28, 28)
    with pytest.raises(sdk.InputError, match="needs a quantized model"):
        sdk.deploy(tiny_model, precision="pwlq4", out=tmp_path / "a", example_input=x)
    with pytest.raises(sdk.InputError, match="does not match the quantized model"):
        sdk.deploy(qmodel, precision="uniform8", out=tmp_path / "b", example_input=x)
    with pytest.raises(sdk.InputError, match="form 'fp16' is not supported"):
        sdk.deploy(qmodel, form="fp16", out=tmp_path / "c", example_input=x)
    with pytest.raises(sdk.InputError, match=r"supported: fp32, pwlq<2-8>, uniform<2-8>"):
        sdk.deploy(tiny_model, precision="pwlq9", out=tmp_path / "d", example_input=x)


def test_quantize_rejects_bad_arguments(tiny_model, calib):
    with pytest.raises(sdk.InputError):
        sdk.quantize(tiny_model, calib, weight_bits=9, progress=False)
    with pytest.raises(sdk.InputError):
        sdk.quantize(tiny_model, calib, breakpoints=4, progress=False)
    with pytest.raises(sdk.InputError):
        sdk.quantize(tiny_model, calib[:, :, :20], progress=False)


def test_existing_onnx_model_quantizes_and_deploys(tiny_bundle, calib, tmp_path):
    """ONNX in → bundle out, no PyTorch model needed: sdk.quantize on the FP32 bundle's ONNX."""
    qonnx = sdk.quantize(str(tiny_bundle.file("model.onnx")), calib.numpy(), weight_bits=4, progress=False)
    bundle = sdk.deploy(qonnx, out=tmp_path / "onnx-in.prism", preprocess=tiny_bundle.preprocess,
                        name="tiny-onnx")
    assert bundle.precision == "pwlq4"
    assert bundle.manifest["export"]["exporter"] == "prism-quant (ONNX input)"
    assert bundle.manifest["native"] == {"plan": "plan.json", "tables": "tables.npz"}
    x = normalize(load_dataset("mnist5k", "test").images[:32], "mnist5k")
    with sdk.load(bundle.path) as engine:
        got = engine.infer(x)
    ref = qonnx.run_simulation(x)
    np.testing.assert_allclose(got, ref, atol=1e-3 * np.abs(ref).max())


def test_onnx_without_weights_is_rejected(tmp_path, calib):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["input"], ["logits"])], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, 28, 28])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(sdk.InputError, match="Conv/Gemm/MatMul"):
        sdk.quantize(str(path), calib.numpy(), progress=False)
