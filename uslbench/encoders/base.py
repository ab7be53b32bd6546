"""Encoder interface: images -> float32, L2-normalised features for the train and test splits."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..datasets.base import Dataset
from ..traits import EncoderTraits


@dataclass
class FeatureSet:
    train: np.ndarray          # (N, d) float32, rows L2-normalised
    test: np.ndarray | None    # (N_test, d) or None when the data set has no test split


def l2_normalise(features: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, eps)).astype(np.float32)


class Encoder:
    """Base class. Subclasses implement `encode`; `identity()` feeds the feature cache key."""

    traits = EncoderTraits()

    def __init__(self, config) -> None:
        self.config = config

    def weights_digest(self) -> str | None:
        """sha256 of the weights file (None for encoders without weights)."""
        return None

    def identity(self) -> dict:
        config = dataclasses.asdict(self.config) if self.config is not None else {}
        # paths never go into keys: the weights enter through their digest
        config = {k: v for k, v in config.items() if "path" not in k and k != "weights"}
        return {"encoder": self.registry_name, "config": config, "weights": self.weights_digest()}

    def use_results_root(self, root) -> None:
        """The pipeline passes its results root (encoders with default weights locations use it)."""
        self.results_root = root

    def check(self, dataset: Dataset) -> None:
        """Raise UserError before any long computation when this encoder cannot run (no weights...)."""

    def encode(self, dataset: Dataset, device: str = "cpu") -> FeatureSet:
        raise NotImplementedError
