"""The NumPy integer reference against torch and, bit for bit, against ONNX Runtime's ConvInteger."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from torch import nn

from sdk.toolchain.quant import export_onnx, quantize
from sdk.toolchain.quant.integer_reference import accumulators, conv_integer, layer_output, matmul_integer

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("group,stride,pads,dilation", [
    (1, (1, 1), (1, 1, 1, 1), (1, 1)), (1, (2, 2), (0, 1, 2, 1), (1, 1)), (6, (1, 2), (2, 2, 2, 2), (2, 2)),
    (3, (2, 1), (1, 0, 1, 0), (1, 2))])
def test_conv_integer_matches_float_conv_on_centered_codes(group, stride, pads, dilation):
    x = RNG.integers(0, 256, size=(2, 6, 9, 8)).astype(np.uint8)
    w = RNG.integers(-7, 8, size=(12, 6 // group, 3, 3)).astype(np.int8)
    got = conv_integer(x, 37, w, 0, stride, pads, dilation, group)
    xf = torch.from_numpy(x.astype(np.float64) - 37)
    xf = F.pad(xf, (pads[1], pads[3], pads[0], pads[2]))
    ref = F.conv2d(xf, torch.from_numpy(w.astype(np.float64)), stride=stride, dilation=dilation, groups=group)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ref.numpy().astype(np.int64))


def test_matmul_integer():
    a = RNG.integers(0, 256, size=(3, 4, 10)).astype(np.uint8)
    b = RNG.integers(-128, 128, size=(10, 5)).astype(np.int8)
    np.testing.assert_array_equal(matmul_integer(a, 200, b, 3),
                                  (a.astype(np.int64) - 200) @ (b.astype(np.int64) - 3))


@pytest.mark.parametrize("group,stride,pads", [(1, 1, 1), (8, 2, 1), (2, 1, 0)])
def test_ort_conv_integer_is_bit_exact_with_the_reference(group, stride, pads):
    x = RNG.integers(0, 256, size=(2, 8, 7, 7)).astype(np.uint8)
    w = RNG.integers(-7, 8, size=(8, 8 // group, 3, 3)).astype(np.int8)
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], group=group, strides=[stride] * 2,
                            pads=[pads] * 4)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, None)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.INT32, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(129, np.uint8), "xz"),
         numpy_helper.from_array(np.array(0, np.int8), "wz")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (y,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(y, conv_integer(x, 129, w, 0, (stride,) * 2, (pads,) * 4, (1, 1), group))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(F.relu(self.dw(F.relu(self.conv1(x)))).mean((2, 3)))


def test_exported_accumulators_are_bit_exact_and_layer_outputs_match():
    """Expose every integer accumulator of the exported model and recompute it in NumPy."""
    torch.manual_seed(0)
    q = quantize(Net().eval(), torch.randn(16, 3, 10, 10), weight_bits=4, progress=False)
    model = export_onnx(q, torch.randn(1, 3, 10, 10), form="integer")
    integer_nodes = [n for n in model.graph.node if n.op_type in ("ConvInteger", "MatMulInteger")]
    names = sorted({n.output[0] for n in integer_nodes} | {n.input[0] for n in integer_nodes})
    for name in names:
        model.graph.output.append(helper.make_empty_tensor_value_info(name))
    x = torch.randn(2, 3, 10, 10)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x.numpy()})))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in integer_nodes:  # node by node against the reference
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        x_q, w, x_zp = values[node.input[0]], inits[node.input[1]], int(inits[node.input[2]])
        if node.op_type == "ConvInteger":
            ref = conv_integer(x_q, x_zp, w, 0, attrs["strides"], attrs["pads"], attrs["dilations"], attrs["group"])
        else:
            ref = matmul_integer(x_q, x_zp, w, 0)
        np.testing.assert_array_equal(values[node.output[0]], ref)
    for name, table in q.tables.items():  # layer by layer: accumulators and output from the table alone
        base = name.replace(".", "_")
        x_q = values[f"{base}_act_q"]
        for key, acc in accumulators(table, x_q).items():
            np.testing.assert_array_equal(values[f"{base}_acc_{key}"], acc)
        captured = {}
        handle = q.model.get_submodule(name).register_forward_hook(lambda m, i, o: captured.setdefault("y", o))
        with torch.no_grad():
            q(x)
        handle.remove()
        ref = captured["y"].numpy()
        np.testing.assert_allclose(layer_output(table, x_q), ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("padding,kernel", [("same", 4), ("same", 3), ("valid", 3)])
def test_string_padding_resolves_like_pytorch(padding, kernel):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, kernel, padding=padding, dilation=1)).eval()
    q = quantize(net, torch.randn(8, 3, 9, 9), weight_bits=8, progress=False)
    table = q.tables["0"]
    x = torch.randn(2, 3, 9, 9)
    x_q = q.model.get_submodule("0").act_quantizer.quantize(x.numpy())
    with torch.no_grad():
        ref = q(x).numpy()
    np.testing.assert_allclose(layer_output(table, x_q), ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    for form in ("qdq", "integer"):
        (y,) = ort.InferenceSession(export_onnx(q, x[:1], form=form).SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
