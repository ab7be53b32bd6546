"""USL's pieces against values computed by hand."""
from __future__ import annotations

import numpy as np
import pytest

from uslbench.errors import UserError
from uslbench.registry import SELECTORS
from uslbench.selectors.toolkit import kmeans, knn, per_group_argmax, row_blocks
from uslbench.selectors.usl import USLConfig, density_utility, regulariser, resolve_preset

from conftest import gaussian_mixture

LINE = np.array([[0.0], [1.0], [3.0], [6.0]], dtype=np.float32)


def test_density_counts_the_point_itself_and_uses_squared_distances():
    d2, idx, kind = knn(LINE, 2)
    assert kind == "flat"
    assert idx[:, 0].tolist() == [0, 1, 2, 3]  # self first
    mean_sq, utility = density_utility(d2)
    # neighbours (self + nearest): 0:{0,1} 1:{0,1} 2:{0,4} 3:{0,9}
    np.testing.assert_allclose(mean_sq, [0.5, 0.5, 2.0, 4.5])
    np.testing.assert_allclose(utility, [2.0, 2.0, 0.5, 1 / 4.5], rtol=1e-6)


SQUARE = np.array([[0, 0], [1, 0], [0, 2], [3, 0]], dtype=np.float32)
CLUSTERS = np.array([0, 0, 1, 2])
SELECTED = np.array([0, 2, 3])


def test_regulariser_sums_inverse_squared_distances_to_other_clusters():
    reg = regulariser(SQUARE, CLUSTERS, SELECTED, alpha=1.0)
    expected = [1 / 4 + 1 / 9, 1 / 5 + 1 / 4, 1 / 4 + 1 / 13, 1 / 9 + 1 / 13]
    np.testing.assert_allclose(reg, expected, rtol=1e-6)


def test_regulariser_alpha_nearest_and_horizon():
    np.testing.assert_allclose(regulariser(SQUARE, CLUSTERS, SELECTED, alpha=0.5)[1], 1 / np.sqrt(5) + 1 / 2, rtol=1e-6)
    # only the h nearest picks, the own cluster's pick taking one of the h slots (the reference's
    # horizon_num): with h = 1 every point's nearest pick is its own cluster's, so nothing counts
    np.testing.assert_allclose(regulariser(SQUARE, CLUSTERS, SELECTED, alpha=1.0, nearest=1), [0, 0, 0, 0])
    # h = 2: point 1's two nearest picks are (0, 0) (own cluster, d2 = 1) and (3, 0) at d2 = 4
    np.testing.assert_allclose(regulariser(SQUARE, CLUSTERS, SELECTED, alpha=1.0, nearest=2),
                               [1 / 4, 1 / 4, 1 / 4, 1 / 9], rtol=1e-6)
    # count_own_cluster (ImageNet-MoCo): only the point itself is excluded
    np.testing.assert_allclose(regulariser(SQUARE, CLUSTERS, SELECTED, alpha=1.0, count_own_cluster=True),
                               [1 / 4 + 1 / 9, 1 + 1 / 5 + 1 / 4, 1 / 4 + 1 / 13, 1 / 9 + 1 / 13], rtol=1e-6)
    np.testing.assert_allclose(regulariser(SQUARE, CLUSTERS, SELECTED, alpha=1.0, nearest=1, count_own_cluster=True),
                               [0, 1, 0, 0], rtol=1e-6)
    # horizon 4.5 on squared distance drops d2 = 5, 9, 13
    np.testing.assert_allclose(regulariser(SQUARE, CLUSTERS, SELECTED, alpha=1.0, horizon=4.5),
                               [1 / 4, 1 / 4, 1 / 4, 0.0], rtol=1e-6)


def test_regulariser_blockwise_equals_single_block():
    x = gaussian_mixture(500, 8)
    assign = np.arange(500) % 7
    selected = np.array([7, 15, 23, 31, 39, 47, 55])  # one per cluster (i % 7)
    full = regulariser(x, assign, selected, alpha=0.5, block_rows=10_000)
    np.testing.assert_allclose(regulariser(x, assign, selected, alpha=0.5, block_rows=33), full, rtol=1e-5)
    # the k-NN path with h = all picks but one: the own cluster's pick or the farthest one drops out
    d2 = ((x[:, None, :].astype(np.float64) - x[selected][None]) ** 2).sum(-1)
    keep = (np.argsort(np.argsort(d2, axis=1), axis=1) < 6) & (assign[selected][None, :] != assign[:, None])
    expected = np.where(keep, 1 / np.sqrt(np.maximum(d2, 1e-8)), 0).sum(1)
    np.testing.assert_allclose(regulariser(x, assign, selected, alpha=0.5, nearest=6, block_rows=33), expected,
                               rtol=1e-4)


