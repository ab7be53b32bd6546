"""USL, the training-free variant (Wang, Lian, Yu, ECCV 2022, Sec. 2.2).

Conventions (kept identical to the reference code so its hyperparameters carry over):
* distances are SQUARED L2 on L2-normalised features;
* the density of a point is the mean squared distance to its k nearest neighbours, the point
  itself counted among them; utility U = 1 / density;
* alpha is applied to the SQUARED distance (alpha_code = alpha_paper / 2).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from ..config_ranges import MOMENTUM, NON_NEGATIVE, POSITIVE, POSITIVE_INT, Range, field_ranges
from ..errors import UserError
from ..registry import SELECTORS
from .base import Selector
from .knn_sums import knn_sq_dist_sums
from .toolkit import KnnParams, build_index, kmeans, knn, per_group_argmax, row_blocks, sq_dists_to

# Rows of ALGORITHMS.md (alpha on SQUARED distances). The regulariser always counts selected
# points of OTHER clusters only (Eq. 5). kmeans_points_per_cluster: K-Means training sample per
# cluster, 0 = all points (the reference); the ImageNet rows sample 64 per cluster (186k of the
# 1.28M points at m = 2,911) so that 100 Lloyd iterations fit in minutes on a CPU.
#  preset          k    kmeans  T   lambda  m_reg  nearest  horizon  alpha
PRESETS: dict[str, dict] = {
    "small":         dict(knn_k=20, kmeans_iters=100, iters=10, lam=0.5, m_reg=0.9, reg_nearest=0, horizon=0.0, alpha=0.5,
                          kmeans_points_per_cluster=0),
    "cifar10":       dict(knn_k=400, kmeans_iters=200, iters=10, lam=0.5, m_reg=0.9, reg_nearest=0, horizon=0.0, alpha=0.5,
                          kmeans_points_per_cluster=0),
    "cifar100":      dict(knn_k=400, kmeans_iters=200, iters=10, lam=1.0, m_reg=0.9, reg_nearest=0, horizon=1.0, alpha=1.0,
                          kmeans_points_per_cluster=0),
    "imagenet_moco": dict(knn_k=20, kmeans_iters=100, iters=2, lam=1.5, m_reg=0.0, reg_nearest=128, horizon=0.0, alpha=0.5,
                          kmeans_points_per_cluster=64),
    "imagenet_clip": dict(knn_k=20, kmeans_iters=100, iters=2, lam=0.05, m_reg=0.0, reg_nearest=32, horizon=0.0, alpha=1.0,
                          kmeans_points_per_cluster=64),
}
SMALL_POOL = 20_000  # below this many points the k of the k-NN density is scaled to the data
DATASET_PRESETS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet": "imagenet_moco",
                   "imagenet100": "imagenet_moco"}


@field_ranges(preset=Range(choices=("auto", *PRESETS)), knn_k=POSITIVE_INT, kmeans_iters=POSITIVE_INT,
              iters=NON_NEGATIVE, lam=NON_NEGATIVE, m_reg=MOMENTUM, reg_nearest=NON_NEGATIVE, horizon=NON_NEGATIVE,
              alpha=POSITIVE, n_clusters=POSITIVE_INT, kmeans_points_per_cluster=NON_NEGATIVE,
              knn_exact_max=NON_NEGATIVE, knn_approximate=Range(choices=("ivf", "hnsw")), knn_nprobe=POSITIVE_INT)
@dataclass
class USLConfig:
    preset: str = field(default="auto", metadata={"help": "auto|" + "|".join(PRESETS)})
    knn_k: int | None = field(default=None, metadata={"help": "k of the k-NN density (self counted)"})
    kmeans_iters: int | None = None
    iters: int | None = field(default=None, metadata={"help": "T regularised re-selection rounds"})
    lam: float | None = field(default=None, metadata={"help": "regulariser weight lambda"})
    m_reg: float | None = field(default=None, metadata={"help": "EMA momentum of the regulariser"})
    reg_nearest: int | None = field(default=None, metadata={"help": "count only the h nearest selected (0 = all)"})
    horizon: float | None = field(default=None, metadata={"help": "count only squared distances below (0 = no horizon)"})
    alpha: float | None = field(default=None, metadata={"help": "exponent on the SQUARED distance"})
    n_clusters: int | None = field(default=None, metadata={"help": "K-Means clusters (default = budget; > budget over-clusters)"})
    kmeans_points_per_cluster: int | None = field(default=None, metadata={"help": "K-Means training sample per cluster (0 = all)"})
    knn_exact_max: int = field(default=200_000, metadata={"help": "exact (flat) k-NN up to this many points, approximate above"})
    knn_approximate: str = field(default="ivf", metadata={"help": "ivf | hnsw"})
    knn_nprobe: int = field(default=8, metadata={"help": "IVF lists scanned per query"})


def resolve_preset(config: USLConfig, pool_size: int, budget: int, dataset_name: str | None) -> USLConfig:
    """Fill every None field from the preset; 'auto' picks the preset from the data set or scale."""
    name = config.preset
    if name == "auto":
        base = (dataset_name or "").split(":", 1)[0]
        if base in DATASET_PRESETS:
            name = DATASET_PRESETS[base]
        elif pool_size < SMALL_POOL:
            name = "small"
        elif pool_size >= 500_000:
            name = "imagenet_moco"
        else:
            name = "cifar10" if budget <= 100 else "cifar100"
    if name not in PRESETS:
        raise UserError(f"Unknown USL preset {name!r}; choose one of auto, {', '.join(PRESETS)}.")
    values = {k: v for k, v in PRESETS[name].items() if getattr(config, k) is None}
    resolved = replace(config, preset=name, **values)
    if pool_size < SMALL_POOL and config.knn_k is None:
        # k must stay well below N / m, or the density blurs across clusters
        resolved.knn_k = int(max(3, min(resolved.knn_k, pool_size // (2 * budget))))
    resolved.knn_k = int(min(resolved.knn_k, pool_size))
    return resolved


def density_utility(knn_sq_dists: np.ndarray, eps: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Mean squared distance to the k nearest neighbours (self included) and U = 1 / that."""
    mean_sq = knn_sq_dists.mean(axis=1).astype(np.float64)
    return mean_sq, utility_from_mean_sq(mean_sq, eps)


