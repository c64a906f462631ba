"""ONNX export (QDQ and integer forms) against the PyTorch simulation, and the manifest section."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sdk.errors import InputError, PrismError
from sdk.toolchain.quant import export_onnx, manifest_section, quantize


from tests.toolchain.quant_nets import ConvNet, ResidualNet, randomize_bn  # noqa: E402


class DepthwiseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16)
        self.bn = nn.BatchNorm2d(16)
        self.grouped = nn.Conv2d(16, 8, 3, stride=2, padding=1, groups=4)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.dw(F.relu(self.stem(x)))))
        return self.fc(F.adaptive_avg_pool2d(self.grouped(x), 1).flatten(1))


class TokenMlp(nn.Module):
    """Linear on (N, L, C): exported as MatMul + Add rather than Gemm."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(12, 16), nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x))).mean(1)


torch.manual_seed(0)
DATA = torch.randn(32, 3, 12, 12)
X = torch.randn(5, 3, 12, 12)
NETS = {"convnet": ConvNet, "depthwise": DepthwiseNet, "residual": ResidualNet}


def run(model: onnx.ModelProto, x: np.ndarray, outputs=None):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(outputs, {"input": x})


def assert_matches_simulation(qmodel, onnx_model, x):
    with torch.no_grad():
        ref = qmodel(x).numpy()
    (y,) = run(onnx_model, x.numpy())
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.fixture(scope="module", params=list(NETS))
def quantized(request):
    torch.manual_seed(1)
    return quantize(randomize_bn(NETS[request.param]()), DATA, scheme="pwlq", weight_bits=4, progress=False)


@pytest.mark.parametrize("form", ["qdq", "integer"])
def test_onnx_output_equals_simulation(quantized, form):
    model = export_onnx(quantized, X[:1], form=form)
    assert_matches_simulation(quantized, model, X)        # batch 5 through a batch-1 export
    assert_matches_simulation(quantized, model, X[:1])


@pytest.mark.parametrize("form", ["qdq", "integer"])
@pytest.mark.parametrize("kwargs", [
    {"scheme": "uniform", "weight_bits": 8},
    {"scheme": "pwlq", "weight_bits": 3, "breakpoints": 2, "breakpoint_method": "gaussian_expected"},
    {"scheme": "pwlq", "weight_bits": 4, "act_bits": 4, "bias_correction": False},
    {"scheme": "pwlq", "weight_bits": 4, "skip_first_layer": True, "per_channel": False},
])
def test_other_settings_export_exactly(form, kwargs):
    q = quantize(randomize_bn(ConvNet()), DATA, progress=False, **kwargs)
    assert_matches_simulation(q, export_onnx(q, X[:1], form=form), X)


@pytest.mark.parametrize("form", ["qdq", "integer"])
def test_linear_exported_as_matmul(form):
    torch.manual_seed(2)
    net = TokenMlp().eval()
    q = quantize(net, torch.randn(16, 5, 12), progress=False)
    model = export_onnx(q, torch.randn(1, 5, 12), form=form)
    assert any(n.op_type in ("MatMul", "MatMulInteger") for n in model.graph.node)
    assert_matches_simulation(q, model, torch.randn(3, 5, 12))


def test_graph_interface_opset_and_names(quantized):
    for form in ("qdq", "integer"):
        model = export_onnx(quantized, X[:1], form=form)
        onnx.checker.check_model(model)
        assert {o.domain or "": o.version for o in model.opset_import}[""] == 17
        assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_integer_form_uses_integer_ops_and_calibrated_quantization(quantized):
    model = export_onnx(quantized, X[:1], form="integer")
    ops = [n.op_type for n in model.graph.node]
    assert "DynamicQuantizeLinear" not in ops and "DequantizeLinear" not in ops
    assert "Conv" not in ops and "Gemm" not in ops  # every layer is quantized here
    assert ops.count("QuantizeLinear") == len(quantized.tables)
    assert "ConvInteger" in ops and "MatMulInteger" in ops
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("ConvInteger", "MatMulInteger"):
            assert inits[node.input[1]].dtype == np.int8 and inits[node.input[3]].dtype == np.int8
            assert inits[node.input[2]].dtype == np.uint8
    # no FP32 copy of a quantized weight is left behind
    weight_shapes = {t.codes.shape for t in quantized.tables.values()} | {t.codes.T.shape for t in quantized.tables.values()}
    assert not any(v.dtype == np.float32 and v.shape in weight_shapes for v in inits.values())


def test_qdq_form_stores_folded_int8_codes_and_no_sign_tensors(quantized):
    model = export_onnx(quantized, X[:1], form="qdq")
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") == len(quantized.tables)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    assert not any("signs" in k or "offsets" in k for k in inits)
    codes = [v for k, v in inits.items() if "_w_codes_r" in k]
    assert codes and all(v.dtype == np.int8 and np.abs(v.astype(int)).max() <= 7 for v in codes)
    # the center codes carry Q = 7 times the sign of every tail weight
    for name, t in quantized.tables.items():
        center = next(v for k, v in inits.items() if k.startswith(name.replace(".", "_") + "_w_codes_r0"))
        assert np.array_equal(np.sort(center.ravel()), np.sort(t.folded_codes(0).ravel()))
        assert np.all(t.folded_codes(0)[t.regions == 1] == 7 * np.sign(t.codes[t.regions == 1]))


def test_integer_form_has_one_accumulator_per_region(quantized):
    model = export_onnx(quantized, X[:1], form="integer")
    ops = [n.op_type for n in model.graph.node]
    per_layer = sum(t.n_regions + int(np.any(t.bc_shift != 0)) for t in quantized.tables.values())
    assert ops.count("ConvInteger") + ops.count("MatMulInteger") == per_layer


def test_skipped_layer_stays_a_float_conv():
    q = quantize(randomize_bn(ConvNet()), DATA, skip_first_layer=True, progress=False)
    model = export_onnx(q, X[:1], form="integer")
    assert [n.op_type for n in model.graph.node].count("Conv") == 1


def test_export_errors_name_the_allowed_values(quantized):
    with pytest.raises(InputError, match="form='qoperator'; allowed: 'qdq', 'integer'"):
        export_onnx(quantized, X[:1], form="qoperator")
    with pytest.raises(InputError, match="example_input"):
        export_onnx(quantized, X[:1].numpy())
    q = quantize(randomize_bn(ConvNet()), DATA, act_bits=4, act_scheme="pwlq", progress=False)
    with pytest.raises(PrismError, match="act_scheme='pwlq' has no ONNX form; allowed for export: 'uniform'"):
        export_onnx(q, X[:1], form="qdq")


def test_manifest_section_is_json_and_complete(quantized):
    section = manifest_section(quantized)
    text = json.dumps(section)
    assert json.loads(text) == section
    assert section["scheme"] == "pwlq" and section["weight_bits"] == 4 and section["breakpoints"] == 1
    assert [layer["name"] for layer in section["layers"]] == list(quantized.tables)
    for layer in section["layers"]:
        t = quantized.tables[layer["name"]]
        assert layer["method"] == "gaussian_closed" and layer["act_zero_point"] == t.act_zero_point
        assert layer["act_scale"] == pytest.approx(t.act_scale) and 0 < layer["center_share"] <= 1
