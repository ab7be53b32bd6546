"""Shared numerical toolkit for selectors: k-NN, K-Means, range search, blockwise distances.

Everything here goes through faiss and works in row blocks, so nothing allocates N x N or
N x m x d. Distances are SQUARED L2 unless a name says otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import faiss
import numpy as np

from ..utils import progress_disabled


@dataclass
class KnnParams:
    """How k-NN is computed: exact (flat) up to `exact_max` points, approximate above it."""

    exact_max: int = 200_000
    approximate: str = "ivf"      # "ivf" or "hnsw"
    ivf_nlist: int | None = None   # default: about 4 * sqrt(N)
    ivf_nprobe: int = 16
    hnsw_m: int = 32
    hnsw_ef_search: int = 64
    block_rows: int = 16_384


def row_blocks(n: int, block: int) -> Iterator[tuple[int, int]]:
    """(start, stop) pairs covering 0..n, the last block included even when shorter."""
    for start in range(0, n, block):
        yield start, min(n, start + block)


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
    nlist = params.ivf_nlist or int(4 * np.sqrt(n))
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist)
    rng = np.random.default_rng(seed)
    train = features[rng.choice(n, size=min(n, 64 * nlist), replace=False)]
    index.cp.seed = seed
    index.train(train)
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
    np.maximum(dists, 0, out=dists)
    return dists, labels, kind


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
           max_points_per_centroid: int = 256, spherical: bool = False) -> KMeansResult:
    """Seeded faiss K-Means (Lloyd, random data points as initial centroids, one init).

    faiss re-seeds a centroid that becomes empty during training by splitting a large cluster,
    so no NaN centroid can appear; clusters still empty after the final assignment are reported
    through `sizes` (callers drop them or fill the budget elsewhere).
    """
    features = _as_f32(features)
    n, d = features.shape
    n_clusters = int(min(n_clusters, n))
    km = faiss.Kmeans(d, n_clusters, niter=n_iter, seed=int(seed) % (2**31 - 1), verbose=False,
                      spherical=spherical, max_points_per_centroid=max_points_per_centroid,
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