def utility_from_mean_sq(mean_sq: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    return 1.0 / np.maximum(mean_sq, eps)


def regulariser(features: np.ndarray, assignments: np.ndarray, selected: np.ndarray, alpha: float,
                nearest: int = 0, horizon: float = 0.0, block_rows: int = 8192, eps: float = 1e-8) -> np.ndarray:
    """Reg_i = sum over selected s in OTHER clusters of 1 / D(i, s)^alpha, D squared L2.

    nearest > 0 counts only the `nearest` closest selected points (found with a faiss index over
    the selected set); horizon > 0 counts only squared distances below it. Works in row blocks:
    memory is O(block_rows * m), never N x m x d.
    """
    n = features.shape[0]
    selected = np.asarray(selected, dtype=np.int64)
    sel_feats = np.ascontiguousarray(features[selected], dtype=np.float32)
    sel_clusters = assignments[selected]
    reg = np.zeros(n, dtype=np.float64)
    if nearest and nearest < len(selected):
        index, _ = build_index(sel_feats, KnnParams(exact_max=10**9))
        k = min(len(selected), nearest + 1)  # one selected point per cluster: +1 covers the exclusion
        for start, stop in row_blocks(n, block_rows):
            d2, j = index.search(features[start:stop], k)
            valid = sel_clusters[j] != assignments[start:stop, None]
            valid &= np.cumsum(valid, axis=1) <= nearest
            if horizon > 0:
                valid &= d2 < horizon
            reg[start:stop] = (inverse_power(d2, alpha, eps) * valid).sum(1)
        return reg
    sq_norm = (sel_feats ** 2).sum(1)
    for start, stop in row_blocks(n, block_rows):
        d2 = sq_dists_to(features[start:stop], sel_feats, sq_norm)
        valid = sel_clusters[None, :] != assignments[start:stop, None]
        if horizon > 0:
            valid &= d2 < horizon
        reg[start:stop] = (inverse_power(d2, alpha, eps) * valid).sum(1)
    return reg


def inverse_power(d2: np.ndarray, alpha: float, eps: float) -> np.ndarray:
    """max(d2, eps) ** -alpha in float64; the presets' alpha 0.5 and 1 take a square root or a
    division instead of a general power (40x faster, same values to rounding)."""
    d2 = np.maximum(d2, eps, dtype=np.float64)
    if alpha == 0.5:
        return 1.0 / np.sqrt(d2, out=d2)
    if alpha == 1.0:
        return np.reciprocal(d2, out=d2)
    return np.power(d2, -alpha, out=d2)


@SELECTORS.register("usl", "training-free USL: k-NN density + K-Means (K=m) + regularised picks",
                    config=USLConfig, tags=("uses_features",),
                    presets={name: {"preset": preset} for name, preset in DATASET_PRESETS.items()})
class USLSelector(Selector):
    """Unsupervised Selective Labeling, training-free (paper Sec. 2.2, Eq. 4-7).

    1. density: U_i = 1 / mean squared distance to the k nearest neighbours (self counted);
    2. diversity: seeded faiss K-Means with K = budget clusters;
    3. pass 0 picks argmax U in each cluster; then T rounds: Reg_i against the selected points of
       the other clusters, Rbar = m_reg * Rbar + (1 - m_reg) * Reg, re-pick argmax U - lambda * Rbar.
    Empty clusters never produce NaN: faiss re-seeds them in training, and a budget left unfilled
    by empty clusters is completed with the best-scoring unselected points. With n_clusters > m
    (the paper's 1% ImageNet setting) the picks of the m largest clusters are kept.

    Scale: up to knn_exact_max points the density is exact (`knn_sums`: each distance computed
    once in blockwise GEMMs, only the k-NN sums kept) and above it from an IVF k-NN; the
    ImageNet presets train K-Means on 64 sampled points per cluster and count the regulariser
    over the reg_nearest nearest selected points (a flat index over the picks), so nothing
    N x N or N x m x d is formed. Same features + seed = same indices.
    """

    def _select(self, features, budget, seed, context, timer):
        cfg = resolve_preset(self.config, features.shape[0], budget, context.dataset_name)
        params = KnnParams(exact_max=cfg.knn_exact_max, approximate=cfg.knn_approximate, ivf_nprobe=cfg.knn_nprobe)
        knn_stats: dict = {}
        with timer("knn_density"):
            if features.shape[0] <= cfg.knn_exact_max:  # exact: only the sums are needed
                mean_sq = knn_sq_dist_sums(features, cfg.knn_k, seed=seed, desc="USL k-NN density",
                                           stats=knn_stats) / cfg.knn_k
                utility = utility_from_mean_sq(mean_sq)
                index_kind = "exact (blockwise GEMM)"
            else:
                knn_d2, _, index_kind = knn(features, cfg.knn_k, params, seed=seed, desc="USL k-NN density")
                mean_sq, utility = density_utility(knn_d2)
                del knn_d2
        n_clusters = max(budget, cfg.n_clusters or budget)
        with timer("kmeans"):
            clustering = kmeans(features, n_clusters, n_iter=cfg.kmeans_iters, seed=seed,
                                max_points_per_centroid=cfg.kmeans_points_per_cluster)
        assignments = clustering.assignments
        with timer("regularised_selection"):
            _, selected = per_group_argmax(utility, assignments)
            reg_bar = np.zeros(len(utility))
            changes = []
            for _ in range(cfg.iters):
                reg = regulariser(features, assignments, selected, cfg.alpha, cfg.reg_nearest, cfg.horizon)
                reg_bar = cfg.m_reg * reg_bar + (1.0 - cfg.m_reg) * reg
                _, new_selected = per_group_argmax(utility - cfg.lam * reg_bar, assignments)
                changes.append(int(len(np.setdiff1d(new_selected, selected))))
                selected = new_selected
            score = utility - cfg.lam * reg_bar
            if len(selected) > budget:  # over-clustering: keep the picks of the largest clusters
                sizes = clustering.sizes[assignments[selected]]
                selected = selected[np.lexsort((selected, -sizes))[:budget]]
            filled = 0
            if len(selected) < budget:  # empty clusters: complete with the best unselected points
                mask = np.ones(len(score), dtype=bool)
                mask[selected] = False
                candidates = np.flatnonzero(mask)
                extra = candidates[np.lexsort((candidates, -score[candidates]))[: budget - len(selected)]]
                filled = len(extra)
                selected = np.concatenate([selected, extra])
        info = {
            "resolved_config": {f.name: getattr(cfg, f.name) for f in fields(cfg)},
            "knn_index": index_kind,
            **({"knn_exact_candidates_per_row": round(knn_stats["candidates_per_row"], 1)} if knn_stats else {}),
            "clusters_requested": int(n_clusters),
            "clusters_nonempty": clustering.nonempty,
            "filled_from_empty_clusters": int(filled),
            "picks_changed_per_round": changes,
            "mean_knn_sq_dist_picks": float(mean_sq[selected].mean()),
            "mean_knn_sq_dist_pool": float(mean_sq.mean()),
            "kmeans_objective": clustering.objective,
        }
        return np.sort(selected), info
