"""Leaderboard statistics: 95% t-intervals, the paired comparison with random, per-class and
per-seed tables. Expected values are computed by hand from the textbook formulas."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from uslbench.report.leaderboard import write_leaderboard
from uslbench.report.stats import (ci95_halfwidth, classes_covered, format_paired, paired_p_value,
                                   paired_vs_baseline, per_class_table, per_seed_table)
from uslbench.report.tables import aggregate, render

# t quantiles t_{0.975, df} from a printed table (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2)
T975 = {1: 12.706, 2: 4.303, 4: 2.776}


def _frame(values: dict[str, list[float]], learner="linear", budget=10, hists=None, per_class=None):
    rows = []
    for selector, tops in values.items():
        for seed, top1 in enumerate(tops, start=1):
            rows.append({"dataset": "d", "encoder": "e", "selector": selector, "learner": learner, "budget": budget,
                         "seed": seed, "top1": top1, "oracle": False, "probe": True, "key": f"{selector}{seed}",
                         "selection_key": f"s-{selector}{seed}",
                         "class_histogram": (hists or {}).get(selector, [None] * len(tops))[seed - 1],
                         "num_classes": 3,
                         "per_class_top1": (per_class or {}).get(selector, [None] * len(tops))[seed - 1]})
    return pd.DataFrame(rows)


def test_ci95_against_t_table():
    assert ci95_halfwidth(2.0, 3) == pytest.approx(T975[2] * 2.0 / math.sqrt(3), abs=2e-3)
    assert ci95_halfwidth(1.5, 5) == pytest.approx(T975[4] * 1.5 / math.sqrt(5), abs=2e-3)
    assert math.isnan(ci95_halfwidth(0.0, 1))


def test_paired_comparison_by_hand():
    # differences usl - random per seed: +1, +2, +3, +4, -1 -> 4 wins, 1 loss, mean +1.8
    df = _frame({"random": [50, 50, 50, 50, 50], "usl": [51, 52, 53, 54, 49], "coreset": [50, 50, 50, 50, 50]})
    table = paired_vs_baseline(df).set_index("selector")
    usl = table.loc["usl"]
    assert (usl.n_pairs, usl.wins, usl.ties, usl.losses) == (5, 4, 0, 1)
    assert usl.mean_diff == pytest.approx(1.8)
    # t = mean / (s / sqrt(n)); s of (1,2,3,4,-1) = sqrt(14.8 / 4) = 1.9235
    t = 1.8 / (math.sqrt(14.8 / 4) / math.sqrt(5))
    assert t == pytest.approx(2.0925, abs=1e-4)
    # two-sided p for t = 2.0925 with 4 degrees of freedom lies between 0.10 (t = 2.132) and 0.20 (t = 1.533)
    assert 0.10 < usl.p_value < 0.20
    from scipy import stats
    assert usl.p_value == pytest.approx(2 * stats.t.sf(t, 4))
    coreset = table.loc["coreset"]
    assert (coreset.wins, coreset.ties, coreset.losses, coreset.p_value) == (0, 5, 0, 1.0)
    assert "random" not in table.index
    assert format_paired(4, 0, 1, 1.8, usl.p_value) == f"4-0-1 (+1.8, p={usl.p_value:.3f})"
    assert format_paired(1, 0, 0, 5.5, math.nan) == "1-0-0 (+5.5, p n/a)"


def test_paired_uses_only_shared_seeds():
    df = _frame({"random": [50, 60, 70], "usl": [55, 66]})
    usl = paired_vs_baseline(df).set_index("selector").loc["usl"]
    assert usl.n_pairs == 2 and usl.mean_diff == pytest.approx(5.5)
    assert math.isnan(paired_p_value([3.0, 3.0]))       # zero variance: undefined, not "p < 0.001"
    assert math.isnan(paired_p_value([3.0]))


def test_aggregate_has_ci_and_cells_show_it():
    df = _frame({"random": [50, 54], "usl": [61, 65, 63]})
    agg = aggregate(df).set_index("selector")
    assert agg.loc["usl", "ci95"] == pytest.approx(T975[2] * 2.0 / math.sqrt(3), abs=2e-3)
    text = render(df, "markdown")
    half = agg.loc["usl", "ci95"]
    assert f"63.0 ± 2.0 [{63 - half:.1f}, {63 + half:.1f}] (3) (+11.0)" in text
    assert "paired comparison with random, learner linear" in text
    assert "2-0-0 (+11.0, p n/a)" in text                # diffs 11, 11: constant, so no p-value


def test_per_class_and_per_seed_tables_and_files(tmp_path):
    hists = {"random": [[2, 0, 1], [1, 1, 1]], "usl": [[1, 1, 1], [1, 1, 1]]}
    per_class = {"random": [[100.0, 0.0, 50.0], [80.0, 20.0, None]], "usl": [[90.0, 60.0, 70.0], [70.0, 80.0, 50.0]]}
    df = _frame({"random": [50, 40], "usl": [70, 66]}, hists=hists, per_class=per_class)
    pc = per_class_table(df).set_index(["selector", "class"])
    assert pc.loc[("random", 0), "mean"] == pytest.approx(90.0)
    assert pc.loc[("random", 2), "n"] == 1 and pc.loc[("random", 2), "mean"] == pytest.approx(50.0)
    assert pc.loc[("usl", 1), "std"] == pytest.approx(math.sqrt(200.0))
    seeds = per_seed_table(df)
    assert list(seeds["classes_covered"]) == [2, 3, 3, 3]
    covered = classes_covered(df).set_index("selector")
    assert covered.loc["random", "covered"] == pytest.approx(2.5) and covered.loc["usl", "num_classes"] == 3

    # through the writer: records on disk -> companion CSVs and the per-class heatmap
    import json
    for row in df.itertuples():
        run = tmp_path / "root" / "runs" / row.key
        run.mkdir(parents=True)
        record = {"schema": __import__("uslbench").SCHEMA_VERSION, "status": "ok", "key": row.key,
                  "spec": {"dataset": "d", "encoder": "e", "selector": row.selector, "learner": "linear",
                           "budget": 10, "seed": row.seed}, "resolved": {"budget": 10},
                  "metrics": {"top1": row.top1, "per_class_top1": row.per_class_top1},
                  "class_histogram": row.class_histogram, "learner_traits": {"uses_features": True}}
        (run / "record.json").write_text(json.dumps(record))
    board = write_leaderboard(tmp_path / "root", out_dir=tmp_path / "out", warn=lambda m: None)
    names = sorted(p.name for p in board.tables)
    assert names == ["LEADERBOARD.paired.csv", "LEADERBOARD.per_class.csv", "LEADERBOARD.seeds.csv"]
    seeds_csv = pd.read_csv(tmp_path / "out" / "LEADERBOARD.seeds.csv")
    assert len(seeds_csv) == 4 and set(seeds_csv["seed"]) == {1, 2}
    paired_csv = pd.read_csv(tmp_path / "out" / "LEADERBOARD.paired.csv")
    assert paired_csv.loc[0, "test"] == "paired t-test, two-sided" and paired_csv.loc[0, "wins"] == 2
    assert any(p.name == "per_class_d_e_linear_m10.png" for p in board.plots)
