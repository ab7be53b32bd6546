"""ProbCover (Yehuda, Dekel, Hacohen, Weinshall, NeurIPS 2022): greedy max coverage of delta-balls."""
from __future__ import annotations

import contextlib
import heapq
from dataclasses import dataclass, field, replace

import numpy as np

from ..config_ranges import NON_NEGATIVE, POSITIVE, POSITIVE_INT, Range, field_ranges
from ..errors import UserError
from ..registry import SELECTORS
from ..traits import SelectorTraits
from .base import PER_PICK, Selector, per_pick_info
from .toolkit import FarthestFirst, KnnParams, kmeans, nearest_other_group_sq_dist, range_graph


# Small pools (digits: 1,347 points in 64-d pixel space) have few close neighbours, so alpha = 0.95
# leaves balls that cover ~15% of the pool with 20 picks and ProbCover loses to random; alpha = 0.5
# covers ~50% and beats it (measured on digits, linear probe, budgets 10/20/40, seeds 1-5).
SMALL_POOL = 20_000
SMALL_POOL_PURITY = 0.5
PAPER_PURITY = 0.95


def default_purity(pool_size: int) -> float:
    """The purity when none is given: the paper's 0.95, and 0.5 below 20,000 points (where 0.95
    leaves nearly empty balls)."""
    return PAPER_PURITY if pool_size >= SMALL_POOL else SMALL_POOL_PURITY


@field_ranges(delta=POSITIVE, purity=Range(gt=0, le=1), n_clusters=Range(ge=2), kmeans_iters=POSITIVE_INT,
              purity_sample=POSITIVE_INT, max_edges=POSITIVE_INT, knn_exact_max=NON_NEGATIVE,
              knn_approximate=Range(choices=("ivf", "hnsw")))
@dataclass
class ProbCoverConfig:
    delta: float | None = field(default=None, metadata={"help": "ball radius (L2); None = purity rule"})
    purity: float | None = field(default=None, metadata={
        "help": "alpha: fraction of balls that must stay pure (None: 0.95, the paper's; 0.5 below 20,000 points)"})
    n_clusters: int | None = field(default=None, metadata={
        "help": "K-Means pseudo-label clusters for the purity rule, at most N (default = max(2, budget))"})
    kmeans_iters: int = 100
    purity_sample: int = field(default=10_000, metadata={"help": "rows sampled to estimate purity (exact when N is smaller)"})
    max_edges: int = field(default=600_000_000, metadata={"help": "refuse graphs larger than this (4 bytes an edge)"})
    knn_exact_max: int = 200_000
    knn_approximate: str = "ivf"


def purity_delta(nearest_other_dist: np.ndarray, purity: float) -> float:
    """Largest delta such that at least `purity` of the balls are pure.

    Ball i (points at distance < delta) is pure exactly when delta <= the distance from i to the
    nearest point with another pseudo-label, so the purity of delta is the fraction of those
    distances >= delta, and the largest admissible delta is their (1 - purity) quantile (the
    order statistic, no interpolation)."""
    values = np.sort(np.asarray(nearest_other_dist, dtype=np.float64))
    n = len(values)
    # keep at least ceil(purity * n) points whose distance is >= delta
    position = n - int(np.ceil(purity * n - 1e-9))
    return float(values[min(max(position, 0), n - 1)])


def greedy_max_coverage(offsets: np.ndarray, targets: np.ndarray, budget: int,
                        covered: np.ndarray | None = None) -> tuple[list[int], np.ndarray, list[int]]:
    """Greedy max coverage on a CSR graph (i covers targets[offsets[i]:offsets[i + 1]]).

    Each step picks the point covering the most still-uncovered points (ties: lowest index), the
    same choice as recomputing every out-degree after removing the edges into covered points.
    Lazy evaluation: gains only shrink, so a stale heap entry is an upper bound and is refreshed
    when it reaches the top. Stops early when no point covers anything new (saturation).
    Returns (picks, covered mask, gains)."""
    n = len(offsets) - 1
    covered = np.zeros(n, dtype=bool) if covered is None else covered
    degrees = np.diff(offsets)
    heap = [(-int(g), i) for i, g in enumerate(degrees)]
    heapq.heapify(heap)
    picks: list[int] = []
    gains: list[int] = []
    while len(picks) < budget and heap:
        neg_bound, i = heapq.heappop(heap)
        if neg_bound == 0:
            break
        gain = int(np.count_nonzero(~covered[targets[offsets[i]:offsets[i + 1]]]))
        if heap and (-gain, i) > heap[0]:
            heapq.heappush(heap, (-gain, i))
            continue
        if gain == 0:
            break
        picks.append(i)
        gains.append(gain)
        covered[targets[offsets[i]:offsets[i + 1]]] = True
    return picks, covered, gains


