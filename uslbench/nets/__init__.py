"""Networks: WRN-28-k, ResNet-18 (CIFAR stem), ResNet-50, a small CNN for 8x8 / 28x28 inputs.

`build_network(arch, num_classes, in_channels, image_size)` returns a `Classifier`: a backbone that
maps images to a feature vector plus a linear head, so every learner can read features (CoMatch's
projection head, SimCLRv2's linear fine-tuning) without knowing the architecture. The ResNets come
from `nets.resnet` (`resnet18_cifar(num_classes)`, `resnet50(num_classes)`, torchvision-style with
an `fc` head that is replaced by the Classifier's own head).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import UserError
from .cnn import SmallCNN
from .wrn import WideResNet


def projection_mlp(head_dims: list[int], relu: bool = True) -> nn.Sequential:
    """Linear layers through `head_dims` (e.g. [512, 512, 128]) with a ReLU between consecutive
    ones: the contrastive projection heads of SimCLR, MoCo v2 and CoMatch (keys 0, 2, ...)."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(head_dims, head_dims[1:])):
        if i and relu:
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


class Classifier(nn.Module):
    """backbone (images -> features) + linear head; `forward(x, with_features=True)` returns both."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor, with_features: bool = False):
        features = self.backbone(x)
        logits = self.head(features)
        return (logits, features) if with_features else logits


def _resnet(name: str) -> Callable[[int, int], tuple[nn.Module, int]]:
    def build(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
        try:
            from . import resnet  # lazy: torchvision, which only the ResNets need
        except ImportError as exc:
            raise UserError(f"Network {name!r} needs uslbench.nets.resnet, which is not available "
                            f"in this installation ({exc}). Use arch=wrn28_2 or arch=cnn.") from None
        module = getattr(resnet, name)(num_classes=10)
        if in_channels != 3:
            raise UserError(f"Network {name!r} takes RGB images; this data set has {in_channels} channel(s). "
                            "Use arch=cnn for grey images.")
        feature_dim = module.fc.in_features
        module.fc = nn.Identity()
        return module, feature_dim
    return build


def _wrn(widen: int) -> Callable[[int, int], tuple[nn.Module, int]]:
    def build(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
        net = WideResNet(in_channels, 28, widen)
        return net, net.feature_dim
    return build


def _cnn(width: int) -> Callable[[int, int], tuple[nn.Module, int]]:
    def build(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
        net = SmallCNN(in_channels, image_size, width)
        return net, net.feature_dim
    return build


# arch -> (builder, smallest and largest image side it is meant for)
ARCHS: dict[str, tuple[Callable[[int, int], tuple[nn.Module, int]], int, int]] = {
    "cnn": (_cnn(32), 4, 64),
    "cnn16": (_cnn(16), 4, 64),  # a quarter of the multiply-adds: the fastest digits preset
    "wrn28_2": (_wrn(2), 16, 512),
    "wrn28_8": (_wrn(8), 16, 512),
    "resnet18_cifar": (_resnet("resnet18_cifar"), 16, 512),
    "resnet50": (_resnet("resnet50"), 32, 1024),
}


def resolve_arch(arch: str, image_size: int) -> str:
    """"auto": the small CNN for images of 28 px or less, WRN-28-2 above."""
    if arch == "auto":
        return "cnn" if image_size <= 28 else "wrn28_2"
    return arch


def check_arch(arch: str, in_channels: int, image_size: int) -> str:
    """Fail with a UserError when the network cannot take images of this shape."""
    arch = resolve_arch(arch, image_size)
    if arch not in ARCHS:
        raise UserError(f"Unknown network {arch!r}; known: auto, {', '.join(sorted(ARCHS))}.")
    _, low, high = ARCHS[arch]
    if not low <= image_size <= high:
        raise UserError(f"Network {arch!r} expects images of {low} to {high} px, this data set has "
                        f"{image_size}x{image_size}x{in_channels} images. Choose another arch "
                        "(arch=cnn for tiny images, wrn28_2 for CIFAR-sized ones).")
    return arch


def build_network(arch: str, num_classes: int, in_channels: int, image_size: int) -> Classifier:
    arch = check_arch(arch, in_channels, image_size)
    backbone, feature_dim = ARCHS[arch][0](in_channels, image_size)
    return Classifier(backbone, feature_dim, num_classes)
