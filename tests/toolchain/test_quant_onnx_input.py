"""quantize_onnx (ONNX in, ONNX out) against the PyTorch path, its exports, folding and errors."""
import io
import json
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from sdk.errors import InputError, PrismError
from sdk.toolchain.quant import manifest_section, quantize, unpack_tables
from sdk.toolchain.quant import onnx_input
from sdk.toolchain.quant.onnx_input import QuantizedOnnx, quantize_onnx
from sdk.toolchain.quant.onnx_layers import fold_batch_norms


class ConvBnNet(nn.Module):
    """conv-bn-relu, dilated strided depthwise conv-bn-relu, grouped conv without bias, linear."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, stride=2, padding=2, dilation=2, groups=16, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.grouped = nn.Conv2d(16, 8, 3, padding=1, groups=4, bias=False)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.dw(F.relu(self.bn0(self.stem(x))))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.grouped(x), 1), 1))


class TokenMlp(nn.Module):
    """Linear on (N, L, C): exported as MatMul + Add."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(12, 16), nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x))).mean(1)


def conv_bn_net():
    torch.manual_seed(1)
    net = ConvBnNet()
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return net.eval()


def to_onnx(net, example, fold_bn=True, dynamic=True):
    """TorchScript export, opset 17; fold_bn=False keeps Conv -> BatchNormalization in the graph."""
    buf = io.BytesIO()
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (example,), buf, dynamo=False, opset_version=17, input_names=["input"],
                          output_names=["logits"], dynamic_axes=axes, do_constant_folding=fold_bn)
    return onnx.load_from_string(buf.getvalue())


