"""The picks export, the contact sheet and the labels file (issue: pick, annotate, train)."""
from __future__ import annotations

import csv
import json
import unicodedata

import numpy as np
import pytest
from PIL import Image

from uslbench.errors import UserError
from uslbench.labeling.contact_sheet import contact_sheet
from uslbench.labeling.labels_file import UNLABELED, attach_labels, read_labels_file
from uslbench.labeling.picks import build_picks, label_studio_tasks, relative_paths, write_picks

POOL = ["cats/a 1.png", "cats/b.png", "dogs/ç.png", "dogs/d.png", "e.png"]


def test_picks_csv_json_and_label_studio(tmp_path):
    picks = build_picks([3, 0, 2], POOL, clusters=[0, 0, 1], scores=np.array([0.5, 0.25, 0.125]),
                        digests={3: "d3", 0: "d0", 2: "d2"})
    assert [(p.rank, p.pool_index, p.path, p.cluster) for p in picks] == [
        (1, 3, "dogs/d.png", 0), (2, 0, "cats/a 1.png", 0), (3, 2, "dogs/ç.png", 1)]
    rows = list(csv.DictReader(write_picks(picks, tmp_path / "p.csv").read_text(encoding="utf-8").splitlines()))
    assert list(rows[0]) == ["rank", "pool_index", "path", "sha256", "cluster", "score", "label"]
    assert rows[1] == {"rank": "2", "pool_index": "0", "path": "cats/a 1.png", "sha256": "d0", "cluster": "0",
                       "score": "0.25", "label": ""}
    data = json.loads(write_picks(picks, tmp_path / "p.json").read_text(encoding="utf-8"))
    assert data[2] == {"rank": 3, "pool_index": 2, "path": "dogs/ç.png", "sha256": "d2", "cluster": 1, "score": 0.125}
    tasks = json.loads(write_picks(picks, tmp_path / "ls.json", "label-studio").read_text(encoding="utf-8"))
    assert len(tasks) == 3
    assert tasks[1]["data"]["image"] == "/data/local-files/?d=cats/a%201.png"
    assert tasks[2]["data"]["image"] == "/data/local-files/?d=dogs/%C3%A7.png" and tasks[2]["data"]["path"] == "dogs/ç.png"
    assert np.load(write_picks(picks, tmp_path / "p.npy")).tolist() == [3, 0, 2]
    # from a bare feature matrix there are no paths: indices only, no label column, no Label Studio
    bare = build_picks([4, 1])
    assert write_picks(bare, tmp_path / "b.csv").read_text() == "rank,pool_index\n1,4\n2,1\n"
    with pytest.raises(UserError, match="needs image paths"):
        label_studio_tasks(bare)
    with pytest.raises(UserError, match="must end in"):
        write_picks(bare, tmp_path / "b.txt")


def test_relative_paths(tmp_path):
    (tmp_path / "x").mkdir()
    assert relative_paths([tmp_path / "x" / "a.png", tmp_path / "b.png"], tmp_path) == ["x/a.png", "b.png"]


def test_contact_sheet(tmp_path):
    images = {i: Image.fromarray(np.full((32, 32, 3), 40 * i, dtype=np.uint8)) for i in range(5)}
    picks = build_picks([4, 1, 2], POOL, clusters=[2, 0, 1])
    path = contact_sheet(picks, images.__getitem__, tmp_path / "sheet.png", cluster_sizes={0: 2, 1: 2, 2: 1}, columns=2)
    sheet = Image.open(path)
    assert sheet.format == "PNG" and sheet.size == (2 * 102 + 6, 2 * 130 + 6)
    # the first tile holds image 4 (value 160), upsampled to 96 px
    assert sheet.getpixel((6 + 48, 6 + 48)) == (160, 160, 160)


def _write(tmp_path, text, name="labels.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_labels_attach_with_names_spaces_and_unicode(tmp_path):
    nfd = unicodedata.normalize("NFD", "dogs/ç.png")       # as macOS writes it
    labels = read_labels_file(_write(tmp_path, f"path,label\ncats/a 1.png,cat\n{nfd},dog\n./e.png,bird\n"))
    attached = attach_labels(labels, POOL, picked=["cats/a 1.png", "dogs/ç.png", "e.png"])
    assert attached.class_names == ["bird", "cat", "dog"]
    assert attached.labels.tolist() == [1, UNLABELED, 2, UNLABELED, 0]
    assert attached.labeled_indices.tolist() == [0, 2, 4]
    assert attached.source["rows"] == 3 and len(attached.source["sha256"]) == 64
    assert attached.warnings == []


def test_labels_file_faults(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_labels_file(tmp_path / "none.csv")
    with pytest.raises(UserError, match="columns path and label"):
        read_labels_file(_write(tmp_path, "file,class\na,b\n"))
    with pytest.raises(UserError, match="two different labels.*cats/b.png"):
        read_labels_file(_write(tmp_path, "path,label\ncats/b.png,cat\ncats/b.png,dog\n"))
    labels = read_labels_file(_write(tmp_path, "path,label\ncats/b.png,cat\ncats/b.png,cat\ne.png,\n"))
    assert len(labels.rows) == 1 and len(labels.warnings) == 2
    assert "listed twice" in labels.warnings[0] and "empty label" in labels.warnings[1]
    with pytest.raises(UserError, match=r"1 path\(s\) are not images of this folder: 'cats/zzz.png' \(not in the pool\)"):
        attach_labels(read_labels_file(_write(tmp_path, "path,label\ncats/zzz.png,cat\n")), POOL)
    with pytest.raises(UserError, match="'horse'.*test split does not have"):
        attach_labels(read_labels_file(_write(tmp_path, "path,label\ne.png,horse\n")), POOL, class_names=["cat", "dog"])
    warned = attach_labels(read_labels_file(_write(tmp_path, "path,label\ne.png,cat\n")), POOL,
                           class_names=["cat", "dog"], picked=["cats/b.png"])
    assert any("not picked" in w for w in warned.warnings) and any("'dog'" in w for w in warned.warnings)


def test_folder_changed_since_selection_is_detected_by_digest(tmp_path):
    digests = {p: f"sha-{i}" for i, p in enumerate(POOL)}
    # renamed: the exported digest now belongs to another path
    text = "path,label,sha256\nold name.png,cat,sha-1\n"
    with pytest.raises(UserError, match=r"'old name.png' \(renamed to 'cats/b.png': same content\)"):
        attach_labels(read_labels_file(_write(tmp_path, text)), POOL, digest=digests.__getitem__)
    text = "path,label,sha256\ngone.png,cat,sha-99\n"
    with pytest.raises(UserError, match=r"'gone.png' \(removed, or renamed and changed, since the selection\)"):
        attach_labels(read_labels_file(_write(tmp_path, text)), POOL, digest=digests.__getitem__)
    text = "path,label,sha256\ne.png,cat,sha-0\n"
    with pytest.raises(UserError, match="changed content since they were selected: 'e.png'"):
        attach_labels(read_labels_file(_write(tmp_path, text)), POOL, digest=digests.__getitem__)
