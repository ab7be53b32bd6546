"""A sweep's leaderboard expects, in each cell, exactly the seeds the sweep planned for that row: a
row planned with fewer seeds on purpose (a sweep file's extra grid: the published USL selections
exist for seeds 1, 2 and 5 only) is complete, a planned seed without a record never vanishes, and
a planned cell without any record shows as incomplete, not as "not run". Without a plan (a plain
`leaderboard RESULTS`) a cell expects the seeds run anywhere in its column."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from uslbench.cli import main
from uslbench.harness.grid import build_sweep
from uslbench.harness.resources import Resources
from uslbench.harness.sweep import run_sweep
from uslbench.report.leaderboard import write_leaderboard
from uslbench.report.records import load_records, planned_cells, record_row
from uslbench.report.tables import aggregate, render

PUB = "usl (published)"


def _rows(selector, seeds, values):
    return [{"dataset": "d", "encoder": "e", "selector": selector, "learner": "linear", "budget": 10, "seed": s,
             "top1": v, "oracle": False, "probe": True, "status": "ok", "error": None}
            for s, v in zip(seeds, values)]


def _plan(selector, seeds):
    return [("d", "e", selector, "linear", 10, s) for s in seeds]


@pytest.fixture
def frame():
    """random ran seeds 1-5, the published row its 3 seeds 1, 2, 5, usl 4 of 5 (seed 4 lost)."""
    return pd.DataFrame(_rows("random", [1, 2, 3, 4, 5], [50.0, 52.0, 54.0, 56.0, 58.0])
                        + _rows(PUB, [1, 2, 5], [60.0, 62.0, 64.0])
                        + _rows("usl", [1, 2, 3, 5], [60.0, 62.0, 64.0, 66.0]))


PLANNED = (_plan("random", range(1, 6)) + _plan(PUB, [1, 2, 5]) + _plan("usl", range(1, 6))
           + _plan("typiclust", range(1, 6)))   # typiclust: planned, no record at all


def test_each_cell_expects_the_seeds_planned_for_its_row(frame):
    agg = aggregate(frame, PLANNED).set_index("selector")
    assert (agg.loc[PUB, "n"], agg.loc[PUB, "n_expected"], agg.loc[PUB, "seeds_missing"]) == (3, 3, "")
    assert (agg.loc["usl", "n"], agg.loc["usl", "n_expected"], agg.loc["usl", "seeds_missing"]) == (4, 5, "4")
    assert (agg.loc["typiclust", "n"], agg.loc["typiclust", "n_expected"]) == (0, 5)
    assert agg.loc["typiclust", "seeds_missing"] == "1 2 3 4 5" and np.isnan(agg.loc["typiclust", "mean"])
    assert (agg.loc["random", "n"], agg.loc["random", "n_expected"]) == (5, 5)
    text = render(frame, planned=PLANNED)
    # 60, 62, 64: mean 62, std 2, t_{0.975,2} = 4.303 -> 62 -+ 4.303 * 2 / sqrt(3) = [57.0, 67.0]; random 54.0
    assert f"| {PUB} " in text and "62.0 ± 2.0 [57.0, 67.0] (3) (+8.0)" in text
    assert "63.0 ± 2.6 [58.9, 67.1] (n=4/5) (+9.0)" in text
    assert "| typiclust " in text and "no score (n=0/5)" in text
    assert ("n=k/N: the cell averages k of the N seeds planned; missing seeds: "
            "typiclust / linear / m = 10: seeds 1, 2, 3, 4, 5 not run (no record) · "
            "usl / linear / m = 10: seed 4 not run (no record).") in text
    assert PUB + " / linear" not in text   # the published row is complete: no note names it


def test_without_a_plan_the_column_rule_stays(frame):
    agg = aggregate(frame).set_index("selector")
    assert (agg.loc[PUB, "n"], agg.loc[PUB, "n_expected"], agg.loc[PUB, "seeds_missing"]) == (3, 5, "3 4")
    assert "typiclust" not in agg.index
    text = render(frame)
    assert "62.0 ± 2.0 [57.0, 67.0] (n=3/5) (+8.0)" in text and "typiclust" not in text
    assert "of the N seeds run in its column" in text and f"{PUB} / linear / m = 10: seeds 3, 4 not run" in text


def test_planned_cells_label_as_records_do():
    published = {"dataset": "cifar10", "selector": "file:/x/i.json#usl_40_seed1", "learner": "linear", "seed": 1,
                 "encoder": None, "selector_config": {"label": PUB}, "learner_config": {}}
    heads = [{"key": "k1", "spec": published,   # encoder None: the resolved identity names it
              "resolved": {"budget": 40, "encoder": {"encoder": "timm", "config": {}}}},
             {"spec": {"dataset": "cifar10", "selector": "usl", "learner": "knn", "seed": 3, "encoder": "timm",
                       "selector_config": {"lam": 0.1}, "learner_config": {"k": 5}},
              "resolved": {"budget": "10"}},
             {"spec": {"dataset": "cifar10", "selector": "usl", "learner": None, "seed": 1},
              "resolved": {"budget": 10}}]   # no learner: no table row
    cells = planned_cells(heads)
    assert cells == [("cifar10", "timm", PUB, "linear", 40, 1, "k1"),
                     ("cifar10", "timm", "usl[lam=0.1]", "knn[k=5]", 10, 3, None)]
    for head, cell in zip(heads, cells):   # the row of the finished run's record lands in the same cell
        row = record_row({**head, "metrics": {"top1": 50.0}})
        assert tuple(row[k] for k in ("dataset", "encoder", "selector", "learner", "budget", "seed", "key")) == cell


def test_planned_runs_follow_their_records_into_version_sections(frame):
    """Records relabelled by data version ("d @abc123", versions.separate_versions) keep their plan:
    a planned run is matched to its record by run key, whatever section label the record got."""
    frame = frame.assign(key=[f"k{i}" for i in range(len(frame))], dataset="d @abc123")
    keys = dict(zip(zip(frame["selector"], frame["seed"]), frame["key"]))
    planned = [cell + (keys.get((cell[2], cell[5])),) for cell in PLANNED]
    agg = aggregate(frame, planned).set_index("selector")
    assert set(agg["dataset"]) == {"d @abc123"}           # no ghost "d" section
    assert (agg.loc[PUB, "n"], agg.loc[PUB, "n_expected"]) == (3, 3)
    # usl seed 4 has no record: it is expected where usl's other seeds landed
    assert (agg.loc["usl", "n"], agg.loc["usl", "n_expected"], agg.loc["usl", "seeds_missing"]) == (4, 5, "4")
    # typiclust has no record at all: its data set's recorded runs show where it belongs
    assert (agg.loc["typiclust", "n"], agg.loc["typiclust", "n_expected"]) == (0, 5)


def _sweep_file(folder: Path, labels: np.ndarray) -> Path:
    """digits, random x linear, m = 10, seeds 1-3, plus one published set planned for seeds 1 and 3 only."""
    picks = np.concatenate([np.flatnonzero(labels == c)[:1] for c in range(10)]).tolist()
    (folder / "indices.json").write_text(json.dumps({"pub": picks}))
    path = folder / "s.yaml"
    path.write_text(f"""
