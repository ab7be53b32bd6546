"""BloodMNIST through the `medmnist` package's own class and `.npz` files.

The train split is the unlabeled pool, the test split is used for evaluation only (the val split
is not used). Nothing is downloaded at run time unless `download` is asked for.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config_ranges import Range, field_ranges
from ..errors import UserError
from ..registry import DATASETS
from ..traits import DatasetTraits
from ..utils import file_sha256
from .base import Dataset, DatasetSource, ImageSplit
from .files import channel_stats, missing_files_error, resolve_data_root
from .testing import medmnist_test_config

SIZES = (28, 64, 128, 224)


@field_ranges(size=Range(choices=(28, 64, 128, 224)))
@dataclass
class MedMNISTConfig:
    data_root: str | None = field(default=None, metadata={"help": "folder holding bloodmnist.npz (bloodmnist_64.npz ... for other sizes)"})
    size: int = field(default=28, metadata={"help": "image side: 28, 64, 128 or 224"})
    download: bool = False


def npz_name(flag: str, size: int) -> str:
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


@DATASETS.register("bloodmnist", "BloodMNIST (MedMNIST v2): 11,959 train (pool) / 3,421 test blood-cell images, "
                   "8 classes", config=MedMNISTConfig, test_config=medmnist_test_config)
class BloodMNIST(DatasetSource):
    """Blood-cell microscopy images in 8 classes, read with `medmnist.BloodMNIST` from
    `<data_root>/bloodmnist.npz` (28x28) or `bloodmnist_<size>.npz` (size 64, 128, 224)."""

    traits = DatasetTraits(pool_size=11_959)

    flag = "bloodmnist"

    def load(self) -> Dataset:
        import medmnist  # lazy: it imports torch; the data sets register without it

        size = self.config.size
        if size not in SIZES:
            raise UserError(f"bloodmnist size must be one of {', '.join(map(str, SIZES))}; got {size}.")
        root = resolve_data_root(self.config.data_root)
        filename = npz_name(self.flag, size)
        path = root / filename
        if not path.is_file():
            if self.config.download:
                root.mkdir(parents=True, exist_ok=True)
                try:
                    medmnist.BloodMNIST(split="train", root=str(root), size=size, download=True)
                except RuntimeError as exc:
                    raise UserError(f"Downloading {filename} into {root} failed: {exc}") from exc
            if not path.is_file():
                raise missing_files_error("bloodmnist", root, [filename], [filename],
                                          "add --download to `run` (or `pretrain`) to fetch it with the medmnist package where the "
                                          "network allows")
        splits = {}
        for split in ("train", "test"):
            try:
                source = medmnist.BloodMNIST(split=split, root=str(root), size=size, download=False)
                images, labels = np.asarray(source.imgs), np.asarray(source.labels)
            except (KeyError, ValueError, OSError, RuntimeError) as exc:
                raise UserError(f"{path} is not a MedMNIST .npz with '{split}_images' and '{split}_labels' "
                                f"arrays ({type(exc).__name__}: {exc}).") from exc
            splits[split] = self._split(images, labels, split, path)
        train, test = splits["train"], splits["test"]
        info = medmnist.INFO[self.flag]
        mean, std = channel_stats(train.array)
        return Dataset(
            name=self.flag, train=train, test=test, num_classes=len(info["label"]), image_size=size,
            channels=train.array.shape[-1], mean=mean, std=std, default_encoder="simclr",
            class_names=[info["label"][str(i)] for i in range(len(info["label"]))],
            identity={"source": self.flag, "size": size, "npz_sha256": file_sha256(path)},
        )

    def _split(self, images: np.ndarray, labels: np.ndarray, split: str, path: Path) -> ImageSplit:
        if images.ndim == 3:
            images = images[..., None]
        labels = labels.reshape(len(labels), -1)
        if images.ndim != 4 or images.dtype != np.uint8 or len(images) != len(labels) or labels.shape[1] != 1:
            raise UserError(f"{path}: '{split}_images' must be uint8 (N, H, W[, C]) with N single labels in "
                            f"'{split}_labels'; got {images.shape} {images.dtype} and labels {labels.shape}.")
        return ImageSplit(labels=labels[:, 0].astype(np.int64), array=np.ascontiguousarray(images))
