"""scripts/pick_density.py: the label-free density percentile of every selection in a results root."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from uslbench.harness.cache import FeatureCache
from uslbench.harness.grid import build_sweep
from uslbench.harness.resources import Resources
from uslbench.harness.sweep import run_sweep
from uslbench.report.records import load_records

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("pick_density", REPO / "scripts" / "pick_density.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("density")
    sweep = build_sweep(dataset="digits", selector="random,typiclust,usl", learner="linear,knn", budget="20",
                        seeds="1-2")
    assert run_sweep(sweep, root, Resources(executor="inline")).final_counts["done"] == 12
    return root


def test_percentiles_rank_by_density():
    pct = _script().density_percentiles(np.array([4.0, 1.0, 9.0, 1.0]))
    assert pct.tolist() == [50.0, 12.5, 75.0, 12.5]  # ranks 2, 0.5 (tie of 0 and 1), 3, 0.5 of 4


def test_table_matches_a_hand_computed_cell(digits_root, tmp_path):
    script = _script()
    out = tmp_path / "density.md"
    assert script.main([str(digits_root), "--dataset", "digits", "--knn-k", "20", "--output", str(out)]) == 0
    text = out.read_text()
    cells = {m.group(1): m.group(2) for m in re.finditer(r"^\| (\S+) \| (.+) \|$", text, re.M)}
    assert set(cells) >= {"random", "typiclust", "usl"}
    # learners share a selection: two seeds per row, not four
    assert all(cell.split(";")[0].endswith("(2)") for name, cell in cells.items() if name != "selector")

    records = load_records(digits_root)
    typiclust = [json.loads(p.read_text()) for p in sorted(digits_root.glob("runs/*/record.json"))]
    typiclust = {r["spec"]["seed"]: r for r in typiclust if r["spec"]["selector"] == "typiclust"}
    rec = typiclust[1]
    cache = FeatureCache(digits_root, "digits", rec["resolved"]["encoder_name"], rec["keys"]["features"])
    mean_sq = np.load(str(cache.train_path.with_suffix("")) + ".usl_density_k20.npy")
    order = np.argsort(np.argsort(mean_sq, kind="stable"), kind="stable")  # no ties in real distances
    by_hand = [order[np.asarray(typiclust[s]["selection"]["indices"])].mean() * 100 / len(mean_sq) for s in (1, 2)]
    assert cells["typiclust"].startswith(f"{np.mean(by_hand):.1f} ± {np.std(by_hand, ddof=1):.1f} (2)")
    # TypiClust picks the most typical point of each cluster: far denser than random picks
    assert float(cells["typiclust"].split()[0]) < float(cells["random"].split()[0]) - 15
    assert len(records) == 12


def test_no_runs_is_an_error(tmp_path, capsys):
    assert _script().main([str(tmp_path)]) == 1
    assert "no finished runs" in capsys.readouterr().err


def test_two_selections_for_one_cell_are_not_averaged(digits_root, tmp_path, capsys):
    """A root holding the same row, budget and seed from two selections (say, two code versions)
    keeps the first and says so, instead of counting the second as another seed."""
    import shutil

    root = tmp_path / "root"
    shutil.copytree(digits_root, root)
    record_path = next(p for p in sorted(root.glob("runs/*/record.json"))
                       if json.loads(p.read_text())["spec"]["selector"] == "usl")
    record = json.loads(record_path.read_text())
    record["keys"]["selection"] = "another-selection"
    record["key"] = "zzzz-copy"
    copy = root / "runs" / "zzzz-copy" / "record.json"
    copy.parent.mkdir()
    copy.write_text(json.dumps(record))
    assert _script().main([str(root), "--dataset", "digits", "--knn-k", "20"]) == 0
    out = capsys.readouterr()
    assert "two different selections for usl m = 20 seed" in out.err
    usl_cell = next(line for line in out.out.splitlines() if line.startswith("| usl |"))
    assert "(2);" in usl_cell
