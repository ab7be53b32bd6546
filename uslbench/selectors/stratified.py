"""Class-stratified random selection: an ORACLE that reads labels (upper reference, not a baseline)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..registry import SELECTORS
from ..traits import SelectorTraits
from .base import Selector


@dataclass
class StratifiedConfig:
    allow_fewer_classes: bool = False  # budget < classes: refuse (False) or cover random classes (True)


@SELECTORS.register("stratified", "ORACLE: m/C random images per class (reads labels)",
                    config=StratifiedConfig)
class StratifiedSelector(Selector):
    """floor(m / C) images per class drawn at random, the remaining m mod C spread one each over
    distinct random classes. Reads the pool labels, so tables mark it as an oracle.

    With a budget smaller than the number of classes it refuses by default; with
    allow_fewer_classes=true it picks one image from each of m random classes.
    """

    traits = SelectorTraits(needs_labels=True, uses_features=False)

    def validate(self, pool_size, budget, context):
        labels = context.labels
        n_classes = len(np.unique(labels))
        if budget < n_classes and not self.config.allow_fewer_classes:
            raise UserError(f"Selector 'stratified' needs a budget of at least the number of classes "
                            f"({n_classes}) to take one image per class; got {budget}. Raise the budget, or "
                            "pass --selector-config allow_fewer_classes=true to label one image in each of "
                            f"{budget} random classes.")

    def _select(self, features, budget, seed, context, timer):
        rng = np.random.default_rng(seed)
        labels = context.labels
        with timer("draw"):
            classes = np.unique(labels)
            members = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
            quota = {c: 0 for c in classes}
            per_class = budget // len(classes)
            for c in classes:
                quota[c] = min(per_class, len(members[c]))
            remaining = budget - sum(quota.values())
            # spread the remainder over random classes that still have unpicked members
            while remaining > 0:
                open_classes = [c for c in classes if quota[c] < len(members[c])]
                chosen = rng.permutation(open_classes)[:remaining]
                for c in chosen:
                    quota[c] += 1
                remaining -= len(chosen)
            indices = np.concatenate([members[c][:quota[c]] for c in classes])
        return np.sort(indices), {"per_class": int(per_class)}