def test_row_blocks_cover_the_last_short_block():
    assert list(row_blocks(10, 4)) == [(0, 4), (4, 8), (8, 10)]


def test_per_group_argmax_breaks_ties_by_lowest_index():
    scores = np.array([1.0, 3.0, 3.0, 0.5, 2.0])
    groups = np.array([0, 0, 0, 1, 1])
    ids, winners = per_group_argmax(scores, groups)
    assert ids.tolist() == [0, 1] and winners.tolist() == [1, 4]


def test_kmeans_is_seeded_and_never_nan():
    x = gaussian_mixture(400, 8)
    a, b = kmeans(x, 10, n_iter=20, seed=3), kmeans(x, 10, n_iter=20, seed=3)
    assert np.array_equal(a.assignments, b.assignments)
    assert np.isfinite(a.centroids).all() and a.sizes.sum() == 400
    # more clusters than distinct points: faiss handles it, no NaN centroid leaks out
    dup = np.repeat(x[:5], 20, axis=0)
    c = kmeans(dup, 8, n_iter=10, seed=0)
    assert np.isfinite(c.centroids).all() and c.nonempty <= 5


def test_usl_picks_one_per_cluster_and_fills_empty_clusters():
    x = np.repeat(gaussian_mixture(6, 8, clusters=6), 30, axis=0)  # only 6 distinct points
    x += np.random.default_rng(0).normal(scale=1e-3, size=x.shape).astype(np.float32)
    selection = SELECTORS.create("usl", knn_k=5).select(x, 12, seed=0)
    assert len(np.unique(selection.indices)) == 12
    assert selection.info["clusters_nonempty"] + selection.info["filled_from_empty_clusters"] >= 12


def test_usl_presets_resolve_from_dataset_and_scale():
    cifar10 = SELECTORS.resolve_config("usl", "cifar10")  # the data set names the row ...
    assert cifar10.preset == "cifar10" and resolve_preset(cifar10, 50_000, 400).knn_k == 400
    cifar100 = resolve_preset(SELECTORS.resolve_config("usl", "cifar100"), 50_000, 40)
    assert (cifar100.lam, cifar100.horizon, cifar100.alpha) == (1.0, 1.0, 1.0)
    assert resolve_preset(USLConfig(), 50_000, 40).preset == "cifar10"  # ... else "auto" goes by scale
    assert resolve_preset(USLConfig(), 50_000, 400).preset == "cifar100"
    imagenet = resolve_preset(USLConfig(), 1_281_167, 2911)
    assert (imagenet.preset, imagenet.knn_k, imagenet.reg_nearest, imagenet.iters) == ("imagenet_moco", 20, 128, 2)
    small = resolve_preset(SELECTORS.resolve_config("usl", "digits"), 1347, 40)
    assert small.preset == "small" and small.knn_k == 16 == 1347 // (2 * 40)  # scaled below 20,000 points
    assert resolve_preset(USLConfig(preset="cifar10", lam=2.0), 50_000, 40).lam == 2.0  # overrides win
    with pytest.raises(UserError, match="preset"):
        resolve_preset(USLConfig(preset="cifar1000"), 100, 5)
    assert SELECTORS.create("usl", dataset="cifar100").config.preset == "cifar100"


def test_usl_picks_denser_points_than_random_on_digits(digits_features):
    feats = digits_features.train
    selection = SELECTORS.create("usl").select(feats, 20, seed=1)
    assert selection.info["mean_knn_sq_dist_picks"] < selection.info["mean_knn_sq_dist_pool"]
    assert {"knn_density", "kmeans", "regularised_selection"} <= set(selection.seconds)


def test_a_damaged_density_cache_is_recomputed_not_used(tmp_path):
    """Derived caches next to the features carry a sha256 sidecar: one flipped byte in the cached
    USL density makes it recomputed (and rewritten), never read."""
    from uslbench.selectors.toolkit import KnnParams
    from uslbench.selectors.usl import cached_knn_density

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    stem = str(tmp_path / "feat")
    first, _, cached = cached_knn_density(x, 10, KnnParams(), 0, None, stem)
    assert not cached and (tmp_path / "feat.usl_density_k10.npy.sha256").is_file()
    again, _, cached = cached_knn_density(x, 10, KnnParams(), 0, None, stem)
    assert cached and np.array_equal(again, first)
    path = tmp_path / "feat.usl_density_k10.npy"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    repaired, _, cached = cached_knn_density(x, 10, KnnParams(), 0, None, stem)
    assert not cached and np.array_equal(repaired, first)
