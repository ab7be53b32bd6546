"""Shared numerical toolkit for selectors: k-NN, K-Means, range search, blockwise distances.

Everything here goes through faiss and works in row blocks, so nothing allocates N x N or
N x m x d. Distances are SQUARED L2 unless a name says otherwise.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import faiss
import numpy as np

from ..utils import progress_disabled


@dataclass
class KnnParams:
    """How k-NN is computed: exact (flat) up to `exact_max` points, approximate above it.

    IVF: `ivf_nlist` inverted lists (default round(3.6 * sqrt(N))), trained with `ivf_train_iters`
    Lloyd iterations on `ivf_train_per_list` seeded sample points per list; `ivf_nprobe` lists
    scanned per query. HNSW: `hnsw_m` links per node, `hnsw_ef_search` candidates per query.
    """

    exact_max: int = 200_000
    approximate: str = "ivf"      # "ivf" or "hnsw"
    ivf_nlist: int | None = None   # default: about 3.6 * sqrt(N) (4,096 lists at N = 1.28M)
    ivf_nprobe: int = 8
    ivf_train_per_list: int = 16
    ivf_train_iters: int = 10
    hnsw_m: int = 32
    hnsw_ef_search: int = 64
    block_rows: int = 16_384


def default_workers() -> int:
    """Threads for the blockwise GEMM loops: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return int(max(1, min(cpus, 8)))


def row_blocks(n: int, block: int, start: int = 0) -> Iterator[tuple[int, int]]:
    """(start, stop) pairs covering start..n, the last block included even when shorter."""
    for lo in range(start, n, block):
        yield lo, min(n, lo + block)


