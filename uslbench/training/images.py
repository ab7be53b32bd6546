"""The one image loader: a data set split's images as uint8 tensors, whole or by index.

Every path that turns a split's images into tensors goes through here: the image learners (the whole
split, held on the device), USL-T's backbone mode (batches by index), SimCLR pretraining (two views
per image through a DataLoader) and the encoders' feature extraction (`SplitImages` with their eval
transform). In-memory splits (`split.array`, uint8 (N, H, W, C)) are used as they are; file-backed
splits are decoded with PIL, converted to the data set's channel count ("L" for 1, "RGB" otherwise)
and resized to the data set's `image_size` when they differ.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..datasets.base import ImageSplit


def pil_mode(channels: int) -> str:
    """PIL mode of a data set with `channels` channels: "L" for 1, "RGB" otherwise."""
    return "L" if channels == 1 else "RGB"


def image_array(image: Image.Image, image_size: int, channels: int) -> np.ndarray:
    """One PIL image -> uint8 (image_size, image_size, channels), converted and resized if needed."""
    image = image.convert(pil_mode(channels))
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size))
    return np.asarray(image, dtype=np.uint8).reshape(image_size, image_size, channels)


class ToTensor:
    """PIL image -> uint8 (C, H, W) tensor at the data set's size and channel count (picklable, so
    DataLoader workers can use it)."""

    def __init__(self, image_size: int, channels: int) -> None:
        self.image_size, self.channels = int(image_size), int(channels)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(image_array(image, self.image_size, self.channels).copy()).permute(2, 0, 1)


def split_tensor(split: ImageSplit, image_size: int, channels: int) -> torch.Tensor:
    """All images of a split as one uint8 (N, C, H, W) tensor (file-backed splits are read once).

    Parameters
    ----------
    split : ImageSplit
        In-memory (`array`, uint8 (N, H, W, C) or (N, H, W)) or file-backed.
    image_size, channels : int
        The data set's side in pixels and channel count (used for file-backed splits).

    Returns
    -------
    torch.Tensor
        uint8 (N, C, H, W), contiguous, on the CPU.
    """
    if split.array is not None:
        array = split.array
    else:
        array = np.stack([image_array(split.image(i), image_size, channels) for i in range(len(split))])
    if array.ndim == 3:
        array = array[..., None]
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).contiguous()


class SplitImages(torch.utils.data.Dataset):
    """A split's images by index for a DataLoader: ``transform(split.image(i).convert(mode))``.

    `mode` None keeps the image as decoded (the transform converts it itself).
    """

    def __init__(self, split: ImageSplit, transform: Callable[[Image.Image], Any], mode: str | None = None) -> None:
        self.split, self.transform, self.mode = split, transform, mode

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> Any:
        image = self.split.image(int(index))
        if self.mode is not None:
            image = image.convert(self.mode)
        return self.transform(image)


class PoolImages:
    """A split's images as float (B, C, H, W) batches in [0, 1], by index (USL-T's backbone mode).

    In-memory splits are indexed directly; file-backed ones are decoded through a DataLoader with
    `num_workers` workers, one batch at a time.
    """

    def __init__(self, split: ImageSplit, image_size: int, channels: int) -> None:
        self.split = split
        self.image_size, self.channels = int(image_size), int(channels)
        self.tensor = split_tensor(split, image_size, channels) if split.array is not None else None

    def __len__(self) -> int:
        return len(self.split)

    def batch(self, indices: Sequence[int] | np.ndarray, num_workers: int = 0) -> torch.Tensor:
        if self.tensor is not None:
            return self.tensor[torch.as_tensor(indices)].float() / 255.0
        images = SplitImages(self.split, ToTensor(self.image_size, self.channels))
        loader = torch.utils.data.DataLoader(images, batch_sampler=[list(map(int, indices))], num_workers=num_workers)
        return next(iter(loader)).float() / 255.0
