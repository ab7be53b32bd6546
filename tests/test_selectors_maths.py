"""Hand-checked small cases for the selectors' maths."""
from __future__ import annotations

import numpy as np
import pytest

from uslbench.catalog import SELECTORS
from uslbench.selectors.probcover import greedy_max_coverage, purity_delta
from uslbench.selectors.toolkit import (FarthestFirst, KnnParams, kmeans, knn, knn_excluding_self,
                                        nearest_other_group_sq_dist, per_group_argmax, range_graph, row_blocks)
from uslbench.selectors.typiclust import typicality
from uslbench.selectors.usl import density_utility, regulariser
from uslbench.selectors.usl_t import pick_per_cluster


# four points: (1,0) (2,0) (4,0) (1,3); squared distances 0-1: 1, 1-2: 4, 0-2: 9, 0-3: 9, 1-3: 10, 2-3: 18
POINTS = np.array([[1, 0], [2, 0], [4, 0], [1, 3]], dtype=np.float32)


def test_row_blocks_cover_every_row():
    assert list(row_blocks(10, 4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(row_blocks(8, 4)) == [(0, 4), (4, 8)]


def test_usl_density_by_hand():
    d2, idx, kind = knn(POINTS, 2)  # self + nearest other, squared L2
    assert kind == "flat"
    mean_sq, utility = density_utility(d2)
    # (0 + 1) / 2, (0 + 1) / 2, (0 + 4) / 2, (0 + 9) / 2
    np.testing.assert_allclose(mean_sq, [0.5, 0.5, 2.0, 4.5], rtol=1e-6)
    np.testing.assert_allclose(utility, [2.0, 2.0, 0.5, 2 / 9], rtol=1e-6)


def test_usl_regulariser_by_hand():
    clusters = np.array([0, 0, 1, 1])
    selected = np.array([0, 2])  # (1,0) for cluster 0, (4,0) for cluster 1
    # alpha 0.5 on squared distances: 1 / Euclidean distance to the other cluster's pick
    expected = [1 / 3, 1 / 2, 1 / 3, 1 / 3]  # 0-2: 3, 1-2: 2, 2-0: 3, 3-0: 3
    np.testing.assert_allclose(regulariser(POINTS, clusters, selected, alpha=0.5), expected, rtol=1e-6)
    # the k-NN path over the selected points (ImageNet presets): with h = 2 (every pick) the same
    # sums; with h = 1 only the nearest pick, which counts unless it is the own cluster's (only
    # (1,3), whose nearest pick (1,0) lies in the other cluster, keeps a term)
    np.testing.assert_allclose(regulariser(POINTS, clusters, selected, alpha=0.5, nearest=2), expected, rtol=1e-6)
    np.testing.assert_allclose(regulariser(POINTS, clusters, selected, alpha=0.5, nearest=1), [0, 0, 0, 1 / 3],
                               rtol=1e-6)
    # horizon: only squared distances below 5 count (just 1-2, squared distance 4)
    np.testing.assert_allclose(regulariser(POINTS, clusters, selected, alpha=0.5, horizon=5.0), [0, 0.5, 0, 0],
                               rtol=1e-6)
    # alpha 1 on squared distances: 1 / squared distance
    np.testing.assert_allclose(regulariser(POINTS, clusters, selected, alpha=1.0), [1 / 9, 1 / 4, 1 / 9, 1 / 9],
                               rtol=1e-6)


def test_usl_regularised_pick_moves_away_from_other_picks():
    clusters = np.array([0, 0, 1, 1])
    utility = np.array([2.0, 2.2, 0.5, 2 / 9])
    _, picks = per_group_argmax(utility, clusters)
    assert picks.tolist() == [1, 2]  # pass 0: argmax U per cluster
    reg = regulariser(POINTS, clusters, picks, alpha=0.5)
    np.testing.assert_allclose(reg, [1 / 3, 1 / 2, 1 / 2, 1 / np.sqrt(10)], rtol=1e-6)
    # lambda 2: cluster 0: 2 - 2/3 = 1.33 > 2.2 - 1 = 1.2; cluster 1: 2/9 - 2/sqrt(10) = -0.41 > 0.5 - 1 = -0.5
    _, picks = per_group_argmax(utility - 2.0 * reg, clusters)
    assert picks.tolist() == [0, 3]


def test_usl_selector_with_more_clusters_than_budget_and_one_more():
    # the reference crashes when the cluster count differs from m (m = 2,500, K = 2,501)
    from selector_helpers import mixture

    features = mixture(200, 8, 5)
    for n_clusters in (13, 11):
        selection = SELECTORS.create("usl", n_clusters=n_clusters).select(features, 10, seed=1)
        assert len(set(selection.indices.tolist())) == 10
        assert selection.info["clusters_requested"] == n_clusters


def test_typicality_by_hand():
    # nearest other squared distances: 1, 1, 4, 9 -> 1 / (d + 1e-5)
    np.testing.assert_allclose(typicality(POINTS, 1), 1 / (np.array([1, 1, 4, 9]) + 1e-5), rtol=1e-6)
    # k = 2: (1 + 9) / 2, (1 + 4) / 2, (4 + 9) / 2, (9 + 10) / 2
    np.testing.assert_allclose(typicality(POINTS, 2), 1 / (np.array([5, 2.5, 6.5, 9.5]) + 1e-5), rtol=1e-6)


def _brute_typical(points: np.ndarray, k: int) -> int:
    d2 = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    return int(np.argmax(1 / (np.sort(d2, axis=1)[:, :k].mean(1) + 1e-5)))


def test_typiclust_picks_the_most_typical_member_of_each_cluster_largest_first():
    rng = np.random.default_rng(0)
    big = np.array([10.0, 0.0]) + rng.normal(0, 1, (12, 2))
    small = np.array([-10.0, 5.0]) + rng.normal(0, 1, (8, 2))
    features = np.vstack([big, small]).astype(np.float32)
    # k = min(20, members // 2): 6 in the big cluster, 4 in the small one
    first, second = _brute_typical(big, 6), 12 + _brute_typical(small, 4)
    selection = SELECTORS.create("typiclust").select(features, 2, seed=1)
    assert selection.indices.tolist() == [first, second]  # big cluster first
    assert selection.info["knn_k_used"] == [4, 6]  # the k of 20 asked for is recorded as used: 6 and 4
    # budget 3 wraps around to the big cluster: its most typical member among the 11 left (k = 5)
    rest = np.delete(np.arange(12), first)
    third = int(rest[_brute_typical(big[rest], 5)])
    wrapped = SELECTORS.create("typiclust", max_clusters=2).select(features, 3, seed=1)
    assert wrapped.indices.tolist() == [first, second, third]
    assert wrapped.info["knn_k_used"] == [4, 6]  # 6, 4, then 5


def test_coreset_on_a_line():
    # x = 0, 1, 2, 3, 10 (second coordinate 1 so no row is zero)
    features = np.array([[x, 1.0] for x in (0, 1, 2, 3, 10)], dtype=np.float32)
    selection = SELECTORS.create("coreset").select(features, 3, seed=1)
    first = selection.info["first_center"]
    assert selection.indices[0] == first
    # brute force k-center greedy from the same first center
    chosen = [first]
    for _ in range(2):
        dist = np.min(np.abs(features[:, :1] - features[chosen, 0][None, :]), axis=1)
        dist[chosen] = -1
        chosen.append(int(np.argmax(dist)))
    assert selection.indices.tolist() == chosen
    assert 4 in chosen  # the far end is always taken by the second or third pick


def test_farthest_first_never_repeats_on_duplicates():
    features = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    state = FarthestFirst(features)
    state.add(0)
    picks = [0]
    for _ in range(3):
        picks.append(state.next())
        state.add(picks[-1])
    assert sorted(picks) == [0, 1, 2, 3]


def test_probcover_greedy_on_a_toy_graph():
    # 0 covers {0,1,2}; 1 covers {0,1}; 2 covers {0,2,3}; 3 covers {2,3,4}; 4 covers {3,4}
    rows = [[0, 1, 2], [1, 0], [2, 0, 3], [3, 2, 4], [4, 3]]
    offsets = np.cumsum([0] + [len(r) for r in rows])
    targets = np.array([t for r in rows for t in r], dtype=np.int32)
    picks, covered, gains = greedy_max_coverage(offsets, targets, budget=4)
    # degrees 3,2,3,3,2 -> 0 (lowest index); then gains 1:0, 2:1, 3:2, 4:2 -> 3; all covered -> stop
    assert picks == [0, 3] and gains == [3, 2] and covered.all()


def test_range_graph_includes_the_last_partial_block():
    features = np.array([[x, 1.0] for x in range(10)], dtype=np.float32)
    offsets, targets, _ = range_graph(features, 1.5 ** 2, block_rows=3)  # 10 rows in blocks of 3: 3,3,3,1
    degrees = np.diff(offsets)
    assert degrees.tolist() == [2] + [3] * 8 + [2]
    assert sorted(targets[offsets[9]:offsets[10]].tolist()) == [8, 9]


def test_purity_delta_by_hand():
    # nearest other-label distances of 4 points; purity 0.75 needs 3 of 4 distances >= delta
    assert purity_delta(np.array([0.4, 0.1, 0.3, 0.2]), 0.75) == pytest.approx(0.2)
    assert purity_delta(np.array([0.4, 0.1, 0.3, 0.2]), 1.0) == pytest.approx(0.1)
    labels = np.array([0, 0, 1, 1])
    np.testing.assert_allclose(nearest_other_group_sq_dist(POINTS, labels, np.arange(4)), [9, 4, 4, 9])


def test_probcover_saturation_falls_back_without_duplicates():
    features = np.array([[x, 1.0] for x in range(8)], dtype=np.float32)
    selection = SELECTORS.create("probcover", delta=100.0).select(features, 5, seed=1)
    assert selection.info["coverage"] == 1.0
    assert selection.info["picks_by_coverage"] == 1 and selection.info["picks_by_farthest_first"] == 4
    assert len(set(selection.indices.tolist())) == 5


def test_probcover_coverage_on_two_clumps():
    features = np.array([[0, 1], [0.1, 1], [0.2, 1], [5, 1], [5.1, 1]], dtype=np.float32)
    selection = SELECTORS.create("probcover", delta=0.15).select(features, 2, seed=1)
    # balls of radius 0.15: 1 covers {0,1,2} (degree 3), then 3 covers {3,4}
    assert selection.indices.tolist() == [1, 3] and selection.info["coverage"] == 1.0


def test_knn_excluding_self_with_duplicates():
    features = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    d2, idx, _ = knn_excluding_self(features, 1)
    assert idx[:, 0].tolist() == [1, 0, 0] or idx[:, 0].tolist() == [1, 0, 1]
    assert (idx[:, 0] != np.arange(3)).all()


def test_approximate_index_is_used_above_the_threshold_and_finds_neighbours():
    from selector_helpers import mixture

    features = mixture(3000, 16, 5)
    exact_d2, exact_idx, kind = knn(features, 5)
    approx_d2, approx_idx, approx_kind = knn(features, 5, KnnParams(exact_max=1000, ivf_nprobe=16), seed=1)
    assert kind == "flat" and approx_kind.startswith("ivf")
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(exact_idx, approx_idx)])
    assert recall > 0.9
    hnsw = knn(features, 5, KnnParams(exact_max=1000, approximate="hnsw"))[2]
    assert hnsw.startswith("hnsw")


