"""A small VGG with BatchNorm for 28x28 digits."""
from __future__ import annotations

import torch
from torch import nn

# Output channels of each 3x3 conv, "M" = 2x2 max pool. 28 -> 14 -> 7 -> 3.
VGG_BN_CONFIG: tuple[int | str, ...] = (32, 32, "M", 64, 64, "M", 128, 128, "M")


class VGGBN(nn.Module):
    """VGG-style stack of conv3x3-BN-ReLU blocks and max pools, then a two-layer classifier.

    Input ``(N, in_channels, 28, 28) float32`` (default ``(N, 1, 28, 28)``); output
    ``(N, num_classes)`` logits. With the default config the features are ``(N, 128, 3, 3)``.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10,
                 config: tuple[int | str, ...] = VGG_BN_CONFIG, hidden: int = 256,
                 image_size: int = 28):
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                size //= 2
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1, bias=False),
                           nn.BatchNorm2d(int(item)), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(channels * size * size, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


def vgg_bn(in_channels: int = 1, num_classes: int = 10) -> VGGBN:
    """The default small VGG-BN ([32,32,M,64,64,M,128,128,M] + 1152-256-10). Input ``(N, 1, 28, 28) float32``."""
    return VGGBN(in_channels, num_classes)
