"""`precomputed`: the embeddings a `features:PATH` data set brings, used as they are (rows
L2-normalised by default, as every built-in encoder's output and as the selector presets assume)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..datasets.base import Dataset
from ..errors import UserError
from ..registry import ENCODERS
from ..traits import EncoderTraits
from .base import Encoder, FeatureSet, l2_normalise


@dataclass
class PrecomputedConfig:
    l2_normalise: bool = field(default=True, metadata={"help": "scale rows to unit length (the presets assume it)"})


@ENCODERS.register("precomputed", "the embeddings of a features:PATH data set, rows L2-normalised",
                   config=PrecomputedConfig)
class PrecomputedEncoder(Encoder):
    """Returns `dataset.features` (train and test) as float32, L2-normalised unless configured
    otherwise; only for data sets that carry features (`features:PATH`)."""

    traits = EncoderTraits(reads_images=False)

    def check(self, dataset: Dataset) -> None:
        if dataset.features is None:
            raise UserError(f"The precomputed encoder reads the embeddings of a features:PATH data set; "
                            f"{dataset.name} holds images: use an image encoder (pixels, simclr, timm, ...).")

    def encode(self, dataset: Dataset, device: str = "cpu") -> FeatureSet:
        self.check(dataset)
        scale = l2_normalise if self.config.l2_normalise else (lambda x: np.asarray(x, dtype=np.float32))
        test = dataset.features.get("test")
        return FeatureSet(train=scale(dataset.features["train"]), test=scale(test) if test is not None else None)
