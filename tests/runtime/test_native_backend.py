"""Native backend: quantized bundles on the C++ integer kernels, bit-exact with ORT's integer form."""
import numpy as np
import pytest

import sdk
from sdk.runtime.backends import BackendUnavailable

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sdk.data import load_dataset, normalize  # noqa: E402
from sdk.kernels_int import available_paths  # noqa: E402


class ResidualNet(nn.Module):
    """Conv-BN-ReLU, a depthwise conv, a residual add, max pooling, global average pooling."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8), nn.BatchNorm2d(8), nn.ReLU())
        self.pw = nn.Conv2d(8, 8, 1)
        self.down = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU6())
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.pw(self.dw(x)))
        x = self.down(x)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@pytest.fixture(scope="module")
def digits():
    test = load_dataset("mnist5k", "test")
    return normalize(test.images[:200], "mnist5k"), test.labels[:200]


@pytest.fixture(scope="module")
def calib():
    return torch.from_numpy(normalize(load_dataset("mnist5k", "train").images[:128], "mnist5k"))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = ResidualNet().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def _deploy(model, calib, tmp_path_factory, **options):
    q = sdk.quantize(model, calib, progress=False, **options)
    out = tmp_path_factory.mktemp("native") / "b.prism"
    return q, sdk.deploy(q, out=out, example_input=torch.zeros(1, 1, 28, 28))


@pytest.mark.parametrize("options", [dict(scheme="pwlq", weight_bits=4),
                                     dict(scheme="uniform", weight_bits=8),
                                     dict(scheme="pwlq", weight_bits=6, bias_correction=False),
                                     dict(scheme="pwlq", weight_bits=4, act_bits=6)],
                         ids=["pwlq4", "uniform8", "pwlq6-nobc", "pwlq4-a6"])
def test_bit_exact_with_onnxruntime_integer_form(net, calib, digits, tmp_path_factory, options):
    q, bundle = _deploy(net, calib, tmp_path_factory, **options)
    x, _ = digits
    with sdk.load(bundle.path) as ort_engine, sdk.load(bundle.path, backend="native") as native:
        ref = ort_engine.infer(x)
        got = native.infer(x)
    np.testing.assert_array_equal(got, ref)
    with torch.no_grad():
        sim = q(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, sim, atol=1e-3 * np.abs(sim).max())


@pytest.mark.parametrize("path", [p for p, why in available_paths().items() if why is None])
def test_every_simd_path_gives_the_same_bits(net, calib, digits, tmp_path_factory, path):
    _, bundle = _deploy(net, calib, tmp_path_factory)
    x, _ = digits
    with sdk.load(bundle.path, backend="native") as default, \
            sdk.load(bundle.path, backend="native", simd_path=path, num_threads=1) as forced:
        np.testing.assert_array_equal(forced.infer(x[:17]), default.infer(x[:17]))
        assert forced.describe()["simd_path"] == path


def test_any_batch_and_accuracy_of_the_lenet_digits(tiny_model, calib, digits, tmp_path_factory):
    _, bundle = _deploy(tiny_model, calib, tmp_path_factory, weight_bits=8)
    x, _ = digits
    with sdk.load(bundle.path, backend="native") as native, sdk.load(bundle.path) as ort_engine:
        for batch in (1, 3, 64):
            np.testing.assert_array_equal(native.infer(x[:batch]), ort_engine.infer(x[:batch]))


def test_first_layer_left_fp32_runs_as_float_conv(net, calib, digits, tmp_path_factory):
    q, bundle = _deploy(net, calib, tmp_path_factory, skip_first_layer=True)
    assert "stem.0" not in q.tables
    x, _ = digits
    with sdk.load(bundle.path, backend="native") as native, sdk.load(bundle.path) as ort_engine:
        got, ref = native.infer(x[:32]), ort_engine.infer(x[:32])
    # the FP32 stem is summed in another order than ORT's; everything after it is integer
    np.testing.assert_allclose(got, ref, atol=2e-2 * np.abs(ref).max())
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.95


def test_unquantized_bundle_is_refused_with_the_reason(tiny_bundle):
    with pytest.raises(BackendUnavailable, match="not a quantized bundle"):
        sdk.load(tiny_bundle.path, backend="native")


def test_multi_breakpoint_layers_are_refused(net, calib, tmp_path_factory):
    _, bundle = _deploy(net, calib, tmp_path_factory, weight_bits=4, breakpoints=2,
                        breakpoint_method="empirical")
    with pytest.raises(BackendUnavailable, match="2 breakpoints; the kernels take at most 1"):
        sdk.load(bundle.path, backend="native")


def test_input_validation_is_the_engines(net, calib, tmp_path_factory):
    _, bundle = _deploy(net, calib, tmp_path_factory)
    with sdk.load(bundle.path, backend="native") as native:
        with pytest.raises(ValueError, match="expected dtype float32"):
            native.infer(np.zeros((1, 1, 28, 28)))


@pytest.mark.parametrize("path", [p for p, why in available_paths().items() if why is None])
def test_resnet20_projection_shortcuts_fuse_bit_exact(calib, digits, tmp_path_factory, path):
    """The zoo's ResNet-20 (1x1 stride-2 projection shortcuts: QConv -> Add -> Relu fused into
    one kernel call) on every SIMD path equals ORT's integer form bit for bit."""
    from sdk.models import build_model

    torch.manual_seed(1)
    model = build_model("resnet20").eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    _, bundle = _deploy(model, calib[:64], tmp_path_factory, scheme="pwlq", weight_bits=4)
    x = digits[0][:5]
    with sdk.load(bundle.path) as ort_engine, sdk.load(bundle.path, backend="native", simd_path=path) as native:
        np.testing.assert_array_equal(native.infer(x), ort_engine.infer(x))
