"""Sweep files with extra grids and labelled published selections (issue 10): the CIFAR-10 sweep
runs the paper's published index sets at m = 40 only, next to the full grid, and the tables name
them ("usl (published)") instead of by their file path."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from uslbench.errors import UserError
from uslbench.harness.grid import build_sweep, load_sweep_file
from uslbench.harness.resources import Resources
from uslbench.harness.sweep import run_sweep
from uslbench.report.leaderboard import write_leaderboard
from uslbench.report.records import load_records, record_row
from uslbench.report.tables import aggregate

REPO = Path(__file__).resolve().parents[1]


def write_sweep(folder: Path, index_sets: dict, selector_config: str = "{usl: {knn_k: 7}}") -> Path:
    """folder/sweeps/s.yaml and folder/indices.json (one folder up: a relative ../ path)."""
    (folder / "indices.json").write_text(json.dumps({"digits": index_sets}))
    (folder / "sweeps").mkdir()
    path = folder / "sweeps" / "s.yaml"
    path.write_text("""
dataset: digits
selector: [random, usl]
selector_config: SELECTOR_CONFIG
learner: linear
budget: [10, 20]
seeds: 1-2
extra_grids:
  - selector: "file:../indices.json#pub_seed1"
    selector_config: {file: {label: "pub (published)"}}
    budget: 10
    seeds: 1
  - selector: "file:../indices.json#pub_seed2"
    selector_config: {file: {label: "pub (published)"}}
    budget: 10
    seed: 2
""".replace("SELECTOR_CONFIG", selector_config))
    return path


def test_extra_grids_expand_with_their_own_axes_and_resolve_paths_against_the_file(tmp_path, monkeypatch):
    path = write_sweep(tmp_path, {"pub_seed1": list(range(10)), "pub_seed2": list(range(10, 20))})
    monkeypatch.chdir(REPO)  # another working directory: the ../ path is the sweep file's
    specs = build_sweep(sweep_file=path).specs()
    assert len(specs) == 2 * 2 * 2 + 2                       # main grid + one run per extra grid
    extra = specs[-2:]
    expected = f"file:{(tmp_path / 'indices.json').absolute()}"
    assert [s.selector for s in extra] == [f"{expected}#pub_seed1", f"{expected}#pub_seed2"]
    assert [(s.budget, s.seed, s.learner) for s in extra] == [(10, 1, "linear"), (10, 2, "linear")]
    assert all(s.selector_config == {"label": "pub (published)"} for s in extra)  # usl's knn_k stays with usl
    assert all(s.selector_config == {"knn_k": 7} for s in specs[:8] if s.selector == "usl")
    # --selector narrows the file's grid: the file's overrides of selectors left out are dropped
    only_random = build_sweep(sweep_file=path, selector="random").specs()
    assert {s.selector for s in only_random[:-2]} == {"random"}
    # command-line axes replace the main grid's, not an extra grid's own budget and seed
    narrowed = build_sweep(sweep_file=path, seeds="1").specs()
    assert len(narrowed) == 2 * 2 + 2 and [s.seed for s in narrowed[-2:]] == [1, 2]


def test_extra_grid_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("dataset: digits\nselector: random\nlearner: linear\nbudget: 10\nextra_grids:\n  - dataset: cifar10\n")
    with pytest.raises(UserError, match=r"extra_grids\[0\] has unknown keys 'dataset'"):
        load_sweep_file(path)
    path.write_text("dataset: digits\nselector: random\nlearner: linear\nbudget: 10\nextra_grids: {budget: 10}\n")
    with pytest.raises(UserError, match="extra_grids must be a list"):
        load_sweep_file(path)
    path.write_text("dataset: digits\nselector: random\nlearner: linear\nbudget: 10\nextra_grids:\n  - budget: []\n")
    with pytest.raises(UserError, match=r"extra_grids\[0\] axis 'budget' is empty"):
        load_sweep_file(path)


def test_labelled_file_rows_aggregate_as_one_named_row(tmp_path, digits_dataset):
    """Two published sets under one label form one row whose seeds are the learner seeds they were
    paired with; the file path appears nowhere in the table's row names."""
    labels = digits_dataset.train.labels
    sets = {f"pub_seed{s}": np.concatenate([np.flatnonzero(labels == c)[s:s + 1] for c in range(10)]).tolist()
            for s in (1, 2)}
    path = write_sweep(tmp_path, sets, selector_config="{}")
    sweep = build_sweep(sweep_file=path, selector="random", budget="10")
    result = run_sweep(sweep, tmp_path / "results", Resources(executor="inline"))
    assert result.final_counts["done"] == 4
    frame = load_records(tmp_path / "results")
    assert sorted(set(frame["selector"])) == ["pub (published)", "random"]
    agg = aggregate(frame).set_index("selector")
    assert agg.loc["pub (published)", "n"] == 2 and agg.loc["pub (published)", "n_expected"] == 2
    pub = frame[frame["selector"] == "pub (published)"].sort_values("seed")
    assert pub["seed"].tolist() == [1, 2] and pub["class_histogram"].map(lambda h: min(h)).tolist() == [1, 1]
    # the sweep file's leaderboard caption goes under the title; the path never names a row
    board = write_leaderboard(tmp_path / "results", out_dir=tmp_path / "board", plots=False,
                              caption="Made with:\n\n    python cli.py sweep --file s.yaml\n")
    lines = board.text.splitlines()
    assert lines[:5] == ["# Leaderboard", "", "Made with:", "", "    python cli.py sweep --file s.yaml"]
    assert "| pub (published)" in board.text and "indices.json" not in board.text
    assert (tmp_path / "board" / "LEADERBOARD.md").read_text() == board.text