def make_model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "test", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(initializers).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def tensor(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def run(model, x, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


RNG = np.random.default_rng(0)
DATA = torch.from_numpy(RNG.standard_normal((32, 3, 12, 12), dtype=np.float32))
X = RNG.standard_normal((5, 3, 12, 12), dtype=np.float32)


def gemm_model(trans_b, k=10, n=6, alpha=1.0):
    """x (batch, K) -> Gemm(W, C) -> Relu -> Gemm (transB=1) -> y; W stored (K, N) if transB=0."""
    w = RNG.standard_normal((n, k)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["h"], name="gemm", transB=trans_b, alpha=alpha),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2", "c2"], ["y"], name="head", transB=1)]
    inits = {"w": w if trans_b else np.ascontiguousarray(w.T), "c": RNG.standard_normal(n).astype(np.float32),
             "w2": RNG.standard_normal((3, n)).astype(np.float32), "c2": np.zeros((1, 3), np.float32)}
    return make_model(nodes, [tensor("x", ["batch", k])], [tensor("y", ["batch", 3])], inits), w, inits["c"]


# --- the cross-check: the ONNX path and the PyTorch path implement the same method ------------------

CONFIGS = [
    {},
    {"scheme": "uniform", "weight_bits": 8},
    {"weight_bits": 3, "breakpoints": 2, "breakpoint_method": "gaussian_expected", "act_bits": 6,
     "act_calibration": "percentile"},
    {"per_channel": False, "bias_correction": False, "skip_first_layer": True, "breakpoint_method": "empirical",
     "act_calibration": "minmax"},
]


def assert_same_tables(torch_q, onnx_q, exact):
    assert len(onnx_q.tables) == len(torch_q.tables)
    for (layer, t), (node, o) in zip(torch_q.tables.items(), onnx_q.tables.items()):
        assert o.layer_type == t.layer_type, (layer, node)
        assert o.codes.shape == t.codes.shape and o.scales.shape == t.scales.shape
        if exact:  # the same folded float32 weights: bit-identical weight tables
            for field in ("codes", "regions", "scales", "offsets", "bc_scale", "bc_shift", "bias"):
                np.testing.assert_array_equal(getattr(o, field), getattr(t, field), err_msg=f"{node} {field}")
        else:  # the exporter folded the batch norms itself, in float32
            assert np.mean(o.codes == t.codes) > 0.999
            np.testing.assert_allclose(o.scales, t.scales, rtol=1e-5)
            np.testing.assert_allclose(o.offsets, t.offsets, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(o.bias, t.bias, rtol=1e-5, atol=1e-6)
        # activations: the same calibrator on ORT's instead of PyTorch's float activations
        assert o.act_scale == pytest.approx(t.act_scale, rel=1e-5)
        assert o.act_zero_point == t.act_zero_point
        assert (o.stride, o.padding, o.dilation, o.groups) == (t.stride, t.padding, t.dilation, t.groups)


@pytest.mark.parametrize("config", CONFIGS, ids=["pwlq4", "uniform8", "pwlq3-2bp-act6", "per-layer-skip-first"])
@pytest.mark.parametrize("fold_bn", [False, True], ids=["bn-in-graph", "bn-folded-by-exporter"])
def test_same_tables_and_outputs_as_pytorch_path(config, fold_bn):
    net = conv_bn_net()
    model = to_onnx(net, DATA[:1], fold_bn=fold_bn)
    assert ("BatchNormalization" in {n.op_type for n in model.graph.node}) != fold_bn
    torch_q = quantize(net, DATA, progress=False, **config)
    onnx_q = quantize_onnx(model, DATA.numpy(), progress=False, **config)
    assert_same_tables(torch_q, onnx_q, exact=not fold_bn)
    assert onnx_q.weight_mse[next(iter(onnx_q.tables))] == pytest.approx(next(iter(torch_q.weight_mse.values())),
                                                                         rel=1e-4)
    if config.get("skip_first_layer"):
        assert onnx_q.skipped == {"/stem/Conv": "first layer kept in FP32 (skip_first_layer=True)"}
    with torch.no_grad():
        ref = torch_q(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(onnx_q.run_simulation(X), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_matmul_with_following_add_matches_pytorch_linear():
    torch.manual_seed(2)
    net = TokenMlp().eval()
    data = [(torch.randn(8, 5, 12), torch.zeros(8)) for _ in range(3)]  # DataLoader-like (inputs, targets)
    model = to_onnx(net, data[0][0][:1])
    assert [n.op_type for n in model.graph.node].count("MatMul") == 2
    torch_q = quantize(net, data, progress=False, act_calibration="percentile")
    onnx_q = quantize_onnx(model, data, progress=False, act_calibration="percentile")
    assert list(onnx_q.tables) == ["/fc1/MatMul", "/fc2/MatMul"]
    assert_same_tables(torch_q, onnx_q, exact=True)  # the Add's constant is the table's bias
    x = torch.randn(4, 5, 12)
    with torch.no_grad():
        ref = torch_q(x).numpy()
    np.testing.assert_allclose(onnx_q.run_simulation(x), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_gemm_trans_b0_is_quantized_per_output_channel_like_linear():
    model, w, c = gemm_model(trans_b=0)
    data = RNG.standard_normal((40, 10)).astype(np.float32)
    onnx_q = quantize_onnx(model, data, progress=False)
    table = onnx_q.tables["gemm"]
    assert table.codes.shape == (6, 10) and table.scales.shape == (6, 2)  # N = 6 channels, weight (N, K)
    # the same layer as a PyTorch Linear (weight (N, K)) through the PyTorch path
    linear = nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    with torch.no_grad():
        linear[0].weight.copy_(torch.from_numpy(w))
        linear[0].bias.copy_(torch.from_numpy(c))
        linear[2].weight.copy_(torch.from_numpy(inits["w2"].copy()))
        linear[2].bias.zero_()
    torch_q = quantize(linear, torch.from_numpy(data), progress=False)
    assert_same_tables(torch_q, onnx_q, exact=True)


def test_fixed_batch_model_runs_in_pieces_with_the_same_statistics():
    net = conv_bn_net()
    fixed = to_onnx(net, DATA[:1], dynamic=False)
    assert fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    q_fixed = quantize_onnx(fixed, DATA, progress=False, act_calibration="percentile")
    q_dynamic = quantize_onnx(to_onnx(net, DATA[:1]), DATA, progress=False, act_calibration="percentile")
    for a, b in zip(q_fixed.tables.values(), q_dynamic.tables.values()):
        assert a.act_scale == pytest.approx(b.act_scale, rel=1e-6) and a.act_zero_point == b.act_zero_point
    np.testing.assert_allclose(q_fixed.run_simulation(X), q_dynamic.run_simulation(X), rtol=1e-4, atol=1e-5)


# --- exports ---------------------------------------------------------------------------------------

def constant_weights_model():
    """Conv weight from a Constant node, Gemm weight through Identity of an initializer, asymmetric
    Conv pads, unnamed nodes."""
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w)),
             helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[0, 1, 1, 0], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Identity", ["w_fc"], ["w_fc_id"]),
             helper.make_node("Gemm", ["f", "w_fc_id", "b_fc"], ["y"], transB=1)]
    inits = {"b": RNG.standard_normal(4).astype(np.float32),
             "w_fc": RNG.standard_normal((5, 4 * 6 * 6)).astype(np.float32), "b_fc": np.zeros(5, np.float32)}
    return make_model(nodes, [tensor("x", ["n", 3, 12, 12])], [tensor("y", ["n", 5])], inits)


EXPORT_CASES = {
    "conv-bn": lambda: (to_onnx(conv_bn_net(), DATA[:1], fold_bn=False), DATA.numpy(), X),
    "matmul": lambda: (to_onnx(TokenMlp().eval(), torch.zeros(1, 5, 12)), RNG.standard_normal((16, 5, 12)),
                       RNG.standard_normal((3, 5, 12)).astype(np.float32)),
    "gemm-transB0": lambda: (gemm_model(0)[0], RNG.standard_normal((16, 10)),
                             RNG.standard_normal((3, 10)).astype(np.float32)),
    "constant-identity-weights": lambda: (constant_weights_model(), DATA.numpy(), X),
}


@pytest.fixture(scope="module", params=list(EXPORT_CASES))
def export_case(request):
    torch.manual_seed(3)
    model, data, x = EXPORT_CASES[request.param]()
    return model, quantize_onnx(model, data, weight_bits=4, progress=False), x


def test_qdq_and_integer_exports_agree_on_ort(export_case):
    _, q, x = export_case
    qdq, integer = q.export("qdq"), q.export("integer")
    for model in (qdq, integer):
        onnx.checker.check_model(model)
        assert [i.name for i in model.graph.input] == [q.input_name]
        assert [o.name for o in model.graph.output] == q.output_names
    y_qdq, y_int = run(qdq, x), run(integer, x)
    np.testing.assert_allclose(y_int, y_qdq, rtol=1e-4, atol=1e-5 * np.abs(y_qdq).max())
    np.testing.assert_allclose(q.run_simulation(x), y_qdq, rtol=1e-5, atol=1e-6 * np.abs(y_qdq).max())


def test_integer_export_keeps_no_float_weight(export_case):
    _, q, _ = export_case
    model = q.export("integer")
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") == len(q.tables)
    assert not {"Conv", "Gemm", "MatMul", "Constant", "BatchNormalization"} & set(ops)
    weight_shapes = {t.codes.shape for t in q.tables.values()} | {t.codes.T.shape for t in q.tables.values()}
    inits = [numpy_helper.to_array(i) for i in model.graph.initializer]
    assert not any(v.dtype == np.float32 and v.shape in weight_shapes for v in inits)


def test_quantized_model_is_close_to_float(export_case):
    model, q, x = export_case
    ref = run(model, x)
    y = q.run_simulation(x)
    assert np.abs(y - ref).max() < 0.25 * np.abs(ref).max()  # 4-bit weights: close, not equal


def test_weights_through_constant_and_identity_are_resolved():
    q = quantize_onnx(constant_weights_model(), DATA, progress=False)
    assert list(q.tables) == ["Conv_1", "Gemm_5"] and not q.skipped  # stable names for unnamed nodes
    assert q.tables["Conv_1"].padding == (0, 1, 1, 0) and q.tables["Conv_1"].stride == (2, 2)
    assert list(quantize_onnx(constant_weights_model(), DATA, progress=False).tables) == list(q.tables)


def test_batch_norm_folding_preserves_outputs():
    model = to_onnx(conv_bn_net(), DATA[:1], fold_bn=False)
    folded, names, not_folded = fold_batch_norms(model)
    assert names == ["/bn0/BatchNormalization", "/bn1/BatchNormalization"] and not not_folded
    assert "BatchNormalization" not in {n.op_type for n in folded.graph.node}
    ref = run(model, DATA.numpy(), ort.GraphOptimizationLevel.ORT_DISABLE_ALL)  # the BNs really run
    y = run(folded, DATA.numpy(), ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    assert np.abs(y - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    assert len(model.graph.node) > len(folded.graph.node)  # the input model is not modified


def test_wrong_batch_norm_folding_is_caught(monkeypatch):
    def broken(model):
        folded, names, not_folded = fold_batch_norms(model)
        w = next(i for i in folded.graph.initializer if i.name.endswith("folded_weight"))
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * np.float32(1.01), w.name))
        return folded, names, not_folded

    monkeypatch.setattr(onnx_input, "fold_batch_norms", broken)
    with pytest.raises(PrismError, match="batch-norm folding of /bn0/BatchNormalization, /bn1/BatchNormalization "
                                         "changed output 'logits'"):
        quantize_onnx(to_onnx(conv_bn_net(), DATA[:1], fold_bn=False), DATA, progress=False)


# --- FP32 nodes --------------------------------------------------------------------------------------

def test_unsupported_nodes_stay_fp32_with_reasons():
    k = 8
    nodes = [
        helper.make_node("Mul", ["w_base", "two"], ["w_dyn"], name="scale_w"),
        helper.make_node("Conv", ["x", "w_dyn"], ["c0"], name="dyn_conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c0", "s", "bb", "m", "v"], ["n0"], name="bn_after_dyn"),
        helper.make_node("Conv", ["n0", "w_ok"], ["c1"], name="good_conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["n1"], name="bn_ok"),
        helper.make_node("Relu", ["n1"], ["r"], name="relu"),
        helper.make_node("BatchNormalization", ["r", "s", "bb", "m", "v"], ["n2"], name="bn_after_relu"),
        helper.make_node("ConvTranspose", ["n2", "w_t"], ["t"], name="deconv"),
        helper.make_node("GlobalAveragePool", ["t"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w_g"], ["g"], name="scaled_gemm", alpha=2.0, transB=1),
        helper.make_node("MatMul", ["g", "g_t"], ["gram"], name="gram_matmul"),
        helper.make_node("Transpose", ["g"], ["g_t"], name="transpose"),
    ]
    nodes = nodes[:-2] + [nodes[-1], nodes[-2]]  # topological order
    conv_w = RNG.standard_normal((k, 3, 3, 3)).astype(np.float32)
    inits = {"w_base": conv_w, "two": np.array(2.0, np.float32), "w_ok": RNG.standard_normal((k, k, 3, 3)),
             "s": np.ones(k), "bb": np.zeros(k), "m": np.zeros(k), "v": np.ones(k),
             "w_t": RNG.standard_normal((k, 4, 1, 1)), "w_g": RNG.standard_normal((5, 4))}
    inits = {n: np.asarray(v, np.float32) for n, v in inits.items()}
    model = make_model(nodes, [tensor("x", ["n", 3, 6, 6])], [tensor("gram", ["n", "n"])], inits)
    q = quantize_onnx(model, DATA[:, :, :6, :6], progress=False)
    assert list(q.tables) == ["good_conv"]
    assert q.skipped["dyn_conv"] == "Conv with dynamic weight ('w_dyn' is computed by Mul node 'scale_w')"
    assert "does not directly follow a Conv" in q.skipped["bn_after_relu"]
    assert q.skipped["bn_after_dyn"].startswith("BatchNormalization not folded (Conv with dynamic weight")
    assert "bn_ok" not in q.skipped
    assert q.skipped["deconv"].startswith("ConvTranspose has no quantization handler")
    assert q.skipped["scaled_gemm"] == "Gemm with transA=0, alpha=2, beta=1; supported: transA=0, alpha=1, beta=1"
    assert q.skipped["gram_matmul"] == "MatMul with dynamic weight ('g_t' is computed by Transpose node 'transpose')"
    ops = [n.op_type for n in q.export("integer").graph.node]
    assert ops.count("QuantizeLinear") == 1 and ops.count("Conv") == 1 and "ConvTranspose" in ops
    x = DATA[:4, :, :6, :6].numpy()
    np.testing.assert_allclose(run(q.export("integer"), x), q.run_simulation(x), rtol=1e-4, atol=1e-4)


def test_weight_that_is_a_graph_input_is_named_in_the_error():
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    model = make_model(nodes, [tensor("x", ["n", 3, 6, 6]), tensor("w", [4, 3, 3, 3])], [tensor("y", ["n", 4, 4, 4])])
    with pytest.raises(InputError, match="has 2 inputs .*one input; 'w': it is the weight of Conv 'conv': "
                                         "a weight that is a graph input, not an initializer"):
        quantize_onnx(model, DATA[:, :, :6, :6], progress=False)


def test_initializers_listed_as_inputs_are_constants():
    model, _, _ = gemm_model(1)
    model.graph.input.extend([tensor(i.name, list(i.dims)) for i in model.graph.initializer])
    q = quantize_onnx(model, RNG.standard_normal((8, 10)), progress=False)
    assert list(q.tables) == ["gemm", "head"] and q.input_name == "x"


# --- files, opsets, packing, manifest ------------------------------------------------------------------

def test_model_from_file_with_old_opset(tmp_path):
    model, _, _ = gemm_model(0)
    model.opset_import[0].version = 11
    model.ir_version = 6
    path = tmp_path / "gemm11.onnx"
    onnx.save(model, path)
    q = quantize_onnx(path, RNG.standard_normal((16, 10)), progress=False)
    assert q.float_model.opset_import[0].version == 13
    x = RNG.standard_normal((3, 10)).astype(np.float32)
    np.testing.assert_allclose(run(q.export("integer"), x), q.run_simulation(x), rtol=1e-4, atol=1e-5)


def test_pack_tables_round_trip_and_manifest_keys(tmp_path):
    net = conv_bn_net()
    q = quantize_onnx(to_onnx(net, DATA[:1], fold_bn=False), DATA, progress=False)
    np.savez(tmp_path / "tables.npz", **q.pack_tables())
    back = unpack_tables(np.load(tmp_path / "tables.npz"))
    assert list(back) == list(q.tables)
    for name, t in q.tables.items():
        np.testing.assert_array_equal(back[name].codes, t.codes)
        np.testing.assert_array_equal(back[name].regions, t.regions)
        np.testing.assert_array_equal(back[name].scales, t.scales)
        assert back[name].act_zero_point == t.act_zero_point and back[name].padding == t.padding
    section = q.manifest_section()
    assert json.loads(json.dumps(section)) == section
    reference = manifest_section(quantize(net, DATA, progress=False))
    assert section.keys() == reference.keys()
    assert [layer.keys() for layer in section["layers"]] == [layer.keys() for layer in reference["layers"]]
    assert [layer["name"] for layer in section["layers"]] == list(q.tables)


# --- errors ----------------------------------------------------------------------------------------------

def test_model_without_weights_is_rejected():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "x"], ["y"])]
    model = make_model(nodes, [tensor("x", ["n", 4])], [tensor("y", ["n", 4])])
    with pytest.raises(InputError, match="has no Conv/Gemm/MatMul node with a constant weight to quantize; "
                                         "its op types: Add, Relu"):
        quantize_onnx(model, np.zeros((2, 4), np.float32), progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"weight_bits": 9}, "weight_bits=9; allowed: an integer from 2 to 8"),
    ({"act_bits": 1}, "act_bits=1; allowed: an integer from 2 to 8"),
    ({"breakpoints": 4}, "breakpoints=4; allowed: 1, 2 or 3"),
    ({"breakpoints": 0}, "breakpoints=0; allowed: 1, 2 or 3"),
    ({"scheme": "log"}, "scheme='log'; allowed: 'uniform', 'pwlq'"),
])
def test_settings_outside_the_allowed_sets(kwargs, message):
    with pytest.raises(InputError, match=message):
        quantize_onnx(gemm_model(1)[0], np.zeros((2, 10), np.float32), progress=False, **kwargs)


