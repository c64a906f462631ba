"""Jetson targets: profiles, TensorRT lint, FP16 conversion, QDQ rewrite and the deploy path."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sdk
from sdk.errors import InputError
from sdk.targets import get_target, is_jetson, target_names
from sdk.toolchain.trt import lint_model
from sdk.toolchain.trt.fp16 import convert_to_fp16

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")


# -- targets ----------------------------------------------------------------------------------
def test_jetson_profiles_registered():
    names = target_names()
    for name in ("cpu", "jetson", "jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin", "jetson-xavier-nx"):
        assert name in names
    nano, agx, xavier = get_target("jetson-orin-nano"), get_target("jetson-agx-orin"), get_target("jetson-xavier-nx")
    assert nano.device.compute_capability == ((8, 7),) and nano.device.dla_cores == 0
    assert agx.device.dla_cores == 2 and agx.device.memory_gb == 64
    assert xavier.device.accepts((7, 2)) and not xavier.device.accepts((8, 7)) and not xavier.device.int4
    assert get_target("jetson").device.accepts((8, 7)) and get_target("jetson").device.accepts((7, 2))
    for name in names:
        t = get_target(name)
        assert t.default_precision in t.precisions
        if is_jetson(t):
            assert t.backends[0] == "tensorrt" and t.backends[-1] == "onnxruntime-cpu"
            assert t.quant_forms == ("qdq",) and t.opset <= 20
            assert 0 < t.device.workspace_bytes <= 2 << 30
    assert get_target("cpu").device is None
    get_target("jetson").check_precision("pwlq4")
    with pytest.raises(InputError, match="supported"):
        get_target("jetson").check_precision("bf16")


# -- lint -------------------------------------------------------------------------------------
def _model(nodes, inits, inputs, outputs, opset=17, extra_opsets=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])


def test_lint_clean_on_zoo_like_model(tiny_model):
    from sdk.toolchain.export import export_onnx

    data = export_onnx(tiny_model, torch.zeros(1, 1, 28, 28)).onnx_bytes
    report = lint_model(data)
    assert report.ok and not report.findings and "every node is supported" in report.format()


def test_lint_names_rejected_and_plugin_nodes():
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, None)
    u = helper.make_tensor_value_info("u", TensorProto.FLOAT, None)
    p = helper.make_tensor_value_info("p", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.ones((1, 1, 3, 3), np.uint8), "w")
    f = numpy_helper.from_array(np.ones(4, np.float32), "f")
    nodes = [helper.make_node("ConvInteger", ["x", "w"], ["y"], name="conv_int"),
             helper.make_node("Unique", ["f"], ["u"], name="uniq"),
             helper.make_node("EfficientNMS_TRT", ["f"], ["p"], name="nms", domain="trt.plugins"),
             helper.make_node("MyOp", ["f"], ["q"], name="mine", domain="com.acme")]
    m = _model(nodes, [w, f], [x], [y, u, p, helper.make_tensor_value_info("q", TensorProto.FLOAT, None)],
               extra_opsets=[helper.make_opsetid("trt.plugins", 1), helper.make_opsetid("com.acme", 1)])
    report = lint_model(m)
    by_node = {f.node: f for f in report.findings}
    assert by_node["conv_int"].severity == "reject" and "QDQ" in by_node["conv_int"].reason
    assert by_node["uniq"].severity == "reject"
    assert by_node["nms"].severity == "plugin" and "plugin" in by_node["nms"].reason
    assert by_node["mine"].severity == "reject" and "com.acme" in by_node["mine"].reason
    assert not report.ok and len(report.plugins) == 1
    text = report.format()
    assert "conv_int" in text and "uniq" in text and "nms" in text
    assert json.loads(json.dumps(report.to_dict()))["ok"] is False


def test_lint_asymmetric_qdq_opset_and_float64():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    d = helper.make_tensor_value_info("d", TensorProto.DOUBLE, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(128, np.uint8), "zu"),
             numpy_helper.from_array(np.array(3, np.int8), "zi")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zu"], ["q"], name="q_u8"),
             helper.make_node("DequantizeLinear", ["q", "s", "zu"], ["dq"], name="dq_u8"),
             helper.make_node("QuantizeLinear", ["dq", "s", "zi"], ["q2"], name="q_zp3"),
             helper.make_node("DequantizeLinear", ["q2", "s", "zi"], ["y"], name="dq_zp3")]
    report = lint_model(_model(nodes, inits, [x, d], [y], opset=21))
    reasons = {f.node: f.reason for f in report.rejected}
    assert "uint8" in reasons["q_u8"] and "zero point 0" in reasons["q_u8"]
    assert "≠ 0" in reasons["q_zp3"]
    assert "opset 21" in reasons["<model>"] and "d" in reasons and "float64" in reasons["d"]


# -- fp16 -------------------------------------------------------------------------------------
def test_fp16_conversion_runs_on_ort_close_to_fp32(tiny_model, rng):
    from sdk.toolchain.export import export_onnx

    fp32 = onnx.load_from_string(export_onnx(tiny_model, torch.zeros(1, 1, 28, 28)).onnx_bytes)
    result = convert_to_fp16(fp32)
    assert result.converted > 0 and result.clipped == 0
    assert {i.type.tensor_type.elem_type for i in result.model.graph.input} == {TensorProto.FLOAT}
    assert all(t.data_type != TensorProto.FLOAT for t in result.model.graph.initializer)
    x = rng.standard_normal((5, 1, 28, 28)).astype(np.float32)
    a = ort.InferenceSession(fp32.SerializeToString()).run(None, {"input": x})[0]
    b = ort.InferenceSession(result.model.SerializeToString()).run(None, {"input": x})[0]
    assert b.dtype == np.float32
    assert np.abs(a - b).max() <= 2e-3 * max(1.0, np.abs(a).max())
    assert (a.argmax(1) == b.argmax(1)).all()
    assert lint_model(result.model).ok


def test_fp16_clips_out_of_range_weights():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    big = numpy_helper.from_array(np.array([1e6, 1e-9], np.float32), "b")
    m = _model([helper.make_node("Mul", ["x", "b"], ["y"])], [big], [x], [y])
    r = convert_to_fp16(m)
    assert r.clipped == 1 and r.underflow == 1


# -- quantized: QDQ rewrite and deploy --------------------------------------------------------
@pytest.fixture(scope="module")
def calib():
    from sdk.data import load_dataset, normalize

    return torch.from_numpy(normalize(load_dataset("mnist5k", "train").images[:128], "mnist5k"))


@pytest.fixture(scope="module")
def qmodel(tiny_model, calib):
    return sdk.quantize(tiny_model, calib, scheme="pwlq", weight_bits=4, progress=False)


@pytest.mark.parametrize("weights", ["int8", "split", "fp16"])
def test_qdq_rewrite_is_tensorrt_clean_and_close(qmodel, calib, weights):
    from sdk.toolchain.quant import export_onnx as export_quantized
    from sdk.toolchain.trt.qdq import to_tensorrt

    prism_qdq = export_quantized(qmodel, calib[:1], form="qdq")
    assert not lint_model(prism_qdq).ok  # u8 asymmetric activations: rejected
    trt_qdq, info = to_tensorrt(prism_qdq, weights)
    assert lint_model(trt_qdq).ok, lint_model(trt_qdq).format()
    assert info["layers"] == len(qmodel.tables)
    x = calib[:64].numpy()
    ref = qmodel(calib[:64]).detach().numpy()
    got = ort.InferenceSession(trt_qdq.SerializeToString()).run(None, {"input": x})[0]
    assert np.abs(got - ref).max() <= 0.05 * np.abs(ref).max()
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.9
    qs = [n for n in trt_qdq.graph.node if n.op_type == "QuantizeLinear"]
    assert (len(qs) == 0) == (weights == "fp16")


def test_deploy_jetson_fp16_bundle_layout(tiny_model, tmp_path):
    b = sdk.deploy(tiny_model, target="jetson-orin-nano", example_input=torch.zeros(2, 1, 28, 28),
                   out=tmp_path / "t.prism")
    assert b.target == "jetson-orin-nano" and b.precision == "fp16"
    assert set(b.manifest["files"]) == {"model.onnx"}
    main = b.manifest["tensorrt"]["graphs"]["main"]
    assert main["lint"]["ok"] and main["vs_fp32"]["top1_agreement"] == 1.0
    assert main["profile"]["input"] == {"min": [1, 1, 28, 28], "opt": [2, 1, 28, 28], "max": [8, 1, 28, 28]}
    proto = onnx.load(str(b.file("model.onnx")))
    assert any(t.data_type == TensorProto.FLOAT16 for t in proto.graph.initializer)
    assert b.entry.inputs[0].dtype == "float32"


def test_deploy_jetson_fp32_and_bad_requests(tiny_model, qmodel, tmp_path):
    x = torch.zeros(1, 1, 28, 28)
    b = sdk.deploy(tiny_model, target="jetson", precision="fp32", example_input=x, out=tmp_path / "f.prism")
    assert b.precision == "fp32" and b.manifest["tensorrt"]["graphs"]["main"]["lint"]["ok"]
    with pytest.raises(InputError, match="needs a quantized model"):
        sdk.deploy(tiny_model, target="jetson", precision="int8", example_input=x, out=tmp_path / "i.prism")
    with pytest.raises(InputError, match="QDQ form only"):
        sdk.deploy(qmodel, target="jetson", form="integer", example_input=x, out=tmp_path / "q.prism")
    with pytest.raises(InputError, match="uniform 8-bit"):
        sdk.deploy(qmodel, target="jetson", precision="int8", example_input=x, out=tmp_path / "q.prism")


def test_deploy_jetson_pwlq_is_symmetric_qdq(qmodel, calib, tmp_path):
    b = sdk.deploy(qmodel, target="jetson-agx-orin", example_input=calib[:4], out=tmp_path / "q.prism")
    assert b.precision == "pwlq4"
    section = b.manifest["tensorrt"]
    assert section["weights"] == "int8"
    main = section["graphs"]["main"]
    assert main["lint"]["ok"] and main["qdq"]["activations"] == 2
    assert main["vs_prism_u8_qdq"]["top1_agreement"] >= 0.75
    proto = onnx.load(str(b.file("model.onnx")))
    ops = {n.op_type for n in proto.graph.node}
    assert "ConvInteger" not in ops and "QuantizeLinear" in ops
    zps = [numpy_helper.to_array(t) for t in proto.graph.initializer if "zero_point" in t.name or t.name.endswith("_zp")]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
