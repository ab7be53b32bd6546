"""What a fine-tuned encoder network expects as input, as a module applied to float images.

Selectors and learners that train an encoder's network (`usl_t mode=backbone`, `simclrv2`) hold
the images as float tensors (B, C, H, W) in [0, 1]; the network was trained on images normalised
with its own statistics (CLD's CIFAR statistics, ImageNet's, CLIP's) and, for some, resized to a
fixed side. `Encoder.input_transform(dataset)` returns this module so the trainer applies exactly
the encoder's eval preprocessing on the device, batched.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class InputTransform(nn.Module):
    """[0, 1] float images -> the encoder network's input: grey images repeated to 3 channels,
    resized to `size` x `size` when given (and different), then (x - mean) / std per channel.

    Parameters
    ----------
    mean, std : 3 floats each (or 1, repeated), in [0, 1] units.
    size : int or None
        Side the network expects (CLIP: 224); None keeps the images' size.
    interpolation : "bilinear" or "bicubic" (antialiased when shrinking).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], size: int | None = None,
                 interpolation: str = "bilinear") -> None:
        super().__init__()
        mean = list(mean) * 3 if len(mean) == 1 else list(mean)
        std = list(std) * 3 if len(std) == 1 else list(std)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.size, self.interpolation = size, interpolation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1 and self.mean.shape[1] == 3:
            x = x.expand(-1, 3, -1, -1)
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode=self.interpolation, align_corners=False,
                              antialias=True)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return (f"mean={[round(v, 4) for v in self.mean.flatten().tolist()]}, "
                f"std={[round(v, 4) for v in self.std.flatten().tolist()]}, size={self.size}")
