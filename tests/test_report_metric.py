"""`leaderboard --metric final|best|median20`: which top-1 of a run the tables show (issue 11)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from uslbench.errors import UserError
from uslbench.report.leaderboard import write_leaderboard
from uslbench.report.records import load_records, metric_value

# 25 evaluations: the best (90) comes early, the last 20 are 70..89 in a shuffled order
LATE = [70.0 + i for i in (3, 17, 0, 12, 8, 19, 5, 1, 14, 10, 6, 18, 2, 9, 15, 4, 11, 16, 7, 13)]
CURVE = [{"step": 100 * (i + 1), "top1": v} for i, v in enumerate([50.0, 60.0, 90.0, 65.0, 66.0] + LATE)]


def _write(root: Path, key: str, selector: str, seed: int, metrics: dict, tags=("trains", "ssl")) -> None:
    record = {"schema": 1, "key": key, "status": "ok", "learner_tags": list(tags),
              "spec": {"dataset": "digits", "encoder": "pixels", "selector": selector, "learner": "fixmatch",
                       "budget": 10, "seed": seed},
              "resolved": {"budget": 10}, "metrics": metrics}
    path = root / "runs" / key / "record.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))


def _schema(root: Path) -> None:
    from uslbench import SCHEMA_VERSION

    for path in root.glob("runs/*/record.json"):
        record = json.loads(path.read_text())
        record["schema"] = SCHEMA_VERSION
        path.write_text(json.dumps(record))


def test_metric_value_by_hand():
    stored = {"top1": 88.0, "best_top1_over_training": 90.0, "median20_top1": 79.5, "curve": CURVE}
    assert metric_value(stored, "final") == 88.0
    assert metric_value(stored, "best") == 90.0
    assert metric_value(stored, "median20") == 79.5
    # older records: read from the curve (median of 70..89 = 79.5; the early 90 is not in the last 20)
    old = {"top1": 88.0, "curve": CURVE}
    assert metric_value(old, "best") == 90.0
    assert metric_value(old, "median20") == pytest.approx(float(np.median(LATE))) == 79.5
    # a probe evaluates once: every metric is its top-1
    assert metric_value({"top1": 61.0}, "median20") == metric_value({"top1": 61.0}, "best") == 61.0
    with pytest.raises(UserError, match="Unknown metric 'mean'"):
        metric_value(stored, "mean")


def test_metric_choice(tmp_path):
    root = tmp_path / "results"
    _write(root, "a", "random", 1, {"top1": 80.0, "best_top1_over_training": 84.0, "median20_top1": 81.0,
                                    "curve": CURVE})
    _write(root, "b", "random", 2, {"top1": 82.0, "best_top1_over_training": 86.0, "median20_top1": 83.0,
                                    "curve": CURVE})
    _write(root, "c", "usl", 1, {"top1": 90.0, "curve": CURVE})   # older record: no best / median20 fields
    _schema(root)
    by_metric = {m: load_records(root, warn=lambda _: None, metric=m).set_index("key")["top1"].to_dict()
                 for m in ("final", "best", "median20")}
    assert by_metric["final"] == {"a": 80.0, "b": 82.0, "c": 90.0}
    assert by_metric["best"] == {"a": 84.0, "b": 86.0, "c": 90.0}
    assert by_metric["median20"] == {"a": 81.0, "b": 83.0, "c": 79.5}
    captions = {}
    for metric in ("final", "best", "median20"):
        board = write_leaderboard(root, out_dir=tmp_path / metric, plots=False, warn=lambda _: None, metric=metric)
        captions[metric] = board.text
    assert "Final top-1 accuracy (%)" in captions["final"]
    assert "Best top-1 accuracy (%) over the evaluations during training" in captions["best"]
    assert "Median top-1 accuracy (%) of the last 20 evaluations" in captions["median20"]
    # the cells follow the metric: random's mean is 81 / 85 / 82
    assert "81.0 ± 1.4" in captions["final"] and "85.0 ± 1.4" in captions["best"] and "82.0 ± 1.4" in captions["median20"]
    csv_text = write_leaderboard(root, fmt="csv", out_dir=tmp_path / "csv", plots=False, warn=lambda _: None,
                                 metric="median20").text
    assert csv_text.splitlines()[0].split(",")[5] == "metric" and ",median20," in csv_text
    with pytest.raises(UserError, match="Unknown metric"):
        write_leaderboard(root, out_dir=tmp_path / "x", plots=False, metric="last")


def test_leaderboard_cli_metric(tmp_path):
    from click.testing import CliRunner

    from uslbench.cli import main

    root = tmp_path / "results"
    _write(root, "a", "random", 1, {"top1": 80.0, "best_top1_over_training": 84.0, "median20_top1": 81.0,
                                    "curve": CURVE})
    _schema(root)
    result = CliRunner().invoke(main, ["leaderboard", str(root), "--metric", "best", "--no-plots",
                                       "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "Best top-1 accuracy (%)" in result.output and "84.0 (1)" in result.output
    bad = CliRunner().invoke(main, ["leaderboard", str(root), "--metric", "mean"])
    assert bad.exit_code == 2 and "median20" in bad.output
