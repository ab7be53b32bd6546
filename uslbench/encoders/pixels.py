"""Standardised raw pixels: the encoder for small embedded data sets."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config_ranges import POSITIVE_INT, field_ranges
from ..datasets.base import Dataset, ImageSplit
from ..errors import UserError
from ..registry import ENCODERS
from .base import Encoder, FeatureSet, l2_normalise


@field_ranges(max_side=POSITIVE_INT)
@dataclass
class PixelsConfig:
    max_side: int = 32  # larger images are resized so the features stay small


def _pixel_matrix(split: ImageSplit, max_side: int) -> np.ndarray:
    if split.array is not None and split.array.shape[1] <= max_side:
        return split.array.reshape(len(split), -1).astype(np.float32)
    rows = []
    for i in range(len(split)):
        image = split.image(i)
        if max(image.size) > max_side:
            image = image.resize((max_side, max_side))
        rows.append(np.asarray(image, dtype=np.float32).reshape(-1))
    return np.stack(rows)


@ENCODERS.register("pixels", "per-feature standardised pixels (fit on train), L2-normalised",
                   config=PixelsConfig)
class PixelsEncoder(Encoder):
    """Flatten the pixels, standardise each feature with the train split's mean and standard
    deviation (constant features keep std 1), then L2-normalise each row."""

    def encode(self, dataset: Dataset, device: str = "cpu") -> FeatureSet:
        if dataset.train.array is None and len(dataset.train) > 200_000:
            raise UserError(f"The pixels encoder is meant for small data sets; {dataset.name} has "
                            f"{len(dataset.train)} images. Use a learned encoder (--encoder simclr/mocov2/clip).")
        train = _pixel_matrix(dataset.train, self.config.max_side)
        mean = train.mean(axis=0)
        std = train.std(axis=0)
        std[std < 1e-8] = 1.0
        standardise = lambda x: l2_normalise((x - mean) / std)  # noqa: E731
        test = standardise(_pixel_matrix(dataset.test, self.config.max_side)) if dataset.test is not None else None
        return FeatureSet(train=standardise(train), test=test)
