"""Bad input gets a clear UserError before any work starts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from selector_helpers import label_free_selectors, mixture
from uslbench.errors import UserError
from uslbench.registry import SELECTORS
from uslbench.selectors.base import SelectionContext

FEATURES = mixture(60, 8, 3)
FEATURE_SELECTORS = [n for n in label_free_selectors() if SELECTORS.traits(n).uses_features]


class NoWork:
    """Fails the test if a selector starts working (its _select runs)."""

    def __init__(self, monkeypatch, name):
        cls = SELECTORS.get(name).factory
        monkeypatch.setattr(cls, "_select", lambda *a, **k: pytest.fail("work started on bad input"))


@pytest.mark.parametrize("name", FEATURE_SELECTORS)
@pytest.mark.parametrize("features, message", [
    (np.where(np.arange(8) == 2, np.nan, FEATURES[:30]), "NaN or infinite"),
    (np.where(np.arange(8) == 2, np.inf, FEATURES[:30]), "NaN or infinite"),
    (np.vstack([FEATURES[:29], np.zeros((1, 8))]), "all-zero rows"),
    ((FEATURES[:30] * 100).astype(np.int64), "floating point"),
    (FEATURES[:30, 0], "2-D"),
    (FEATURES[:30][None], "2-D"),
    (np.zeros((0, 8), dtype=np.float32), "empty"),
    ([[0.1, 0.2]], "numpy array"),
])
def test_bad_features(name, features, message, monkeypatch):
    NoWork(monkeypatch, name)
    with pytest.raises(UserError, match=message):
        SELECTORS.create(name).select(features, 3, seed=1)


@pytest.mark.parametrize("name", label_free_selectors())
@pytest.mark.parametrize("budget, message", [(0, "positive integer"), (-3, "positive integer"), (2.5, "positive integer"),
                                             ("abc", "positive integer"), (61, "exceeds the unlabeled pool")])
def test_bad_budget(name, budget, message, monkeypatch, tmp_path):
    NoWork(monkeypatch, name)
    selector = SELECTORS.create(f"file:{tmp_path / 'x.npy'}") if name == "file" else SELECTORS.create(name)
    with pytest.raises(UserError, match=message):
        selector.select(FEATURES, budget, seed=1, context=SelectionContext(pool_size=len(FEATURES)))


@pytest.mark.parametrize("name", FEATURE_SELECTORS)
def test_budget_above_distinct_points(name, monkeypatch):
    NoWork(monkeypatch, name)
    duplicated = np.repeat(FEATURES[:5], 4, axis=0)  # 20 rows, 5 distinct
    with pytest.raises(UserError, match="5 distinct points"):
        SELECTORS.create(name).select(duplicated, 6, seed=1)


@pytest.mark.parametrize("name", FEATURE_SELECTORS)
def test_duplicates_within_the_distinct_count_are_fine(name):
    duplicated = np.vstack([FEATURES, FEATURES[:20]])
    selection = SELECTORS.create(name).select(duplicated, 5, seed=1)
    assert len(set(selection.indices.tolist())) == 5


def _write(tmp_path, name, content):
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("name, content, message", [
    ("out.npy", np.array([1, 2, 60]), "outside the pool"),
    ("neg.json", "[1, 2, -1]", "outside the pool"),
    ("dup.csv", "1\n2\n2\n", "repeats 1 indices"),
    ("frac.json", "[1, 2.5, 3]", "non-integer"),
    ("word.csv", "index\n1\nfoo\n3\n", "non-integer"),
    ("float.npy", np.array([1.5, 2.0, 3.0]), "non-integer"),
    ("bool.json", "[true, 2, 3]", "non-integer"),
    ("two_d.npy", np.array([[1, 2, 3]]), "1-D"),
    ("bad.json", "[1, 2", "not valid JSON"),
    ("sets.json", json.dumps({"a": [1, 2, 3], "b": [4, 5, 6]}), "holds several index sets"),
    ("picks.txt2", "1\n2\n3\n", "unknown extension"),
    ("short.npy", np.array([1, 2]), "holds 2 indices but the budget is 3"),
])
def test_bad_index_files(tmp_path, name, content, message):
    path = _write(tmp_path, name, content)
    with pytest.raises(UserError, match=message):
        SELECTORS.create(f"file:{path}").select(FEATURES, 3, seed=1)


def test_missing_index_file_and_unknown_set(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        SELECTORS.create(f"file:{tmp_path / 'nope.npy'}").select(FEATURES, 3, seed=1)
    path = _write(tmp_path, "sets.json", json.dumps({"a": [1, 2, 3]}))
    with pytest.raises(UserError, match="has no set 'zzz'.*Sets: a"):
        SELECTORS.create(f"file:{path}#zzz").select(FEATURES, 3, seed=1)


def test_bad_config_values():
    with pytest.raises(UserError, match=r"'delta' of selector 'probcover' must be a finite number > 0, got -1.0"):
        SELECTORS.create("probcover", delta=-1.0).select(FEATURES, 3, seed=1)
    with pytest.raises(UserError, match=r"'mode' of selector 'usl_t' must be one of 'head', 'backbone'"):
        SELECTORS.create("usl_t", mode="both").select(FEATURES, 3, seed=1)
    with pytest.raises(UserError, match="build_module"):
        SELECTORS.create("usl_t", mode="backbone").select(FEATURES, 3, seed=1)
    with pytest.raises(UserError, match="Unknown config key"):
        SELECTORS.create("usl", lamda=1.0)


@pytest.mark.parametrize("name, config, message", [
    ("usl", {"n_clusters": 2}, r"n_clusters=2 is below the budget 3"),
    ("clip_usl", {"n_clusters": 2}, r"n_clusters=2 is below the budget 3"),
    ("usl", {"n_clusters": 61}, r"n_clusters=61 exceeds the pool of 60 points"),
    ("usl", {"knn_k": 61}, r"knn_k=61 exceeds the pool of 60 points.*give knn_k <= 60"),
    ("usl_t", {"n_clusters": 2}, r"n_clusters=2 is below the budget 3"),
    ("probcover", {"n_clusters": 61}, r"n_clusters=61 exceeds the pool of 60 points"),
])
def test_settings_that_cannot_work_on_the_pool_are_refused_not_changed(name, config, message, monkeypatch):
    """A value that cannot work (fewer clusters than picks, more neighbours than points) was once
    raised or clamped silently; now validation refuses it, before any work and before features."""
    NoWork(monkeypatch, name)
    with pytest.raises(UserError, match=message):
        SELECTORS.create(name, **config).validate(len(FEATURES), 3, SelectionContext())
    with pytest.raises(UserError, match=message):
        SELECTORS.create(name, **config).select(FEATURES, 3, seed=1)
