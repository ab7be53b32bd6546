"""Cheap probes on frozen features (not in the paper; tables say which learner each column used)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..registry import LEARNERS
from .base import Learner, top1_metrics


class FeatureProbe(Learner):
    uses_features = True

    def _labeled(self, dataset, labeled_indices, features):
        labeled_indices = np.asarray(labeled_indices, dtype=np.int64)
        return features.train[labeled_indices], dataset.train.labels[labeled_indices]


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
