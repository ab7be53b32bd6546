"""The contract every registered selector meets, on real data (digits pixel features): exactly m
unique in-range int64 indices, deterministic per seed, seed-dependent unless its traits say not,
labels read exactly when its traits say `needs_labels`, bad budgets refused before any work.
Each entry's test settings come from its registration (`test_config`), not from this file."""
from __future__ import annotations

import numpy as np
import pytest

from selector_helpers import mixture
from uslbench.errors import UserError
from uslbench.catalog import SELECTORS
from uslbench.selectors.base import LabelAccessError, SelectionContext

BUDGET = 20


def make(name: str, tmp_path, pool_size: int, budget: int = BUDGET):
    """The selector with its data-set preset and its registered contract-test settings."""
    overrides = SELECTORS.get(name).test_overrides(tmp_path, pool_size=pool_size, budget=budget)
    return SELECTORS.create(name, dataset="digits", **overrides)


def context(dataset, labels_allowed: bool, pool: int | None = None) -> SelectionContext:
    labels = dataset.train.labels if pool is None else dataset.train.labels[:pool]
    return SelectionContext(pool_size=len(labels), dataset=dataset if pool is None else None, dataset_name="digits",
                            labels=labels, labels_allowed=labels_allowed)


def test_every_selector_of_the_design_is_registered():
    expected = {"random", "stratified", "coreset", "usl", "usl_t", "clip_usl", "typiclust", "probcover", "file"}
    assert expected <= set(SELECTORS.names())


@pytest.mark.parametrize("name", SELECTORS.names())
def test_contract(name, tmp_path, digits_dataset, digits_features):
    features, pool = digits_features.train, digits_dataset.pool_size
    traits = SELECTORS.traits(name)
    # labels are on offer to every selector here: only those that declare needs_labels may take them
    ctx = context(digits_dataset, labels_allowed=True)
    first = make(name, tmp_path, pool).select(features, BUDGET, seed=1, context=ctx)
    assert ctx.labels_read == traits.needs_labels, "labels read without declaring needs_labels (or not read)"
    indices = first.indices
    assert indices.dtype == np.int64 and indices.shape == (BUDGET,)
    assert len(np.unique(indices)) == BUDGET
    assert indices.min() >= 0 and indices.max() < pool
    assert first.seconds and all(isinstance(v, float) and v >= 0 for v in first.seconds.values())
    again = make(name, tmp_path, pool).select(features, BUDGET, seed=1, context=context(digits_dataset, True))
    assert np.array_equal(indices, again.indices), "same seed must give the same indices"
    if traits.seed_dependent:
        other = make(name, tmp_path, pool).select(features, BUDGET, seed=2, context=context(digits_dataset, True))
        assert not np.array_equal(np.sort(indices), np.sort(other.indices)), "seeds 1 and 2 gave one set"


@pytest.mark.parametrize("name", SELECTORS.names())
def test_labels_are_withheld_unless_declared(name, tmp_path, digits_dataset, digits_features):
    """Without labels_allowed, reading the labels raises: label readers fail, the others never try."""
    selector = make(name, tmp_path, digits_dataset.pool_size)
    ctx = context(digits_dataset, labels_allowed=False)
    if SELECTORS.traits(name).needs_labels:
        with pytest.raises(LabelAccessError):
            selector.select(digits_features.train, BUDGET, seed=1, context=ctx)
    else:
        assert len(selector.select(digits_features.train, BUDGET, seed=1, context=ctx).indices) == BUDGET


@pytest.mark.parametrize("name", SELECTORS.names())
def test_smallest_and_largest_budget(name, tmp_path, digits_dataset, digits_features):
    """m = the whole (small) pool, and m = 1 for selectors that do not need one image per class."""
    pool = 24
    budgets = (pool,) if SELECTORS.traits(name).needs_labels else (1, pool)
    for budget in budgets:
        selection = make(name, tmp_path, pool, budget).select(
            digits_features.train[:pool], budget, seed=1, context=context(digits_dataset, True, pool))
        assert sorted(selection.indices.tolist()) == sorted(set(selection.indices.tolist()))
        assert len(selection.indices) == budget and selection.indices.max() < pool


@pytest.mark.parametrize("name", SELECTORS.names())
@pytest.mark.parametrize("budget", [0, -3, 2.5, "ten", 10_000])
def test_bad_budgets_are_refused_before_work(name, budget, tmp_path, digits_dataset, digits_features, monkeypatch):
    selector = make(name, tmp_path, digits_dataset.pool_size)
    monkeypatch.setattr(type(selector), "_select", lambda *a, **k: pytest.fail("work started on a bad budget"))
    with pytest.raises(UserError, match="[Bb]udget"):
        selector.select(digits_features.train, budget, seed=1, context=context(digits_dataset, True))


def test_stratified_covers_every_class_evenly(digits_dataset):
    selection = SELECTORS.create("stratified").select(None, 23, seed=4, context=context(digits_dataset, True))
    counts = np.bincount(digits_dataset.train.labels[selection.indices], minlength=10)
    assert counts.sum() == 23 and counts.min() == 2 and counts.max() == 3 and (counts == 3).sum() == 3


def test_stratified_refuses_budget_below_class_count(digits_dataset):
    with pytest.raises(UserError, match="at least the number of classes"):
        SELECTORS.create("stratified").select(None, 7, seed=1, context=context(digits_dataset, True))
    relaxed = SELECTORS.create("stratified", allow_fewer_classes=True)
    selection = relaxed.select(None, 7, seed=1, context=context(digits_dataset, True))
    assert len(np.unique(digits_dataset.train.labels[selection.indices])) == 7


@pytest.mark.parametrize("name, overrides", [("usl", {"knn_exact_max": 100}), ("usl", {"preset": "imagenet_moco"}),
                                             ("probcover", {"knn_exact_max": 100})])
def test_approximate_and_imagenet_paths_repeat_exactly(name, overrides):
    """The IVF k-NN (above knn_exact_max), sampled K-Means and the k-NN regulariser of the
    ImageNet presets: two runs, byte-identical indices and diagnostics."""
    features = mixture(2000, 16, 8)
    runs = [SELECTORS.create(name, **overrides).select(features, 20, seed=7) for _ in range(2)]
    assert np.array_equal(runs[0].indices, runs[1].indices)
    assert runs[0].info == runs[1].info
    if "knn_exact_max" in overrides and name == "usl":
        assert runs[0].info["knn_index"].startswith("ivf")
