"""Your own data: `folder:PATH` (an ImageFolder tree, or a flat folder of unlabeled images) and
`npz:PATH` (arrays x_train, optional y_train, optional x_test + y_test).

Folder layouts, checked in this order:
  PATH/train/<class>/*.png and PATH/test/<class>/*.png (or val/)   train pool + labelled test split
  PATH/<class>/*.png                                                labelled pool, no test split
  PATH/*.png                                                        unlabeled pool: selection only
Hidden entries (names starting with '.': .ipynb_checkpoints, .DS_Store, '._x.png') are ignored at
every level, in train/, test/, class folders and flat folders alike.
A class folder without images is not a class: an empty train class folder is left out with a
warning (with its test images, if any, so train and test keep one class list); an empty or
missing test class folder leaves that class unevaluated, with a warning; an empty test folder
of a class that train/ lacks is ignored with a warning (one holding images is refused).
Unreadable images are skipped with a warning that lists them (they are not part of the pool);
mixed modes are converted to RGB and mixed sizes resized to the most common size (or `image_size`),
with a warning. Trees larger than `max_in_memory` images are read lazily from the files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..config_ranges import NON_NEGATIVE, POSITIVE_INT, field_ranges
from ..errors import UserError, name_some, warn_data
from ..registry import DATASETS
from ..utils import array_digest, file_sha256
from .base import Dataset, DatasetSource, ImageSplit
from .files import (IMAGE_EXTENSIONS, IMAGENET_MEAN, IMAGENET_STD, channel_stats, decode_images,
                    FileLoader, file_list_identity, list_images, read_npz, to_uint8_images, visible_dirs)
from .testing import folder_test_config, npz_test_config


@field_ranges(image_size=POSITIVE_INT, max_in_memory=NON_NEGATIVE)
@dataclass
class FolderConfig:
    path: str = ""
    image_size: int | None = field(default=None, metadata={"help": "resize every image to this side (default: the common size)"})
    max_in_memory: int = field(default=100_000, metadata={"help": "above this many images, read files lazily"})


@dataclass
class _Tree:
    files: list[Path]
    labels: np.ndarray | None


def _class_tree(folder: Path, class_names: Sequence[str] | None = None) -> tuple[_Tree, list[str]]:
    classes = list(class_names) if class_names is not None else [d.name for d in visible_dirs(folder)]
    files, labels = [], []
    for index, name in enumerate(classes):
        members = list_images(folder / name) if (folder / name).is_dir() else []
        files += members
        labels += [index] * len(members)
    return _Tree(files, np.asarray(labels, dtype=np.int64)), classes


def _leave_out_empty_classes(root: Path, train: _Tree, test: _Tree | None, classes: list[str], train_prefix: str,
                             test_prefix: str) -> tuple[_Tree, _Tree | None, list[str]]:
    """Drop the classes whose train folder holds no image (warning; their test images go too, so
    both splits keep one class list) and warn about kept classes without test images."""
    counts = np.bincount(train.labels, minlength=len(classes))
    empty = [c for c in range(len(classes)) if counts[c] == 0]
    if empty and len(empty) < len(classes):
        dropped_test = int(np.isin(test.labels, empty).sum()) if test is not None else 0
        warn_data(f"folder:{root}: {len(empty)} empty class folder(s) left out: "
                  f"{name_some(train_prefix + classes[c] for c in empty)}"
                  + (f"; their {dropped_test} {test_prefix.rstrip('/')} image(s) left out too" if dropped_test else ""))
        new_index = np.cumsum(counts > 0) - 1
        train = _Tree(train.files, new_index[train.labels])
        if test is not None:
            keep = ~np.isin(test.labels, empty)
            test = _Tree([f for f, k in zip(test.files, keep) if k], new_index[test.labels[keep]])
        classes = [name for c, name in enumerate(classes) if counts[c] > 0]
    if test is not None:
        untested = [c for c in range(len(classes)) if not np.any(test.labels == c)]
        if untested:
            warn_data(f"folder:{root}: {len(untested)} class(es) have no {test_prefix.rstrip('/')} images, so "
                      f"they are not evaluated: {name_some(test_prefix + classes[c] for c in untested)}")
    return train, test, classes


@DATASETS.register("folder", "your images: an ImageFolder tree (train/ + test/ or one level of class folders) "
                   "or a flat folder (selection only)", config=FolderConfig, argument_field="path",
                   test_config=folder_test_config)
class ImageFolderData(DatasetSource):
    """Images in class sub-folders (ImageFolder layout). With PATH/train and PATH/test (or PATH/val)
    the test split evaluates learners; without them the whole tree is the pool. A flat folder of
    images has no labels and can only be used to choose images to label."""

    def load(self) -> Dataset:
        root = Path(self.config.path).expanduser()
        if not root.is_dir():
            raise UserError(f"folder:{self.config.path}: no such folder. Give a folder of class sub-folders "
                            "(train/<class>/*.png and test/<class>/*.png, or <class>/*.png) or of images.")
        test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
        if (root / "train").is_dir():
            train_tree, classes = _class_tree(root / "train")
            test_tree = _class_tree(test_dir, classes)[0] if test_dir is not None else None
            if test_dir is not None:
                extra = sorted({d.name for d in visible_dirs(test_dir)} - set(classes))
                with_images = [name for name in extra if list_images(test_dir / name)]
                if with_images:
                    raise UserError(f"folder:{root}: {test_dir.name}/ has classes absent from train/: "
                                    f"{', '.join(with_images[:10])}. Every test class needs a train folder.")
                if extra:
                    warn_data(f"folder:{root}: {len(extra)} empty class folder(s) in {test_dir.name}/ with no "
                              f"train/ folder ignored: {name_some(test_dir.name + '/' + n for n in extra)}")
            train_tree, test_tree, classes = _leave_out_empty_classes(
                root, train_tree, test_tree, classes, "train/", f"{test_dir.name}/" if test_dir else "")
        elif visible_dirs(root):
            train_tree, classes = _class_tree(root)
            train_tree, test_tree, classes = _leave_out_empty_classes(root, train_tree, None, classes, "", "")
        else:
            train_tree, classes, test_tree = _Tree(list_images(root), None), [], None
        if not train_tree.files:
            raise UserError(f"folder:{root}: no images found (extensions {', '.join(IMAGE_EXTENSIONS)}).")
        lazy = len(train_tree.files) + (len(test_tree.files) if test_tree else 0) > self.config.max_in_memory
        train, train_info = self._split(root, train_tree, lazy, "train")
        test = self._split(root, test_tree, lazy, "test")[0] if test_tree and test_tree.files else None
        if train.array is not None:
            mean, std = channel_stats(train.array)
            channels, size = train.array.shape[-1], train.array.shape[1]
        else:
            mean, std, channels, size = IMAGENET_MEAN, IMAGENET_STD, 3, self.config.image_size or 224
        if train.array is not None and test is not None and test.array.shape[1:] != train.array.shape[1:]:
            test = ImageSplit(labels=test.labels, array=self._refit(test.array, train.array.shape[1:], root))
        return Dataset(
            name=f"folder:{self.config.path}", train=train, test=test, num_classes=len(classes), image_size=size,
            channels=channels, mean=mean, std=std, default_encoder="simclr", class_names=classes,
            identity={"source": "folder", "classes": classes, "image_size": self.config.image_size,
                      "train": train_info, "test": self._identity(test, root, test_tree)},
        )

    def _split(self, root: Path, tree: _Tree, lazy: bool, what: str) -> tuple[ImageSplit, dict]:
        if lazy:
            files = tree.files
            size = self.config.image_size or 224
            split = ImageSplit(labels=tree.labels, loader=FileLoader(files, size), length=len(files), paths=[str(p) for p in files])
            return split, file_list_identity(root, files)
        array, kept, info = decode_images(tree.files, self.config.image_size, f"folder:{root} ({what})", root)
        labels = tree.labels[kept] if tree.labels is not None else None
        split = ImageSplit(labels=labels, array=array, paths=[str(tree.files[i]) for i in kept])
        return split, self._identity(split, root, tree)

    @staticmethod
    def _identity(split: ImageSplit | None, root: Path, tree: _Tree | None) -> dict | None:
        if split is None:
            return None
        if split.array is None:
            return file_list_identity(root, tree.files)
        labels = None if split.labels is None else array_digest(split.labels)
        return {"pixels_sha256": array_digest(split.array), "labels_sha256": labels}

    @staticmethod
    def _refit(array: np.ndarray, shape: tuple[int, ...], root: Path) -> np.ndarray:
        """Bring the test images to the train images' size and channels (a warning says so)."""
        warn_data(f"folder:{root} (test): {len(array)} image(s) of shape {tuple(array.shape[1:])} resized to the train "
                  f"images' shape {tuple(shape)}")
        mode = "L" if shape[-1] == 1 else "RGB"
        out = [np.asarray(Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).convert(mode)
                          .resize((shape[1], shape[0]), Image.BILINEAR)) for a in array]
        out = np.stack(out)
        return out[..., None] if out.ndim == 3 else out


