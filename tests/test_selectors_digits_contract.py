"""The contract on real data (digits pixels) for every registered selector, label readers included,
plus the budget checks every selector shares."""
from __future__ import annotations

import numpy as np
import pytest

from uslbench.errors import UserError
from uslbench.registry import SELECTORS, load_all
from uslbench.selectors.base import LabelAccessError, SelectionContext

load_all()
CONTRACT_SELECTORS = [n for n in SELECTORS.names() if SELECTORS.get(n).argument_field is None]


def _context(name, dataset):
    allowed = SELECTORS.traits(name).needs_labels
    return SelectionContext(pool_size=dataset.pool_size, dataset=dataset, dataset_name="digits",
                            labels=dataset.train.labels, labels_allowed=allowed)


@pytest.mark.parametrize("name", CONTRACT_SELECTORS)
def test_exactly_m_unique_in_range_and_deterministic(name, digits_dataset, digits_features):
    selector = SELECTORS.create(name, dataset="digits")
    feats = digits_features.train
    first = selector.select(feats, 20, seed=1, context=_context(name, digits_dataset))
    again = SELECTORS.create(name, dataset="digits").select(feats, 20, seed=1, context=_context(name, digits_dataset))
    other = selector.select(feats, 20, seed=2, context=_context(name, digits_dataset))
    for selection in (first, again, other):
        idx = selection.indices
        assert idx.dtype == np.int64 and idx.shape == (20,)
        assert len(np.unique(idx)) == 20
        assert idx.min() >= 0 and idx.max() < len(feats)
        assert all(seconds >= 0 for seconds in selection.seconds.values())
    assert np.array_equal(first.indices, again.indices), "same seed must give the same indices"
    assert not np.array_equal(first.indices, other.indices), "different seeds should differ"


@pytest.mark.parametrize("name", CONTRACT_SELECTORS)
def test_labels_are_read_only_when_declared(name, digits_dataset, digits_features):
    declared = SELECTORS.traits(name).needs_labels
    selector = SELECTORS.create(name, dataset="digits")
    context = SelectionContext(pool_size=digits_dataset.pool_size, dataset_name="digits",
                               labels=digits_dataset.train.labels, labels_allowed=False)
    if declared:
        with pytest.raises(LabelAccessError):
            selector.select(digits_features.train, 20, seed=1, context=context)
    else:
        selector.select(digits_features.train, 20, seed=1, context=context)  # would raise if it peeked
        assert context.labels_read is False


@pytest.mark.parametrize("name", CONTRACT_SELECTORS)
@pytest.mark.parametrize("budget", [0, -3, 2.5, "ten", 10_000])
def test_bad_budgets_are_refused_before_work(name, budget, digits_dataset, digits_features):
    selector = SELECTORS.create(name, dataset="digits")
    with pytest.raises(UserError, match="[Bb]udget"):
        selector.select(digits_features.train, budget, seed=1, context=_context(name, digits_dataset))


def test_stratified_covers_every_class_evenly(digits_dataset):
    selector = SELECTORS.create("stratified")
    selection = selector.select(None, 23, seed=4, context=_context("stratified", digits_dataset))
    counts = np.bincount(digits_dataset.train.labels[selection.indices], minlength=10)
    assert counts.sum() == 23 and counts.min() == 2 and counts.max() == 3 and (counts == 3).sum() == 3


def test_stratified_refuses_budget_below_class_count(digits_dataset):
    with pytest.raises(UserError, match="at least the number of classes"):
        SELECTORS.create("stratified").select(None, 7, seed=1, context=_context("stratified", digits_dataset))
    relaxed = SELECTORS.create("stratified", allow_fewer_classes=True)
    selection = relaxed.select(None, 7, seed=1, context=_context("stratified", digits_dataset))
    assert len(np.unique(digits_dataset.train.labels[selection.indices])) == 7
