"""Data set interface: a train split (the unlabeled pool) and a test split (evaluation only).

A split exposes `len(split)`, `split.image(i)` (a PIL image) and `split.labels` (np.int64 or
None). Small data sets also keep `split.array` (uint8, N x H x W x C) in memory; large ones (ImageNet)
leave it None and read files lazily.

Labels are validated when a split and a data set are built, so every source goes through the
same checks at load time (`as_labels`, `validate_labels`): integer class ids (floats only when
they hold whole numbers), every value inside the declared classes 0..C-1 (anything else is
refused, naming the values), and a warning for declared classes without any train image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ..traits import DatasetTraits
from ..errors import UserError


def as_labels(values, what: str = "labels") -> np.ndarray:
    """1-D int64 class ids from integers, or from floats that hold whole numbers (1.0, 2.0);
    booleans, strings, NaN and fractions are refused with a UserError naming the problem."""
    labels = np.asarray(values)
    if labels.ndim != 1:
        raise UserError(f"{what} must be a 1-D array of class ids (one per image); got shape {labels.shape}.")
    if labels.dtype == bool or not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise UserError(f"{what} must hold integer class ids; got dtype {labels.dtype}.")
    if np.issubdtype(labels.dtype, np.floating) and labels.size:
        bad = ~np.isfinite(labels) | (np.mod(np.nan_to_num(labels), 1) != 0)
        if bad.any():
            raise UserError(f"{what} must hold integer class ids; {int(bad.sum())} value(s) are not whole numbers "
                            f"(first: {', '.join(str(v) for v in labels[bad][:5])}).")
    return labels.astype(np.int64)


def validate_labels(dataset: "Dataset") -> None:
    """The one label check of every source, at load time. Raises UserError when a split holds a
    value outside the declared classes 0..num_classes-1 (the message names the values and how
    many images carry each); warns (DataWarning) about declared classes with no train image,
    which no learner can learn (the test images of such classes are counted in the warning)."""
    from ..errors import name_some, warn_data

    declared = int(dataset.num_classes)
    for split_name, split in (("train", dataset.train), ("test", dataset.test)):
        if split is None or split.labels is None or not split.labels.size:
            continue
        outside = (split.labels < 0) | (split.labels >= declared)
        if split_name == "train" and dataset.labels_source is not None:
            outside &= split.labels != UNLABELED  # labels from a file: the rest of the pool is unlabeled
        if outside.any():
            values, counts = np.unique(split.labels[outside], return_counts=True)
            raise UserError(
                f"{dataset.name}: {split_name} labels must be class ids 0..{declared - 1} (the {declared} declared "
                f"classes); {int(outside.sum())} image(s) carry other values: "
                f"{name_some(f'{v} ({c} image(s))' for v, c in zip(values.tolist(), counts.tolist()))}. "
                "Fix the labels, or load your own arrays as npz:PATH, which takes its classes from y_train.")
    if dataset.train.labels is None or not declared or dataset.labels_source is not None:
        return  # a labels file's missing classes are reported when it is read
    present = np.bincount(dataset.train.labels, minlength=declared) > 0
    if not present.all():
        absent = np.flatnonzero(~present)
        names = [dataset.class_names[c] if c < len(dataset.class_names) else str(c) for c in absent]
        in_test = int(np.isin(dataset.test.labels, absent).sum()) if dataset.test is not None \
            and dataset.test.labels is not None else 0
        warn_data(f"{dataset.name}: {len(absent)} of the {declared} classes have no train image and cannot be "
                  f"learned: {name_some(names)}" + (f" ({in_test} test image(s) of them count as errors)" if in_test else ""))


#: The train label of a pool image without one, in a data set whose labels come from a labels file.
UNLABELED = -1


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
            self.labels = as_labels(self.labels)

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
    features : dict or None
        Precomputed embeddings instead of images (the ``features:PATH`` source): ``{"train":
        (N, d) float32, "test": (N_test, d) float32 or None}``, read by the ``precomputed``
        encoder; None for data sets of images.
    labels_source : dict or None
        Set when the train labels come from a labels file (``run --labels``): ``{"file", "sha256",
        "rows"}``. Then ``train.labels`` holds a class id for the labeled images and `UNLABELED`
        (-1) for every other pool image, the labeled set is exactly the labeled images, and a
        data set without a test split is trained on all the same (learners then predict the
        pool instead of reporting accuracy).
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
    features: dict | None = None
    labels_source: dict | None = None

    @property
    def has_images(self) -> bool:
        """False for a data set of precomputed features (learners that train a network need images)."""
        return self.features is None

    def __post_init__(self) -> None:
        validate_labels(self)

    @property
    def pool_size(self) -> int:
        return len(self.train)

    @property
    def has_train_labels(self) -> bool:
        return self.train.labels is not None

    @property
    def evaluated(self) -> bool:
        """Whether learners can report accuracy: a test split with labels."""
        return self.test is not None and self.test.labels is not None

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
