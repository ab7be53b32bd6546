"""Wide ResNet WRN-28-k as used by FixMatch / MixMatch / CoMatch on CIFAR.

Pre-activation basic blocks, BatchNorm momentum 0.001 and LeakyReLU(0.1) (the SSL variant of
Zagoruyko & Komodakis), 3 groups of 4 blocks of widths 16k, 32k, 64k, strides 1, 2, 2. WRN-28-2
has 1.5 M parameters (CIFAR-10 reference), WRN-28-8 23.4 M (CIFAR-100 reference). `forward`
returns the 64k-d pooled features; the classifier head lives in `nets.Classifier`.

Projection shortcuts: in the first block of group 1 the 1x1 shortcut reads the ACTIVATED input
(`activate_before_residual` in every reference); in the first block of groups 2 and 3 it reads
the RAW block input (google-research/fixmatch libml/models.py `residual`, salesforce/CoMatch
WideResNet.py, the USL FixMatch fork's models/wideresnet.py). conv1 reads the activated input
everywhere, as in the TensorFlow and CoMatch code (the PyTorch ports feed it the raw input there;
see docs/fidelity.md#networks).
"""
from __future__ import annotations

import torch
from torch import nn

BN_MOMENTUM = 0.001


class _Block(nn.Module):
    """Pre-activation basic block. A projection shortcut (1x1 conv) reads the activated input when
    `activate_before_residual` (first block of the network), the raw block input otherwise."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, activate_before_residual: bool = False) -> None:
        super().__init__()
        self.activate_before_residual = activate_before_residual
        self.bn1 = nn.BatchNorm2d(in_planes, momentum=BN_MOMENTUM)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.act = nn.LeakyReLU(0.1)
        self.shortcut = (None if in_planes == out_planes and stride == 1
                         else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act(self.bn1(x))
        out = self.conv2(self.act(self.bn2(self.conv1(pre))))
        if self.shortcut is None:
            return out + x
        return out + self.shortcut(pre if self.activate_before_residual else x)


class WideResNet(nn.Module):
    min_image_size = 16  # two stride-2 stages: smaller inputs leave a 2x2 (or smaller) map

    def __init__(self, in_channels: int = 3, depth: int = 28, widen: int = 2) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError("WRN depth must be 6n + 4")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        layers = []
        for group, stride in zip(range(3), (1, 2, 2)):
            for i in range(n):
                layers.append(_Block(widths[group] if i == 0 else widths[group + 1], widths[group + 1],
                                     stride if i == 0 else 1, activate_before_residual=group == 0 and i == 0))
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(widths[3], momentum=BN_MOMENTUM)
        self.act = nn.LeakyReLU(0.1)
        self.feature_dim = widths[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.blocks(self.conv(x))))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def wrn28_2(in_channels: int = 3) -> WideResNet:
    return WideResNet(in_channels, 28, 2)


def wrn28_8(in_channels: int = 3) -> WideResNet:
    return WideResNet(in_channels, 28, 8)
