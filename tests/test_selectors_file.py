"""file:PATH selections: formats, the reference index sets, export round trips."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from uslbench.harness.selection import export_indices
from uslbench.registry import SELECTORS
from uslbench.selectors.base import SelectionContext

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "usl_official_indices.json"


@pytest.mark.parametrize("suffix", [".npy", ".json", ".csv"])
def test_export_then_import_round_trip(tmp_path, suffix):
    indices = np.array([7, 3, 11, 0], dtype=np.int64)
    path = export_indices(indices, tmp_path / f"picks{suffix}")
    selection = SELECTORS.create(f"file:{path}").select(None, 4, seed=5, context=SelectionContext(pool_size=20))
    assert selection.indices.tolist() == indices.tolist()


def test_csv_export_is_the_picks_table_and_reads_back(tmp_path):
    indices = np.array([7, 3, 11, 0], dtype=np.int64)
    per_pick = {"cluster": [2, 0, None, 1], "score": [0.5, 1.25, None, 2.0], "score_name": "usl_score"}
    path = export_indices(indices, tmp_path / "picks.csv", per_pick)
    assert path.read_text() == "rank,pool_index,cluster,score\n1,7,2,0.5\n2,3,0,1.25\n3,11,,\n4,0,1,2\n"
    selection = SELECTORS.create(f"file:{path}").select(None, 4, seed=5, context=SelectionContext(pool_size=20))
    assert selection.indices.tolist() == [7, 3, 11, 0]  # the pool_index column, not the rank


def test_csv_with_header_and_blank_lines(tmp_path):
    path = tmp_path / "picks.csv"
    path.write_text("index\n4\n\n9\n1\n")
    selection = SELECTORS.create(f"file:{path}").select(None, 3, context=SelectionContext(pool_size=10))
    assert selection.indices.tolist() == [4, 9, 1]


def test_json_sets_by_key_path_config_key_and_dataset(tmp_path):
    path = tmp_path / "sets.json"
    path.write_text(json.dumps({"cifar10": {"usl_3": [1, 2, 3]}, "cifar100": {"usl_3": [4, 5, 6]}}))
    ctx = SelectionContext(pool_size=10)
    assert SELECTORS.create(f"file:{path}#cifar100/usl_3").select(None, 3, context=ctx).indices.tolist() == [4, 5, 6]
    assert SELECTORS.create(f"file:{path}", key="cifar10/usl_3").select(None, 3, context=ctx).indices.tolist() == [1, 2, 3]
    by_dataset = SelectionContext(pool_size=10, dataset_name="cifar100")
    assert SELECTORS.create(f"file:{path}#usl_3").select(None, 3, context=by_dataset).indices.tolist() == [4, 5, 6]


@pytest.mark.skipif(not REFERENCE.is_file(), reason="shared/reference is not beside this checkout")
def test_reference_usl_index_sets_load():
    data = json.loads(REFERENCE.read_text())
    ctx = SelectionContext(pool_size=50_000, dataset_name="cifar10")
    selection = SELECTORS.create(f"file:{REFERENCE}#usl_40_seed1").select(None, 40, context=ctx)
    assert selection.indices.tolist() == data["cifar10"]["usl_40_seed1"]
    assert selection.info["key"] == "cifar10/usl_40_seed1"
    selection = SELECTORS.create(f"file:{REFERENCE}#cifar100/usl_400").select(None, 400, context=ctx)
    assert len(selection.indices) == 400


def test_selection_key_holds_the_file_digest_not_the_path(tmp_path):
    a, b = tmp_path / "a" / "p.npy", tmp_path / "b" / "q.npy"
    for path in (a, b):
        path.parent.mkdir()
        np.save(path, np.array([1, 2, 3]))
    key_a = SELECTORS.create(f"file:{a}").key_config()
    assert key_a == SELECTORS.create(f"file:{b}").key_config()
    assert str(tmp_path) not in json.dumps(key_a)
