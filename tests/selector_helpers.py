"""Shared pieces of the selector tests (not a conftest, so other test files stay unaffected)."""
from __future__ import annotations

import numpy as np

from uslbench.perf.selectors import gaussian_mixture
from uslbench.catalog import SELECTORS



def mixture(n: int = 300, d: int = 16, clusters: int = 6, seed: int = 0) -> np.ndarray:
    return gaussian_mixture(n, d, clusters, seed=seed)


def label_free_selectors() -> list[str]:
    return [name for name in SELECTORS.names() if not SELECTORS.traits(name).needs_labels]
