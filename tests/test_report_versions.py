"""Records that differ in data or encoder identity are never pooled in one cell (issue 12, item 11):
the same spec and seed run on three versions of a data set showed as one cell "± (3)", as if
three seeds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from uslbench.report.leaderboard import write_leaderboard
from uslbench.report.records import load_records
from uslbench.report.tables import build_tables

PIXELS = {"encoder": "pixels", "config": {"max_side": 32}, "weights": None}


def record(key: str, selector: str, learner: str, seed: int, top1: float, data: str, encoder: dict = PIXELS,
           finished: str = "2025-01-01T00:00:00+00:00", typed_traits: bool = True) -> dict:
    """A record as the pipeline writes it (`<kind>_traits` dicts), or with `typed_traits=False` as
    records written before traits were typed did (free-string `<kind>_tags`)."""
    feature_learner = learner in ("linear", "knn", "labelprop")
    rec = {
        "schema": 1, "key": key, "status": "ok", "finished": finished,
        "spec": {"dataset": "digits", "selector": selector, "learner": learner, "budget": 10, "seed": seed,
                 "encoder": None},
        "resolved": {"budget": 10, "encoder": encoder},
        "keys": {"dataset": data, "features": f"f-{data}", "selection": f"s-{key}"},
        "metrics": {"top1": top1},
    }
    if typed_traits:
        rec["selector_traits"] = {"uses_features": selector == "usl", "needs_labels": False}
        rec["learner_traits"] = {"uses_features": feature_learner, "gpu_recommended": not feature_learner}
    else:
        rec["selector_tags"] = ["uses_features"] if selector == "usl" else []
        rec["learner_tags"] = ["probe", "uses_features"] if feature_learner else ["trains", "ssl"]
    return rec


def write(root: Path, records: list[dict]) -> Path:
    for rec in records:
        path = root / "runs" / rec["key"] / "record.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))
    return root


def cells(df) -> dict[tuple[str, str], dict[str, str]]:
    """{(section, table title): {selector: 'cell, cell', ...}} of every table."""
    out = {}
    for table in build_tables(df):
        if not table.title.startswith("selectors ×"):  # the paired-comparison and coverage tables
            continue
        out[(table.section, table.title)] = {index: " | ".join(row) for index, row in zip(table.frame.index,
                                                                                           table.frame.values)}
    return out


def test_same_seed_on_three_data_versions_is_three_sections(tmp_path):
    root = write(tmp_path, [
        record("u-a", "usl", "linear", 1, 50.0, "aaaaaaaa11", finished="2025-01-01T00:00:00+00:00"),
        record("u-b", "usl", "linear", 1, 60.0, "bbbbbbbb22", finished="2025-01-02T00:00:00+00:00"),
        record("u-c", "usl", "linear", 1, 70.0, "cccccccc33", finished="2025-01-03T00:00:00+00:00"),
        record("r-a", "random", "linear", 1, 40.0, "aaaaaaaa11", finished="2025-01-01T00:00:00+00:00"),
        record("r-c", "random", "linear", 1, 45.0, "cccccccc33", finished="2025-01-03T00:00:00+00:00"),
    ])
    messages: list[str] = []
    df = load_records(root, warn=messages.append)
    assert cells(df) == {
        ("digits @aaaaaa (encoder pixels)", "selectors × learners, m = 10"):
            {"random": "40.0 (1)", "usl": "50.0 (1) (+10.0)"},
        ("digits @aaaaaa (encoder pixels)", "selectors × budgets, learner linear"):
            {"random": "40.0 (1)", "usl": "50.0 (1) (+10.0)"},
        ("digits @bbbbbb (encoder pixels)", "selectors × learners, m = 10"): {"usl": "60.0 (1)"},
        ("digits @bbbbbb (encoder pixels)", "selectors × budgets, learner linear"): {"usl": "60.0 (1)"},
        ("digits @cccccc (encoder pixels)", "selectors × learners, m = 10"):
            {"random": "45.0 (1)", "usl": "70.0 (1) (+25.0)"},
        ("digits @cccccc (encoder pixels)", "selectors × budgets, learner linear"):
            {"random": "45.0 (1)", "usl": "70.0 (1) (+25.0)"},
    }
    assert messages == [
        "digits: runs on 3 versions of the data set (@aaaaaa: 2 run(s), newest finished 2025-01-01T00:00:00+00:00; "
        "@bbbbbb: 1 run(s), newest finished 2025-01-02T00:00:00+00:00; @cccccc: 2 run(s), newest finished "
        "2025-01-03T00:00:00+00:00); each version is its own section, never pooled with another"]


@pytest.mark.parametrize("typed_traits", [True, False], ids=["traits", "old-tags"])
def test_encoder_weights_versions_are_separate_and_feature_free_runs_appear_in_each(tmp_path, typed_traits):
    """Both record layouts: `<kind>_traits` dicts (what the pipeline writes; these records were
    pooled across weights versions before the fix) and older free-string tags."""
    w1 = {"encoder": "simclr", "config": {"output": "projection"}, "weights": "1" * 64}
    w2 = {"encoder": "simclr", "config": {"output": "projection"}, "weights": "2" * 64}
    late = "2025-01-02T00:00:00+00:00"
    recs = [
        record("u1-1", "usl", "linear", 1, 50.0, "d", w1, typed_traits=typed_traits),
        record("u1-2", "usl", "linear", 2, 52.0, "d", w1, typed_traits=typed_traits),
        record("u2-1", "usl", "linear", 1, 70.0, "d", w2, finished=late, typed_traits=typed_traits),
        record("r1-1", "random", "linear", 1, 40.0, "d", w1, typed_traits=typed_traits),
        record("r2-1", "random", "linear", 1, 60.0, "d", w2, finished=late, typed_traits=typed_traits),
        # reads no features: shown under both
        record("rf-1", "random", "fixmatch", 1, 30.0, "d", w1, typed_traits=typed_traits),
    ]
    for rec in recs:
        rec["spec"]["encoder"] = "simclr"
    messages: list[str] = []
    df = load_records(write(tmp_path, recs), warn=messages.append)
    from uslbench.utils import content_key

    d1 = content_key({"encoder": w1, "selection_encoder": None})[:6]
    d2 = content_key({"encoder": w2, "selection_encoder": None})[:6]
    got = cells(df)
    # random has 1 of the column's 2 seeds under d1: the cell says so (n=1/2)
    table = {d1: {"random": "40.0 (n=1/2) | 30.0 (1)", "usl": "51.0 ± 1.4 [38.3, 63.7] (2) (+11.0) | -"},
             d2: {"random": "60.0 (1) | 30.0 (1)", "usl": "70.0 (1) (+10.0) | -"}}
    for digest in (d1, d2):
        assert got[(f"digits (encoder simclr @{digest})", "selectors × learners, m = 10")] == table[digest]
    assert messages == [
        f"digits: runs with 2 versions of encoder simclr (weights or config; @{d1}: 3 run(s), newest finished "
        f"2025-01-01T00:00:00+00:00; @{d2}: 2 run(s), newest finished 2025-01-02T00:00:00+00:00); each version is "
        "its own section, never pooled; runs that do not read features are shown in each"]


def test_one_version_keeps_the_plain_labels(tmp_path):
    df = load_records(write(tmp_path, [record("a", "usl", "linear", 1, 50.0, "same"),
                                       record("b", "usl", "linear", 2, 54.0, "same")]), warn=lambda m: None)
    assert cells(df) == {
        ("digits (encoder pixels)", "selectors × learners, m = 10"): {"usl": "52.0 ± 2.8 [26.6, 77.4] (2)"},
        ("digits (encoder pixels)", "selectors × budgets, learner linear"): {"usl": "52.0 ± 2.8 [26.6, 77.4] (2)"}}


def test_changed_npz_file_gives_two_sections_end_to_end(tmp_path):
    """A real data set whose file changes between two runs of the same spec and seed."""
    from uslbench.harness.pipeline import run_spec
    from uslbench.harness.spec import RunSpec

    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    labels = np.repeat(np.arange(3), 20)
    images = (rng.integers(0, 60, (60, 8, 8)) + labels[:, None, None] * 60).astype(np.uint8)
    root = tmp_path / "results"
    top1 = []
    for version in range(2):
        np.savez(path, x_train=images, y_train=labels, x_test=images[::2], y_test=labels[::2])
        spec = RunSpec(dataset=f"npz:{path}", selector="random", learner="linear", budget=6, seed=1, encoder="pixels")
        top1.append(run_spec(spec, root, echo=lambda m: None).record["metrics"]["top1"])
        images = images.copy()
        images[:, 0, 0] = 255 - images[:, 0, 0]   # the data set changes before the second run
    assert len(list(root.glob("runs/*/record.json"))) == 2
    messages: list[str] = []
    board = write_leaderboard(root, out_dir=tmp_path / "board", plots=False, warn=messages.append)
    sections = [line for line in board.text.splitlines() if line.startswith("## npz:")]
    assert len(sections) == 2 and all(f"## npz:{path} @" in s for s in sections)
    row_cells = [line.split("|")[2].strip() for line in board.text.splitlines()
                 if line.startswith("| random") and line.split("|")[2].strip().endswith("(1)")]
    assert sorted(set(row_cells)) == sorted({f"{t:.1f} (1)" for t in top1})
    assert "(2)" not in board.text
    assert len(messages) == 1 and f"npz:{path}: runs on 2 versions of the data set" in messages[0]
