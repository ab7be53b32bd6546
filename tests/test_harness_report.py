"""Leaderboard tables, formats, old records and plots (no runs: records are written by hand)."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from uslbench.errors import UserError
from uslbench.report.leaderboard import write_leaderboard
from uslbench.report.records import load_records
from uslbench.report.tables import aggregate, format_cell, render

GOLDEN = Path(__file__).parent / "golden"


def _collect(messages: list[str]):
    return messages.append


def test_golden_markdown_is_exact(tmp_path):
    messages: list[str] = []
    board = write_leaderboard(GOLDEN / "records", out_dir=tmp_path, plots=False, warn=_collect(messages))
    expected = (GOLDEN / "LEADERBOARD.md").read_text()
    assert board.text == expected
    assert (tmp_path / "LEADERBOARD.md").read_text() == expected
    # 11 ok records of the current schema (g010 with typed traits, g011 with the tags that records
    # held before traits were typed: both mark stratified as the oracle); 1 of another schema left
    # out; the failed one (usl, linear, m = 20, seed 2) is not averaged but marks its cell "n=2/3"
    assert board.n_records == 11
    assert "usl / linear / m = 20: seed 2 failed (no error message recorded)" in board.text
    assert any("skipped 1 record(s) of another schema" in m and "g100" in m for m in messages)
    assert "stratified † | 68.0 ± 2.8 [42.6, 93.4] (2) (+16.0)" in board.text


def test_aggregate_by_hand():
    rows = [("random", 50.0), ("random", 54.0), ("usl", 61.0), ("usl", 63.0), ("usl", 65.0)]
    df = pd.DataFrame([{"dataset": "d", "encoder": "e", "selector": s, "learner": "linear", "budget": 10,
                        "seed": i, "top1": v, "oracle": False} for i, (s, v) in enumerate(rows)])
    agg = aggregate(df).set_index("selector")
    assert agg.loc["usl", "mean"] == pytest.approx(63.0)
    assert agg.loc["usl", "std"] == pytest.approx(2.0)          # sample std of 61, 63, 65
    assert agg.loc["usl", "n"] == 3
    assert agg.loc["usl", "delta"] == pytest.approx(11.0)       # 63 - 52
    assert math.isnan(agg.loc["random", "delta"])
    assert agg.loc["random", "std"] == pytest.approx(math.sqrt(8.0))


def test_format_cell():
    assert format_cell(74.63, 3.14, 5, 8.66) == "74.6 ± 3.1 (5) (+8.7)"
    assert format_cell(74.63, 3.14, 5, 8.66, ci95=3.9) == "74.6 ± 3.1 [70.7, 78.5] (5) (+8.7)"
    # a single seed has no spread: its value alone, never a fake "± 0.0"
    assert format_cell(40.0, 0.0, 1, -2.04) == "40.0 (1) (-2.0)"
    assert format_cell(40.0, 0.0, 1, math.nan, ci95=math.nan) == "40.0 (1)"


def test_csv_and_latex_formats(tmp_path):
    df = load_records(GOLDEN / "records", warn=lambda m: None)
    csv_text = render(df, "csv")
    table = pd.read_csv(pd.io.common.StringIO(csv_text))
    usl = table[(table.selector == "usl") & (table.learner == "linear") & (table.budget == 10)].iloc[0]
    assert (usl["mean"], usl["n"], usl["delta"]) == (62.0, 2, 10.0)
    latex = render(df, "latex")
    assert r"62.0 $\pm$ 1.4 [49.3, 74.7] (2) (+10.0)" in latex and r"stratified $^\dagger$" in latex
    # 2 budgets + 2 learners, the paired comparison per learner (2) and classes covered (1)
    assert latex.count(r"\begin{table}") == 7
    with pytest.raises(UserError, match="Unknown format"):
        render(df, "html")


def test_leaderboard_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        write_leaderboard(tmp_path / "nope")
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "record.json").write_text("{ half written")
    messages: list[str] = []
    with pytest.raises(UserError, match="No finished runs"):
        write_leaderboard(tmp_path, warn=_collect(messages))
    assert any("unreadable record" in m for m in messages)


def test_newer_schema_is_skipped(tmp_path):
    shutil.copytree(GOLDEN / "records", tmp_path / "r")
    path = next((tmp_path / "r" / "runs").glob("g001/record.json"))
    record = json.loads(path.read_text())
    record["schema"] = 99
    path.write_text(json.dumps(record))
    messages: list[str] = []
    df = load_records(tmp_path / "r", warn=_collect(messages))
    assert len(df) == 10 and "g001" not in set(df["key"])
    assert any("skipped 2 record(s) of another schema" in m for m in messages)


def test_plots_are_written(tmp_path):
    board = write_leaderboard(GOLDEN / "records", out_dir=tmp_path, warn=lambda m: None)
    names = sorted(p.name for p in board.plots)
    # class histograms: m=10 and m=20 (the old record has none); accuracy vs budget: linear, fixmatch
    assert names == ["accuracy_vs_budget_digits_pixels_fixmatch.png", "accuracy_vs_budget_digits_pixels_linear.png",
                     "class_distribution_digits_pixels_m10.png", "class_distribution_digits_pixels_m20.png"]
    for path in board.plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
