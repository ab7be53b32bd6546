"""A second round (`select --already-labeled`): each selector that takes an already-labeled set
picks m NEW images and uses the labeled ones as its paper describes an initial labeled set; the
others refuse it before any work. Pools are built so that each effect can be checked by hand."""
from __future__ import annotations

import numpy as np
import pytest

from uslbench.catalog import SELECTORS
from uslbench.errors import UserError
from uslbench.selectors.base import SelectionContext, replace_duplicate_picks, duplicate_representatives


def blobs(sizes=(10, 8, 6), centres=((1.0, 1.0), (5.0, 0.0), (0.0, 5.0)), spread=0.05, seed=0) -> np.ndarray:
    """Tight 2-D blobs, far apart: blob 0 holds rows 0..9, blob 1 rows 10..17, blob 2 rows 18..23."""
    rng = np.random.default_rng(seed)
    parts = [np.asarray(c) + rng.uniform(-spread, spread, size=(n, 2)) for n, c in zip(sizes, centres)]
    return np.concatenate(parts).astype(np.float32)


def select(name: str, features: np.ndarray, budget: int, labeled, seed: int = 1, **config):
    selector = SELECTORS.create(name, **config)
    context = SelectionContext(pool_size=len(features), initial_labeled=None if labeled is None else np.asarray(labeled))
    return selector.select(features, budget, seed=seed, context=context)


def test_every_selector_declares_whether_it_takes_a_labeled_set():
    able = {n for n in SELECTORS.names() if SELECTORS.traits(n).uses_initial_labeled}
    assert able == {"random", "coreset", "probcover", "typiclust", "usl", "clip_usl"}


def test_random_draws_from_the_rest_only():
    features = blobs()
    selection = select("random", features, 3, labeled=range(21))  # 24 rows, 21 labeled: 3 left
    assert selection.indices.tolist() == [21, 22, 23] and selection.info["already_labeled"] == 21
    with pytest.raises(UserError, match="Budget 4 exceeds the 3 pool images that are not labeled yet"):
        select("random", features, 4, labeled=range(21))


def test_coreset_starts_farthest_first_from_the_labeled_set():
    line = np.stack([np.arange(1, 12, dtype=np.float32), np.ones(11, dtype=np.float32)], axis=1)  # x = 1..11
    selection = select("coreset", line, 2, labeled=[0])
    # from x = 1: x = 11 is farthest (10), then x = 6 (5 from both 1 and 11)
    assert selection.indices.tolist() == [10, 5]
    assert selection.per_pick["score"] == [10.0, 5.0]
    assert selection.info["first_center"] is None
    # labeled at both ends: the middle first
    assert select("coreset", line, 1, labeled=[0, 10]).indices.tolist() == [5]


def test_probcover_counts_the_labeled_balls_as_covered():
    features = blobs()
    cold = select("probcover", features, 2, labeled=None, delta=0.5)
    assert cold.indices.tolist() == [0, 10]  # the largest ball (10 points), then the next (8)
    assert cold.per_pick["score"] == [10.0, 8.0]
    second = select("probcover", features, 2, labeled=[3], delta=0.5)
    # blob 0 is covered by its labeled point: blob 1 (8 new points), then blob 2 (6)
    assert second.indices.tolist() == [10, 18]
    assert second.per_pick["score"] == [8.0, 6.0]
    assert second.info["coverage"] == 1.0 and second.info["picks_by_coverage"] == 2
    # saturated: the farthest-first fallback keeps away from the labeled points as well
    third = select("probcover", features, 3, labeled=[3, 12, 20], delta=0.5)
    assert third.info["picks_by_coverage"] == 0 and not set(third.indices.tolist()) & {3, 12, 20}


def test_typiclust_visits_clusters_without_labels_first():
    features = blobs()
    selection = select("typiclust", features, 2, labeled=[4], kmeans_iters=20)
    # K = 1 labeled + 2 = 3 clusters (the three blobs): blob 0 holds the label, so blobs 1 and 2 pick
    assert 10 <= selection.indices[0] <= 17 and 18 <= selection.indices[1] <= 23
    assert sorted(selection.per_pick["cluster_sizes"].values()) == [6, 8, 10]
    assert selection.info["clusters_with_labels"] == 1
    # three picks in the three blobs (max_clusters=3): the labeled blob comes last, without its labeled point
    three = select("typiclust", features, 3, labeled=[4], kmeans_iters=20, max_clusters=3)
    assert [i // 10 if i < 18 else 2 for i in three.indices.tolist()] == [1, 2, 0] and three.indices[2] != 4


def test_usl_counts_the_labeled_points_in_the_regulariser():
    # a dense blob (rows 0..9) and a loose one (rows 10..15); one K-Means cluster (m = 1)
    rng = np.random.default_rng(0)
    dense = np.array([1.0, 1.0]) + rng.uniform(-0.05, 0.05, size=(10, 2))
    loose = np.array([1.0, -1.0]) + rng.uniform(-0.4, 0.4, size=(6, 2))
    features = np.concatenate([dense, loose]).astype(np.float32)
    config = dict(knn_k=3, iters=2, lam=1000.0, m_reg=0.0, kmeans_iters=10)
    cold = select("usl", features, 1, labeled=None, **config)
    assert cold.indices[0] <= 9  # the densest point; its own cluster's pick never repels it
    second = select("usl", features, 1, labeled=[int(cold.indices[0])], **config)
    assert second.indices[0] >= 10  # the labeled point repels the whole dense blob
    # with one pass there is no regulariser: the labeled point only leaves the candidates
    one_pass = select("usl", features, 1, labeled=[int(cold.indices[0])], **{**config, "iters": 1})
    assert one_pass.indices[0] <= 9 and one_pass.indices[0] != cold.indices[0]


@pytest.mark.parametrize("name", ["usl_t", "stratified", "file"])
def test_selectors_that_cannot_use_a_labeled_set_refuse_it(name, tmp_path):
    selector = SELECTORS.create(name, **SELECTORS.get(name).test_overrides(tmp_path, pool_size=24, budget=3))
    with pytest.raises(UserError, match=f"Selector '{name}' cannot take an already-labeled set.*coreset"):
        selector.check_initial_labeled()
    context = SelectionContext(pool_size=24, labels=np.arange(24) % 3, labels_allowed=True,
                               initial_labeled=np.array([0]))
    with pytest.raises(UserError, match="cannot take an already-labeled set"):
        selector.select(blobs(), 3, seed=1, context=context)


@pytest.mark.parametrize("name", ["random", "coreset", "probcover", "typiclust", "usl"])
def test_m_new_picks_none_already_labeled_on_digits(name, digits_features):
    features = digits_features.train
    labeled = np.arange(0, len(features), 7)  # 193 of the 1,347 rows
    selection = select(name, features, 20, labeled=labeled, **({"kmeans_iters": 10} if name != "random" and
                                                                 name != "coreset" else {}))
    assert len(selection.indices) == 20 and len(set(selection.indices.tolist())) == 20
    assert not np.isin(selection.indices, labeled).any()


def test_duplicate_rule_never_picks_a_copy_of_a_labeled_row():
    features = np.array([[1, 0], [1, 0], [0, 1], [5, 5]], dtype=np.float32)  # row 1 copies row 0
    indices, replaced = replace_duplicate_picks(features, np.array([1, 2]), duplicate_representatives(features),
                                                fixed=np.array([0]))
    assert replaced == 1 and indices.tolist() == [2, 3]  # the copy goes, the farthest row (3) comes
