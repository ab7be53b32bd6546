"""ImageNet-1k (ILSVRC-2012) and ImageNet-100 in ImageFolder layout, read lazily from the files.

    <data_root>/train/n01440764/*.JPEG ...   the unlabeled pool
    <data_root>/val/n01440764/*.JPEG ...     evaluation (the official val set sorted into class folders)

Only the file list is kept in memory; every image is decoded when it is used. The identity is the
list of relative file names with their sizes (reading 150 GB to hash it is not an option).
ImageNet-100 is the 100-class subset of CMC (Tian et al.) that the USL paper uses; its WordNet ids
ship with the package (data/imagenet100_classes.txt).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import UserError, warn_data
from ..registry import DATASETS
from ..traits import DatasetTraits
from .base import Dataset, DatasetSource, ImageSplit
from .files import (IMAGE_EXTENSIONS, IMAGENET_MEAN, IMAGENET_STD, FileLoader, file_list_identity, is_hidden,
                    resolve_data_root, visible_dirs)
from .testing import write_image_folder


@dataclass
class ImageNetConfig:
    data_root: str | None = field(default=None, metadata={"help": "folder holding train/ and val/ (ImageFolder layout)"})


def imagenet100_classes() -> list[str]:
    """The 100 WordNet ids of ImageNet-100 (package data), in the file's order."""
    text = resources.files("uslbench.datasets").joinpath("data/imagenet100_classes.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def scan_class_folders(split_dir: Path, classes: Sequence[str]) -> tuple[list[Path], np.ndarray, list[int]]:
    """Files of the given class folders (sorted, like torchvision's ImageFolder), label = position of
    the class, and byte sizes (from the same directory scan)."""
    files: list[Path] = []
    labels: list[int] = []
    sizes: list[int] = []
    for index, wnid in enumerate(classes):
        with os.scandir(split_dir / wnid) as entries:
            members = sorted((e.name, e.stat().st_size) for e in entries
                             if e.is_file() and not is_hidden(e.name)
                             and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS)
        files += [split_dir / wnid / name for name, _ in members]
        sizes += [size for _, size in members]
        labels += [index] * len(members)
    return files, np.asarray(labels, dtype=np.int64), sizes


class ImageNetSource(DatasetSource):
    name = "imagenet"
    expected_classes: int = 1000

    def classes(self, train_dir: Path) -> list[str]:
        return [d.name for d in visible_dirs(train_dir)]

    def load(self) -> Dataset:
        root = resolve_data_root(self.config.data_root)
        missing = [f"{s}/" for s in ("train", "val") if not (root / s).is_dir()]
        if missing:
            raise UserError(f"Data set {self.name!r}: under {root} expected train/ and val/ in ImageFolder layout "
                            f"(train/n01440764/*.JPEG ...); missing {', '.join(missing)}. Pass --data-root with "
                            "that folder. ImageNet cannot be downloaded automatically: get ILSVRC-2012 from "
                            "image-net.org and sort val/ into class folders.")
        classes = self.classes(root / "train")
        absent = {s: [c for c in classes if not (root / s / c).is_dir()] for s in ("train", "val")}
        for split, names in absent.items():
            if names:
                raise UserError(f"Data set {self.name!r}: {len(names)} class folder(s) missing under {root / split}: "
                                f"{', '.join(names[:8])}{' ...' if len(names) > 8 else ''}.")
        if len(classes) != self.expected_classes:
            warn_data(f"{self.name}: {len(classes)} class folders under {root / 'train'}, expected "
                      f"{self.expected_classes}; using the {len(classes)} found")
        splits, identity = {}, {"source": self.name, "classes": len(classes)}
        for split in ("train", "val"):
            files, labels, sizes = scan_class_folders(root / split, classes)
            if not files:
                raise UserError(f"Data set {self.name!r}: no images under {root / split}.")
            splits[split] = ImageSplit(labels=labels, loader=FileLoader(files), length=len(files),
                                       paths=[str(p) for p in files])
            identity[split] = file_list_identity(root, files, sizes)
        return Dataset(name=self.name, train=splits["train"], test=splits["val"], num_classes=len(classes),
                       image_size=224, channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                       default_encoder="mocov2", class_names=classes, identity=identity)


def imagenet_test_config(workdir: Path, *, factory: type, **_: Any) -> dict[str, str]:
    """imagenet / imagenet100: train/ and val/ class folders named by WordNet id (imagenet100: its
    100 classes; imagenet: 3, which the loader accepts with a warning about the expected 1,000)."""
    classes = imagenet100_classes() if factory.expected_classes == 100 else [f"n0000000{c}" for c in range(3)]
    root = write_image_folder(Path(workdir) / factory.name, per_class_train=2, per_class_test=1,
                              class_names=classes, test_split="val", extension=".JPEG")
    return {"data_root": str(root)}



@DATASETS.register("imagenet", "ImageNet-1k (ILSVRC-2012): 1.28 M train (pool) / 50,000 val images, 1000 classes, "
                   "read lazily", config=ImageNetConfig, test_config=imagenet_test_config)
class ImageNet(ImageNetSource):
    """ILSVRC-2012 in ImageFolder layout under `<data_root>/train` and `<data_root>/val`."""

    traits = DatasetTraits(pool_size=1_281_167)


@DATASETS.register("imagenet100", "ImageNet-100 (CMC subset used by the USL paper): ~126,000 train (pool) / "
                   "5,000 val images, 100 classes", config=ImageNetConfig, test_config=imagenet_test_config)
class ImageNet100(ImageNetSource):
    """The 100 ImageNet classes of CMC / SCAN, read from a full ImageNet tree or from a tree that holds
    only those 100 class folders (`<data_root>/train/<wnid>/`, `<data_root>/val/<wnid>/`). Class
    indices follow the sorted WordNet ids."""

    name = "imagenet100"
    expected_classes = 100

    def classes(self, train_dir: Path) -> list[str]:
        return sorted(imagenet100_classes())
