"""Contract every label-free selector must meet: exactly m unique in-range int64 indices,
deterministic per seed, seed-dependent where it claims to be, labels never read."""
from __future__ import annotations

import numpy as np
import pytest

from selector_helpers import FAST_OVERRIDES, label_free_selectors, mixture
from uslbench.registry import SELECTORS
from uslbench.selectors.base import LabelAccessError, SelectionContext

BUDGET = 10
FEATURES = mixture()
LABELS = np.arange(len(FEATURES)) % 6


def make(name: str, tmp_path, seed_offset: int = 0):
    if name == "file":  # the file selector needs a file: a fixed set of BUDGET indices
        path = tmp_path / "picks.npy"
        np.save(path, np.arange(3, 3 + 2 * BUDGET, 2))
        return SELECTORS.create(f"file:{path}")
    return SELECTORS.create(name, **FAST_OVERRIDES.get(name, {}))


def context() -> SelectionContext:
    return SelectionContext(pool_size=len(FEATURES), labels=LABELS, labels_allowed=False)


def test_every_selector_of_the_design_is_registered():
    expected = {"random", "stratified", "coreset", "usl", "usl_t", "clip_usl", "typiclust", "probcover", "file"}
    assert expected <= set(SELECTORS.names())


@pytest.mark.parametrize("name", label_free_selectors())
def test_contract(name, tmp_path):
    ctx = context()
    first = make(name, tmp_path).select(FEATURES, BUDGET, seed=1, context=ctx)
    indices = first.indices
    assert indices.dtype == np.int64 and indices.shape == (BUDGET,)
    assert len(np.unique(indices)) == BUDGET
    assert indices.min() >= 0 and indices.max() < len(FEATURES)
    assert not ctx.labels_read
    assert all(isinstance(v, float) and v >= 0 for v in first.seconds.values()) and first.seconds
    again = make(name, tmp_path).select(FEATURES, BUDGET, seed=1, context=context())
    assert np.array_equal(indices, again.indices), "same seed must give the same indices"
    if SELECTORS.traits(name).seed_dependent:
        others = [make(name, tmp_path).select(FEATURES, BUDGET, seed=s, context=context()).indices for s in (2, 3, 4)]
        assert any(not np.array_equal(np.sort(indices), np.sort(o)) for o in others), "seeds 1-4 all gave one set"


@pytest.mark.parametrize("name", label_free_selectors())
def test_labels_are_never_read(name, tmp_path):
    class Trap(SelectionContext):
        @property
        def labels(self):
            raise LabelAccessError("read")

    make(name, tmp_path).select(FEATURES, BUDGET, seed=1, context=Trap(pool_size=len(FEATURES)))


@pytest.mark.parametrize("name", label_free_selectors())
def test_budget_equal_to_pool_and_tiny_budget(name, tmp_path):
    if name == "file":
        pytest.skip("the file selector's budget is the file's length")
    small = FEATURES[:24]
    for budget in (1, 24):
        selection = make(name, tmp_path).select(small, budget, seed=1)
        assert sorted(selection.indices.tolist()) == sorted(set(selection.indices.tolist()))
        assert len(selection.indices) == budget


def test_stratified_reads_labels_only_when_allowed():
    with pytest.raises(LabelAccessError):
        SELECTORS.create("stratified").select(FEATURES, BUDGET, seed=1, context=context())


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
