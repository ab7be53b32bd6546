"""TypiClust (Hacohen, Dekel, Weinshall, ICML 2022): the most typical point of each large cluster."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config_ranges import NON_NEGATIVE, POSITIVE_INT, field_ranges
from ..registry import SELECTORS
from .base import Selector
from .toolkit import KnnParams, kmeans, knn_excluding_self


@field_ranges(max_clusters=POSITIVE_INT, min_cluster_size=NON_NEGATIVE, knn_k=POSITIVE_INT, kmeans_iters=POSITIVE_INT,
              kmeans_points_per_cluster=NON_NEGATIVE)
@dataclass
class TypiClustConfig:
    max_clusters: int = field(default=500, metadata={"help": "K = min(budget, max_clusters)"})
    min_cluster_size: int = field(default=5, metadata={"help": "clusters with at most this many members are dropped"})
    knn_k: int = field(default=20, metadata={"help": "typicality neighbours: min(knn_k, members // 2)"})
    kmeans_iters: int = 100
    kmeans_points_per_cluster: int = field(default=0, metadata={"help": "K-Means training sample per cluster (0 = all)"})


def typicality(features: np.ndarray, k: int) -> np.ndarray:
    """1 / (mean SQUARED L2 distance to the k nearest other points + 1e-5), as in the reference
    (faiss L2 distances are squared)."""
    if features.shape[0] < 2 or k < 1:
        return np.ones(features.shape[0])
    d2, _, _ = knn_excluding_self(features, k, KnnParams())
    return 1.0 / (d2.mean(axis=1).astype(np.float64) + 1e-5)


@SELECTORS.register("typiclust", "TypiClust: K-Means, then the most typical member of each large cluster",
                    config=TypiClustConfig, tags=("uses_features",))
class TypiClustSelector(Selector):
    """TypiClust, cold start. K = min(budget, max_clusters) seeded K-Means clusters; clusters with
    at most `min_cluster_size` members are dropped (kept only when the rest cannot fill the
    budget); clusters are visited largest first (ties: lower cluster id), wrapping around when
    the budget exceeds the cluster count, and each visit takes the most typical still-unpicked
    member: typicality = 1 / (mean squared distance to its min(k, members // 2) nearest
    unpicked members of the cluster + 1e-5). The reference passes no random_state to its
    clustering; here it is seeded, so runs repeat."""

    def _select(self, features, budget, seed, context, timer):
        cfg = self.config
        n_clusters = min(budget, cfg.max_clusters, features.shape[0])
        with timer("kmeans"):
            clustering = kmeans(features, n_clusters, n_iter=cfg.kmeans_iters, seed=seed,
                                max_points_per_centroid=cfg.kmeans_points_per_cluster)
        with timer("typicality"):
            sizes = clustering.sizes
            order = np.lexsort((np.arange(len(sizes)), -sizes))
            kept = [c for c in order if sizes[c] > cfg.min_cluster_size]
            if not kept or sizes[kept].sum() < budget:  # the large clusters cannot fill the budget
                kept = [c for c in order if sizes[c] > 0]
            members = {c: np.flatnonzero(clustering.assignments == c) for c in kept}
            picks: list[int] = []
            typical_scores = []
            visit = 0
            while len(picks) < budget:
                cluster = kept[visit % len(kept)]
                visit += 1
                pool = members[cluster]
                if len(pool) == 0:
                    continue
                scores = typicality(features[pool], min(cfg.knn_k, len(pool) // 2))
                best = int(np.argmax(scores))
                picks.append(int(pool[best]))
                typical_scores.append(float(scores[best]))
                members[cluster] = np.delete(pool, best)
        info = {"clusters_requested": int(n_clusters), "clusters_nonempty": clustering.nonempty,
                "clusters_used": int(len(kept)), "clusters_dropped_small": int(clustering.nonempty - len(kept)),
                "mean_typicality_picks": float(np.mean(typical_scores))}
        return np.asarray(picks, dtype=np.int64), info
