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
    """Top-1 accuracy and per-class accuracy.

    Parameters
    ----------
    predictions, targets : array-like of int, shape (n_test,)
        Predicted and true class ids.
    num_classes : int
        C.

    Returns
    -------
    dict
        ``top1`` (float, %), ``per_class_top1`` (list of C floats in %, None for a class absent
        from the test split) and ``n_test`` (int).
    """
    predictions = np.asarray(predictions)
    targets = np.asarray(targets)
    correct = predictions == targets
    per_class = []
    for c in range(num_classes):
        members = targets == c
        per_class.append(round(float(100.0 * correct[members].mean()), 4) if members.any() else None)
    return {"top1": float(100.0 * correct.mean()), "per_class_top1": per_class, "n_test": int(len(targets))}


SINGLE_CLASS = "single_class"


def unevaluated_metrics() -> dict[str, Any]:
    """The metrics of a run on a data set without a labelled test split (`run --labels` on your own
    folder): no accuracy (``top1`` None, ``n_test`` 0); the pipeline writes the pool's predictions."""
    return {"top1": None, "per_class_top1": None, "n_test": 0}


def pool_predictions(proba: np.ndarray, classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class ids (N,) int64, their probability (N,) float64) from class probabilities
    (N, C'); `classes` maps the C' columns to class ids (scikit-learn's ``classes_``)."""
    proba = np.asarray(proba, dtype=np.float64)
    best = np.argmax(proba, axis=1)
    predicted = best if classes is None else np.asarray(classes)[best]
    return predicted.astype(np.int64), proba[np.arange(len(proba)), best]


def single_class(dataset: Dataset, labeled_indices: np.ndarray) -> int | None:
    """The class of a labeled set that holds one class only (a degenerate selection), else None."""
    classes = np.unique(dataset.train.labels[np.asarray(labeled_indices, dtype=np.int64)])
    return int(classes[0]) if len(classes) == 1 else None


def single_class_metrics(dataset: Dataset, label: int) -> dict[str, Any]:
    """The score of the rule "predict the labeled set's only class" on the test split, for learners
    that cannot train on one class (scikit-learn's LogisticRegression refuses it). A selection
    that found one class is still a result of the benchmark: it is scored, never dropped, and
    the metrics say which rule produced the predictions."""
    targets = np.asarray(dataset.test.labels)
    metrics = top1_metrics(np.full(len(targets), label, dtype=np.int64), targets, dataset.num_classes)
    metrics.update(degenerate=SINGLE_CLASS, prediction_rule=f"constant: class {label}, the labeled set's only class")
    return metrics


class Learner:
    """Base class of the learners: train on the selected labeled set (and, for semi-supervised
    learners, the rest of the pool as unlabeled data), then evaluate on the test split.

    The learners are the USL paper's downstream methods (Wang, Lian & Yu, ECCV 2022, Sec. 4):
    FixMatch (Sohn et al., NeurIPS 2020), MixMatch (Berthelot et al., NeurIPS 2019), CoMatch
    (Li, Xiong & Hoi, ICCV 2021), SimCLRv2 fine-tuning (Chen et al., NeurIPS 2020), plus cheap
    probes on frozen features. Subclasses are registered with ``@LEARNERS.register(...)``,
    declare their `traits` and implement `fit`; image learners subclass
    ``learners.image_learner.ImageLearner`` and implement only their loss.

    Parameters
    ----------
    config : dataclass instance, optional
        The resolved config (defaults, the data set's recipe, overrides); see ``describe NAME``.

    Attributes
    ----------
    traits : LearnerTraits
        Declared once on the class: trains on frozen features or on images, wants a GPU.
    declared_metrics : tuple of str
        Keys that `fit` always returns (the contract tests check them).
    """

    traits = LearnerTraits()
    declared_metrics: tuple[str, ...] = ("top1", "per_class_top1", "n_test")

    def __init__(self, config: Any = None) -> None:
        self.config = config

    @property
    def name(self) -> str:
        """The registry name (the class name for an unregistered subclass)."""
        return getattr(type(self), "registry_name", type(self).__name__)

    def check_dataset(self, dataset: Dataset) -> None:
        """Fail fast (before features or selection) on a data set this learner cannot use.

        A data set whose labels come from a labels file (``run --labels``) needs no test split:
        the run then reports no accuracy and predicts the pool instead (`predict_pool`).

        Raises
        ------
        UserError
            No labelled test split (and no labels file), or no train labels.
        """
        if not dataset.evaluated and dataset.labels_source is None:
            raise UserError(f"Data set {dataset.name} has no labelled test split, so learners cannot be "
                            "evaluated on it; use `select` to only choose images to label, or train on the labels "
                            "you gave them with `run --labels FILE` (predictions instead of accuracy).")
        if dataset.train.labels is None:
            raise UserError(f"Data set {dataset.name} has no train labels, so the selected images cannot be "
                            "given labels for training; use `select` to export the images to label, then "
                            "`run --labels FILE` with their labels.")

    def check_device(self, device: str) -> None:
        """Fail fast on options the device cannot honour (AMP without a GPU...).

        Raises
        ------
        UserError
            An option needs a device this run does not have.
        """

    def check(self, dataset: Dataset, labeled_indices: np.ndarray) -> None:
        """Check a labeled set before training. A labeled set of one class is NOT refused: it is
        a selector's result and is scored (learners that cannot train on one class predict that
        class, see `single_class_metrics`).

        Parameters
        ----------
        dataset : Dataset
            The loaded data set.
        labeled_indices : array-like of int, shape (m,)
            Pool indices of the labeled images.

        Raises
        ------
        UserError
            Empty set, or an index outside the pool.
        """
        self.check_dataset(dataset)
        labeled_indices = np.asarray(labeled_indices)
        if len(labeled_indices) == 0:
            raise UserError("The labeled set is empty.")
        if labeled_indices.min() < 0 or labeled_indices.max() >= len(dataset.train):
            raise UserError(f"Labeled index out of range: the pool has {len(dataset.train)} images, got indices "
                            f"from {int(labeled_indices.min())} to {int(labeled_indices.max())}.")

    def fit(self, dataset: Dataset, labeled_indices: np.ndarray, seed: int = DEFAULT_SEED, device: str = "cpu",
            workdir: str | Path | None = None, features: Any = None, encoder: Any = None) -> dict[str, Any]:
        """Train on the labeled images (plus the pool as unlabeled data for SSL learners) and
        evaluate on the test split.

        Parameters
        ----------
        dataset : Dataset
            Train split = the pool (labels read only at `labeled_indices`), test split for evaluation.
        labeled_indices : np.ndarray of int64, shape (m,)
            The selection.
        seed : int, default 1
            Seeds initialisation, batches and augmentation: same inputs + seed = same result.
        device : str, default "cpu"
            Torch device ("cpu", "cuda", "cuda:N").
        workdir : path-like, optional
            The run folder: checkpoints go here, and a run resumes from them.
        features : FeatureSet, optional
            The cached frozen features; given to learners whose traits say `uses_features`.
        encoder : Encoder, optional
            The run's encoder (learners that fine-tune its network).

        Returns
        -------
        dict
            At least `declared_metrics`: ``top1`` (final accuracy of the evaluated model, %),
            ``per_class_top1`` and ``n_test``; image learners add the training curve. Without a
            labelled test split: `unevaluated_metrics` (``top1`` None).

        Raises
        ------
        UserError
            A labeled set or option this learner cannot use (raised before training starts).
        """
        raise NotImplementedError

    def predict_pool(self, dataset: Dataset, features: Any = None, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
        """Predict every pool image with the model the last `fit` trained.

        Parameters
        ----------
        dataset : Dataset
            The data set `fit` trained on.
        features : FeatureSet, optional
            The frozen features (learners whose traits say `uses_features`).
        device : str
            Torch device (image learners).

        Returns
        -------
        predicted : np.ndarray of int64, shape (N,)
            Class ids (into ``dataset.class_names``), in pool order.
        confidence : np.ndarray of float64, shape (N,)
            The model's probability of the predicted class, in [0, 1].

        Raises
        ------
        RuntimeError
            `fit` has not run.
        """
        raise NotImplementedError(f"learner {self.name!r} does not predict the pool")

    def save_model(self, workdir: str | Path) -> Path | None:
        """The file holding the model the last `fit` trained, in `workdir` (written here when `fit`
        did not already write it); None when there is none."""
        return None
