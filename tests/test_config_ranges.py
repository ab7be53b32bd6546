"""Config fields declare their valid ranges and every value is checked before any work
(issue 12, item 21): `usl.lam=nan` gave an "ok" run, `n_clusters=-3` was read as the default yet
keyed as another run, `linear.C=-1` failed only inside scikit-learn."""
from __future__ import annotations

import math
import typing

import pytest
from click.testing import CliRunner

from uslbench.cli import main
from uslbench.config_ranges import Range, field_range, numeric_kind
from uslbench.errors import UserError
from uslbench.catalog import LEARNERS, REGISTRIES, SELECTORS

RUN = ["run", "--dataset", "digits", "--budget", "10", "--seed", "1"]


def _entries():
    for kind, registry in REGISTRIES.items():
        for name in registry.names():
            entry = registry.get(name)
            if entry.config_cls is not None:
                yield kind, registry, name, entry


def test_every_numeric_field_of_every_entry_declares_a_range():
    """A new config field with a number and no declared range (or UNCONSTRAINED) fails here."""
    missing = []
    for kind, _, name, entry in _entries():
        hints = typing.get_type_hints(entry.config_cls)
        for f in entry.config_fields():
            if numeric_kind(hints[f.name]) is not None and field_range(entry.config_cls, f.name) is None:
                missing.append(f"{kind} {name}: {f.name}")
    assert missing == []


def test_defaults_and_every_preset_lie_in_their_ranges():
    checked = 0
    for _, registry, name, entry in _entries():
        full_name = f"{name}:x" if entry.argument_field else name
        for dataset in [None, *entry.presets]:
            registry.resolve_config(full_name, dataset=dataset)   # raises UserError when out of range
            checked += 1
    assert checked >= 30


@pytest.mark.parametrize("rng, integer, text", [
    (Range(ge=1), True, "an integer >= 1"),
    (Range(gt=0), False, "a finite number > 0"),
    (Range(ge=0, lt=1), False, "a finite number in [0, 1)"),
    (Range(gt=0, le=1), False, "a finite number in (0, 1]"),
    (Range(choices=("ivf", "hnsw")), False, "one of 'ivf', 'hnsw'"),
    (Range(ge=-1), True, "an integer >= -1"),
])
def test_range_descriptions(rng, integer, text):
    assert rng.describe(integer) == text


def test_range_membership():
    assert not Range(ge=0).contains(math.nan) and not Range().contains(math.inf)
    assert Range(finite=False).contains(math.inf) and not Range(finite=False).contains(math.nan)
    assert Range(ge=0, lt=1).contains(0) and not Range(ge=0, lt=1).contains(1.0)
    assert Range(ge=1).contains(10 ** 400)   # a huge integer is not "infinite"


@pytest.mark.parametrize("args, message", [
    (["--selector", "usl", "--learner", "linear", "--selector-config", "usl.lam=nan"],
     "Config key 'lam' of selector 'usl' must be a finite number >= 0, got nan. (lam: regulariser weight lambda)"),
    (["--selector", "usl", "--learner", "linear", "--selector-config", "usl.n_clusters=-3"],
     "Config key 'n_clusters' of selector 'usl' must be an integer >= 1, got -3. (n_clusters: K-Means clusters"
     ", at least the budget (default = budget; > budget over-clusters))"),
    (["--selector", "random", "--learner", "linear", "--learner-config", "linear.C=-1"],
     "Config key 'C' of learner 'linear' must be a finite number > 0, got -1.0."),
    (["--selector", "random", "--learner", "linear", "--learner-config", "linear.C=inf"],
     "Config key 'C' of learner 'linear' must be a finite number > 0, got inf."),
    (["--selector", "random", "--learner", "fixmatch", "--learner-config", "fixmatch.threshold=1.5"],
     "Config key 'threshold' of learner 'fixmatch' must be a finite number in [0, 1], got 1.5."),
    (["--selector", "random", "--learner", "fixmatch", "--learner-config", "fixmatch.ema=1"],
     "Config key 'ema' of learner 'fixmatch' must be a finite number in [0, 1), got 1.0. "
     "(ema: EMA decay of the evaluated weights (0 = no EMA))"),
    (["--selector", "random", "--learner", "knn", "--learner-config", "knn.weights=gaussian"],
     "Config key 'weights' of learner 'knn' must be one of 'uniform', 'distance', got 'gaussian'."),
    (["--selector", "probcover", "--learner", "linear", "--selector-config", "probcover.purity=0"],
     "Config key 'purity' of selector 'probcover' must be a finite number in (0, 1], got 0.0. (purity: alpha: "
     "fraction of balls that must stay pure (None: 0.95, the paper's; 0.5 below 20,000 points))"),
    (["--selector", "random", "--learner", "labelprop", "--learner-config", "labelprop.alpha=1"],
     "Config key 'alpha' of learner 'labelprop' must be a finite number in (0, 1), got 1.0."),
    (["--selector", "random", "--learner", "linear", "--encoder", "pixels", "--encoder-config", "pixels.max_side=0"],
     "Config key 'max_side' of encoder 'pixels' must be an integer >= 1, got 0."),
])
def test_nonsense_values_are_refused_before_any_work(tmp_path, args, message):
    root = tmp_path / "results"
    result = CliRunner().invoke(main, RUN + args + ["--results-root", str(root)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"Error: {message}"
    assert not root.exists()   # nothing computed, nothing written


def test_sweep_checks_every_override_before_submitting(tmp_path):
    root = tmp_path / "results"
    result = CliRunner().invoke(main, ["sweep", "--dataset", "digits", "--selector", "random,usl", "--learner",
                                       "linear", "--budget", "10", "--selector-config", "usl.lam=nan",
                                       "--executor", "inline", "--results-root", str(root)])
    assert result.exit_code == 2
    assert "Config key 'lam' of selector 'usl' must be a finite number >= 0, got nan." in result.stderr
    assert not (root / "runs").exists()


def test_python_and_sweep_file_values_are_checked_too():
    """Values that do not come as strings (Python calls, YAML numbers) get the same check."""
    with pytest.raises(UserError, match=r"'n_clusters' of selector 'usl' must be an integer, got 2\.5"):
        SELECTORS.create("usl", n_clusters=2.5)
    with pytest.raises(UserError, match=r"'lam' of selector 'usl' must be a finite number >= 0, got nan"):
        SELECTORS.create("usl", lam=float("nan"))
    with pytest.raises(UserError, match=r"'steps' of learner 'fixmatch' must be a number, got True"):
        LEARNERS.create("fixmatch", steps=True)
    assert LEARNERS.create("fixmatch", steps=100, threshold=1).config.threshold == 1


def test_describe_shows_the_valid_values():
    out = CliRunner().invoke(main, ["describe", "linear"]).output
    assert "C: float = 100.0   # [a finite number > 0]" in out