def distance_factors(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Factors whose product is the squared-distance matrix: left = [x, |x|^2, 1] and
    right = [-2x, 1, |x|^2] (float32, (N, d + 2)), so `left[rows] @ right[cols].T` gives
    |x_i|^2 + |x_j|^2 - 2 x_i.x_j in one GEMM. The features are centred first: distances do not
    change under translation, and a large shared offset would otherwise cancel catastrophically."""
    x = np.ascontiguousarray(features - features.mean(axis=0, dtype=np.float64), dtype=np.float32)
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64).astype(np.float32)[:, None]
    ones = np.ones_like(sq)
    return np.hstack([x, sq, ones]), np.hstack([-2.0 * x, ones, sq])


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def build_index(features: np.ndarray, params: KnnParams, seed: int = 0) -> tuple[faiss.Index, str]:
    features = _as_f32(features)
    n, d = features.shape
    if n <= params.exact_max:
        index = faiss.IndexFlatL2(d)
        index.add(features)
        return index, "flat"
    if params.approximate == "hnsw":
        index = faiss.IndexHNSWFlat(d, params.hnsw_m)
        index.hnsw.efSearch = params.hnsw_ef_search
        index.add(features)
        return index, f"hnsw(M={params.hnsw_m},ef={params.hnsw_ef_search})"
    if params.approximate != "ivf":
        raise ValueError(f"unknown approximate index {params.approximate!r} (ivf or hnsw)")
    nlist = int(params.ivf_nlist or max(1, round(3.6 * np.sqrt(n))))
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, params.ivf_train_per_list * nlist), replace=False))
    index.cp.seed = int(seed) % (2**31 - 1)
    index.cp.max_points_per_centroid = max(params.ivf_train_per_list, 1)
    index.cp.niter = params.ivf_train_iters
    index.cp.min_points_per_centroid = 1  # a deliberate small sample: no faiss warning
    index.train(features[sample])
    index.add(features)
    index.nprobe = params.ivf_nprobe
    return index, f"ivf(nlist={nlist},nprobe={params.ivf_nprobe})"


def knn(features: np.ndarray, k: int, params: KnnParams | None = None, queries: np.ndarray | None = None,
        seed: int = 0, desc: str = "k-NN") -> tuple[np.ndarray, np.ndarray, str]:
    """k nearest neighbours (squared L2) of `queries` (default: the features themselves, which
    then count themselves as their first neighbour). Returns (sq_dists, indices, index_kind)."""
    from tqdm.auto import tqdm

    params = params or KnnParams()
    features = _as_f32(features)
    queries = features if queries is None else _as_f32(queries)
    k = min(k, features.shape[0])
    index, kind = build_index(features, params, seed)
    dists = np.empty((len(queries), k), dtype=np.float32)
    labels = np.empty((len(queries), k), dtype=np.int64)
    blocks = list(row_blocks(len(queries), params.block_rows))
    for start, stop in tqdm(blocks, desc=desc, disable=progress_disabled() or len(blocks) < 4, leave=False):
        dists[start:stop], labels[start:stop] = index.search(queries[start:stop], k)
    missing = np.flatnonzero((labels < 0).any(axis=1))
    if len(missing) and hasattr(index, "nprobe"):
        # the probed inverted lists held fewer than k points: search those rows exhaustively
        index.nprobe = index.nlist
        dists[missing], labels[missing] = index.search(queries[missing], k)
    np.maximum(dists, 0, out=dists)
    return dists, labels, kind


def knn_excluding_self(features: np.ndarray, k: int, params: KnnParams | None = None, seed: int = 0,
                       desc: str = "k-NN") -> tuple[np.ndarray, np.ndarray, str]:
    """k nearest OTHER points of every row. The row itself is removed even when exact duplicates
    tie with it at distance 0; when it is absent from the results (approximate index) the last
    column goes instead."""
    n = features.shape[0]
    k = min(k, n - 1)
    d2, idx, kind = knn(features, k + 1, params, seed=seed, desc=desc)
    is_self = idx == np.arange(n)[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    return d2[keep].reshape(n, k), idx[keep].reshape(n, k), kind


@dataclass
class KMeansResult:
    centroids: np.ndarray   # (K, d)
    assignments: np.ndarray  # (N,) int64 in [0, K)
    sizes: np.ndarray       # (K,) members per cluster
    objective: float

    @property
    def nonempty(self) -> int:
        return int((self.sizes > 0).sum())


def kmeans(features: np.ndarray, n_clusters: int, n_iter: int = 100, seed: int = 0,
           max_points_per_centroid: int = 0, spherical: bool = False) -> KMeansResult:
    """Seeded faiss K-Means (Lloyd, random data points as initial centroids, one init).

    `max_points_per_centroid` > 0 trains on a seeded sample of that many points per cluster
    (the ImageNet presets use it: Lloyd on all 1.28M points is far too slow on a CPU); every
    point is then assigned to its nearest final centroid. 0 trains on all points.

    faiss re-seeds a centroid that becomes empty during training by splitting a large cluster,
    so no NaN centroid can appear; clusters still empty after the final assignment are reported
    through `sizes` (callers drop them or fill the budget elsewhere).
    """
    features = _as_f32(features)
    n, d = features.shape
    n_clusters = int(min(n_clusters, n))
    points_per_centroid = max_points_per_centroid if max_points_per_centroid > 0 else -(-n // n_clusters)
    km = faiss.Kmeans(d, n_clusters, niter=n_iter, seed=int(seed) % (2**31 - 1), verbose=False,
                      spherical=spherical, max_points_per_centroid=points_per_centroid,
                      min_points_per_centroid=1)
    km.train(features)
    centroids = km.centroids.copy()
    if not np.isfinite(centroids).all():  # defensive: never let a NaN centroid through
        raise FloatingPointError("K-Means produced non-finite centroids")
    index = faiss.IndexFlatL2(d)
    index.add(centroids)
    assignments = np.empty(n, dtype=np.int64)
    objective = 0.0
    for start, stop in row_blocks(n, 65_536):
        dist, lab = index.search(features[start:stop], 1)
        assignments[start:stop] = lab[:, 0]
        objective += float(dist.sum())
    sizes = np.bincount(assignments, minlength=n_clusters)
    return KMeansResult(centroids, assignments, sizes, objective)


def per_group_argmax(scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each distinct group id, the index of its highest score (ties: lowest index).
    Returns (group_ids, winner_indices), both sorted by group id."""
    order = np.lexsort((np.arange(len(scores)), -scores, groups))
    sorted_groups = groups[order]
    first = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    return sorted_groups[first], order[first]


def sq_dists_to(features_block: np.ndarray, points: np.ndarray, points_sq_norm: np.ndarray | None = None) -> np.ndarray:
    """Squared L2 distances between a block of rows (B, d) and points (P, d): a (B, P) matrix."""
    if points_sq_norm is None:
        points_sq_norm = (points.astype(np.float32) ** 2).sum(1)
    block_sq = (features_block ** 2).sum(1)
    d2 = block_sq[:, None] + points_sq_norm[None, :] - 2.0 * (features_block @ points.T)
    return np.maximum(d2, 0.0, out=d2)


def rows_per_block(n_columns: int, max_entries: int = 1 << 25) -> int:
    """Rows of a (rows x n_columns) float32 block holding at most `max_entries` (128 MB)."""
    return int(max(1, min(n_columns, max_entries // max(1, n_columns))))


def range_graph(features: np.ndarray, radius_sq: float, params: KnnParams | None = None, seed: int = 0,
                block_rows: int | None = None, desc: str = "range search",
                workers: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Directed graph i -> j for every j with squared distance < radius_sq (i -> i included), in
    CSR form: `offsets` (N + 1, int64) and `targets` (int32); the out-neighbours of i are
    targets[offsets[i]:offsets[i + 1]]. Row blocks cover every row (the last, shorter one too).

    Up to `params.exact_max` points the graph is exact and built here: one GEMM per row block on
    `distance_factors` (the squared distances directly, from centred features), a
    threshold, and the row-major nonzeros are already in CSR order. Blocks run on `workers`
    threads with one BLAS thread each (about twice as fast as a faiss flat range search here).
    Above exact_max: a faiss range search over the approximate index."""
    from tqdm.auto import tqdm

    params = params or KnnParams()
    features = _as_f32(features)
    n = features.shape[0]
    if n <= params.exact_max:
        return (*_exact_range_graph(features, float(radius_sq), block_rows or rows_per_block(n), workers, desc),
                "exact (blockwise GEMM)")
    index, kind = build_index(features, params, seed)
    if hasattr(index, "nprobe"):
        index.nprobe = params.ivf_nprobe
    # large blocks: faiss range search has a high per-call cost (335-row blocks ran 4x slower than 4,096)
    block_rows = block_rows or 4096
    offsets = np.zeros(n + 1, dtype=np.int64)
    chunks = []
    blocks = list(row_blocks(n, block_rows))
    for start, stop in tqdm(blocks, desc=desc, disable=progress_disabled() or len(blocks) < 8, leave=False):
        lims, _, targets = index.range_search(features[start:stop], float(radius_sq))
        chunks.append(targets.astype(np.int32))
        offsets[start + 1:stop + 1] = offsets[start] + lims[1:]
    targets = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    return offsets, targets, kind


def _exact_range_graph(features: np.ndarray, radius_sq: float, block_rows: int, workers: int | None,
                       desc: str) -> tuple[np.ndarray, np.ndarray]:
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    n = features.shape[0]
    left, right = distance_factors(features)

    def block(span: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        start, stop = span
        dist = left[start:stop] @ right.T
        np.fill_diagonal(dist[:, start:stop], 0.0)  # every ball holds its own centre
        flat = np.flatnonzero(dist < radius_sq)
        rows = flat // n
        return np.bincount(rows, minlength=stop - start), (flat - rows * n).astype(np.int32)

    blocks = list(row_blocks(n, block_rows))
    with threadpool_limits(1), ThreadPoolExecutor(workers or default_workers()) as pool:
        results = list(tqdm(pool.map(block, blocks), total=len(blocks), desc=desc, leave=False,
                            disable=progress_disabled() or len(blocks) < 8))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.concatenate([counts for counts, _ in results]), out=offsets[1:])
    targets = np.concatenate([t for _, t in results]) if results else np.zeros(0, dtype=np.int32)
    return offsets, targets


def nearest_other_group_sq_dist(features: np.ndarray, groups: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each row r in `rows`: squared L2 distance from r to the nearest point of another group
    (inf when every point shares r's group). Exact, blockwise over all N points; the columns are
    ordered by group so a row's own group is one contiguous slice to mask."""
    features = _as_f32(features)
    n = features.shape[0]
    order = np.argsort(groups, kind="stable")
    sorted_features = features[order]
    sorted_groups = groups[order]
    sq_norm = (sorted_features ** 2).sum(1)
    bounds = {int(g): (int(a), int(b)) for g, a, b in zip(*_group_ranges(sorted_groups))}
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty(len(rows), dtype=np.float32)
    for start, stop in row_blocks(len(rows), rows_per_block(n)):
        block = rows[start:stop]
        d2 = sq_dists_to(features[block], sorted_features, sq_norm)
        block_groups = groups[block]
        for g in np.unique(block_groups):
            lo, hi = bounds[int(g)]
            d2[np.flatnonzero(block_groups == g), lo:hi] = np.inf
        out[start:stop] = d2.min(axis=1)
    return out


def _group_ranges(sorted_groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    stops = np.r_[starts[1:], len(sorted_groups)]
    return sorted_groups[starts], starts, stops


class FarthestFirst:
    """k-center greedy state: the squared distance of every point to its nearest chosen center,
    O(N) memory. `add(i)` makes i a center; `next()` is the unchosen point farthest from all
    centers (ties: lowest index)."""

    def __init__(self, features: np.ndarray) -> None:
        self.features = _as_f32(features)
        self.sq_norm = (self.features ** 2).sum(1)
        self.min_sq = np.full(self.features.shape[0], np.inf, dtype=np.float32)
        self.chosen = np.zeros(self.features.shape[0], dtype=bool)

    def add(self, index: int) -> None:
        d2 = self.sq_norm + self.sq_norm[index] - 2.0 * (self.features @ self.features[index])
        np.maximum(d2, 0.0, out=d2)
        np.minimum(self.min_sq, d2, out=self.min_sq)
        self.chosen[index] = True
        self.min_sq[index] = -1.0  # never chosen again, even when every distance left is 0

    def add_many(self, indices: np.ndarray) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        for start, stop in row_blocks(len(indices), rows_per_block(self.features.shape[0])):
            d2 = sq_dists_to(self.features, self.features[indices[start:stop]], self.sq_norm[indices[start:stop]])
            np.minimum(self.min_sq, d2.min(axis=1), out=self.min_sq)
        self.chosen[indices] = True
        self.min_sq[indices] = -1.0

    def next(self) -> int:
        return int(np.argmax(self.min_sq))
