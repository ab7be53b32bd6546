"""Duplicate rows in the pool (issue 12, item 1): a selection never holds two identical feature
rows while distinct unpicked rows remain. The pools are the cases from the issue: copies of a few
points among distinct ones, and a pool where every point appears five times, shuffled."""
from __future__ import annotations

import numpy as np
import pytest

from selector_helpers import mixture
from uslbench.registry import SELECTORS
from uslbench.selectors.base import SelectionContext


def heavy_copies() -> np.ndarray:
    """300 rows: 3 points copied 80 times each, then 60 distinct points (63 distinct)."""
    rng = np.random.default_rng(0)
    return np.vstack([np.repeat(rng.standard_normal((3, 16)), 80, axis=0),
                      rng.standard_normal((60, 16))]).astype(np.float32)


def two_points() -> np.ndarray:
    """9 rows holding 2 distinct points (8 copies of one, 1 of the other)."""
    rng = np.random.default_rng(1)
    return np.vstack([np.repeat(rng.standard_normal((1, 8)), 8, axis=0),
                      rng.standard_normal((1, 8))]).astype(np.float32)


def fivefold() -> np.ndarray:
    """200 rows: 40 distinct points each copied 5 times, shuffled."""
    rng = np.random.default_rng(2)
    points = np.repeat(rng.standard_normal((40, 16)), 5, axis=0)
    return points[rng.permutation(len(points))].astype(np.float32)


def distinct_rows(features: np.ndarray, indices: np.ndarray) -> int:
    return len(np.unique(features[indices], axis=0))


POOLS = {"heavy_copies": (heavy_copies, 10), "two_points": (two_points, 2), "fivefold": (fivefold, 40),
         "mixture_plus_copies": (lambda: np.vstack([mixture(), np.repeat(mixture()[:4], 30, axis=0)]), 12)}


def make(name: str, tmp_path, pool_size: int, budget: int):
    if name == "file":
        path = tmp_path / "picks.npy"
        np.save(path, np.arange(budget) * (pool_size // budget))
        return SELECTORS.create(f"file:{path}")
    # each entry's small test settings come from its registration (e.g. usl_t: few epochs)
    return SELECTORS.create(name, **SELECTORS.get(name).test_overrides(tmp_path))


@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("name", SELECTORS.names())
def test_every_selector_obeys_the_duplicate_rule(name, pool, tmp_path):
    build, budget = POOLS[pool]
    features = build()
    labels = np.arange(len(features)) % 2
    selector = make(name, tmp_path, len(features), budget)
    context = SelectionContext(pool_size=len(features), labels=labels, labels_allowed=selector.traits.needs_labels)
    selection = selector.select(features, budget, seed=1, context=context)
    if selector.traits.uses_features:
        assert distinct_rows(features, selection.indices) == budget
        again = make(name, tmp_path, len(features), budget).select(features, budget, seed=1, context=context)
        assert np.array_equal(selection.indices, again.indices)
    else:
        # random, stratified and file:PATH never read features: the rule does not apply, and the
        # features (given or not) must not change their picks
        blind = make(name, tmp_path, len(features), budget).select(
            None, budget, seed=1, context=SelectionContext(pool_size=len(features), labels=labels,
                                                           labels_allowed=selector.traits.needs_labels))
        assert np.array_equal(selection.indices, blind.indices)
        assert "duplicate_picks_replaced" not in selection.info


@pytest.mark.parametrize("name, build, budget, replaced", [
    ("typiclust", heavy_copies, 10, 3),   # before the fix: 7 distinct images of 10
    ("typiclust", two_points, 2, 1),      # before: two copies of one point
    ("usl", fivefold, 40, 5),             # before: 35 distinct (empty clusters filled with copies)
])
def test_issue_cases(name, build, budget, replaced):
    features = build()
    selection = SELECTORS.create(name).select(features, budget, seed=1)
    assert distinct_rows(features, selection.indices) == budget
    assert selection.info["duplicate_picks_replaced"] == replaced
    assert selection.info["pool_distinct_rows"] == len(np.unique(features, axis=0))


def test_duplicate_representatives_is_exact():
    from uslbench.selectors.base import duplicate_representatives

    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 5)).astype(np.float32)
    near = a.copy()
    near[2] = np.nextafter(near[2], np.float32(10))  # one ulp away: a different row
    zero_signs = np.array([0.0, -0.0, 1.0, 2.0, 3.0], dtype=np.float32)
    rows = np.stack([a, b, a, near, zero_signs, np.abs(zero_signs), b, a])
    assert duplicate_representatives(rows).tolist() == [0, 1, 0, 3, 4, 4, 1, 0]
    assert duplicate_representatives(mixture()).tolist() == list(range(300))


def test_replacement_is_farthest_first_and_keeps_order():
    from uslbench.selectors.base import duplicate_representatives, replace_duplicate_picks

    points = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [0.0, 0.0], [2.0, 0.0]], dtype=np.float32)
    representative = duplicate_representatives(points)
    assert representative.tolist() == [0, 0, 2, 3, 0, 5]
    # picks 0 and 4 are copies: 4 is replaced by the row farthest from {0, 2}, i.e. row 3 (x = 5)
    indices, replaced = replace_duplicate_picks(points, np.array([0, 2, 4]), representative)
    assert (indices.tolist(), replaced) == ([0, 2, 3], 1)
    # unsorted selections keep their order; two repeated copies: rows 3 then 5
    indices, replaced = replace_duplicate_picks(points, np.array([2, 1, 0, 4]), representative)
    assert (indices.tolist(), replaced) == ([2, 1, 3, 5], 2)


@pytest.mark.parametrize("name", ["usl", "typiclust", "coreset", "probcover"])
def test_pools_without_duplicates_are_untouched(name):
    features = mixture()
    selector = SELECTORS.create(name)
    selection = selector.select(features, 10, seed=2)
    assert "duplicate_picks_replaced" not in selection.info
    from uslbench.utils import Timer

    raw, _ = SELECTORS.create(name)._select(features, 10, 2, SelectionContext(pool_size=300), Timer())
    assert np.array_equal(selection.indices, np.asarray(raw, dtype=np.int64))
