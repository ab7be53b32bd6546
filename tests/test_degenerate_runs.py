"""A degenerate selection is still scored, and no seed leaves a table cell silently (issue 12,
item 2). Digits: the test split holds 46 images of the digit 3 among 450, so the rule "predict
the labeled set's only class" scores 100 * 46 / 450 = 10.2222...%."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import uslbench.catalog  # noqa: F401  (registers every entry)
from uslbench.report.records import load_records
from uslbench.report.tables import aggregate, format_cell, render

THREES = [3, 13, 22, 47, 48]  # the first five train images of the digit 3
SHARE_OF_THREES = 100.0 * 46 / 450


def test_linear_probe_scores_a_single_class_labeled_set(digits_dataset, digits_features):
    from uslbench.registry import LEARNERS

    assert set(digits_dataset.train.labels[THREES]) == {3}
    metrics = LEARNERS.create("linear").fit(digits_dataset, np.array(THREES), seed=1, features=digits_features)
    assert metrics["top1"] == pytest.approx(SHARE_OF_THREES, abs=1e-12)
    assert metrics["degenerate"] == "single_class"
    assert metrics["per_class_top1"] == [0.0, 0.0, 0.0, 100.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert metrics["n_test"] == 450


@pytest.mark.parametrize("learner", ["knn", "labelprop"])
def test_other_probes_train_on_one_class_and_predict_it(learner, digits_dataset, digits_features):
    from uslbench.registry import LEARNERS

    metrics = LEARNERS.create(learner).fit(digits_dataset, np.array(THREES), seed=1, features=digits_features)
    assert metrics["top1"] == pytest.approx(SHARE_OF_THREES, abs=1e-12)


def test_a_single_class_selection_gives_an_ok_record(tmp_path):
    from uslbench.harness.pipeline import run_spec
    from uslbench.harness.spec import RunSpec

    picks = tmp_path / "threes.npy"
    np.save(picks, np.array(THREES))
    outcome = run_spec(RunSpec(dataset="digits", selector=f"file:{picks}", learner="linear", budget=5, seed=1),
                       tmp_path / "results", echo=lambda m: None)
    record = json.loads(outcome.record_path.read_text())
    assert record["status"] == "ok"
    assert record["degenerate"] == "single_class"
    assert record["classes_covered"] == 1
    assert record["metrics"]["top1"] == pytest.approx(SHARE_OF_THREES, abs=1e-12)
    assert record["metrics"]["prediction_rule"].startswith("constant: class 3")


def test_format_cell_shows_missing_seeds():
    assert format_cell(74.63, 3.14, 5, 8.66, 5) == "74.6 ± 3.1 (5) (+8.7)"
    assert format_cell(74.63, 3.14, 4, 8.66, 5) == "74.6 ± 3.1 (n=4/5) (+8.7)"
    assert format_cell(float("nan"), float("nan"), 0, float("nan"), 2) == "no score (n=0/2)"


def _rows(selector, seeds, values, status="ok", error=None):
    return [{"dataset": "d", "encoder": "e", "selector": selector, "learner": "linear", "budget": 10, "seed": s,
             "top1": v, "oracle": False, "probe": True, "status": status, "error": error}
            for s, v in zip(seeds, values)]


def test_a_cell_that_lost_a_seed_says_so():
    df = pd.DataFrame(_rows("random", [1, 2, 3, 4, 5], [50.0, 52.0, 54.0, 56.0, 58.0])
                      + _rows("usl", [1, 2, 3, 4], [60.0, 62.0, 64.0, 66.0])
                      + _rows("usl", [5], [float("nan")], "failed", "ValueError: needs samples of at least 2 classes")
                      + _rows("probcover", [1, 2], [float("nan")] * 2, "failed", "RuntimeError: boom")
                      + _rows("typiclust", [1, 2, 3], [55.0, 57.0, 59.0]))
    agg = aggregate(df).set_index("selector")
    assert (agg.loc["usl", "n"], agg.loc["usl", "n_expected"], agg.loc["usl", "seeds_failed"]) == (4, 5, "5")
    assert agg.loc["usl", "mean"] == pytest.approx(63.0) and agg.loc["usl", "delta"] == pytest.approx(9.0)
    assert (agg.loc["typiclust", "n_expected"], agg.loc["typiclust", "seeds_missing"]) == (5, "4 5")
    assert agg.loc["probcover", "n"] == 0 and agg.loc["probcover", "seeds_failed"] == "1 2"
    assert (agg.loc["random", "n"], agg.loc["random", "n_expected"]) == (5, 5)
    text = render(df)
    # mean ± std [95% t-interval] (seeds): t_{0.975,4} = 2.776, t_{0.975,3} = 3.182, t_{0.975,2} = 4.303
    assert "| 54.0 ± 3.2 [50.1, 57.9] (5) " in text
    assert "64.0 ± 2.6 [" not in text  # the failed seed is not averaged in
    assert "63.0 ± 2.6 [58.9, 67.1] (n=4/5) (+9.0)" in text
    assert "57.0 ± 2.0 [52.0, 62.0] (n=3/5) (+3.0)" in text
    assert "no score (n=0/5)" in text
    assert ("n=k/N: the cell averages k of the N seeds run in its column; missing seeds: "
            "probcover / linear / m = 10: seed 1 failed (RuntimeError: boom); seed 2 failed (RuntimeError: boom); "
            "seeds 3, 4, 5 not run (no record) · typiclust / linear / m = 10: seeds 4, 5 not run (no record) · "
            "usl / linear / m = 10: seed 5 failed (ValueError: needs samples of at least 2 classes).") in text


def test_failed_records_reach_the_table_only_when_asked(tmp_path):
    runs = tmp_path / "runs"
    for key, seed, status, top1 in (("a", 1, "ok", 70.0), ("b", 2, "failed", None), ("c", 1, "ok", 60.0),
                                    ("d", 2, "ok", 62.0)):
        selector = "usl" if key in "ab" else "random"
        record = {"schema": 1, "key": key, "status": status,
                  "spec": {"dataset": "digits", "selector": selector, "learner": "linear", "budget": 10,
                           "seed": seed, "encoder": "pixels"}, "resolved": {"budget": 10}}
        if top1 is not None:
            record["metrics"] = {"top1": top1}
        else:
            record["error"] = "ValueError: boom\nTraceback..."
        (runs / key).mkdir(parents=True)
        (runs / key / "record.json").write_text(json.dumps(record))
    assert len(load_records(tmp_path, warn=lambda m: None)) == 3
    every = load_records(tmp_path, warn=lambda m: None, include_failed=True)
    failed = every[every["status"] == "failed"].iloc[0]
    assert (failed["key"], failed["seed"], failed["error"]) == ("b", 2, "ValueError: boom")
    assert np.isnan(failed["top1"])
    from uslbench.report.leaderboard import write_leaderboard

    board = write_leaderboard(tmp_path, out_dir=tmp_path / "out", plots=False, warn=lambda m: None)
    assert board.n_records == 3
    assert "70.0 (n=1/2) (+9.0)" in board.text
    assert "usl / linear / m = 10: seed 2 failed (ValueError: boom)" in board.text
