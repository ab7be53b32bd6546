"""Coreset, k-center greedy from a cold start (Sener & Savarese, ICLR 2018)."""
from __future__ import annotations

import numpy as np

from ..registry import SELECTORS
from .base import Selector
from .toolkit import FarthestFirst


@SELECTORS.register("coreset", "k-center greedy: seeded random start, then the farthest point from the picks")
class CoresetSelector(Selector):
    """k-center greedy on Euclidean distances of the features. With no labeled set to start
    from, the first center is a seeded random point; each next pick is the point whose distance
    to its nearest chosen center is largest (ties: lowest index). A running min-distance vector
    keeps memory at O(N); nothing N x N is ever formed."""

    def _select(self, features, budget, seed, context, timer):
        with timer("k_center_greedy"):
            state = FarthestFirst(features)
            first = int(np.random.default_rng(seed).integers(features.shape[0]))
            picks = [first]
            state.add(first)
            radius_sq = []
            for _ in range(budget - 1):
                nxt = state.next()
                radius_sq.append(float(state.min_sq[nxt]))
                picks.append(nxt)
                state.add(nxt)
            covering = float(np.sqrt(max(state.min_sq.max(), 0.0)))
        info = {"first_center": first,
                "covering_radius": covering,  # max distance of any point to its nearest pick
                "mean_dist_to_nearest_pick": float(np.sqrt(np.maximum(state.min_sq[~state.chosen], 0)).mean())
                if (~state.chosen).any() else 0.0,
                "pick_radius_first_last": [float(np.sqrt(radius_sq[0])), float(np.sqrt(radius_sq[-1]))]
                if radius_sq else []}
        return np.asarray(picks, dtype=np.int64), info
