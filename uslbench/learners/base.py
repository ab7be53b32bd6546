"""Learner interface.

    learner = LEARNERS.create("linear")
    metrics = learner.fit(dataset, labeled_indices, seed=1, device="cpu", workdir=run_dir,
                          features=feature_set)

`fit` returns a dict whose headline is "top1": the final accuracy (in %) of the evaluated model
on the test split. Learners that train on frozen features declare
`traits = LearnerTraits(uses_features=True)` and get the cached FeatureSet; image learners read
the data set's images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import DEFAULT_SEED
from ..datasets.base import Dataset
from ..errors import UserError
from ..traits import LearnerTraits


def top1_metrics(predictions: np.ndarray, targets: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Top-1 accuracy in % and the per-class accuracy (None for a class absent from the test split)."""
    predictions = np.asarray(predictions)
    targets = np.asarray(targets)
    correct = predictions == targets
    per_class = []
    for c in range(num_classes):
        members = targets == c
        per_class.append(round(float(100.0 * correct[members].mean()), 4) if members.any() else None)
    return {"top1": float(100.0 * correct.mean()), "per_class_top1": per_class, "n_test": int(len(targets))}


class Learner:
    traits = LearnerTraits()
    declared_metrics: tuple[str, ...] = ("top1", "per_class_top1", "n_test")

    def __init__(self, config: Any = None) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return getattr(type(self), "registry_name", type(self).__name__)

    def check_dataset(self, dataset: Dataset) -> None:
        """Fail fast (before features or selection) on a data set this learner cannot use."""
        if dataset.test is None or dataset.test.labels is None:
            raise UserError(f"Data set {dataset.name} has no labelled test split, so learners cannot be "
                            "evaluated on it; use `select` to only choose images to label.")
        if dataset.train.labels is None:
            raise UserError(f"Data set {dataset.name} has no train labels, so the selected images cannot be "
                            "given labels for training; use `select` to export the indices to label.")

    def check_device(self, device: str) -> None:
        """Fail fast on options the device cannot honour (AMP without a GPU...)."""

    def check(self, dataset: Dataset, labeled_indices: np.ndarray) -> None:
        """Fail with a UserError on a labeled set this learner cannot train on."""
        self.check_dataset(dataset)
        labeled_indices = np.asarray(labeled_indices)
        if len(labeled_indices) == 0:
            raise UserError("The labeled set is empty.")
        if labeled_indices.min() < 0 or labeled_indices.max() >= len(dataset.train):
            raise UserError(f"Labeled index out of range: the pool has {len(dataset.train)} images, got indices "
                            f"from {int(labeled_indices.min())} to {int(labeled_indices.max())}.")
        if len(np.unique(dataset.train.labels[labeled_indices])) < 2:
            raise UserError("The labeled set holds a single class; a classifier needs at least two. "
                            "Raise the budget or use another selector.")

    def fit(self, dataset: Dataset, labeled_indices: np.ndarray, seed: int = DEFAULT_SEED, device: str = "cpu",
            workdir: str | Path | None = None, features: Any = None, encoder: Any = None) -> dict[str, Any]:
        """Train on the labeled indices (plus the pool as unlabeled data for SSL learners) and
        evaluate on the test split. `features`: the cached FeatureSet (for `uses_features`
        learners); `encoder`: the run's Encoder object (learners that fine-tune it)."""
        raise NotImplementedError
