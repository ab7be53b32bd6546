"""Uniform random selection: the baseline every table compares against."""
from __future__ import annotations

import numpy as np

from ..registry import SELECTORS
from ..traits import SelectorTraits
from .base import Selector


@SELECTORS.register("random", "m distinct indices drawn uniformly with the run's seed")
class RandomSelector(Selector):
    """m distinct pool indices drawn uniformly at random (numpy Generator seeded by the run)."""

    traits = SelectorTraits(uses_features=False)

    def _select(self, features, budget, seed, context, timer):
        pool_size = features.shape[0] if features is not None else context.pool_size
        with timer("draw"):
            indices = np.random.default_rng(seed).choice(pool_size, size=budget, replace=False)
        return np.sort(indices), {"pool_size": int(pool_size)}
