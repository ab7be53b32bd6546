"""ResNet backbones: ResNet-18 with the CIFAR stem and the standard ResNet-50.

Both are torchvision's ResNet (so the state-dict key names are torchvision's: ``conv1.*``,
``bn1.*``, ``layer1.0.conv1.*`` ... ``fc.*``), which is what the official self-supervised
checkpoints map onto (see ``uslbench.encoders.checkpoints``).

    backbone = resnet18_cifar()                 # num_classes=0: returns 512-d features
    classifier = resnet18_cifar(num_classes=10)  # logits
    backbone.feature_dim                          # 512 (2048 for resnet50)

The CIFAR stem replaces the 7x7 stride-2 convolution and the max-pool by one 3x3 stride-1
convolution: on 32x32 images the ImageNet stem would shrink the map to 8x8 before the first block,
which costs several points of accuracy (the SimCLR / CLD / USL CIFAR models all use this stem).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet


class ResNet(tv_resnet.ResNet):
    """torchvision ResNet with an optional head: ``num_classes=0`` means ``fc`` is the identity
    and ``forward`` returns the pooled features (``feature_dim`` wide)."""

    def __init__(self, block: type, layers: list[int], num_classes: int = 0, cifar_stem: bool = False,
                 in_channels: int = 3) -> None:
        super().__init__(block, layers, num_classes=max(num_classes, 1))
        self.feature_dim: int = 512 * block.expansion
        self.num_classes = num_classes
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        elif in_channels != 3:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if num_classes <= 0:
            self.fc = nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (batch, feature_dim), whatever the head."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def resnet18_cifar(num_classes: int = 0, in_channels: int = 3) -> ResNet:
    """ResNet-18 with the CIFAR stem (3x3 conv, no max-pool); 512-d features."""
    return ResNet(tv_resnet.BasicBlock, [2, 2, 2, 2], num_classes=num_classes, cifar_stem=True,
                  in_channels=in_channels)


def resnet18(num_classes: int = 0, in_channels: int = 3) -> ResNet:
    """ResNet-18 with the ImageNet stem (7x7 stride-2 conv + max-pool); 512-d features."""
    return ResNet(tv_resnet.BasicBlock, [2, 2, 2, 2], num_classes=num_classes, in_channels=in_channels)


def resnet50(num_classes: int = 0, in_channels: int = 3) -> ResNet:
    """ResNet-50 with the ImageNet stem; 2048-d features."""
    return ResNet(tv_resnet.Bottleneck, [3, 4, 6, 3], num_classes=num_classes, in_channels=in_channels)


def resnet50_cifar(num_classes: int = 0, in_channels: int = 3) -> ResNet:
    """ResNet-50 with the CIFAR stem; 2048-d features."""
    return ResNet(tv_resnet.Bottleneck, [3, 4, 6, 3], num_classes=num_classes, cifar_stem=True,
                  in_channels=in_channels)


BACKBONES = {"resnet18_cifar": resnet18_cifar, "resnet18": resnet18, "resnet50": resnet50,
             "resnet50_cifar": resnet50_cifar}
