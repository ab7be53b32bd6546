"""Coreset, k-center greedy from a cold start (Sener & Savarese, ICLR 2018)."""
from __future__ import annotations

import numpy as np

from ..registry import SELECTORS
from ..traits import SelectorTraits
from .base import PER_PICK, Selector, per_pick_info
from .toolkit import FarthestFirst


@SELECTORS.register("coreset", "k-center greedy: seeded random start, then the farthest point from the picks")
class CoresetSelector(Selector):
    """k-center greedy on Euclidean distances of the features. With no labeled set to start
    from, the first center is a seeded random point; each next pick is the point whose distance
    to its nearest chosen center is largest (ties: lowest index). With an already-labeled set
    (a second round), the labeled images are the initial centers, as in Sener & Savarese
    (Algorithm 1 starts from the labeled set s0), and all m picks are farthest-first. A running
    min-distance vector keeps memory at O(N); nothing N x N is ever formed. Score of a pick: its
    distance to the nearest center when it was chosen (the seeded first pick has none)."""

    traits = SelectorTraits(uses_initial_labeled=True)

    def _select(self, features, budget, seed, context, timer):
        with timer("k_center_greedy"):
            state = FarthestFirst(features)
            if context.initial_labeled is None:
                first = int(np.random.default_rng(seed).integers(features.shape[0]))
                picks = [first]
                state.add(first)
                distances = [float("nan")]
            else:
                first = None
                picks, distances = [], []
                state.add_many(context.initial_labeled)
            radius_sq = []
            while len(picks) < budget:
                nxt = state.next()
                radius_sq.append(float(state.min_sq[nxt]))
                distances.append(float(np.sqrt(max(state.min_sq[nxt], 0.0))))
                picks.append(nxt)
                state.add(nxt)
            covering = float(np.sqrt(max(state.min_sq.max(), 0.0)))
        info = {"first_center": first,
                PER_PICK: per_pick_info(len(picks), score=distances, score_name="distance_to_nearest_center"),
                "covering_radius": covering,  # max distance of any point to its nearest pick
                "mean_dist_to_nearest_pick": float(np.sqrt(np.maximum(state.min_sq[~state.chosen], 0)).mean())
                if (~state.chosen).any() else 0.0,
                "pick_radius_first_last": [float(np.sqrt(radius_sq[0])), float(np.sqrt(radius_sq[-1]))]
                if radius_sq else []}
        return np.asarray(picks, dtype=np.int64), info
