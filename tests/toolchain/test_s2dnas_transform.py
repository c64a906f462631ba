"""S2D split/concat: weights sliced from the static model, stages equal a masked static model,
the zoo transforms, and models it cannot transform are refused naming the layer."""
import copy
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sdk.errors import InputError  # noqa: E402
from sdk.models import build_model, count_flops  # noqa: E402
from sdk.toolchain.s2dnas import Architecture, TransformError, analyze, transform  # noqa: E402
from sdk.toolchain.s2dnas.arch import split_choices, stage_pairs  # noqa: E402
from sdk.toolchain.s2dnas.stages import _ranges  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():  # small tensors: threads only add contention on a shared machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _randomize_bn(model):
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics (ResNet zero-inits bn2)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return model.eval()


def _random_arch(num_settings, seed, stages=3, groups=8):
    rng = random.Random(seed)
    pairs = len(stage_pairs(stages))
    return Architecture(stages, groups,
                        tuple(rng.choice(split_choices(groups, stages)) for _ in range(num_settings)),
                        tuple(tuple(rng.random() < 0.5 for _ in range(pairs)) for _ in range(num_settings)))


def _stage_of(plan, arch, site):
    out = torch.full((plan.sites[site].shape[0],), -1, dtype=torch.long)
    for i in range(arch.stages):
        out[_ranges(plan, arch, site, [i])] = i
    return out


def _masked_static(model, plan, arch, upto):
    """The static model with the connections S2D removes set to zero; its prediction layer
    reads only stages <= ``upto``. Stage ``upto`` of the transformed net must equal it."""
    m = copy.deepcopy(model)
    modules = dict(m.named_modules())
    fx_names = {name.replace(".", "_"): name for name in modules}
    for layer in plan.layers:
        if layer.role not in ("dense", "predict") or plan.sites[layer.inputs[0]].setting is None:
            continue
        mod = modules[fx_names[layer.name]]
        cin = _stage_of(plan, arch, layer.inputs[0])
        if layer.role == "predict":
            keep = (cin <= upto)[None, :].expand(mod.weight.shape[0], -1)
        else:
            cout = _stage_of(plan, arch, layer.output)
            allowed = torch.eye(arch.stages, dtype=torch.bool)
            setting = plan.sites[layer.inputs[0]].setting
            for j in range(arch.stages):
                for i in arch.reused_stages(setting, j):
                    allowed[i, j] = True
            keep = allowed[cin[None, :], cout[:, None]]
        w = mod.weight.data
        w.mul_(keep.reshape(*keep.shape, *([1] * (w.dim() - 2))).to(w.dtype))
    return m


@pytest.mark.parametrize("name", ["resnet20", "resnet56", "vgg_bn", "mobilenetv2"])
def test_stages_equal_the_masked_static_model(name):
    model = _randomize_bn(build_model(name))
    plan = analyze(model)
    arch = _random_arch(len(plan.settings), seed=len(name))
    net = transform(model, arch, plan=plan).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        outs = net(x)
        for j in (0, arch.stages - 1):
            ref = _masked_static(model, plan, arch, j)(x)
            np.testing.assert_allclose(outs[j].numpy(), ref.numpy(), atol=1e-5)
    assert net.stage_macs == sorted(net.stage_macs) and net.stage_macs[-1] < plan.static_macs
    assert plan.static_macs == count_flops(model)


class _Through(nn.Module):
    def __init__(self, net, last):
        super().__init__()
        self.net, self.last = net, last

    def forward(self, x):
        cache = {}
        return [stage(x, cache) for stage in self.net.stages[:self.last + 1]][-1]


def test_stage_macs_are_counted_like_the_zoo():
    model = build_model("mobilenetv2").eval()  # depthwise convs and residual adds
    plan = analyze(model)
    net = transform(model, _random_arch(len(plan.settings), seed=3), plan=plan)
    assert net.stage_macs == [count_flops(_Through(net, j)) for j in range(3)]


def test_settings_follow_resolution():
    plan = analyze(build_model("resnet20"))
    assert [s.description for s in plan.settings] == ["28x28 maps", "14x14 maps", "7x7 maps"]
    plan = analyze(build_model("vgg_bn"))
    assert [s.description for s in plan.settings] == ["28x28 maps", "14x14 maps", "7x7 maps", "vectors"]


def test_first_layer_sees_the_whole_input_and_stages_own_disjoint_groups():
    model = build_model("resnet20").eval()
    arch = Architecture(3, 8, ((1, 5),) * 3, ((False,) * 3,) * 3)
    net = transform(model, arch)
    stems = [stage.layers["stem_0"] for stage in net.stages]
    assert [s.in_channels for s in stems] == [1, 1, 1]          # the input is not split
    assert [s.out_channels for s in stems] == [2, 8, 6]          # 16 channels, groups 1 | 4 | 3
    for s, (a, b) in zip(stems, [(0, 2), (2, 10), (10, 16)]):
        torch.testing.assert_close(s.weight, model.stem[0].weight[a:b])


def test_concat_reads_earlier_stages_from_the_cache():
    model = build_model("resnet20").eval()
    arch = Architecture.even(3, concat=True)
    net = transform(model, arch)
    for j, stage in enumerate(net.stages):
        assert all(int(name.split(".")[0][1:]) < j for name in stage.reuses)
    assert net.stages[-1].exports == []
    # the prediction layer always concatenates every earlier stage
    assert [stage.layers["fc"].in_features for stage in net.stages] == [24, 40, 64]


@pytest.mark.parametrize("bad, message", [
    (Architecture.even(2), "has 2 settings but ResNet has 3"),
    (Architecture.even(3, groups=4), "architecture has 4 groups, the plan 8"),
])
def test_architecture_must_fit_the_model(bad, message):
    model = build_model("resnet20")
    with pytest.raises(InputError, match=message):
        transform(model, bad, plan=analyze(model))


def test_architecture_validation_and_round_trip():
    with pytest.raises(InputError, match=r"split points \[3, 3\] must be 2 increasing values in 1..7"):
        Architecture(3, 8, ((3, 3),), ((True, True, True),))
    with pytest.raises(InputError, match="concat has 2 entries, expected 3"):
        Architecture(3, 8, ((2, 5),), ((True, True),))
    arch = Architecture(3, 8, ((2, 5), (1, 7)), ((True, False, True), (False, False, False)))
    assert Architecture.from_dict(arch.to_dict()) == arch


class _Cat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(16 * 28 * 28, 10)

    def forward(self, x):
        return self.fc(torch.flatten(torch.cat([self.a(x), self.b(x)], 1), 1))


def _seq(*layers):
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


@pytest.mark.parametrize("model, message", [
    (_Cat(), r"layer 'cat' \(cat\) cannot be transformed: it concatenates feature maps"),
    (_seq(nn.Conv2d(1, 16, 3), nn.Conv2d(16, 16, 3, groups=4)),
     r"layer '1' \(Conv2d\) cannot be transformed: grouped convolution \(groups=4"),
    (_seq(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 16, 3)), r"layer '0' \(Conv2d\) has 4 channels, fewer than the 8 groups"),
    (_seq(nn.Conv2d(1, 16, 3), nn.Upsample(scale_factor=2)),
     r"layer '1' \(Upsample\) cannot be transformed: it has no S2D handler"),
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), "reads the unsplit input"),
    (nn.Sequential(nn.Conv2d(1, 16, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10), nn.Softmax(1)),
     r"layer '4' \(Softmax\) cannot be transformed"),
])
def test_untransformable_models_name_the_layer(model, message):
    with pytest.raises(TransformError, match=message):
        analyze(model.eval())
