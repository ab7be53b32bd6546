"""A small CNN for tiny grey or colour images (8x8 digits, 28x28 MedMNIST / MNIST-like).

Conv-BN-ReLU pairs; a 2x2 max-pool after each stage while the map is larger than 4x4, then global
average pooling. On 8x8 inputs: 2 stages (8 -> 4), 0.1 M parameters, a CPU step on a batch of 500
takes tens of milliseconds, which is what makes the digits presets finish in under a minute.
"""
from __future__ import annotations

import torch
from torch import nn


def _conv(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    min_image_size = 4
    max_image_size = 64

    def __init__(self, in_channels: int = 1, image_size: int = 8, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, size, out = in_channels, image_size, width
        while True:
            layers += _conv(channels, out) + _conv(out, out)
            channels = out
            if size <= 4:
                break
            layers.append(nn.MaxPool2d(2))
            size //= 2
            out = min(out * 2, 4 * width)
        self.body = nn.Sequential(*layers)
        self.feature_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.body(x), 1), 1)
