"""Uniform random selection: the baseline every table compares against."""
from __future__ import annotations

import numpy as np

from ..registry import SELECTORS
from ..traits import SelectorTraits
from .base import Selector


@SELECTORS.register("random", "m distinct indices drawn uniformly with the run's seed")
class RandomSelector(Selector):
    """m distinct pool indices drawn uniformly at random (numpy Generator seeded by the run).
    With an already-labeled set, the m are drawn uniformly from the images outside it."""

    traits = SelectorTraits(uses_features=False, uses_initial_labeled=True)

    def _select(self, features, budget, seed, context, timer):
        pool_size = features.shape[0] if features is not None else context.pool_size
        with timer("draw"):
            rng = np.random.default_rng(seed)
            if context.initial_labeled is None:
                indices = rng.choice(pool_size, size=budget, replace=False)
            else:
                indices = rng.choice(np.flatnonzero(context.unlabeled_mask(pool_size)), size=budget, replace=False)
        return np.sort(indices), {"pool_size": int(pool_size)}
