"""SimCLRv2's networks (`simclrv2.SimCLRv2`): the classifier with L2-normalised logits, the input
adapter of an encoder's own network, and the projection network of the fallback pretraining. Kept
apart from simclrv2.py so that registering the learner imports no torch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nets import Classifier, projection_mlp


class NormalisedClassifier(Classifier):
    """Classifier whose logits are L2-normalised (CLD's ResNet: `linear` then `l2norm`,
    shared/models/resnet_cifar_cld.py of the USL reference)."""

    def forward(self, x: torch.Tensor, with_features: bool = False):
        features = self.backbone(x)
        logits = F.normalize(self.head(features), dim=1)
        return (logits, features) if with_features else logits


class EncoderInput(nn.Module):
    """Map the loop's inputs (normalised with the data set's statistics) to what the encoder's
    network expects: undo the data set normalisation, then the encoder's `input_transform`."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, transform: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone().reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std.detach().clone().reshape(1, -1, 1, 1), persistent=False)
        self.transform = transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x * self.std + self.mean)


class ProjectionNet(nn.Module):
    """backbone + 2-layer MLP projection to a normalised 64-d embedding (SimCLR pretraining)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, out_dim: int = 64) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection = projection_mlp([feature_dim, feature_dim, out_dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(self.backbone(x)), dim=1)