@dataclass
class CoverageResult:
    """Result of `probcover_picks`."""

    picks: np.ndarray           # (budget,) int64 in pick order, no duplicates
    gains: list[int]            # points newly covered by each coverage pick
    coverage: float             # fraction of the pool covered by the coverage picks
    picks_by_coverage: int
    picks_by_farthest_first: int
    edges: int
    index_kind: str


def probcover_picks(features: np.ndarray, delta: float, budget: int, params: KnnParams | None = None,
                    seed: int = 0, max_edges: int | None = None, timer=None,
                    fixed: np.ndarray | None = None) -> CoverageResult:
    """ProbCover's selection for a given delta (reference: prob_cover.py, `construct_graph` and
    `select_samples`).

    1. Graph: edge i -> j when ||f_i - f_j|| < delta (plain L2, strict, self-loops), for EVERY row
       (`range_graph` on delta**2; the reference builds rows in batches of 500 over
       range(N // 500), so its last N mod 500 rows get no out-edges and can never be chosen).
    2. Already labeled (`fixed`, a second round): the balls of the labeled points count as
       covered before the first pick (the reference removes the edges into every point a labeled
       point covers), so a labeled point, whose ball is then all covered, is never picked.
    3. `greedy_max_coverage`: the point covering the most uncovered points, lowest index on ties.
    4. Saturation: once no ball covers anything new, the remaining picks are made farthest-first
       from the picks so far and the labeled points (the reference appends index 0 again and again).

    `coverage` counts the labeled balls too. Raises UserError when the graph has more than
    `max_edges` edges.
    """
    phase = timer or (lambda name: contextlib.nullcontext())
    n = features.shape[0]
    with phase("range_graph"):
        offsets, targets, index_kind = range_graph(features, float(delta) ** 2, params, seed=seed)
        edges = int(offsets[-1])
        if max_edges is not None and edges > max_edges:
            raise UserError(f"probcover delta={delta:.4g} gives {edges:,} edges (limit {max_edges:,}); "
                            "lower delta or raise max_edges.")
    fixed = np.zeros(0, dtype=np.int64) if fixed is None else np.asarray(fixed, dtype=np.int64)
    with phase("greedy_coverage"):
        covered = np.zeros(n, dtype=bool)
        for i in fixed:  # the labeled balls
            covered[targets[offsets[i]:offsets[i + 1]]] = True
        picks, covered, gains = greedy_max_coverage(offsets, targets, budget, covered)
        coverage = float(covered.mean())
        by_coverage = len(picks)
        del offsets, targets
    if by_coverage < budget:
        with phase("saturation_fallback"):
            state = FarthestFirst(features)
            state.add_many(np.concatenate([fixed, np.asarray(picks, dtype=np.int64)]))
            for _ in range(budget - by_coverage):
                nxt = state.next()
                picks.append(nxt)
                state.add(nxt)
    return CoverageResult(np.asarray(picks, dtype=np.int64), gains, coverage, by_coverage, budget - by_coverage,
                          edges, index_kind)


@SELECTORS.register("probcover", "ProbCover: greedy max coverage of delta-balls, delta by the purity rule",
                    config=ProbCoverConfig)
