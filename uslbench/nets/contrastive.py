"""The contrastive encoder network (SimCLR, MoCo v2): a ResNet backbone + a projection MLP, and
the weights-file format it is saved in (read back by `uslbench.encoders.checkpoints`)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import projection_mlp
from .resnet import BACKBONES

FORMAT = "uslbench-encoder"  # the "format" field of our weights files


class ContrastiveNet(nn.Module):
    """ResNet backbone + projection MLP. `forward` returns the L2-normalised projection (what the
    USL reference selects on); `backbone` alone gives the pooled features."""

    def __init__(self, arch: str, head_dims: list[int], head_relu: bool = True) -> None:
        super().__init__()
        self.arch = arch
        self.backbone = BACKBONES[arch](num_classes=0)
        self.projection = projection_mlp(head_dims, head_relu)
        self.head_dims, self.head_relu = list(head_dims), head_relu

    @property
    def feature_dim(self) -> int:
        return self.backbone.feature_dim

    @property
    def projection_dim(self) -> int:
        return self.head_dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.projection(self.backbone(x)), dim=1)

    def export(self, **extra: Any) -> dict:
        """Our weights-file format (read back by checkpoints.map_state_dict)."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        return {"format": FORMAT, "arch": self.arch, "head_dims": self.head_dims, "head_relu": self.head_relu,
                "state_dict": state, **extra}
