"""TypiClust (Hacohen, Dekel, Weinshall, ICML 2022): the most typical point of each large cluster."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config_ranges import NON_NEGATIVE, POSITIVE_INT, field_ranges
from ..registry import SELECTORS
from ..traits import SelectorTraits
from .base import PER_PICK, Selector, per_pick_info
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
    (`calculate_typicality`, faiss L2 distances are squared; k + 1 neighbours searched, the point
    itself dropped). (n,) float64; all ones when n < 2 or k < 1 (the reference averages an empty
    set there)."""
    if features.shape[0] < 2 or k < 1:
        return np.ones(features.shape[0])
    d2, _, _ = knn_excluding_self(features, k, KnnParams())
    return 1.0 / (d2.mean(axis=1).astype(np.float64) + 1e-5)


def visit_order(sizes: np.ndarray, min_cluster_size: int, budget: int,
                labeled_counts: np.ndarray | None = None) -> list[int]:
    """Clusters in the order TypiClust visits them: fewest labeled members first, then size
    descending, ties by cluster id (the reference's sort by (existing count, size desc, id);
    `labeled_counts` None: an empty labeled set), those with at most `min_cluster_size` members
    (labeled ones included, as there) dropped. When the kept clusters hold fewer than `budget`
    unlabeled points, every cluster with an unlabeled member is kept instead (the reference would
    run out of candidates)."""
    sizes = np.asarray(sizes)
    labeled = np.zeros(len(sizes), dtype=np.int64) if labeled_counts is None else np.asarray(labeled_counts)
    unlabeled = sizes - labeled
    order = np.lexsort((np.arange(len(sizes)), -sizes, labeled))
    kept = [int(c) for c in order if sizes[c] > min_cluster_size and unlabeled[c] > 0]
    if not kept or unlabeled[kept].sum() < budget:
        kept = [int(c) for c in order if unlabeled[c] > 0]
    return kept


@dataclass
class TypiClustPicks:
    """Result of `typiclust_picks`, one entry per pick in pick order."""

    picks: np.ndarray            # (budget,) int64 global indices
    clusters: list[int]          # cluster of each pick
    knn_k: list[int]             # k used: min(knn_k, candidates // 2)
    candidates: list[int]        # not-yet-picked members of that cluster at the pick
    typicality: list[float]      # typicality of the pick
    kept: list[int]              # the visit order
    scores: list[tuple[np.ndarray, np.ndarray]] | None = None  # (candidates, typicality) per pick


def typiclust_picks(features: np.ndarray, assignments: np.ndarray, budget: int, knn_k: int = 20,
                    min_cluster_size: int = 5, n_clusters: int | None = None,
                    keep_scores: bool = False, fixed: np.ndarray | None = None) -> TypiClustPicks:
    """TypiClust's pick loop on a given cluster assignment (reference: typiclust.py,
    `TypiClust.select_samples`).

    Pick i visits cluster order[i % len(order)] (`visit_order`, so the budget wraps around the
    clusters) and takes, among that cluster's not-yet-picked, unlabeled members (ascending
    index), the most typical one (`typicality` with k = min(knn_k, members // 2), recomputed
    for every pick; ties: lowest index). A cluster whose members are all picked is skipped (the
    reference fails there). Already labeled points (`fixed`, a second round) are never
    candidates, and the clusters holding fewer of them come first (the reference's order).

    Parameters
    ----------
    features : (N, d) float32; assignments : (N,) int cluster ids in [0, n_clusters).
    keep_scores : also return every candidate set and its typicality vector (for tests).
    fixed : (k,) int already-labeled pool indices, optional.
    """
    sizes = np.bincount(assignments, minlength=n_clusters or 0)
    labeled = np.zeros(len(assignments), dtype=bool)
    if fixed is not None:
        labeled[np.asarray(fixed, dtype=np.int64)] = True
    labeled_counts = np.bincount(assignments[labeled], minlength=len(sizes))
    kept = visit_order(sizes, min_cluster_size, budget, labeled_counts)
    members = {c: np.flatnonzero((assignments == c) & ~labeled) for c in kept}
    result = TypiClustPicks(np.zeros(0, dtype=np.int64), [], [], [], [], kept, [] if keep_scores else None)
    picks: list[int] = []
    visit = 0
    while len(picks) < budget:
        cluster = kept[visit % len(kept)]
        visit += 1
        pool = members[cluster]
        if len(pool) == 0:
            continue
        k = min(knn_k, len(pool) // 2)
        scores = typicality(features[pool], k)
        best = int(np.argmax(scores))
        picks.append(int(pool[best]))
        result.clusters.append(int(cluster))
        result.knn_k.append(int(k))
        result.candidates.append(int(len(pool)))
        result.typicality.append(float(scores[best]))
        if keep_scores:
            result.scores.append((pool, scores))
        members[cluster] = np.delete(pool, best)
    result.picks = np.asarray(picks, dtype=np.int64)
    return result


@SELECTORS.register("typiclust", "TypiClust: K-Means, then the most typical member of each large cluster",
                    config=TypiClustConfig)
class TypiClustSelector(Selector):
    """TypiClust. K = min(budget + already labeled, max_clusters) seeded K-Means clusters; clusters with
    at most `min_cluster_size` members are dropped (kept only when the rest cannot fill the
    budget); clusters are visited largest first (ties: lower cluster id), wrapping around when
    the budget exceeds the cluster count, and each visit takes the most typical still-unpicked
    member: typicality = 1 / (mean squared distance to its min(k, members // 2) nearest
    unpicked members of the cluster + 1e-5) (`typiclust_picks`). The reference passes no
    random_state to its clustering; here it is seeded, so runs repeat. With an already-labeled
    set (a second round) its points are never picked and clusters with fewer labeled members
    are visited first, as in the reference."""

    traits = SelectorTraits(uses_initial_labeled=True)

    def _select(self, features, budget, seed, context, timer):
        cfg = self.config
        fixed = context.initial_labeled
        labeled = 0 if fixed is None else len(fixed)
        # the reference clusters into min(|labeled| + budget, max) clusters
        n_clusters = min(labeled + budget, cfg.max_clusters, features.shape[0])
        with timer("kmeans"):
            clustering = kmeans(features, n_clusters, n_iter=cfg.kmeans_iters, seed=seed,
                                max_points_per_centroid=cfg.kmeans_points_per_cluster)
        with timer("typicality"):
            result = typiclust_picks(features, clustering.assignments, budget, knn_k=cfg.knn_k,
                                     min_cluster_size=cfg.min_cluster_size, n_clusters=n_clusters, fixed=fixed)
        info = {"clusters_requested": int(n_clusters), "clusters_nonempty": clustering.nonempty,
                "clusters_used": int(len(result.kept)),
                "clusters_dropped_small": int(clustering.nonempty - len(result.kept)),
                "mean_typicality_picks": float(np.mean(result.typicality)),
                # the k of each pick is min(knn_k, candidates // 2) (the reference's rule): the range used
                "knn_k_used": [int(min(result.knn_k)), int(max(result.knn_k))],
                PER_PICK: per_pick_info(budget, cluster=result.clusters, score=result.typicality,
                                        score_name="typicality", cluster_sizes=clustering.sizes)}
        if fixed is not None:
            counts = np.bincount(clustering.assignments[fixed], minlength=n_clusters)
            info["clusters_with_labels"] = int(np.count_nonzero(counts))
        return result.picks, info
