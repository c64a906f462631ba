"""Model zoo: shapes, the plain-op contract, ONNX export parity, MAC counting."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from sdk.errors import InputError  # noqa: E402
from sdk.models import MODEL_NAMES, build_model, count_flops  # noqa: E402

# Leaf modules the quantizer, stage splitter and exporter are promised (no exotic ops).
PLAIN_MODULES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Linear, nn.MaxPool2d,
                 nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity)
PLAIN_ONNX_OPS = {"Conv", "BatchNormalization", "Relu", "Clip", "Gemm", "MatMul", "MaxPool",
                  "AveragePool", "GlobalAveragePool", "Add", "Flatten",
                  "Constant"}  # ReLU6 exports as Clip whose bounds are Constant inputs


def _with_random_bn_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine terms, so BN folding in the export is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
    return model.eval()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_shape_and_plain_modules(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    exotic = {type(m).__name__ for m in model.modules()
              if not list(m.children()) and not isinstance(m, PLAIN_MODULES)}
    assert not exotic, f"{name} uses {exotic}"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_in_channels_and_num_classes(name):
    model = build_model(name, in_channels=3, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 28, 28)).shape == (2, 7)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_onnx_export_matches_torch(name, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = _with_random_bn_statistics(build_model(name))
    x = torch.randn(2, 1, 28, 28)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"])
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert ops <= PLAIN_ONNX_OPS, f"{name} exports {ops - PLAIN_ONNX_OPS}"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    assert np.abs(want).max() > 1e-3  # the comparison below must not be vacuous
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_unknown_model_lists_the_zoo():
    with pytest.raises(InputError, match="lenet5, resnet20, resnet56, vgg_bn, mobilenetv2"):
        build_model("resnet18")


def test_depths_and_widths():
    def n_convs(m):
        return sum(isinstance(c, nn.Conv2d) for c in m.modules())

    # 6n+1 convs on the main path, plus the two option-B projections at the stage changes.
    assert n_convs(build_model("resnet20")) == 19 + 2
    assert n_convs(build_model("resnet56")) == 55 + 2
    full = sum(p.numel() for p in build_model("mobilenetv2").parameters())
    half = sum(p.numel() for p in build_model("mobilenetv2", width=0.5).parameters())
    assert half < full


def test_count_flops_linear():
    assert count_flops(nn.Linear(20, 30), (4, 20)) == 4 * 20 * 30


def test_count_flops_conv_and_depthwise():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8))
    assert count_flops(model, (1, 3, 10, 10)) == 8 * 10 * 10 * 3 * 9 + 8 * 10 * 10 * 9


def test_count_flops_lenet5_by_hand():
    conv1 = 6 * 28 * 28 * 1 * 25
    conv2 = 16 * 10 * 10 * 6 * 25
    fcs = 400 * 120 + 120 * 84 + 84 * 10
    model = build_model("lenet5").train()
    assert count_flops(model) == conv1 + conv2 + fcs
    assert count_flops(model, (3, 1, 28, 28)) == 3 * (conv1 + conv2 + fcs)
    # Hooks removed and mode restored.
    assert model.training
    assert not any(m._forward_hooks for m in model.modules())