@dataclass
class NpzConfig:
    path: str = ""


@DATASETS.register("npz", "your arrays: an .npz with x_train, optional y_train, optional x_test + y_test",
                   config=NpzConfig, argument_field="path", test_config=npz_test_config)
class NpzData(DatasetSource):
    """Images as arrays in one .npz file: `x_train` (N, H, W[, C]) or (N, C, H, W), uint8 or floats
    in [0, 1]; `y_train` (N,) integer labels (optional: without them only selection works);
    `x_test` and `y_test` (optional, together) for evaluation.

    The classes are the distinct values of y_train. Labels 1..C (or with gaps) are remapped to
    0..C-1 in sorted order with a warning, never padded with an empty class 0; the class names
    keep the original ids. A y_test value absent from y_train is refused, naming it."""

    def load(self) -> Dataset:
        path = Path(self.config.path).expanduser()
        if not path.is_file():
            raise UserError(f"npz:{self.config.path}: no such file. Save your arrays with "
                            "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...).")
        arrays = read_npz(path, f"npz:{path}")
        if "x_train" not in arrays:
            raise UserError(f"npz:{path} needs an array 'x_train' (found: {', '.join(sorted(arrays)) or 'none'}). "
                            "Expected keys: x_train, optional y_train, optional x_test with y_test.")
        if ("x_test" in arrays) != ("y_test" in arrays):
            raise UserError(f"npz:{path}: x_test and y_test go together (found only "
                            f"{'x_test' if 'x_test' in arrays else 'y_test'}).")
        x_train = _images(arrays["x_train"], f"npz:{path} x_train")
        y_train = _labels(arrays.get("y_train"), len(x_train), f"npz:{path} y_train")
        test = None
        if "x_test" in arrays:
            x_test = _images(arrays["x_test"], f"npz:{path} x_test")
            if x_test.shape[1:] != x_train.shape[1:]:
                raise UserError(f"npz:{path}: x_test images {x_test.shape[1:]} differ in shape from x_train "
                                f"images {x_train.shape[1:]}.")
            test = ImageSplit(labels=_labels(arrays["y_test"], len(x_test), f"npz:{path} y_test"), array=x_test)
        class_ids = _class_ids(y_train, test.labels if test else None, path)
        if y_train is not None:
            y_train = np.searchsorted(class_ids, y_train)
            if test is not None:
                test = ImageSplit(labels=np.searchsorted(class_ids, test.labels), array=test.array)
        num_classes = len(class_ids)
        mean, std = channel_stats(x_train)
        return Dataset(
            name=f"npz:{self.config.path}", train=ImageSplit(labels=y_train, array=x_train), test=test,
            num_classes=num_classes, image_size=x_train.shape[1], channels=x_train.shape[-1], mean=mean, std=std,
            default_encoder="simclr", class_names=[str(c) for c in class_ids.tolist()],
            identity={"source": "npz", "npz_sha256": file_sha256(path)},
        )


