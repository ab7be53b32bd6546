"""`features:PATH`: a labelled set of embeddings you already have (CLIP, DINOv2, ...), no images.

The .npz holds ``train`` (N, d) floats, ``train_labels`` (N,) integer class ids 0..C-1, optionally
``test`` (N_test, d) with ``test_labels`` (N_test,), optionally ``paths`` (N,) strings naming the
images the rows came from, and optionally ``class_names`` (C,) strings. Every label-free selector
and the feature probes (linear, knn, labelprop) run on it through the `precomputed` encoder;
learners that train a network on images refuse it before any work.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..registry import DATASETS
from ..traits import DatasetTraits
from ..utils import file_sha256
from .base import Dataset, DatasetSource, ImageSplit
from .files import read_npz

KEYS = ("train", "train_labels", "test", "test_labels", "paths", "class_names")


@dataclass
class FeaturesConfig:
    path: str = ""


def _matrix(array: np.ndarray, what: str) -> np.ndarray:
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number) or array.shape[0] == 0 or array.shape[1] == 0:
        raise UserError(f"{what} must be a non-empty (N, d) numeric matrix; got shape {array.shape}, dtype {array.dtype}.")
    array = array.astype(np.float32)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise UserError(f"{what} has {len(rows)} row(s) with NaN or infinite values (e.g. rows "
                        f"{', '.join(map(str, rows[:5]))}); fix or drop them before benchmarking.")
    return array


def _labels(array: np.ndarray, count: int, what: str) -> np.ndarray:
    labels = np.asarray(array)
    if labels.ndim != 1 or len(labels) != count:
        raise UserError(f"{what} must hold one label per row: expected shape ({count},), got {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{what} must hold integer class ids 0..C-1; got dtype {labels.dtype}.")
    return labels.astype(np.int64)


class _NoImages:
    """The loader of a features-only split: asking for an image is a clear error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, index: int):
        raise UserError(f"{self.source} holds precomputed features, no images: use a feature probe (linear, knn, "
                        "labelprop) and the precomputed encoder, not a learner or encoder that reads images.")


def features_test_config(workdir: Path, **_) -> dict[str, str]:
    """Contract-test setting: 3 classes x 8 train and 3 test rows of 6-d blobs, with paths and class names."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 6)) * 3
    y, y_test = np.repeat(np.arange(3), 8), np.repeat(np.arange(3), 3)
    path = Path(workdir) / "features.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, train=(centres[y] + rng.normal(size=(24, 6))).astype(np.float32), train_labels=y,
             test=(centres[y_test] + rng.normal(size=(9, 6))).astype(np.float32), test_labels=y_test,
             paths=np.array([f"img/{i:02d}.png" for i in range(24)]), class_names=np.array(["a", "b", "c"]))
    return {"path": str(path)}


@DATASETS.register("features", "your embeddings: an .npz with train, train_labels, optional test/test_labels, "
                   "paths, class_names (no images; probes and label-free selectors)", config=FeaturesConfig,
                   argument_field="path", test_config=features_test_config)
class FeaturesData(DatasetSource):
    """Precomputed embeddings of a labelled set; see the module docstring for the arrays."""

    traits = DatasetTraits(images=False)

    def load(self) -> Dataset:
        path = Path(self.config.path).expanduser()
        source = f"features:{self.config.path}"
        if not path.is_file():
            raise UserError(f"{source}: no such file. Save your embeddings with numpy.savez(path, train=..., "
                            "train_labels=..., test=..., test_labels=...).")
        arrays = read_npz(path, source)
        missing = [k for k in ("train", "train_labels") if k not in arrays]
        if missing:
            raise UserError(f"{source} lacks {', '.join(missing)} (found: {', '.join(sorted(arrays)) or 'none'}); "
                            f"expected keys: {', '.join(KEYS)}.")
        if ("test" in arrays) != ("test_labels" in arrays):
            raise UserError(f"{source}: test and test_labels go together (found only "
                            f"{'test' if 'test' in arrays else 'test_labels'}).")
        train = _matrix(arrays["train"], f"{source} train")
        y_train = _labels(arrays["train_labels"], len(train), f"{source} train_labels")
        test = y_test = None
        if "test" in arrays:
            test = _matrix(arrays["test"], f"{source} test")
            if test.shape[1] != train.shape[1]:
                raise UserError(f"{source}: test rows have {test.shape[1]} dimensions, train rows {train.shape[1]}.")
            y_test = _labels(arrays["test_labels"], len(test), f"{source} test_labels")
        present = np.unique(y_train)
        num_classes = int(max(y_train.max(), y_test.max() if y_test is not None and y_test.size else 0)) + 1
        if y_train.min() < 0:
            raise UserError(f"{source} train_labels has negative class ids (min {y_train.min()}); use 0..C-1.")
        if y_test is not None and y_test.size and y_test.min() < 0:
            raise UserError(f"{source} test_labels has negative class ids (min {y_test.min()}); use 0..C-1.")
        absent = sorted(set(range(num_classes)) - set(present.tolist()))
        if absent:
            raise UserError(f"{source}: class id(s) {', '.join(map(str, absent[:10]))} have no train row; class ids "
                            f"must be 0..C-1 with every class present in train (C = {num_classes}).")
        paths = None
        if "paths" in arrays:
            paths = [str(p) for p in arrays["paths"].tolist()]
            if len(paths) != len(train):
                raise UserError(f"{source}: {len(paths)} paths for {len(train)} train rows.")
        class_names = [str(c) for c in range(num_classes)]
        if "class_names" in arrays:
            class_names = [str(c) for c in arrays["class_names"].tolist()]
            if len(class_names) != num_classes:
                raise UserError(f"{source}: {len(class_names)} class_names for {num_classes} classes.")
        no_images = _NoImages(source)
        return Dataset(
            name=source, train=ImageSplit(labels=y_train, loader=no_images, length=len(train), paths=paths),
            test=ImageSplit(labels=y_test, loader=no_images, length=len(test)) if test is not None else None,
            num_classes=num_classes, image_size=0, channels=0, mean=(), std=(), default_encoder="precomputed",
            class_names=class_names, identity={"source": "features", "npz_sha256": file_sha256(path)},
            features={"train": train, "test": test})
