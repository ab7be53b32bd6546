"""Data set interface: a train split (the unlabeled pool) and a test split (evaluation only).

A split exposes `len(split)`, `split.image(i)` (a PIL image) and `split.labels` (np.int64 or
None). Small data sets also keep `split.array` (uint8, N x H x W x C) in memory; large ones (ImageNet)
leave it None and read files lazily.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ..traits import DatasetTraits


@dataclass
class ImageSplit:
    """One split of a data set: images with optional labels.

    Attributes
    ----------
    labels : np.ndarray of int64, shape (N,), or None
        Class ids in [0, C); None for unlabeled data (selection only).
    array : np.ndarray of uint8, shape (N, H, W, C), optional
        The images, when held in memory.
    loader : callable, optional
        ``loader(i) -> PIL.Image`` for splits read lazily from files (then `length` is N).
    length : int, optional
        N, for lazy splits.
    paths : sequence of str, optional
        The image files of a lazy split, in order.
    """

    labels: np.ndarray | None
    array: np.ndarray | None = None
    loader: Callable[[int], Image.Image] | None = None
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
        """Image `index` as a PIL image (mode "L" for one channel, else "RGB")."""
        if self.array is not None:
            pixels = self.array[index]
            if pixels.shape[-1] == 1:
                return Image.fromarray(pixels[..., 0], mode="L")
            return Image.fromarray(pixels, mode="RGB")
        assert self.loader is not None
        return self.loader(int(index))


@dataclass
class Dataset:
    """A loaded data set: the unlabeled pool (train split) and the test split.

    Attributes
    ----------
    name : str
        Registry name (``folder:PATH`` style for the user's own data).
    train : ImageSplit
        The pool that selectors choose from; its labels are read only for the selected images
        (and by oracle selectors).
    test : ImageSplit or None
        Evaluation only; None for data without a test split (selection only).
    num_classes : int
        C.
    image_size : int
        Side in pixels of the images held in memory (the resize side of lazy splits).
    channels : int
        1 (grey) or 3 (RGB).
    mean, std : tuple of float
        Per-channel statistics in [0, 1] units, for normalisation.
    default_encoder : str
        The encoder a run uses when none is named.
    class_names : list of str
        Names of the C classes.
    identity : dict
        Goes into every cache key: it names the content (source, split, file digests), never a
        path, so moving the files keeps the caches.
    """

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


class DatasetSource:
    """Base class of a registered data set: the constructor stores the config, `load` reads the data.

    Subclasses declare their `traits` (a ``DatasetTraits``) and implement `load`.

    Parameters
    ----------
    config : dataclass instance
        The entry's resolved config (data root, sizes, ...).
    """

    traits = DatasetTraits()

    def __init__(self, config: Any = None) -> None:
        self.config = config

    def load(self) -> Dataset:
        """Read the data set.

        Returns
        -------
        Dataset
            Train split (the unlabeled pool) and test split; `identity` names the content (never a
            path), so that moving the files keeps every cache key.

        Raises
        ------
        UserError
            Files missing or malformed; the message names the files expected and the option that
            points to them (``--data-root``, ``--download``).
        """
        raise NotImplementedError
