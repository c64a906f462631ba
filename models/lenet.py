"""LeNet-5 (LeCun et al., 1998) with ReLU and max pooling, for 28x28 digits."""
from __future__ import annotations

import torch
from torch import nn


class LeNet5(nn.Module):
    """LeNet-5: two 5x5 conv + max-pool stages, then 120-84-``num_classes`` fully connected.

    Input ``(N, in_channels, 28, 28) float32`` (default ``(N, 1, 28, 28)``, normalised pixels);
    output ``(N, num_classes)`` logits. The first conv pads by 2 so 28x28 plays the role of the
    paper's 32x32: 28 -> conv 28 -> pool 14 -> conv 10 -> pool 5, i.e. 16x5x5 features.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))