def test_kmeans_is_seeded_and_never_nan():
    from selector_helpers import mixture

    features = mixture(500, 8, 4)
    a, b = kmeans(features, 7, seed=3), kmeans(features, 7, seed=3)
    assert np.array_equal(a.assignments, b.assignments) and np.isfinite(a.centroids).all()
    # more clusters than distinct points: empty clusters are reported, never NaN
    dup = np.repeat(features[:5], 10, axis=0)
    result = kmeans(dup, 8, seed=0)
    assert np.isfinite(result.centroids).all() and result.nonempty <= 5


def test_usl_t_pick_per_cluster_handles_empty_and_extra_clusters():
    clusters = np.array([0, 0, 2, 2, 2, 5])
    confidence = np.array([0.9, 0.8, 0.5, 0.7, 0.6, 0.95])
    picks, filled = pick_per_cluster(clusters, confidence, 5)  # only 3 non-empty clusters
    assert picks[:3].tolist() == [0, 3, 5] and filled == 2 and picks[3:].tolist() == [1, 4]
    picks, filled = pick_per_cluster(clusters, confidence, 2)  # keep the two largest clusters' picks
    assert sorted(picks.tolist()) == [0, 3] and filled == 0


def test_exact_range_graph_matches_faiss_and_float64():
    """The blockwise GEMM graph (CSR, every row's own centre included) against a faiss flat range
    search, several row blocks and 2 threads: the same edges, except pairs within float32
    rounding of the radius."""
    import faiss

    rng = np.random.default_rng(3)
    features = rng.standard_normal((900, 12)).astype(np.float32)
    radius_sq = 9.0
    offsets, targets, kind = range_graph(features, radius_sq, block_rows=128, workers=2)
    assert kind.startswith("exact") and offsets[0] == 0 and offsets[-1] == len(targets)
    index = faiss.IndexFlatL2(12)
    index.add(features)
    lims, _, ids = index.range_search(features, radius_sq)
    x64 = features.astype(np.float64)
    for i in range(900):
        ours = set(targets[offsets[i]:offsets[i + 1]].tolist())
        theirs = set(ids[lims[i]:lims[i + 1]].tolist())
        assert i in ours
        for j in ours ^ theirs:
            assert abs(((x64[i] - x64[j]) ** 2).sum() - radius_sq) < 1e-4
    assert abs(int(offsets[-1]) - int(lims[-1])) <= 4
