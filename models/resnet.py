"""CIFAR-style ResNets (He et al., 2016, section 4.2) adapted to 28x28 digits.

Three stages of BasicBlocks with 16/32/64 channels; depth = 6n + 2 (ResNet-20: n=3, ResNet-56:
n=9). Shortcuts that change shape are option B (1x1 conv + BatchNorm), not the paper's option A
zero-padding, because a strided slice plus channel pad exports to awkward ONNX and quantizes badly.
"""
from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU. ``(N, C_in, H, W) -> (N, C_out, H/s, W/s)``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet of depth ``6 * blocks_per_stage + 2``.

    Input ``(N, in_channels, 28, 28) float32`` (default ``(N, 1, 28, 28)``); output
    ``(N, num_classes)`` logits. Spatial sizes: 28 -> stage1 28 -> stage2 14 -> stage3 7 ->
    global average pool -> linear.
    """

    def __init__(self, blocks_per_stage: int, in_channels: int = 1, num_classes: int = 10,
                 widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages, channels = [], widths[0]
        for i, width in enumerate(widths):
            blocks = []
            for j in range(blocks_per_stage):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.fc(self.flatten(self.pool(x)))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    # Zero-init the last BN of each residual branch: every block starts as identity, which makes
    # short one-cycle schedules converge faster.
    for m in model.modules():
        if isinstance(m, BasicBlock):
            nn.init.zeros_(m.bn2.weight)


def resnet20(in_channels: int = 1, num_classes: int = 10) -> ResNet:
    """ResNet-20 (3 blocks per stage, ~0.27 M parameters). Input ``(N, 1, 28, 28) float32``."""
    return ResNet(3, in_channels, num_classes)


def resnet56(in_channels: int = 1, num_classes: int = 10) -> ResNet:
    """ResNet-56 (9 blocks per stage, ~0.85 M parameters). Input ``(N, 1, 28, 28) float32``."""
    return ResNet(9, in_channels, num_classes)
