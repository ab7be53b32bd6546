"""labelprop and points no labeled point reaches (issue 12, item 7). scikit-learn's LabelSpreading
gives such test points a NaN distribution, which argmax silently turned into class 0; they now
take the class of the nearest labeled point, and the metrics count them."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np

from uslbench.encoders.base import FeatureSet
from uslbench.catalog import LEARNERS



def two_islands():
    """Pool: island A around the origin (class 0 on the left, class 1 on the right, 6 points each)
    and island B, far away at x = 100 (8 points of class 1, none labeled). With k = 3 the k-NN
    graph never links the islands, so no label reaches B. Test: 2 + 2 points in A, 3 in B."""
    offsets = np.arange(6)[:, None] * np.array([[0.0, 0.1]])
    left = np.array([[-1.0, 0.0]]) + offsets
    right = np.array([[1.0, 0.0]]) + offsets
    island = np.array([[100.0, 0.0]]) + np.arange(8)[:, None] * np.array([[0.0, 0.1]])
    pool = np.vstack([left, right, island]).astype(np.float32)
    pool_labels = np.array([0] * 6 + [1] * 12)
    test = np.array([[-1.0, 0.05], [-1.0, 0.25], [1.0, 0.05], [1.0, 0.25],
                     [100.0, 0.05], [100.0, 0.35], [100.0, 0.65]], dtype=np.float32)
    test_labels = np.array([0, 0, 1, 1, 1, 1, 1])
    dataset = SimpleNamespace(train=SimpleNamespace(labels=pool_labels), test=SimpleNamespace(labels=test_labels),
                              num_classes=2, evaluated=True)
    labeled = np.array([0, 1, 6, 7])  # two of each class, all on island A
    return dataset, FeatureSet(train=pool, test=test), labeled


def test_unreached_test_points_take_the_nearest_labeled_class():
    dataset, features, labeled = two_islands()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no 'invalid value in divide' escapes either
        metrics = LEARNERS.create("labelprop", k=3).fit(dataset, labeled, seed=0, features=features)
    assert metrics["unreached_test"] == 3
    assert metrics["unreached_pool"] == 8
    # before: the three island-B points became class 0 (4 / 7 correct); the nearest labeled point
    # of each is pool row 7 (class 1, at x = 1, y = 0.1)
    assert metrics["top1"] == 100.0
    assert metrics["per_class_top1"] == [100.0, 100.0]


def test_digits_unreached_pool_matches_a_hop_count(digits_dataset, digits_features):
    """Reference: label mass moves one hop per iteration along the directed k-NN graph (row i ->
    its k - 1 nearest others; scikit-learn counts the point itself among its k = 10), so the
    points without mass are those more than `iterations` hops from every labeled point (BFS)."""
    from sklearn.neighbors import kneighbors_graph

    labeled = np.concatenate([np.flatnonzero(digits_dataset.train.labels == c)[:2] for c in range(10)])
    metrics = LEARNERS.create("labelprop").fit(digits_dataset, labeled, seed=1, features=digits_features)
    graph = kneighbors_graph(digits_features.train, 9).tocsc()
    hops = np.full(len(digits_features.train), -1)
    hops[labeled] = 0
    frontier, hop = labeled, 0
    while len(frontier):
        hop += 1
        rows = np.unique(graph[:, frontier].indices)
        frontier = rows[hops[rows] < 0]
        hops[frontier] = hop
    assert metrics["iterations"] == 6
    assert metrics["unreached_pool"] == int(((hops < 0) | (hops > metrics["iterations"])).sum()) == 18
    assert metrics["unreached_test"] == 0
