"""scikit-learn's bundled 8x8 handwritten digits: the embedded data set (no download, ever)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config_ranges import NON_NEGATIVE, Range, field_ranges
from ..registry import DATASETS
from ..traits import DatasetTraits
from .base import Dataset, DatasetSource, ImageSplit


@field_ranges(test_fraction=Range(gt=0, lt=1), split_seed=NON_NEGATIVE)
@dataclass
class DigitsConfig:
    test_fraction: float = 0.25
    split_seed: int = 0


@DATASETS.register("digits", "scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), embedded",
                   config=DigitsConfig)
class Digits(DatasetSource):
    """1,797 grey 8x8 images of the digits 0-9 (UCI, shipped inside scikit-learn).

    A fixed stratified split: 1,347 train images form the unlabeled pool, 450 test images are used
    only for evaluation. Pixel values 0..16 are scaled to 0..255 and kept as uint8 images.
    """

    traits = DatasetTraits(needs_files=False, pool_size=1_347)

    def load(self) -> Dataset:
        # lazy: scikit-learn; the data sets register (for `list`, `describe`) without it
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        bunch = load_digits()
        images = np.clip(bunch.images * 16.0, 0, 255).astype(np.uint8)[..., None]  # N, 8, 8, 1
        labels = bunch.target.astype(np.int64)
        train_idx, test_idx = train_test_split(
            np.arange(len(labels)), test_size=self.config.test_fraction,
            stratify=labels, random_state=self.config.split_seed)
        train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
        return Dataset(
            name="digits",
            train=ImageSplit(labels=labels[train_idx], array=images[train_idx]),
            test=ImageSplit(labels=labels[test_idx], array=images[test_idx]),
            num_classes=10, image_size=8, channels=1,
            mean=(float(images[train_idx].mean() / 255),), std=(float(images[train_idx].std() / 255),),
            default_encoder="pixels", class_names=[str(d) for d in range(10)],
            identity={"source": "sklearn.load_digits", "test_fraction": self.config.test_fraction,
                      "split_seed": self.config.split_seed},
        )