def test_file_that_is_not_onnx_is_named(tmp_path):
    path = tmp_path / "weights.onnx"
    path.write_text("this is not a protobuf model\n" * 20)
    with pytest.raises(InputError, match=f"'{path}' is not an ONNX model"):
        quantize_onnx(path, DATA, progress=False)
    with pytest.raises(InputError, match="missing.onnx': no such file"):
        quantize_onnx(tmp_path / "missing.onnx", DATA, progress=False)
    with pytest.raises(InputError, match="model is a dict"):
        quantize_onnx({}, DATA, progress=False)


def test_calibration_data_is_checked_against_the_model_input():
    model = to_onnx(conv_bn_net(), DATA[:1])
    with pytest.raises(InputError, match=r"calibration_data has shape \(4, 1, 12, 12\) and dtype float32; model "
                                         r"input 'input' expects shape \(batch, 3, 12, 12\)"):
        quantize_onnx(model, np.zeros((4, 1, 12, 12), np.float32), progress=False)
    with pytest.raises(InputError, match=r"calibration_data has shape \(4, 3, 12, 12\) and dtype uint8; .*float"):
        quantize_onnx(model, np.zeros((4, 3, 12, 12), np.uint8), progress=False)
    with pytest.raises(InputError, match=r"calibration batch has shape \(3, 12, 12\)"):
        quantize_onnx(model, [DATA[:2].numpy(), DATA[0].numpy()], progress=False)
    with pytest.raises(InputError, match="calibration_data holds no batch"):
        quantize_onnx(model, [], progress=False)
    with pytest.raises(InputError, match=r"fixed at 2"):
        quantize_onnx(to_onnx(conv_bn_net(), DATA[:2], dynamic=False), DATA[:3], progress=False)
    q = quantize_onnx(model, DATA, progress=False)
    with pytest.raises(InputError, match=r"x has shape \(2, 3, 8, 8\)"):
        q.run_simulation(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(InputError, match="form='qoperator'; allowed: 'qdq', 'integer'"):
        q.export("qoperator")
    assert isinstance(q, QuantizedOnnx)
