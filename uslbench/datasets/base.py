"""Data set interface: a train split (the unlabeled pool) and a test split (evaluation only).

A split exposes `len(split)`, `split.image(i)` (a PIL image) and `split.labels` (np.int64 or
None). Small data sets also keep `split.array` (uint8, N x H x W x C) in memory; large ones (ImageNet)
leave it None and read files lazily.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from PIL import Image


@dataclass
class ImageSplit:
    labels: np.ndarray | None
    array: np.ndarray | None = None             # uint8 (N, H, W, C) when held in memory
    loader: Callable[[int], Image.Image] | None = None  # lazy per-index loader otherwise
    length: int | None = None
    paths: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.array is None and self.loader is None:
            raise ValueError("an ImageSplit needs an array or a loader")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        if self.array is not None:
            return len(self.array)
        assert self.length is not None
        return self.length

    def image(self, index: int) -> Image.Image:
        if self.array is not None:
            pixels = self.array[index]
            if pixels.shape[-1] == 1:
                return Image.fromarray(pixels[..., 0], mode="L")
            return Image.fromarray(pixels, mode="RGB")
        assert self.loader is not None
        return self.loader(int(index))


@dataclass
class Dataset:
    """A loaded data set. `identity` goes into cache keys: it names the content, never a path."""

    name: str
    train: ImageSplit
    test: ImageSplit | None
    num_classes: int
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_encoder: str
    class_names: list[str] = field(default_factory=list)
    identity: dict = field(default_factory=dict)
    # precomputed embeddings instead of images (the `features:PATH` source): {"train": (N, d)
    # float32, "test": (N_test, d) float32 or None}; read by the `precomputed` encoder
    features: dict | None = None

    @property
    def has_images(self) -> bool:
        """False for a data set of precomputed features (learners that train a network need images)."""
        return self.features is None

    @property
    def pool_size(self) -> int:
        return len(self.train)

    @property
    def has_train_labels(self) -> bool:
        return self.train.labels is not None

    def summary(self) -> str:
        test = len(self.test) if self.test is not None else 0
        return (f"{self.name}: {len(self.train)} train (pool) / {test} test images, "
                f"{self.num_classes} classes, {self.image_size}x{self.image_size}x{self.channels}")
