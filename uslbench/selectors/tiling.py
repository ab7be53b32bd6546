"""Blockwise distance tiling shared by the NumPy toolkit and the torch kernels (`torch_exact`):
one GEMM on augmented factors gives a tile of squared distances. Its own module so that the
toolkit and the torch kernels both depend on it without importing each other."""
from __future__ import annotations

from typing import Iterator

import numpy as np


def row_blocks(n: int, block: int, start: int = 0) -> Iterator[tuple[int, int]]:
    """(start, stop) pairs covering start..n, the last block included even when shorter."""
    for lo in range(start, n, block):
        yield lo, min(n, lo + block)


def distance_factors(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Factors whose product is the squared-distance matrix: left = [x, |x|^2, 1] and
    right = [-2x, 1, |x|^2] (float32, (N, d + 2)), so `left[rows] @ right[cols].T` gives
    |x_i|^2 + |x_j|^2 - 2 x_i.x_j in one GEMM. The features are centred first: distances do not
    change under translation, and a large shared offset would otherwise cancel catastrophically."""
    x = np.ascontiguousarray(features - features.mean(axis=0, dtype=np.float64), dtype=np.float32)
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64).astype(np.float32)[:, None]
    ones = np.ones_like(sq)
    return np.hstack([x, sq, ones]), np.hstack([-2.0 * x, ones, sq])