def _class_ids(y_train: np.ndarray | None, y_test: np.ndarray | None, path: Path) -> np.ndarray:
    """The classes of an npz: the distinct ids of y_train, sorted. Ids that are not 0..C-1 (labels
    1..C, or gaps) are remapped to 0..C-1 in sorted order, with a warning; the class names keep
    the original ids, so tables and histograms still say "1".."10". A y_test id that y_train
    never uses is refused (no learner could predict it). Without y_train: the ids of y_test
    (0..max), as given."""
    if y_train is None:
        return np.arange(int(y_test.max()) + 1 if y_test is not None and y_test.size else 0)
    ids = np.unique(y_train)
    if y_test is not None:
        unknown, counts = np.unique(y_test[~np.isin(y_test, ids)], return_counts=True)
        if len(unknown):
            raise UserError(f"npz:{path}: y_test holds class ids that y_train never uses: "
                            f"{name_some(f'{v} ({c} image(s))' for v, c in zip(unknown.tolist(), counts.tolist()))}. "
                            "Every test class needs train images; fix the labels or drop those test images.")
    if not np.array_equal(ids, np.arange(len(ids))):
        shown = f"{ids[0]}..{ids[-1]}" if ids[-1] - ids[0] + 1 == len(ids) else name_some(ids.tolist(), 8)
        missing = sorted(set(range(int(ids[-1]) + 1)) - set(ids.tolist()))
        warn_data(f"npz:{path}: y_train holds {len(ids)} class ids {shown}"
                  + (f" (no {name_some(missing, 8)})" if missing else "")
                  + f"; remapped to 0..{len(ids) - 1} in sorted order (class names keep the original ids)")
    return ids


def _images(array: np.ndarray, what: str) -> np.ndarray:
    images = to_uint8_images(array, what)
    if len(images) == 0:
        raise UserError(f"{what} holds no images.")
    return images


def _labels(array: np.ndarray | None, count: int, what: str) -> np.ndarray | None:
    if array is None:
        return None
    labels = np.asarray(array)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != count:
        raise UserError(f"{what} must hold one label per image: expected shape ({count},), got {labels.shape}.")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) and not np.all(np.mod(labels, 1) == 0)):
        raise UserError(f"{what} must hold integer class ids; got dtype {labels.dtype}.")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise UserError(f"{what} has negative class ids (min {labels.min()}); use 0..C-1.")
    return labels