class ProbCoverSelector(Selector):
    """ProbCover, cold start. Graph: edge i -> j when ||f_i - f_j|| < delta (exact, blockwise
    GEMMs over row blocks that include every row, up to knn_exact_max points; a faiss range
    search on an IVF index above it). Greedy: repeatedly pick the point whose ball
    covers the most still-uncovered points (`probcover_picks`).

    delta (unless given): K-Means pseudo-labels with K = n_clusters (default the budget), then
    the largest delta whose balls are pure (one pseudo-label) for at least `purity` of the points
    (computed exactly from each point's distance to its nearest other-label point, on a seeded
    sample of `purity_sample` rows when N is larger). purity defaults to the paper's 0.95, and to
    0.5 for pools under 20,000 points, where 0.95 leaves nearly empty balls.

    Saturation: once every point is covered no ball adds anything; the remaining picks are made
    farthest-first (k-center greedy from the picks so far), so no index is ever repeated (the
    reference returns index 0 again and again)."""

    @staticmethod
    def resolved_config(config: ProbCoverConfig, pool_size: int | None = None,
                        budget: int | None = None) -> tuple[ProbCoverConfig, list[str]]:
        """The purity `select` will use, for ``describe probcover --dataset D``."""
        if config.delta is not None:
            return config, []
        notes = ["delta is chosen at select time by the purity rule"]
        if config.purity is not None:
            return config, notes
        if pool_size is None:
            return config, notes + [f"purity None: {PAPER_PURITY}, or {SMALL_POOL_PURITY} below {SMALL_POOL:,} points"]
        return replace(config, purity=default_purity(pool_size)), notes

    def validate(self, pool_size, budget, context):
        cfg = self.config
        if cfg.delta is not None and not cfg.delta > 0:
            raise UserError(f"probcover delta must be a positive distance, got {cfg.delta}.")
        if cfg.purity is not None and not 0 < cfg.purity <= 1:
            raise UserError(f"probcover purity must lie in (0, 1], got {cfg.purity}.")
        if cfg.delta is None and cfg.n_clusters is not None and cfg.n_clusters > pool_size:
            raise UserError(f"probcover n_clusters={cfg.n_clusters} exceeds the pool of {pool_size} points; give "
                            f"n_clusters <= {pool_size} or leave it unset (= the budget).")

    traits = SelectorTraits(uses_initial_labeled=True)

    def _select(self, features, budget, seed, context, timer):
        cfg = self.config
        n = features.shape[0]
        clusters = None
        purity = cfg.purity if cfg.purity is not None else default_purity(n)
        params = KnnParams(exact_max=cfg.knn_exact_max, approximate=cfg.knn_approximate)
        info: dict = {}
        delta = cfg.delta
        if delta is None:
            # one cluster would make every ball pure; a given n_clusters is <= N (`validate`)
            n_clusters = cfg.n_clusters or min(max(2, budget), n)
            with timer("kmeans"):
                clustering = kmeans(features, n_clusters, n_iter=cfg.kmeans_iters, seed=seed)
            with timer("purity_delta"):
                rng = np.random.default_rng(seed)
                rows = np.arange(n) if n <= cfg.purity_sample else np.sort(rng.choice(n, cfg.purity_sample, replace=False))
                other_sq = nearest_other_group_sq_dist(features, clustering.assignments, rows)
                delta = purity_delta(np.sqrt(np.maximum(other_sq, 0)), purity)
                if not np.isfinite(delta) or delta <= 0:
                    raise UserError("probcover could not choose delta by the purity rule (all points share one "
                                    "pseudo-label or duplicates sit on cluster borders); pass delta=VALUE.")
            info.update(delta_rule="purity", purity=purity, purity_clusters=int(n_clusters), purity_rows=int(len(rows)))
            clusters = clustering.assignments
        else:
            info.update(delta_rule="given")
        result = probcover_picks(features, float(delta), budget, params, seed=seed, max_edges=cfg.max_edges,
                                 timer=timer, fixed=context.initial_labeled)
        gains = result.gains
        # per pick: its pseudo-label cluster (purity rule only) and the points it newly covered
        # (None for the farthest-first picks after saturation)
        info[PER_PICK] = per_pick_info(
            budget, cluster=clusters[result.picks] if clusters is not None else None,
            score=np.asarray(gains + [np.nan] * (budget - len(gains)), dtype=np.float64), score_name="newly_covered",
            cluster_sizes=np.bincount(clusters) if clusters is not None else None)
        info.update(delta=float(delta), knn_index=result.index_kind, edges=result.edges, mean_degree=result.edges / n,
                    coverage=result.coverage, picks_by_coverage=result.picks_by_coverage,
                    picks_by_farthest_first=result.picks_by_farthest_first,
                    gain_first_last=[gains[0], gains[-1]] if gains else [])
        return result.picks, info
