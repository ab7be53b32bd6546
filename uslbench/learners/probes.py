"""Cheap probes on frozen features (not in the paper; tables say which learner each column used)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config_ranges import POSITIVE, POSITIVE_INT, Range, field_ranges
from ..registry import LEARNERS
from .base import Learner, top1_metrics


class FeatureProbe(Learner):
    uses_features = True

    def _labeled(self, dataset, labeled_indices, features):
        labeled_indices = np.asarray(labeled_indices, dtype=np.int64)
        return features.train[labeled_indices], dataset.train.labels[labeled_indices]


@field_ranges(C=POSITIVE, max_iter=POSITIVE_INT)
@dataclass
class LinearConfig:
    C: float = 100.0  # weak regularisation: rows are L2-normalised, so the scale is small
    max_iter: int = 2000


@LEARNERS.register("linear", "logistic regression on the labeled rows of frozen features (probe)",
                   config=LinearConfig, tags=("probe", "uses_features"))
class LinearProbe(FeatureProbe):
    """scikit-learn LogisticRegression (lbfgs, multinomial) on the labeled rows of the cached
    features; top-1 on the test split's features."""

    def fit(self, dataset, labeled_indices, seed=0, device="cpu", workdir=None, features=None, encoder=None):
        from sklearn.linear_model import LogisticRegression

        x, y = self._labeled(dataset, labeled_indices, features)
        model = LogisticRegression(C=self.config.C, max_iter=self.config.max_iter, random_state=seed)
        model.fit(x, y)
        return top1_metrics(model.predict(features.test), dataset.test.labels, dataset.num_classes)


@field_ranges(k=POSITIVE_INT, weights=Range(choices=("uniform", "distance")))
@dataclass
class KnnConfig:
    k: int = 5
    weights: str = "distance"


@LEARNERS.register("knn", "k-nearest-neighbour vote among the labeled rows of frozen features (probe)",
                   config=KnnConfig, tags=("probe", "uses_features"))
class KnnProbe(FeatureProbe):
    """scikit-learn KNeighborsClassifier with k = min(k, labeled set size); distance weighting."""

    def fit(self, dataset, labeled_indices, seed=0, device="cpu", workdir=None, features=None, encoder=None):
        from sklearn.neighbors import KNeighborsClassifier

        x, y = self._labeled(dataset, labeled_indices, features)
        model = KNeighborsClassifier(n_neighbors=min(self.config.k, len(y)), weights=self.config.weights)
        model.fit(x, y)
        return top1_metrics(model.predict(features.test), dataset.test.labels, dataset.num_classes)


@field_ranges(k=POSITIVE_INT, alpha=Range(gt=0, lt=1), max_iter=POSITIVE_INT)
@dataclass
class LabelPropConfig:
    k: int = 10
    alpha: float = 0.2       # clamping: 0 keeps the given labels fixed, 1 lets them change freely
    max_iter: int = 1000


@LEARNERS.register("labelprop", "label spreading over the k-NN graph of all pool features (probe)",
                   config=LabelPropConfig, tags=("probe", "uses_features"))
class LabelPropProbe(FeatureProbe):
    """scikit-learn LabelSpreading (kernel="knn") on the whole pool: the labeled rows carry their
    labels, every other row is unlabeled (-1); labels spread over the symmetric normalised k-NN
    graph. Test images are classified by their k nearest pool neighbours' spread label
    distributions (LabelSpreading.predict). k is capped at pool size - 1."""

    def fit(self, dataset, labeled_indices, seed=0, device="cpu", workdir=None, features=None, encoder=None):
        from sklearn.semi_supervised import LabelSpreading

        targets = spread_targets(len(features.train), labeled_indices, dataset.train.labels)
        model = LabelSpreading(kernel="knn", n_neighbors=min(self.config.k, len(targets) - 1),
                               alpha=self.config.alpha, max_iter=self.config.max_iter)
        model.fit(features.train, targets)
        return top1_metrics(model.predict(features.test), dataset.test.labels, dataset.num_classes)


def spread_targets(pool_size: int, labeled_indices: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """-1 everywhere except the labeled rows (LabelSpreading's convention for unlabeled points)."""
    labeled_indices = np.asarray(labeled_indices, dtype=np.int64)
    targets = np.full(pool_size, -1, dtype=np.int64)
    targets[labeled_indices] = labels[labeled_indices]
    return targets
