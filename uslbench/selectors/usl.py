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
from ..traits import SelectorTraits
from .base import PER_PICK, Selector, per_pick_info
from .knn_sums import knn_sq_dist_sums
from .toolkit import KnnParams, build_index, kmeans, knn, per_group_argmax, row_blocks, sq_dists_to

# Rows of ALGORITHMS.md (alpha on SQUARED distances), read from the reference configs
# (selective_labeling/configs/*.yaml + config.py defaults, TonyLianLong/UnsupervisedSelectiveLabeling).
# iters = T selection passes (pass 0 without regulariser, T - 1 updates): the reference's REG.NITERS.
# own = count_own_cluster: the regulariser counts the pick of a point's own cluster (only the point
# itself excluded; the reference's ImageNet-MoCo path, EXCLUDE_SAME_CLUSTER False) or not (the
# CIFAR path and ImageNet-CLIP). nearest: only the h nearest picks (the ImageNet path's
# horizon_num; an excluded pick among them still takes its slot). horizon: only squared distances
# below it (the CIFAR path's horizon_dist; 4 on unit vectors excludes nothing).
# kmeans_points_per_cluster: K-Means training sample per cluster, 0 = all points (the reference);
# the ImageNet rows sample 64 per cluster (186k of the 1.28M points at m = 2,911) so that 100
# Lloyd iterations fit in minutes on a CPU.
#  preset          k    kmeans  T   lambda  m_reg  nearest  horizon  alpha  own
PRESETS: dict[str, dict] = {
    "small":         dict(knn_k=20, kmeans_iters=100, iters=10, lam=0.5, m_reg=0.9, reg_nearest=0, horizon=0.0, alpha=0.5,
                          count_own_cluster=False, kmeans_points_per_cluster=0),
    "cifar10":       dict(knn_k=400, kmeans_iters=200, iters=10, lam=0.5, m_reg=0.9, reg_nearest=0, horizon=0.0, alpha=0.5,
                          count_own_cluster=False, kmeans_points_per_cluster=0),
    "cifar100":      dict(knn_k=400, kmeans_iters=200, iters=10, lam=1.0, m_reg=0.9, reg_nearest=0, horizon=1.0, alpha=1.0,
                          count_own_cluster=False, kmeans_points_per_cluster=0),
    "imagenet_moco": dict(knn_k=20, kmeans_iters=100, iters=2, lam=1.5, m_reg=0.0, reg_nearest=128, horizon=0.0, alpha=0.5,
                          count_own_cluster=True, kmeans_points_per_cluster=64),
    "imagenet_clip": dict(knn_k=20, kmeans_iters=100, iters=2, lam=0.05, m_reg=0.0, reg_nearest=32, horizon=0.0, alpha=1.0,
                          count_own_cluster=False, kmeans_points_per_cluster=64),
}
SMALL_POOL = 20_000  # below this many points the k of the k-NN density is scaled to the data
LARGE_POOL = 500_000  # from this many points on, "auto" takes the ImageNet row
# The one map from data set to preset row: the registration turns it into registry presets
# (config.preset is set when the selector is created for a data set); any other data set keeps
# preset="auto", which picks the row from the pool size and budget at select time.
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
    iters: int | None = field(default=None, metadata={
        "help": "T selection passes: pass 0 without regulariser, then T - 1 regularised re-selections"})
    lam: float | None = field(default=None, metadata={"help": "regulariser weight lambda"})
    m_reg: float | None = field(default=None, metadata={"help": "EMA momentum of the regulariser"})
    reg_nearest: int | None = field(default=None, metadata={"help": "count only the h nearest picks (0 = all)"})
    horizon: float | None = field(default=None, metadata={"help": "count only squared distances below (0 = no horizon)"})
    alpha: float | None = field(default=None, metadata={"help": "exponent on the SQUARED distance"})
    count_own_cluster: bool | None = field(default=None, metadata={
        "help": "regulariser counts the own cluster's pick (ImageNet-MoCo); false excludes it"})
    n_clusters: int | None = field(default=None, metadata={
        "help": "K-Means clusters, at least the budget (default = budget; > budget over-clusters)"})
    kmeans_points_per_cluster: int | None = field(default=None, metadata={"help": "K-Means training sample per cluster (0 = all)"})
    knn_exact_max: int = field(default=200_000, metadata={"help": "exact (flat) k-NN up to this many points, approximate above"})
    knn_approximate: str = field(default="ivf", metadata={"help": "ivf | hnsw"})
    knn_nprobe: int = field(default=8, metadata={"help": "IVF lists scanned per query"})