dataset: digits
selector: random
learner: linear
budget: 10
seeds: 1-3
extra_grids:
  - selector: "file:indices.json#pub"
    selector_config: {{file: {{label: "{PUB}"}}}}
    seeds: [1, 3]
""")
    return path


def test_a_sweep_leaderboard_expects_the_planned_seeds(tmp_path, digits_dataset):
    path = _sweep_file(tmp_path, digits_dataset.train.labels)
    root = tmp_path / "results"
    out = CliRunner().invoke(main, ["sweep", "--file", str(path), "--executor", "inline", "--results-root", str(root)],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "5 done" in out.output
    board = (root / "leaderboards" / "LEADERBOARD.md").read_text()
    pub_row = next(line for line in board.splitlines() if line.startswith(f"| {PUB} "))
    assert "(2)" in pub_row and "n=" not in pub_row   # seeds 1 and 3 as planned: complete
    assert "n=k/N" not in board and "not run (no record)" not in board
    # the plain leaderboard of the same root knows no plan: the column ran seeds 1-3
    plain = write_leaderboard(root, out_dir=tmp_path / "plain", plots=False, warn=lambda m: None)
    assert "(n=2/3)" in plain.text and f"{PUB} / linear / m = 10: seed 2 not run (no record)" in plain.text
    # `leaderboard ROOT --sweep-file F` plans the sweep again: the same tables as the sweep wrote
    again = CliRunner().invoke(main, ["leaderboard", str(root), "--sweep-file", str(path), "--output",
                                      str(tmp_path / "again"), "--no-plots"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    tables = board.split("## Files beside this table")[0]  # the file list differs: --no-plots
    assert (tmp_path / "again" / "LEADERBOARD.md").read_text().split("## Files beside this table")[0] == tables
    assert "- [LEADERBOARD.seeds.csv](LEADERBOARD.seeds.csv): one row per run" in board
    assert "](accuracy_vs_budget_digits_pixels_linear.png)" in board

    # a planned seed whose record is gone is named, and it never vanishes from the sweep's table
    result = run_sweep(build_sweep(sweep_file=path), root, Resources(executor="inline"), dry_run=True)
    assert result.plan.counts()["done"] == 5
    lost = next(run for run in result.plan.runs if run.spec.selector == "random" and run.spec.seed == 2)
    lost.resolved.record_path.unlink()
    planned = planned_cells(run.resolved.record_head() for run in result.plan.runs)
    assert len(planned) == 5 and len(load_records(root)) == 4
    swept = write_leaderboard(root, out_dir=tmp_path / "swept", plots=False, planned=planned,
                              keys={run.key for run in result.plan.runs}, warn=lambda m: None)
    random_row = next(line for line in swept.text.splitlines() if line.startswith("| random "))
    assert "(n=2/3)" in random_row
    assert ("of the N seeds planned; missing seeds: random / linear / m = 10: seed 2 not run (no record)."
            in swept.text)
    pub_row = next(line for line in swept.text.splitlines() if line.startswith(f"| {PUB} "))
    assert "(2)" in pub_row and "n=" not in pub_row


def test_row_order_and_rows_without_a_cell():
    """random first, a config variant right after its selector, free-label rows (published sets)
    after the selectors, oracles last; a row with no cell in a table (the published sets exist at
    m = 40 only) is left out of that table instead of printing a row of dashes."""
    rows = []
    for budget in (10, 40):
        for name in ("usl_t", "usl", "random", "usl[lam=0.1]"):
            rows += [dict(r, budget=budget) for r in _rows(name, [1, 2], [50.0, 52.0])]
        rows += [dict(r, budget=budget, oracle=True) for r in _rows("stratified", [1, 2], [55.0, 57.0])]
    rows += [dict(r, budget=40) for r in _rows(PUB, [1, 2], [60.0, 62.0])]
    text = render(pd.DataFrame(rows))
    tables = text.split("### ")
    m10 = next(t for t in tables if t.startswith("selectors × learners, m = 10"))
    m40 = next(t for t in tables if t.startswith("selectors × learners, m = 40"))
    order = [line.split("|")[1].strip() for line in m40.splitlines() if line.startswith("| ")][1:]
    assert order == ["random", "usl", "usl[lam=0.1]", "usl_t", PUB, "stratified †"]
    assert PUB not in m10 and "| usl_t " in m10
