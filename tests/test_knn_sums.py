"""The exact blockwise k-NN sums behind the USL density: equal to faiss.knn, deterministic."""
import faiss
import numpy as np
import pytest

from uslbench.perf.selectors import gaussian_mixture
from uslbench.selectors.knn_sums import knn_sq_dist_sums, plan_blocks


def faiss_sums(x: np.ndarray, k: int) -> np.ndarray:
    d2, _ = faiss.knn(np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(x, dtype=np.float32), k)
    return np.maximum(d2, 0).sum(1, dtype=np.float64)


@pytest.mark.parametrize("n, k, block_rows, clusters", [
    (3_001, 25, 400, 6),     # many blocks (small cells merged, large ones split), a ragged last one
    (2_500, 60, 240, 1),     # one blob: every pair has many candidates
    (1_200, 7, 6_000, 4),    # a single block: the diagonal alone
    (3_000, 200, 800, 3),    # k large against the block size
])
def test_equals_faiss_knn(n, k, block_rows, clusters):
    x = gaussian_mixture(n, 32, clusters, seed=n)
    stats: dict = {}
    ours = knn_sq_dist_sums(x, k, block_rows=block_rows, chunk_rows=128, seed=3, stats=stats)
    np.testing.assert_allclose(ours, faiss_sums(x, k), rtol=2e-5, atol=1e-5)
    assert stats["candidates_per_row"] >= k


def test_unnormalised_features_and_duplicates():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((1_500, 16)) * 3 + 5).astype(np.float32)
    x[:300] = x[0]        # 300 copies of one point: its 50 nearest are at distance 0
    x[300:320] = x[300]
    ours = knn_sq_dist_sums(x, 50, block_rows=200, chunk_rows=64)
    np.testing.assert_allclose(ours, faiss_sums(x, 50), rtol=1e-5, atol=1e-3)
    assert np.all(ours[:300] == 0.0)


def test_k_equal_to_n_and_k_one():
    x = gaussian_mixture(300, 8, 2, seed=1)
    full = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(knn_sq_dist_sums(x, 300, block_rows=100), full.sum(1), rtol=1e-5)
    assert np.allclose(knn_sq_dist_sums(x, 1, block_rows=50), 0.0, atol=1e-5)  # only the point itself


def test_bitwise_deterministic_for_any_worker_count():
    x = gaussian_mixture(4_000, 24, 5, seed=2)
    one = knn_sq_dist_sums(x, 40, block_rows=300, chunk_rows=100, workers=1, seed=7)
    two = knn_sq_dist_sums(x, 40, block_rows=300, chunk_rows=100, workers=2, seed=7)
    three = knn_sq_dist_sums(x, 40, block_rows=300, chunk_rows=100, workers=3, seed=7)
    assert one.tobytes() == two.tobytes() == three.tobytes()


def test_plan_blocks_cover_every_row_with_at_least_k_rows():
    rng = np.random.default_rng(0)
    cells = rng.choice(12, size=5_003, p=np.r_[[0.3, 0.2], np.full(10, 0.05)])  # two big cells, ten small
    order, blocks = plan_blocks(cells, k=50, block_rows=600)
    assert sorted(order.tolist()) == list(range(5_003))
    assert np.all(np.diff(cells[order]) >= 0)
    assert blocks[0][0] == 0 and blocks[-1][1] == 5_003
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    sizes = [stop - start for start, stop in blocks]
    assert min(sizes) >= 2 * 50 and max(sizes) <= 1.5 * 600 + 2 * 50


def test_structureless_features_merge_candidates_and_stay_exact():
    """Isotropic features (no clusters): the in-block bounds are loose, so candidates pile up and
    are merged into the running k smallest (bounded memory) - still exact and deterministic."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3_000, 48)).astype(np.float32)
    stats: dict = {}
    ours = knn_sq_dist_sums(x, 25, block_rows=100, chunk_rows=64, stats=stats, workers=2)
    assert stats["merges"] > 0
    np.testing.assert_allclose(ours, faiss_sums(x, 25), rtol=2e-5)
    again = knn_sq_dist_sums(x, 25, block_rows=100, chunk_rows=64, workers=1)
    assert ours.tobytes() == again.tobytes()


def test_large_common_offset_does_not_cancel():
    """Features sharing a large offset (|x|^2 ~ 1.6e5 against distances ~ 0.5): the sums are
    centred first, so they match a float64 brute force where the expanded float32 formula
    |x|^2 + |y|^2 - 2 x.y would lose every digit."""
    x = (gaussian_mixture(1_500, 64, 3, seed=1) + 50).astype(np.float32)
    x64 = x.astype(np.float64)
    d2 = ((x64[:, None, :] - x64[None, :, :]) ** 2).sum(-1)
    expected = np.sort(d2, axis=1)[:, :40].sum(1)
    np.testing.assert_allclose(knn_sq_dist_sums(x, 40, block_rows=200, chunk_rows=64), expected, rtol=1e-5)
