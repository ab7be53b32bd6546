"""Cheap probes on frozen features (not in the paper; tables say which learner each column used)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import DEFAULT_SEED
from ..registry import LEARNERS
from ..traits import LearnerTraits
from .base import Learner, single_class, single_class_metrics, top1_metrics


class FeatureProbe(Learner):
    traits = LearnerTraits(uses_features=True)

    def _labeled(self, dataset, labeled_indices, features):
        labeled_indices = np.asarray(labeled_indices, dtype=np.int64)
        return features.train[labeled_indices], dataset.train.labels[labeled_indices]


@dataclass
class LinearConfig:
    C: float = 100.0  # weak regularisation: rows are L2-normalised, so the scale is small
    max_iter: int = 2000


@LEARNERS.register("linear", "logistic regression on the labeled rows of frozen features (probe)",
                   config=LinearConfig)
class LinearProbe(FeatureProbe):
    """scikit-learn LogisticRegression (lbfgs, multinomial) on the labeled rows of the cached
    features; top-1 on the test split's features. A labeled set of one class cannot be fitted
    (LogisticRegression needs two): every test image is then given that class, and the metrics
    say so (`degenerate: single_class`)."""

    def fit(self, dataset, labeled_indices, seed=DEFAULT_SEED, device="cpu", workdir=None, features=None, encoder=None):
        from sklearn.linear_model import LogisticRegression  # lazy: the probes register without sklearn

        only = single_class(dataset, labeled_indices)
        if only is not None:
            return single_class_metrics(dataset, only)
        x, y = self._labeled(dataset, labeled_indices, features)
        model = LogisticRegression(C=self.config.C, max_iter=self.config.max_iter, random_state=seed)
        with small_problem_threads(len(y)):
            model.fit(x, y)
        return top1_metrics(model.predict(features.test), dataset.test.labels, dataset.num_classes)


def small_problem_threads(rows: int, limit: int = 5000):
    """One BLAS / OpenMP thread while fitting on at most `limit` labeled rows, else no limit.

    lbfgs on a labeled set of tens of rows makes many tiny BLAS calls; with more than one thread
    they wait for each other, and on a loaded machine a 40 x 1,280 fit took 0.5 to 9 s with two
    threads against 0.1 s with one (CIFAR-10, EfficientNet-Lite0 features, same coefficients).
    threadpoolctl ships with scikit-learn."""
    import contextlib

    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1) if rows <= limit else contextlib.nullcontext()


@dataclass
class KnnConfig:
    k: int = 5
    weights: str = "distance"


@LEARNERS.register("knn", "k-nearest-neighbour vote among the labeled rows of frozen features (probe)",
                   config=KnnConfig)
class KnnProbe(FeatureProbe):
    """scikit-learn KNeighborsClassifier with k = min(k, labeled set size); distance weighting."""

    def fit(self, dataset, labeled_indices, seed=DEFAULT_SEED, device="cpu", workdir=None, features=None, encoder=None):
        from sklearn.neighbors import KNeighborsClassifier  # lazy: as above

        x, y = self._labeled(dataset, labeled_indices, features)
        model = KNeighborsClassifier(n_neighbors=min(self.config.k, len(y)), weights=self.config.weights)
        model.fit(x, y)
        with small_problem_threads(len(y)):  # test x labeled distances: a thin GEMM
            predictions = model.predict(features.test)
        return top1_metrics(predictions, dataset.test.labels, dataset.num_classes)


@dataclass
class LabelPropConfig:
    k: int = 10
    alpha: float = 0.2       # clamping: 0 keeps the given labels fixed, 1 lets them change freely
    max_iter: int = 1000


@LEARNERS.register("labelprop", "label spreading over the k-NN graph of all pool features (probe)",
                   config=LabelPropConfig)
class LabelPropProbe(FeatureProbe):
    """scikit-learn LabelSpreading on the whole pool, with scikit-learn's k-NN kernel computed
    once: the labeled rows carry their labels, every other row is unlabeled (-1); labels spread
    over the symmetric normalised k-NN graph. Test images are classified by their k nearest pool
    neighbours' spread label distributions (LabelSpreading.predict_proba). k is capped at
    pool size - 1.

    The graph: LabelSpreading(kernel="knn") rebuilds the pool's k-NN graph in every fit
    (minutes on 50,000 x 1,280 features). This probe passes the same graph through
    LabelSpreading's documented callable-kernel hook instead (`PrecomputedKnnKernel`): the pool
    k-NN (each point counts itself, as scikit-learn's kneighbors_graph does) and the test
    points' k nearest pool points are computed once with faiss (selectors.toolkit.knn, exact up
    to 200,000 points) and stored next to the cached features (`FeatureSet.cache_stem` +
    ".knn{k}.npz"), so every later run on the same features and k reads them. Spreading, its
    normalisation, alpha, tolerance and iterations are scikit-learn's; the predictions equal
    kernel="knn"'s (tests/test_labelprop_graph.py), up to the order of exactly tied neighbours.

    Unreached points: label mass moves one hop of the (directed) k-NN graph per iteration, so a
    pool point gets none when no labeled point lies within `iterations` hops (another graph
    component, or farther than the iterations run before scikit-learn's tolerance stopped
    them: 18 of the 1,347 digits points with 2 labels per class). A test image whose k nearest
    pool neighbours all lack mass gets a NaN distribution (0 / 0), which argmax would silently
    turn into class 0. Such test images are given the class of their nearest labeled point
    instead (Euclidean distance in the feature space, ties: the lower pool index).
    metrics: unreached_test (test images predicted by that fallback), unreached_pool (pool
    points without label mass), iterations (LabelSpreading's n_iter_), graph_cached (whether the
    k-NN graph was read from the cache)."""

    declared_metrics = ("top1", "per_class_top1", "n_test", "unreached_test", "unreached_pool", "iterations",
                        "graph_cached")

    def fit(self, dataset, labeled_indices, seed=DEFAULT_SEED, device="cpu", workdir=None, features=None, encoder=None):
        from sklearn.semi_supervised import LabelSpreading  # lazy: as above

        targets = spread_targets(len(features.train), labeled_indices, dataset.train.labels)
        k = min(self.config.k, len(targets) - 1)
        pool_nn, test_nn, cached = knn_graph(features, k)
        kernel = PrecomputedKnnKernel(features.train, pool_nn, test_nn)
        model = LabelSpreading(kernel=kernel, alpha=self.config.alpha, max_iter=self.config.max_iter)
        with small_problem_threads(len(labeled_indices)):  # sparse products and a thin GEMM; the graph is built
            model.fit(features.train, targets)               # above, by faiss, without the limit
            with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 rows are handled below
                proba = model.predict_proba(features.test)
            predictions, unreached = predict_with_fallback(proba, model.classes_, features.train, features.test,
                                                           labeled_indices, dataset.train.labels)
        metrics = top1_metrics(predictions, dataset.test.labels, dataset.num_classes)
        metrics.update(unreached_test=int(unreached.sum()),
                       unreached_pool=int((model.label_distributions_.sum(axis=1) == 0).sum()),
                       iterations=int(model.n_iter_), graph_cached=bool(cached))
        return metrics


class PrecomputedKnnKernel:
    """A callable kernel for scikit-learn's LabelSpreading / LabelPropagation that returns
    precomputed k-NN connectivity instead of searching again.

    scikit-learn calls ``kernel(X, X)`` on the training rows in `fit` (the affinity matrix) and
    ``kernel(X_train, X_query)`` in `predict_proba`, then uses the transpose as the queries'
    weights. This returns the same 0/1 connectivity matrices as kernel="knn":
    ``kneighbors_graph(X_train, k)`` (N, N) with each point among its own k neighbours, and for
    the queries a (N, N_query) matrix with a 1 at (neighbour, query).

    Parameters
    ----------
    train : np.ndarray (N, d)
        The rows the model is fitted on (the object scikit-learn passes back; checked by shape).
    pool_neighbours : np.ndarray of int, shape (N, k)
        The k nearest training rows of every training row (itself included).
    query_neighbours : np.ndarray of int, shape (N_query, k), or None
        The k nearest training rows of each query row (the test split), in query order.
    """

    def __init__(self, train: np.ndarray, pool_neighbours: np.ndarray, query_neighbours: np.ndarray | None) -> None:
        self.n = int(train.shape[0])
        self.pool_neighbours = np.asarray(pool_neighbours, dtype=np.int64)
        self.query_neighbours = None if query_neighbours is None else np.asarray(query_neighbours, dtype=np.int64)

    @staticmethod
    def _connectivity(neighbours: np.ndarray, n_columns: int):
        from scipy import sparse

        rows = np.repeat(np.arange(len(neighbours)), neighbours.shape[1])
        return sparse.csr_matrix((np.ones(neighbours.size), (rows, neighbours.ravel())),
                                 shape=(len(neighbours), n_columns))

    def __call__(self, x: np.ndarray, y: np.ndarray):
        if x.shape[0] != self.n:
            raise ValueError(f"the precomputed k-NN graph has {self.n} training rows, got {x.shape[0]}")
        if y is x:  # fit: the affinity matrix of the training rows
            return self._connectivity(self.pool_neighbours, self.n)
        if self.query_neighbours is None or y.shape[0] != len(self.query_neighbours):
            raise ValueError(f"the precomputed k-NN graph holds no neighbours for these {y.shape[0]} query rows")
        return self._connectivity(self.query_neighbours, self.n).T.tocsr()


def knn_graph(features, k: int) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """The pool's k-NN lists (N, k) (each row among its own neighbours) and the test rows' k
    nearest pool rows (N_test, k), int64, by faiss (selectors.toolkit.knn). Read from / written to
    ``features.cache_stem + ".knn{k}.npz"`` when the features are cached (the file is named by
    the features' content key and k, so it never serves other features). Returns (pool, test,
    whether read from the cache)."""
    from ..selectors.toolkit import knn

    path = f"{features.cache_stem}.knn{k}.npz" if getattr(features, "cache_stem", None) else None
    n, n_test = len(features.train), (len(features.test) if features.test is not None else 0)
    if path is not None:
        try:
            with np.load(path, allow_pickle=False) as stored:
                pool_nn, test_nn = stored["pool"], stored["test"]
            if pool_nn.shape == (n, k) and test_nn.shape == (n_test, k):
                return pool_nn.astype(np.int64), (test_nn.astype(np.int64) if n_test else None), True
        except (OSError, KeyError, ValueError):  # absent or unreadable: computed again below
            pass
    _, pool_nn, _ = knn(features.train, k, desc="label spreading k-NN graph")
    test_nn = (knn(features.train, k, queries=features.test, desc="test k-NN")[1] if n_test
               else np.zeros((0, k), dtype=np.int64))
    if path is not None:
        import os
        import tempfile

        folder = os.path.dirname(path) or "."
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".npz", delete=False) as handle:
            np.savez(handle, pool=pool_nn.astype(np.int32), test=test_nn.astype(np.int32))
        os.replace(handle.name, path)  # atomic: a concurrent run reads the old state or the whole file
    return pool_nn, (test_nn if n_test else None), False


def predict_with_fallback(proba: np.ndarray, classes: np.ndarray, pool: np.ndarray, test: np.ndarray,
                          labeled_indices: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """argmax of the label distributions; rows without any finite positive mass (unreached by
    every labeled point) take the class of the nearest labeled pool point instead. Returns
    (predictions (n_test,) int64, unreached mask (n_test,) bool)."""
    from sklearn.metrics import pairwise_distances_argmin

    unreached = ~np.isfinite(proba).all(axis=1) | ~(np.nan_to_num(proba).sum(axis=1) > 0)
    predictions = classes[np.argmax(np.nan_to_num(proba), axis=1)].astype(np.int64)
    if unreached.any():
        labeled_indices = np.sort(np.asarray(labeled_indices, dtype=np.int64))
        nearest = pairwise_distances_argmin(test[unreached], pool[labeled_indices])
        predictions[unreached] = labels[labeled_indices[nearest]]
    return predictions, unreached


def spread_targets(pool_size: int, labeled_indices: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """-1 everywhere except the labeled rows (LabelSpreading's convention for unlabeled points)."""
    labeled_indices = np.asarray(labeled_indices, dtype=np.int64)
    targets = np.full(pool_size, -1, dtype=np.int64)
    targets[labeled_indices] = labels[labeled_indices]
    return targets
