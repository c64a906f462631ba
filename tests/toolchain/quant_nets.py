"""Small models shared by the quantization tests (not a test module)."""
import torch
import torch.nn.functional as F
from torch import nn


def randomize_bn(model, seed: int = 0):
    """Non-trivial batch-norm statistics and affine parameters, so folding is exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


class ConvNet(nn.Module):
    """conv-bn-relu-conv-bn-relu-pool-linear."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class ResidualNet(nn.Module):
    """conv-bn-relu, a residual block of two conv-bn, global average pooling, linear."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv1, self.bn1 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.relu(self.bn0(self.stem(x)))
        x = F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return self.fc(x.mean((2, 3)))


def small_dynamic_net(thresholds=(0.8, 0.9), *, bn_statistics: bool = False):
    """A VGG-like MNIST-shaped CNN made a 3-stage S2DNAS network (fixed architecture, no search);
    ``bn_statistics``: mildly non-trivial batch-norm running statistics, so folding matters."""
    from sdk.toolchain.s2dnas import Architecture, transform

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Flatten(), nn.Linear(16 * 14 * 14, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    if bn_statistics:
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    net = transform(model, Architecture(3, 8, ((1, 4), (2, 6), (3, 5)), ((True, False, True),) * 3)).eval()
    net.set_thresholds(list(thresholds))
    return net
