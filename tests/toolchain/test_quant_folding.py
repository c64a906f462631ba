"""Batch-norm folding with torch.fx."""
import copy

import pytest
import torch
from torch import nn

from sdk.errors import PrismError
from sdk.toolchain.quant.folding import fold_batch_norms


from tests.toolchain.quant_nets import randomize_bn  # noqa: E402


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class Depthwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn = nn.BatchNorm2d(8, affine=False)
        self.pw = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.pw(torch.relu(self.bn(self.dw(x))))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.bn, self.fc2 = nn.Linear(12, 20), nn.BatchNorm1d(20), nn.Linear(20, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


CASES = [(ConvNet, (5, 3, 16, 16), 2), (Depthwise, (2, 8, 9, 9), 1), (Residual, (3, 4, 8, 8), 2), (Mlp, (7, 12), 1)]


@pytest.mark.parametrize("cls,shape,n_bn", CASES)
def test_folded_model_gives_the_same_output(cls, shape, n_bn):
    model = randomize_bn(cls())
    x = torch.randn(*shape)
    folded, names = fold_batch_norms(model)
    assert len(names) == n_bn
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)


def test_input_model_is_not_modified():
    model = randomize_bn(ConvNet())
    before = copy.deepcopy(model.state_dict())
    fold_batch_norms(model)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_model_without_batch_norm_is_a_no_op():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2)).eval()
    folded, names = fold_batch_norms(model)
    assert names == []
    for (k, v), (k2, v2) in zip(model.state_dict().items(), folded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(folded(x), model(x))


class SharedConv(nn.Module):
    """The conv runs twice; folding the BN into it would change the first use."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(self.conv(x)))


class Branching(nn.Module):
    """The conv output also feeds the residual add."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


@pytest.mark.parametrize("cls", [SharedConv, Branching])
def test_unsafe_pairs_are_left_alone(cls):
    model = randomize_bn(cls())
    folded, names = fold_batch_norms(model)
    assert names == []
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(folded(x), model(x))


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)

    def forward(self, x):
        return self.conv(x) if x.sum() > 0 else x


def test_untraceable_model_raises_prism_error_naming_the_model():
    with pytest.raises(PrismError, match="Untraceable"):
        fold_batch_norms(Untraceable())
