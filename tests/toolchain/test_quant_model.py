"""Model-level quantization: quantize(), QuantizedModel, tables, skipped layers, input checks."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sdk.errors import InputError
from sdk.toolchain.quant import LayerQuantTable, QuantizedLayer, QuantizedModel, quantize


from tests.toolchain.quant_nets import ConvNet, ResidualNet, randomize_bn  # noqa: E402


class DepthwiseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.bn = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.dw(F.relu(self.stem(x)))))
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.pw(x)), 1).flatten(1))


torch.manual_seed(0)
DATA = torch.randn(48, 3, 12, 12)
X = torch.randn(6, 3, 12, 12)
NETS = {"convnet": ConvNet, "depthwise": DepthwiseNet, "residual": ResidualNet}


def rel_err(y, ref):
    return float((y - ref).norm() / ref.norm())


@pytest.fixture(scope="module", params=list(NETS))
def net(request):
    torch.manual_seed(1)
    return randomize_bn(NETS[request.param]())


@pytest.mark.parametrize("scheme", ["pwlq", "uniform"])
def test_8bit_output_is_close_to_float(net, scheme):
    q = quantize(net, DATA, scheme=scheme, weight_bits=8, progress=False)
    with torch.no_grad():
        assert rel_err(q(X), net(X)) < 0.02
    assert isinstance(q, QuantizedModel) and isinstance(q, nn.Module)
    assert all(isinstance(t, LayerQuantTable) for t in q.tables.values())


def test_4bit_pwlq_weights_beat_uniform(net):
    q = quantize(net, DATA, scheme="pwlq", weight_bits=4, progress=False)
    u = quantize(net, DATA, scheme="uniform", weight_bits=4, progress=False)
    for name in q.tables:
        assert q.weight_mse[name]["pwlq"] < q.weight_mse[name]["uniform"]
    with torch.no_grad():
        assert rel_err(q(X), net(X)) < rel_err(u(X), net(X))


def test_dequantized_weights_reproducible_from_tables(net):
    q = quantize(net, DATA, scheme="pwlq", weight_bits=4, progress=False)
    for name, t in q.tables.items():
        shape = (-1,) + (1,) * (t.codes.ndim - 1)
        region = t.regions.astype(int)
        scale = np.take_along_axis(t.scales.reshape(len(t.scales), -1).astype(np.float64),
                                   region.reshape(len(region), -1), axis=1).reshape(t.codes.shape)
        offset = np.take_along_axis(t.offsets.astype(np.float64), region.reshape(len(region), -1),
                                    axis=1).reshape(t.codes.shape)
        w_hat = np.sign(t.codes) * (scale * np.abs(t.codes) + offset)  # codes*scales + offsets
        w_bc = t.bc_scale.astype(np.float64).reshape(shape) * w_hat + t.bc_shift.astype(np.float64).reshape(shape)
        layer = q.model.get_submodule(name)
        assert isinstance(layer, QuantizedLayer)
        np.testing.assert_array_equal(layer.weight.numpy(), w_bc.astype(np.float32))


def test_tables_have_the_documented_fields(net):
    q = quantize(net, DATA, scheme="pwlq", weight_bits=4, breakpoints=2, breakpoint_method="gaussian_expected",
                 progress=False)
    for name, t in q.tables.items():
        w = q.float_model.get_submodule(name).weight
        c = w.shape[0]
        assert t.codes.dtype == np.int8 and t.codes.shape == tuple(w.shape)
        assert t.regions.dtype == np.uint8 and t.regions.shape == tuple(w.shape) and t.regions.max() <= 2
        assert t.breakpoints.shape == (c, 2) and t.scales.shape == (c, 3) and t.scales.dtype == np.float32
        assert t.bc_scale.shape == t.bc_shift.shape == t.bias.shape == (c,) and t.bias.dtype == np.float32
        assert 0 <= t.act_zero_point <= 255 and t.act_scale > 0 and t.act_bits == 8
        module = q.float_model.get_submodule(name)
        if isinstance(module, nn.Conv2d):
            assert (t.stride, t.padding, t.dilation, t.groups) == (module.stride, module.padding,
                                                                   module.dilation, module.groups)
    assert list(q.tables) == list(dict.fromkeys(q.tables))  # ordered, execution order


def test_layer_input_is_fake_quantized_exactly(net):
    q = quantize(net, DATA, scheme="pwlq", weight_bits=4, progress=False)
    seen = {}
    for name in q.tables:
        q.model.get_submodule(name).register_forward_hook(
            lambda mod, inp, out, name=name: seen.__setitem__(name, (inp[0].clone(), out.clone())))
    with torch.no_grad():
        q(X)
    for name, (x, y) in seen.items():
        t = q.tables[name]
        s, zp = np.float32(t.act_scale), np.float32(t.act_zero_point)
        codes = np.clip(np.round(x.numpy() / s) + zp, 0, 255)
        x_hat = torch.from_numpy(s * (codes - zp))
        layer = q.model.get_submodule(name)
        w, b = torch.from_numpy(t.dequantized_weight().astype(np.float32)), torch.from_numpy(t.bias)
        expected = (F.conv2d(x_hat, w, b, t.stride, t.padding, t.dilation, t.groups) if t.layer_type == "Conv2d"
                    else F.linear(x_hat, w, b))
        assert torch.equal(y, expected), name
        assert torch.equal(layer.act_quantizer.fake_quantize(x), x_hat)


def test_calibration_accepts_iterables_and_dataloader_tuples():
    net = randomize_bn(ConvNet())
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(DATA, torch.zeros(48)), batch_size=16)
    a = quantize(net, loader, progress=False)
    b = quantize(net, [DATA[:16].numpy(), DATA[16:32], DATA[32:]], progress=False)
    c = quantize(net, DATA, progress=False)
    for name in a.tables:
        assert a.tables[name].act_scale == b.tables[name].act_scale == c.tables[name].act_scale


@pytest.mark.parametrize("bad,match", [
    (torch.randn(4, 4, 12, 12), r"shape \(4, 4, 12, 12\); expected \(N, 3, H, W\) float .*'features.0', Conv2d"),
    (torch.randn(4, 3, 12), r"expected \(N, 3, H, W\)"),
    (torch.zeros(4, 3, 12, 12, dtype=torch.int64), r"dtype torch.int64; expected \(N, 3, H, W\)"),
    (np.zeros((4, 3, 12, 12), np.uint8), r"dtype uint8"),
    ([], "holds no batch"),
    (42, "is a int; expected"),
])
def test_bad_calibration_data_names_the_expected_input(bad, match):
    with pytest.raises(InputError, match=match):
        quantize(randomize_bn(ConvNet()), bad, progress=False)


@pytest.mark.parametrize("kwargs,match", [
    ({"weight_bits": 9}, "weight_bits=9; allowed: an integer from 2 to 8"),
    ({"weight_bits": 1}, "weight_bits=1"),
    ({"act_bits": 16}, "act_bits=16"),
    ({"breakpoints": 4}, "breakpoints=4; allowed: 1, 2 or 3"),
    ({"breakpoints": 0}, "breakpoints=0"),
    ({"scheme": "log2"}, "scheme='log2'; allowed: 'uniform', 'pwlq'"),
    ({"act_calibration": "kl"}, "act_calibration='kl'"),
    ({"breakpoints": 2}, "1 breakpoint only"),
    ({"breakpoint_method": "newton"}, "breakpoint_method='newton'"),
])
def test_bad_settings_raise_input_error(kwargs, match):
    with pytest.raises(InputError, match=match):
        quantize(ConvNet(), DATA, progress=False, **kwargs)


class WithUnsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.norm = nn.GroupNorm(2, 4)
        self.reflect = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")

    def forward(self, x):
        return self.reflect(self.norm(self.up(self.conv(x))))


def test_unsupported_layers_stay_fp32_and_are_listed():
    model = WithUnsupported().eval()
    q = quantize(model, DATA[:8], progress=False)
    assert list(q.tables) == ["conv"]
    assert set(q.skipped) == {"up", "norm", "reflect"}
    assert "ConvTranspose2d has no quantization handler" in q.skipped["up"]
    assert "padding_mode='reflect'" in q.skipped["reflect"]
    with torch.no_grad():
        assert rel_err(q(X), model(X)) < 0.05


def test_skip_first_layer_keeps_it_in_fp32():
    q = quantize(randomize_bn(ConvNet()), DATA, skip_first_layer=True, progress=False)
    assert "features.0" not in q.tables and "skip_first_layer" in q.skipped["features.0"]
    assert isinstance(q.model.get_submodule("features.0"), nn.Conv2d)


def test_summary_lists_center_share_and_both_mses():
    q = quantize(randomize_bn(ConvNet()), DATA, progress=False)
    text = q.summary()
    for name, t in q.tables.items():
        assert name in text
        assert f"{t.center_share:.3f}" in text
    assert "mse uniform" in text and "mse pwlq" in text
    assert all(0 < t.center_share <= 1 for t in q.tables.values())


@pytest.mark.parametrize("kwargs", [
    {"per_channel": False},
    {"bias_correction": False},
    {"act_calibration": "percentile"},
    {"act_calibration": "minmax", "breakpoint_method": "laplacian_closed"},
    {"breakpoints": 3, "breakpoint_method": "empirical", "weight_bits": 3},
    {"weight_bits": 4, "act_bits": 4, "act_scheme": "pwlq"},
])
def test_options_run(kwargs):
    net = randomize_bn(ConvNet())
    q = quantize(net, DATA, progress=False, **kwargs)
    with torch.no_grad():
        y = q(X)
        assert torch.isfinite(y).all() and rel_err(y, net(X)) < 0.5
    if kwargs.get("act_scheme") == "pwlq":
        assert all(t.act_scheme == "pwlq" and t.act_breakpoints.shape == (1,) for t in q.tables.values())
    if not kwargs.get("bias_correction", True):
        assert all(np.all(t.bc_scale == 1) and np.all(t.bc_shift == 0) for t in q.tables.values())


class UntraceableWithBn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x)) if x.sum() > -1e9 else x


def test_untraceable_model_still_quantizes_with_bn_in_fp32():
    with pytest.warns(UserWarning, match="torch.fx"):
        q = quantize(randomize_bn(UntraceableWithBn()), DATA[:8], progress=False)
    assert list(q.tables) == ["conv"] and "not folded" in q.skipped["bn"]


def test_input_model_is_unchanged():
    net = randomize_bn(ConvNet())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    quantize(net, DATA, progress=False)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert isinstance(net.features[1], nn.BatchNorm2d)


class FlattenMlp(nn.Module):
    """The first quantized layer does not take the model input directly."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3 * 12 * 12, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def test_image_batches_into_a_flattening_mlp_are_accepted():
    q = quantize(FlattenMlp().eval(), DATA, weight_bits=8, progress=False)
    assert list(q.tables) == ["fc1", "fc2"]


def test_batch_that_fails_inside_the_model_names_the_expected_input():
    with pytest.raises(InputError, match=r"shape \(48, 3, 10, 10\) does not run through FlattenMlp .*"
                                         r"expected \(N, 432\) float .*'fc1', Linear"):
        quantize(FlattenMlp().eval(), torch.randn(48, 3, 10, 10), progress=False)