def test_leaderboard_key_of_a_sweep_file(tmp_path):
    path = tmp_path / "sweeps" / "s.yaml"
    path.parent.mkdir()
    path.write_text("dataset: digits\nselector: random\nlearner: linear\nbudget: 10\n"
                    "leaderboard: {output: ../results/digits, caption: 'How.'}\n")
    sweep = build_sweep(sweep_file=path)
    assert sweep.leaderboard_output == str((tmp_path / "results" / "digits").absolute())
    assert sweep.leaderboard_caption == "How."
    path.write_text("dataset: digits\nselector: random\nlearner: linear\nbudget: 10\nleaderboard: {out: x}\n")
    with pytest.raises(UserError, match="leaderboard is a mapping with the keys output"):
        build_sweep(sweep_file=path)


def test_committed_cifar10_sweep_file_expands():
    """sweeps/cifar10_efficientnet.yaml: the full grid, the 7 published sets at m = 40, named, and
    the usl lam=0.1 ablation at m = 40."""
    sweep = build_sweep(sweep_file=REPO / "sweeps" / "cifar10_efficientnet.yaml")
    specs = sweep.specs()
    assert len(specs) == 7 * 3 * 3 * 5 + 7 * 3 + 2 * 3 * 3 * 5
    ablation = [s for s in specs if s.selector == "usl" and s.selector_config]
    assert {(s.budget, s.seed, s.selector_config["lam"]) for s in ablation} == {
        (m, seed, lam) for m in (10, 40, 100) for seed in range(1, 6) for lam in (0.1, 0.25)}
    published = [s for s in specs if s.selector.startswith("file:")]
    assert {(s.budget, s.selector_config["label"]) for s in published} == {
        (40, "usl (published)"), (40, "usl_t (published)"), (40, "random (published)")}
    assert sorted({s.seed for s in published if s.selector_config["label"] == "usl (published)"}) == [1, 2, 5]
    assert all(s.selector.split("#")[0].endswith("/shared/reference/usl_official_indices.json") for s in published)
    assert Path(sweep.leaderboard_output) == REPO / "results" / "cifar10"
    assert all(s.selector_config == {"mode": "head"} for s in specs if s.selector == "usl_t")


def test_label_names_the_row_and_other_overrides_still_show():
    base = {"spec": {"dataset": "d", "selector": "file:/x/i.json#k", "learner": "linear", "seed": 1},
            "resolved": {"budget": 10}, "metrics": {"top1": 50.0}}
    labelled = dict(base, spec={**base["spec"], "selector_config": {"label": "usl (published)"}})
    assert record_row(labelled)["selector"] == "usl (published)"
    assert record_row(base)["selector"] == "file:/x/i.json#k"
    usl = dict(base, spec={**base["spec"], "selector": "usl", "selector_config": {"knn_k": 7}})
    assert record_row(usl)["selector"] == "usl[knn_k=7]"