def auto_preset(pool_size: int, budget: int | None) -> str | None:
    """The preset row "auto" stands for: by scale (None when the budget decides and is unknown)."""
    if pool_size < SMALL_POOL:
        return "small"
    if pool_size >= LARGE_POOL:
        return "imagenet_moco"
    if budget is None:
        return None
    return "cifar10" if budget <= 100 else "cifar100"


def resolve_preset(config: USLConfig, pool_size: int, budget: int) -> USLConfig:
    """Fill every None field from the preset row; "auto" picks the row from the pool size and budget.

    Parameters
    ----------
    config : USLConfig
        The selector's config (a data set's registry preset has already set `preset`).
    pool_size : int
        Number of feature rows N.
    budget : int
        Number of images to select, m.

    Returns
    -------
    USLConfig
        A copy with `preset` naming the row and every numeric field set; below SMALL_POOL points
        the k of the density (unless given) is min(N, max(3, min(k, N // (2 m)))).

    Raises
    ------
    UserError
        `preset` names no row, or a value cannot work on this pool and budget (knn_k above N,
        n_clusters below m or above N, ...). Nothing is raised or lowered silently.
    """
    name = auto_preset(pool_size, budget) if config.preset == "auto" else config.preset
    resolved = fill_row(config, name)
    if pool_size < SMALL_POOL and config.knn_k is None:
        # k must stay well below N / m, or the density blurs across clusters (and at most N)
        resolved.knn_k = int(min(max(3, min(resolved.knn_k, pool_size // (2 * budget))), pool_size))
    problems = [text for bad, text in [
        (resolved.knn_k < 1, f"knn_k must be at least 1, got {resolved.knn_k}"),
        (resolved.knn_k > pool_size, f"knn_k={resolved.knn_k} exceeds the pool of {pool_size} points "
                                     f"(the density averages the k nearest, the point itself counted); "
                                     f"give knn_k <= {pool_size}"),
        (resolved.n_clusters is not None and resolved.n_clusters < budget,
         f"n_clusters={resolved.n_clusters} is below the budget {budget} (each cluster gives one pick; the "
         "reference only over-clusters); give n_clusters >= budget or leave it unset (= budget)"),
        (resolved.n_clusters is not None and resolved.n_clusters > pool_size,
         f"n_clusters={resolved.n_clusters} exceeds the pool of {pool_size} points"),
        (resolved.iters < 1, f"iters (selection passes) must be at least 1, got {resolved.iters}"),
        (resolved.lam < 0, f"lam must be >= 0, got {resolved.lam}"),
        (not 0 <= resolved.m_reg < 1, f"m_reg must lie in [0, 1), got {resolved.m_reg}"),
        (resolved.alpha <= 0, f"alpha must be > 0, got {resolved.alpha}"),
        (resolved.reg_nearest < 0, f"reg_nearest must be >= 0 (0 = all picks), got {resolved.reg_nearest}"),
        (resolved.horizon < 0, f"horizon must be >= 0 (0 = no horizon), got {resolved.horizon}"),
    ] if bad]
    if problems:
        raise UserError("Invalid usl config: " + "; ".join(problems) + ".")
    return resolved


# --- the selection steps; the selector composes exactly these (tests drive them one by one) ---

def knn_density(features: np.ndarray, k: int, params: KnnParams | None = None, seed: int = 0,
                stats: dict | None = None) -> tuple[np.ndarray, str]:
    """USL density step: the mean of the k smallest SQUARED L2 distances from each row to all
    rows, the row itself counted (its distance 0 is one of the k).

    Reference: `partitioned_kNN(feats, K)` then `d_knns.mean(dim=1)` (usl-cifar.py,
    usl-imagenet.py; shared/utils/nn_utils.py). Up to `params.exact_max` rows the sums are exact
    (`knn_sq_dist_sums`, blockwise GEMMs); above it they come from an approximate faiss k-NN.

    Parameters
    ----------
    features : (N, d) float32 array.
    k : neighbours per row, self included (clipped to N).
    params : how the k-NN is computed (default `KnnParams()`).
    stats : filled with the exact path's diagnostics when given.

    Returns
    -------
    mean_sq : (N,) float64, mean squared distance (the utility is its reciprocal).
    index_kind : which k-NN computed it.
    """
    params = params or KnnParams()
    k = int(min(max(k, 1), features.shape[0]))
    if features.shape[0] <= params.exact_max:  # exact: only the sums are needed
        sums = knn_sq_dist_sums(features, k, seed=seed, desc="USL k-NN density", stats=stats)
        return sums / k, "exact (blockwise GEMM)"
    knn_d2, _, index_kind = knn(features, k, params, seed=seed, desc="USL k-NN density")
    mean_sq, _ = density_utility(knn_d2)
    return mean_sq, index_kind


def cached_knn_density(features: np.ndarray, k: int, params: KnnParams, seed: int, stats: dict | None,
                       cache_stem: str | None) -> tuple[np.ndarray, str, bool]:
    """`knn_density`, read from / written to ``cache_stem + ".usl_density_k{k}.npy"`` when the
    features are cached and the density is exact (N <= params.exact_max: it then depends only
    on the features and k, not on the seed, budget or any other setting). On 50,000 x 1,280
    CIFAR-10 features with k = 400 it takes about 100 s on 2 CPU cores, once instead of once per
    selection. The approximate path (seeded index) is never cached. Returns (mean_sq, index
    kind, whether read from the cache)."""
    k = int(min(max(k, 1), features.shape[0]))
    path = None
    if cache_stem and features.shape[0] <= params.exact_max:
        from pathlib import Path

        path = Path(f"{cache_stem}.usl_density_k{k}.npy")
        from ..utils import file_digest_ok

        try:
            mean_sq = np.load(path, allow_pickle=False) if file_digest_ok(path) else None
            if mean_sq is not None and mean_sq.shape == (features.shape[0],) and np.isfinite(mean_sq).all():
                return mean_sq.astype(np.float64), "exact (blockwise GEMM)", True
        except (OSError, ValueError):  # absent or unreadable: computed below
            pass
    mean_sq, index_kind = knn_density(features, k, params, seed=seed, stats=stats)
    if path is not None:
        from ..utils import atomic_save_npy, record_file_digest

        atomic_save_npy(path, np.asarray(mean_sq, dtype=np.float64))
        record_file_digest(path)
    return mean_sq, index_kind, False


def fill_row(config: USLConfig, name: str) -> USLConfig:
    """A copy with `preset` = name and every None field taken from that row of PRESETS."""
    if name not in PRESETS:
        raise UserError(f"Unknown USL preset {name!r}; choose one of auto, {', '.join(PRESETS)}.")
    return replace(config, preset=name, **{k: v for k, v in PRESETS[name].items() if getattr(config, k) is None})


def density_utility(knn_sq_dists: np.ndarray, eps: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Mean squared distance to the k nearest neighbours (self included) and U = 1 / that."""
    mean_sq = knn_sq_dists.mean(axis=1).astype(np.float64)
    return mean_sq, utility_from_mean_sq(mean_sq, eps)


def utility_from_mean_sq(mean_sq: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    return 1.0 / np.maximum(mean_sq, eps)


def cluster_picks(scores: np.ndarray, assignments: np.ndarray, budget: int,
                  eligible: np.ndarray | None = None) -> np.ndarray:
    """One selection pass: in each non-empty cluster, taken in increasing cluster id, the index of
    the highest score (lowest index on ties); only the first `budget` non-empty clusters pick.

    Over-clustering (more clusters than the budget, the reference's 1% ImageNet setting) thus
    leaves the highest cluster ids without a pick, as in the reference (`for cls_ind in
    range(num_centroids)` ... `break` at final_sample_num). `eligible` ((N,) bool, optional):
    only these points may be picked (a second round leaves the labeled ones out), and a cluster
    without an eligible point does not pick. Returns int64 picks in cluster-id order, at most
    `budget` of them (fewer when fewer clusters are non-empty)."""
    if eligible is None:
        _, winners = per_group_argmax(scores, assignments)
        return winners[:budget]
    candidates = np.flatnonzero(eligible)
    _, winners = per_group_argmax(scores[candidates], assignments[candidates])
    return candidates[winners][:budget]


def regulariser(features: np.ndarray, assignments: np.ndarray, selected: np.ndarray, alpha: float,
                nearest: int = 0, horizon: float = 0.0, count_own_cluster: bool = False,
                block_rows: int = 8192, eps: float = 1e-8, fixed: np.ndarray | None = None) -> np.ndarray:
    """USL regulariser (paper Eq. 5-6): Reg_i = sum over the counted picks s of 1 / D(i, s)^alpha,
    D the SQUARED L2 distance.

    Which picks count:
    * `count_own_cluster` False (the reference's CIFAR path and ImageNet-CLIP): every pick except
      the one of i's own cluster (which is i itself when i is a pick);
    * `count_own_cluster` True (ImageNet-MoCo, `exclude_same_cluster=False`): every pick except
      i itself;
    * `nearest` h > 0: only among the h nearest picks (the ImageNet path's `horizon_num`, a Kmin
      over the picks): an excluded pick among them still takes one of the h slots, as there;
    * `horizon` > 0: only squared distances below it (the CIFAR path's `horizon_dist`);
    * `fixed` (already labeled points, a second round): picks that no pass can move; each counts
      for every point but itself (it is no cluster's pick, so the own-cluster rule skips it), and
      it takes part in the `nearest` and `horizon` rules like any pick.
    The reference sets an ignored distance to 1e10 (it then adds 1e10**-alpha, at most 1e-5 per
    ignored pick); here it adds nothing. A distance below `eps` (an exact duplicate of a pick that
    is not excluded) counts as `eps`, where the reference divides by zero or stops on an assert.

    Parameters
    ----------
    features : (N, d) float32; assignments : (N,) int cluster ids; selected : (m,) int picks.

    Returns
    -------
    (N,) float64. Works in row blocks: memory O(block_rows * m), never N x m x d (the reference's
    CIFAR path forms N x m x d). With `nearest`, a flat faiss index over the picks is searched.
    """
    n = features.shape[0]
    fixed = np.zeros(0, dtype=np.int64) if fixed is None else np.asarray(fixed, dtype=np.int64)
    is_fixed = np.r_[np.zeros(len(selected), dtype=bool), np.ones(len(fixed), dtype=bool)]
    selected = np.concatenate([np.asarray(selected, dtype=np.int64), fixed])
    sel_feats = np.ascontiguousarray(features[selected], dtype=np.float32)
    sel_clusters = assignments[selected]
    reg = np.zeros(n, dtype=np.float64)

    def counted(start: int, stop: int, columns: np.ndarray) -> np.ndarray:
        """Mask of the counted picks for rows start:stop; `columns` are positions in `selected`."""
        not_self = selected[columns] != np.arange(start, stop)[:, None]
        if count_own_cluster:
            return not_self
        other_cluster = sel_clusters[columns] != assignments[start:stop, None]
        return np.where(is_fixed[columns], not_self, other_cluster) if len(fixed) else other_cluster

    if nearest and nearest < len(selected):
        index, _ = build_index(sel_feats, KnnParams(exact_max=10**9))
        for start, stop in row_blocks(n, block_rows):
            d2, j = index.search(np.ascontiguousarray(features[start:stop], dtype=np.float32), nearest)
            valid = counted(start, stop, j)
            if horizon > 0:
                valid &= d2 < horizon
            reg[start:stop] = (inverse_power(d2, alpha, eps) * valid).sum(1)
        return reg
    sq_norm = (sel_feats ** 2).sum(1)
    columns = np.arange(len(selected))[None, :]
    for start, stop in row_blocks(n, block_rows):
        d2 = sq_dists_to(features[start:stop], sel_feats, sq_norm)
        valid = counted(start, stop, columns)
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


@dataclass
class RegularisedSelection:
    """Result of `regularised_selection`."""

    selected: np.ndarray   # (<= budget,) int64 picks of the last pass, in cluster-id order
    score: np.ndarray      # (N,) float64 U - lambda * Rbar of the last pass
    reg_bar: np.ndarray    # (N,) float64 Rbar used in the last pass (zeros when passes == 1)
    changes: list[int]     # per regularised pass: picks not in the previous pass's


def regularised_selection(features: np.ndarray, assignments: np.ndarray, utility: np.ndarray, budget: int,
                          passes: int, lam: float, m_reg: float, alpha: float, nearest: int = 0,
                          horizon: float = 0.0, count_own_cluster: bool = False,
                          trace: list | None = None, fixed: np.ndarray | None = None) -> RegularisedSelection:
    """USL's regularised selection (paper Eq. 5-7) in `passes` passes, as the reference runs it.

    Pass 0 picks argmax U per cluster (`cluster_picks`). Before each later pass the regulariser
    of the previous pass's picks (`regulariser`) enters the EMA Rbar = m_reg * Rbar +
    (1 - m_reg) * Reg (Rbar starts at 0) and the pass re-picks argmax U - lam * Rbar. So T passes
    make T - 1 effective updates: the reference's `iters` (CIFAR: 10, whose 10th update is
    computed but never used; ImageNet: 2, one update). Every pass picks in cluster-id order and
    stops after `budget` clusters, so over-clustering drops the highest ids in every pass.

    Parameters
    ----------
    utility : (N,) float64 1 / density. Other arguments: see `regulariser` and `cluster_picks`.
    trace : when a list is given, (picks, Rbar used) of every pass are appended to it (copies).
    fixed : (k,) int already labeled points (a second round): never picked, and counted in every
        regulariser update as picks that stay (`regulariser`); pass 0 has no regulariser, as
        without them, so with passes == 1 they only leave the candidates.

    Raises
    ------
    ValueError when passes < 1 (the selector checks its config first, with a UserError).
    """
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    reg_bar = np.zeros(len(utility), dtype=np.float64)
    score = np.asarray(utility, dtype=np.float64)
    eligible = None
    if fixed is not None and len(fixed):
        eligible = np.ones(len(utility), dtype=bool)
        eligible[np.asarray(fixed, dtype=np.int64)] = False
    selected = cluster_picks(score, assignments, budget, eligible)
    if trace is not None:
        trace.append((selected.copy(), reg_bar.copy()))
    changes = []
    for _ in range(passes - 1):
        reg = regulariser(features, assignments, selected, alpha, nearest, horizon, count_own_cluster, fixed=fixed)
        reg_bar = m_reg * reg_bar + (1.0 - m_reg) * reg
        score = utility - lam * reg_bar
        new_selected = cluster_picks(score, assignments, budget, eligible)
        changes.append(int(len(np.setdiff1d(new_selected, selected))))
        selected = new_selected
        if trace is not None:
            trace.append((selected.copy(), reg_bar.copy()))
    return RegularisedSelection(selected, score, reg_bar, changes)


def fill_budget(selected: np.ndarray, score: np.ndarray, budget: int,
                fixed: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Complete a selection that fewer than `budget` non-empty clusters left short with the
    best-scoring unselected points (ties: lowest index), never an already labeled one (`fixed`);
    the reference stops on an assert there. Returns (selection, number added)."""
    if len(selected) >= budget:
        return selected, 0
    mask = np.ones(len(score), dtype=bool)
    mask[selected] = False
    if fixed is not None:
        mask[np.asarray(fixed, dtype=np.int64)] = False
    candidates = np.flatnonzero(mask)
    extra = candidates[np.lexsort((candidates, -score[candidates]))[: budget - len(selected)]]
    return np.concatenate([selected, extra]), int(len(extra))


@SELECTORS.register("usl", "training-free USL: k-NN density + K-Means (K=m) + regularised picks",
                    config=USLConfig,
                    presets={name: {"preset": preset} for name, preset in DATASET_PRESETS.items()})
class USLSelector(Selector):
    """Unsupervised Selective Labeling, training-free (paper Sec. 2.2, Eq. 4-7).

    1. density (`knn_density`): U_i = 1 / mean squared distance to the k nearest neighbours
       (self counted);
    2. diversity: seeded faiss K-Means with K = budget clusters (n_clusters > budget over-clusters);
    3. `regularised_selection`: T passes; pass 0 picks argmax U in each cluster, each later pass
       re-picks argmax U - lambda * Rbar with Rbar the EMA of the regulariser of the previous
       picks. The presets follow the reference's two code paths: CIFAR (cifar10, cifar100,
       small): 10 passes, the own cluster's pick excluded, all picks (cifar100: only squared
       distances < 1); ImageNet (imagenet, imagenet100 -> imagenet_moco): 2 passes, the 128
       nearest picks, the own cluster's pick COUNTED (only the point itself excluded); CLIP
       (clip_usl -> imagenet_clip): 2 passes, the 32 nearest picks, own cluster's excluded.
    Clusters pick in id order, so with n_clusters > m the highest ids get no pick (as in the
    reference). Empty clusters never produce NaN: faiss re-seeds them in training, and a budget
    left unfilled by empty clusters is completed with the best-scoring unselected points (the
    reference stops on an assert).

    Scale: up to knn_exact_max points the density is exact (`knn_sums`: each distance computed
    once in blockwise GEMMs, only the k-NN sums kept) and above it from an IVF k-NN; the
    ImageNet presets train K-Means on 64 sampled points per cluster and count the regulariser
    over the reg_nearest nearest selected points (a flat index over the picks), so nothing
    N x N or N x m x d is formed. Same features + seed = same indices.

    Second round (an already-labeled set): the labeled points are never picked, a cluster
    without an unlabeled point does not pick (the budget is then filled as for empty clusters),
    and every regulariser update counts them as picks that stay (`regulariser`), so new picks
    move away from labeled images as they move away from each other.
    """

    traits = SelectorTraits(uses_initial_labeled=True)

    @staticmethod
    def resolved_config(config: USLConfig, pool_size: int | None = None,
                        budget: int | None = None) -> tuple[USLConfig, list[str]]:
        """The config as `select` will resolve it, for ``describe usl --dataset D [--budget M]``:
        (config, notes on what the pool size or budget still decide)."""
        if pool_size is not None and budget is not None:
            return resolve_preset(config, pool_size, budget), []
        name = config.preset
        if name == "auto":
            name = auto_preset(pool_size, budget) if pool_size is not None else None
            if name is None:
                return config, [f"preset auto picks its row at select time: small below {SMALL_POOL:,} points, "
                                f"imagenet_moco from {LARGE_POOL:,}, else cifar10 for m <= 100 and cifar100 above"]
        resolved = fill_row(config, name)
        if config.knn_k is None and (pool_size is None or pool_size < SMALL_POOL):
            return resolved, [f"below {SMALL_POOL:,} points knn_k becomes max(3, min({resolved.knn_k}, N // (2 m))) "
                              "at select time (give --budget to see it)"]
        return resolved, []

    def validate(self, pool_size, budget, context):
        resolve_preset(self.config, pool_size, budget)  # refuses values that cannot work, before any work

    def _select(self, features, budget, seed, context, timer):
        cfg = resolve_preset(self.config, features.shape[0], budget)
        params = KnnParams(exact_max=cfg.knn_exact_max, approximate=cfg.knn_approximate, ivf_nprobe=cfg.knn_nprobe)
        knn_stats: dict = {}
        with timer("knn_density"):
            mean_sq, index_kind, density_cached = cached_knn_density(features, cfg.knn_k, params, seed, knn_stats,
                                                                     getattr(context, "feature_cache_stem", None))
            utility = utility_from_mean_sq(mean_sq)
        n_clusters = cfg.n_clusters or budget
        with timer("kmeans"):
            clustering = kmeans(features, n_clusters, n_iter=cfg.kmeans_iters, seed=seed,
                                max_points_per_centroid=cfg.kmeans_points_per_cluster)
        with timer("regularised_selection"):
            fixed = context.initial_labeled
            result = regularised_selection(features, clustering.assignments, utility, budget, passes=cfg.iters,
                                           lam=cfg.lam, m_reg=cfg.m_reg, alpha=cfg.alpha, nearest=cfg.reg_nearest,
                                           horizon=cfg.horizon, count_own_cluster=bool(cfg.count_own_cluster),
                                           fixed=fixed)
            selected, filled = fill_budget(result.selected, result.score, budget, fixed)
        selected = np.sort(selected)
        info = {
            "resolved_config": {f.name: getattr(cfg, f.name) for f in fields(cfg)},
            "knn_index": index_kind,
            "knn_density_cached": bool(density_cached),
            **({"knn_exact_candidates_per_row": round(knn_stats["candidates_per_row"], 1)} if knn_stats else {}),
            "clusters_requested": int(n_clusters),
            "clusters_nonempty": clustering.nonempty,
            "filled_from_empty_clusters": int(filled),
            "picks_changed_per_round": result.changes,
            "mean_knn_sq_dist_picks": float(mean_sq[selected].mean()),
            "mean_knn_sq_dist_pool": float(mean_sq.mean()),
            "kmeans_objective": clustering.objective,
            # per pick: its K-Means cluster and its final score U - lambda * Rbar (U alone with one pass)
            PER_PICK: per_pick_info(budget, cluster=clustering.assignments[selected], score=result.score[selected],
                                    score_name="usl_score", cluster_sizes=clustering.sizes),
        }
        return selected, info
