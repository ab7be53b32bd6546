"""Your own images, end to end (README "Your own images"): select with an export and a contact
sheet, label, train on the labels with every learner, read the predictions; a second round; and
the faults of a folder that changed in between."""
from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from uslbench.catalog import LEARNERS
from uslbench.cli import main
from uslbench.datasets import load_dataset
from uslbench.errors import DataWarning, UserError
from uslbench.harness.pipeline import run_spec
from uslbench.harness.spec import RunSpec
from uslbench.utils import file_sha256

REPO = Path(__file__).resolve().parents[1]
COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
PER_CLASS = 20
# the tiny FixMatch the walk-through test adds to the README's `run` (40 steps of the small CNN)
TINY_FIXMATCH = ["--learner-config", "fixmatch.arch=cnn", "--learner-config", "fixmatch.steps=40",
                 "--learner-config", "fixmatch.labeled_batch=8", "--learner-config", "fixmatch.unlabeled_ratio=2",
                 "--learner-config", "fixmatch.ema=0.8", "--learner-config", "fixmatch.threads=1"]


def true_class(path: str) -> str:
    return next(name for name in COLOURS if name in path)


def image_folder(root: Path, seed: int = 0, per_class: int = PER_CLASS, broken: bool = True) -> Path:
    """60 noisy 16x16 colour squares of 3 classes, flat, with spaces and non-ASCII in the names, and
    (broken=True) an unreadable file that sorts before most of them."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name, rgb in COLOURS.items():
        for i in range(per_class):
            pixels = np.clip(np.array(rgb)[None, None] + rng.normal(0, 25, (16, 16, 3)), 0, 255).astype(np.uint8)
            filename = f"{name} photo {i:02d}.png" if i % 5 else f"ça {name} é{i:02d}.png"
            Image.fromarray(pixels).save(root / filename)
    if broken:
        (root / "a broken file.png").write_bytes(b"this is not a PNG")
    return root


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))


def fill_labels(picks: Path, out: Path | None = None, blank: int = 0, wrong: dict | None = None) -> Path:
    """The picks export with its label column filled from the file names (the first `blank` rows
    left empty; `wrong` maps a path to another label)."""
    rows = read_csv(picks)
    for position, row in enumerate(rows):
        row["label"] = "" if position < blank else (wrong or {}).get(row["path"], true_class(row["path"]))
    out = out or picks
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def walkthrough_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- walkthrough -->\n```bash\n(.*?)```\n<!-- /walkthrough -->", text, re.S).group(1)
    return [shlex.split(line)[2:] for line in block.splitlines() if line.startswith("python cli.py ")]


@pytest.mark.slow
def test_readme_walkthrough_select_label_train_predict_second_round(tmp_path):
    folder = image_folder(tmp_path / "my images")
    results = tmp_path / "results"
    commands = walkthrough_commands()
    assert [c[0] for c in commands] == ["select", "run", "select"]

    def localise(args: list[str]) -> list[str]:
        out = []
        for arg in args:
            arg = arg.replace("folder:my_images", f"folder:{folder}")
            out.append(str(tmp_path / arg) if arg.endswith(".csv") else arg)
        return out + ["--results-root", str(results)]

    # 1. select: the picks table and the contact sheet
    result = invoke(*localise(commands[0]))
    assert result.exit_code == 0, result.output
    picks_path = tmp_path / "picks.csv"
    rows = read_csv(picks_path)
    assert list(rows[0]) == ["rank", "pool_index", "path", "sha256", "cluster", "score", "label"]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    pool = load_dataset(f"folder:{folder}")
    assert pool.pool_size == 60  # the unreadable file is not in the pool
    for row in rows:  # each exported path is the picked image
        pixels = np.asarray(Image.open(folder / row["path"]).convert("RGB"))
        assert np.array_equal(pixels, pool.train.array[int(row["pool_index"])])
        assert row["sha256"] == file_sha256(folder / row["path"]) and row["label"] == ""
    sheet = Image.open(tmp_path / "picks.contact.png")
    assert sheet.format == "PNG" and sheet.size == (6 * 102 + 6, 130 + 6)
    assert "wrote" in result.output and "contact sheet" in result.output

    # 2. label; 3. train FixMatch on the 6 labels (the 54 other images unlabeled)
    fill_labels(picks_path)
    result = invoke(*localise(commands[1]), *TINY_FIXMATCH)
    assert result.exit_code == 0, result.output
    assert "no accuracy (no test split)" in result.output and "predictions:" in result.output
    record_path = Path(re.search(r"record: (\S+record\.json)", result.output).group(1))
    record = json.loads(record_path.read_text())
    assert record["evaluated"] is False and record["metrics"]["top1"] is None
    assert record["labels_source"] == {"file": "picks.csv", "sha256": file_sha256(picks_path), "rows": 6}
    assert sorted(record["selection"]["indices"]) == sorted(int(r["pool_index"]) for r in rows)
    assert sum(record["class_histogram"]) == 6 and record["spec"]["selector"] == "labels"
    assert (record_path.parent / "train.ckpt.pt").is_file() and record["model_file"] == "train.ckpt.pt"

    # 4. the predictions: every pool image once, the given labels alongside
    predictions = read_csv(record_path.parent / "predictions.csv")
    assert len(predictions) == 60 and len({p["path"] for p in predictions}) == 60
    assert sum(p["label"] != "" for p in predictions) == 6
    assert all(0.0 <= float(p["confidence"]) <= 1.0 for p in predictions)
    correct = sum(p["prediction"] == true_class(p["path"]) for p in predictions)
    assert correct >= 50, correct  # 3 colours: chance is 20 of 60
    board = invoke("leaderboard", results)
    assert "skipped 1 run(s) without a test split" in board.output

    # 5. the second round: 6 new images, none of the labeled ones
    result = invoke(*localise(commands[2]))
    assert result.exit_code == 0, result.output
    assert "already labeled: 6 image(s) of picks.csv; picked 6 new one(s)" in result.output
    second = read_csv(tmp_path / "round2.csv")
    assert len(second) == 6
    assert not {r["path"] for r in second} & {r["path"] for r in rows}


def test_exported_paths_name_the_picked_images_after_an_unreadable_file(tmp_path):
    """The unreadable file sorts before 60 of the 60 images: every exported path must still be the
    image the selector saw at that pool index, in the CSV, JSON and Label Studio exports."""
    folder = image_folder(tmp_path / "pool")
    pool = load_dataset(f"folder:{folder}")
    results = tmp_path / "results"
    outputs = {}
    for name, extra in (("p.csv", []), ("p.json", []), ("tasks.json", ["--export-format", "label-studio"])):
        result = invoke("select", "--dataset", f"folder:{folder}", "--encoder", "pixels", "--selector", "typiclust",
                        "--budget", "9", "--results-root", results, "--export", tmp_path / name, *extra)
        assert result.exit_code == 0, result.output
        outputs[name] = tmp_path / name
    rows = read_csv(outputs["p.csv"])
    as_json = json.loads(outputs["p.json"].read_text(encoding="utf-8"))
    tasks = json.loads(outputs["tasks.json"].read_text(encoding="utf-8"))
    assert len(rows) == len(as_json) == len(tasks) == 9
    for row, item, task in zip(rows, as_json, tasks):
        assert row["path"] == item["path"] == task["data"]["path"]
        assert int(row["pool_index"]) == item["pool_index"] == task["data"]["pool_index"]
        pixels = np.asarray(Image.open(folder / row["path"]).convert("RGB"))
        assert np.array_equal(pixels, pool.train.array[item["pool_index"]])
        assert item["cluster"] == int(row["cluster"]) and item["score"] > 0  # typiclust: cluster and typicality
    assert task["data"]["image"].startswith("/data/local-files/?d=")
    for name in ("p", "tasks"):
        assert (tmp_path / f"{name}.contact.png").is_file()


def test_select_from_features_exports_indices_and_says_so(tmp_path):
    features = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    np.save(tmp_path / "f.npy", features)
    result = invoke("select", "--features", tmp_path / "f.npy", "--selector", "random", "--budget", "5",
                    "--export", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert notes == ["note: --features has no image paths, so the export names each pick by its pool index (its "
                     "row of the matrix), in selection order"]
    lines = (tmp_path / "p.csv").read_text().splitlines()  # random knows no cluster or score of its picks
    assert lines[0] == "rank,pool_index" and [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3", "4", "5"]
    assert "(5 picks: rank, pool index)" in result.output
    refused = CliRunner().invoke(main, ["select", "--features", str(tmp_path / "f.npy"), "--selector", "random",
                                        "--budget", "5", "--export", str(tmp_path / "t.json"),
                                        "--export-format", "label-studio"])
    assert refused.exit_code != 0 and "needs image paths" in refused.output
    assert not (tmp_path / "t.json").exists()


def _labels_spec(folder: Path, labels: Path, learner: str, tmp_path: Path, **config) -> RunSpec:
    from uslbench.labeling.labels_file import read_labels_file

    return RunSpec(dataset=f"folder:{folder}", selector="labels", learner=learner,
                   budget=len(read_labels_file(labels).rows), labels=str(labels), encoder="pixels",
                   learner_config={**LEARNERS.get(learner).test_overrides(tmp_path), **config})


@pytest.mark.parametrize("learner", ["mixmatch", "comatch", "simclrv2", "supervised", "fixmatch", "linear", "knn",
                                     "labelprop"])
def test_every_learner_trains_on_exactly_the_labels_and_predicts_the_pool(learner, tmp_path):
    folder = image_folder(tmp_path / "flat", broken=False)  # a flat folder: no class folders
    pool = load_dataset(f"folder:{folder}")
    paths = [Path(p).name for p in pool.train.paths]
    labeled = [0, 7, 21, 30, 44, 50, 59]  # 7 images of the 60, all three classes
    text = "path,label\n" + "".join(f"{paths[i]},{true_class(paths[i])}\n" for i in labeled)
    (tmp_path / "labels.csv").write_text(text, encoding="utf-8")
    image = not LEARNERS.traits(learner).uses_features
    spec = _labels_spec(folder, tmp_path / "labels.csv", learner, tmp_path, **({"arch": "cnn"} if image else {}))
    outcome = run_spec(spec, tmp_path / "results")
    record = outcome.record
    assert record["status"] == "ok" and record["evaluated"] is False and record["metrics"]["top1"] is None
    assert record["selection"]["indices"] == labeled  # exactly the labeled images, in the file's order
    names = sorted(COLOURS)  # the classes of a flat folder: the file's class names, sorted
    expected = np.bincount([names.index(true_class(paths[i])) for i in labeled], minlength=3).tolist()
    assert record["class_histogram"] == expected and record["dataset_summary"]["num_classes"] == 3
    predictions = read_csv(outcome.record_path.parent / "predictions.csv")
    assert [p["path"] for p in predictions] == paths
    assert [i for i, p in enumerate(predictions) if p["label"]] == labeled
    assert {p["prediction"] for p in predictions} <= set(names)
    model = outcome.record_path.parent / record["model_file"]
    assert model.is_file() and (model.suffix == ".pt") == image


def _train_test_folder(root: Path) -> Path:
    for split, per_class, seed in (("train", 20, 0), ("test", 6, 1)):
        for name in COLOURS:
            image_folder(root / "tmp", seed=seed + len(name), per_class=per_class, broken=False)
            target = root / split / name
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted((root / "tmp").glob(f"*{name}*.png")):
                path.rename(target / path.name)
            for path in (root / "tmp").glob("*.png"):
                path.unlink()
    (root / "tmp").rmdir()
    return root


def test_with_a_test_split_accuracy_as_usual_and_unknown_classes_refused(tmp_path):
    folder = _train_test_folder(tmp_path / "tree")
    pool = load_dataset(f"folder:{folder}")
    assert pool.class_names == ["blue", "green", "red"] and len(pool.test) == 18
    rel = [Path(p).relative_to(folder / "train").as_posix() for p in pool.train.paths]
    labeled = [0, 21, 45, 3]
    text = "path,label\n" + "".join(f"{rel[i]},{true_class(rel[i])}\n" for i in labeled)
    (tmp_path / "labels.csv").write_text(text, encoding="utf-8")
    # paths are relative to the folder given as folder:PATH: here train/<class>/<file>
    with pytest.raises(UserError, match="4 path\\(s\\) are not images of this folder"):
        run_spec(_labels_spec(folder, tmp_path / "labels.csv", "linear", tmp_path), tmp_path / "results")
    text = "path,label\n" + "".join(f"train/{rel[i]},{true_class(rel[i])}\n" for i in labeled)
    (tmp_path / "labels.csv").write_text(text, encoding="utf-8")
    outcome = run_spec(_labels_spec(folder, tmp_path / "labels.csv", "linear", tmp_path), tmp_path / "results")
    assert outcome.record["metrics"]["n_test"] == 18 and outcome.top1 == 100.0  # three colours, one label each
    assert "evaluated" not in outcome.record and (outcome.record_path.parent / "predictions.csv").is_file()
    # a class name the test split does not have: refused before any work, nothing written
    (tmp_path / "bad.csv").write_text(f"path,label\ntrain/{rel[0]},blue\ntrain/{rel[21]},purple\n", encoding="utf-8")
    runs_before = sorted((tmp_path / "results" / "runs").iterdir())
    result = CliRunner().invoke(main, ["run", "--dataset", f"folder:{folder}", "--labels", str(tmp_path / "bad.csv"),
                                       "--learner", "linear", "--encoder", "pixels", "--results-root",
                                       str(tmp_path / "results")])
    assert result.exit_code != 0
    assert "uses class name(s) 'purple' that the test split does not have" in result.output
    assert sorted((tmp_path / "results" / "runs").iterdir()) == runs_before


def test_folder_changed_between_select_and_run(tmp_path):
    folder = image_folder(tmp_path / "pool", broken=False)
    results = tmp_path / "results"
    result = invoke("select", "--dataset", f"folder:{folder}", "--encoder", "pixels", "--selector", "coreset",
                    "--budget", "5", "--results-root", results, "--export", tmp_path / "picks.csv")
    assert result.exit_code == 0, result.output
    labels = fill_labels(tmp_path / "picks.csv")
    rows = read_csv(labels)

    def run(labels_file: Path = labels):
        return CliRunner().invoke(main, ["run", "--dataset", f"folder:{folder}", "--labels", str(labels_file),
                                         "--learner", "knn", "--encoder", "pixels", "--results-root", str(results)])

    def no_run_written() -> bool:
        return not (results / "runs").exists() or not any((results / "runs").iterdir())

    renamed, removed, changed = rows[0]["path"], rows[1]["path"], rows[2]["path"]
    (folder / renamed).rename(folder / "renamed copy.png")
    removed_bytes = (folder / removed).read_bytes()
    (folder / removed).unlink()
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(folder / changed)
    result = run()
    assert result.exit_code != 0
    assert f"2 path(s) are not images of this folder: '{renamed}' (renamed to 'renamed copy.png': same content), " \
           f"'{removed}' (removed, or renamed and changed, since the selection)" in " ".join(result.output.split())
    assert no_run_written()
    (folder / "renamed copy.png").rename(folder / renamed)
    (folder / removed).write_bytes(removed_bytes)
    result = run()
    assert result.exit_code != 0
    assert f"1 image(s) changed content since they were selected: '{changed}'" in " ".join(result.output.split())
    assert no_run_written()
    # with the changed image's row dropped, and a file added before every other one: the run goes on,
    # saying which labeled images moved in the listing
    kept = [r for r in rows if r["path"] != changed]
    with (tmp_path / "kept.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    Image.fromarray(np.full((16, 16, 3), 128, dtype=np.uint8)).save(folder / "0 added.png")
    moved = ", ".join(f"'{r['path']}' ({r['pool_index']} -> {int(r['pool_index']) + 1})" for r in kept)
    with pytest.warns(DataWarning) as caught:
        result = run(tmp_path / "kept.csv")
    assert result.exit_code == 0, result.output
    assert f"the folder changed since the selection (images were added or removed): 4 labeled image(s) now sit at " \
           f"another pool position, {moved}; labels are matched by path" in [str(w.message) for w in caught][0]


def test_two_labels_files_never_share_a_run(tmp_path):
    folder = image_folder(tmp_path / "pool", broken=False)
    paths = [Path(p).name for p in load_dataset(f"folder:{folder}").train.paths]
    picked = [2, 25, 47]
    first = "path,label\n" + "".join(f"{paths[i]},{true_class(paths[i])}\n" for i in picked)
    second = first.replace(f"{paths[2]},{true_class(paths[2])}", f"{paths[2]},red")  # one label changed
    (tmp_path / "a.csv").write_text(first, encoding="utf-8")
    (tmp_path / "b.csv").write_text(second, encoding="utf-8")
    a = run_spec(_labels_spec(folder, tmp_path / "a.csv", "knn", tmp_path), tmp_path / "results")
    b = run_spec(_labels_spec(folder, tmp_path / "b.csv", "knn", tmp_path), tmp_path / "results")
    assert a.record["selection"]["indices"] == b.record["selection"]["indices"] == picked
    assert a.record["key"] != b.record["key"] and a.record["keys"]["selection"] != b.record["keys"]["selection"]
    assert a.record["labels_source"]["sha256"] != b.record["labels_source"]["sha256"]
    again = run_spec(_labels_spec(folder, tmp_path / "a.csv", "knn", tmp_path), tmp_path / "results")
    assert again.cached["run"] and again.record["key"] == a.record["key"]


def test_labels_options_refused_before_any_work(tmp_path):
    folder = image_folder(tmp_path / "pool", broken=False)
    (tmp_path / "l.csv").write_text("path,label\nred photo 01.png,red\n", encoding="utf-8")
    cases = [
        (["--labels", tmp_path / "l.csv", "--selector", "usl"], "drop --selector usl"),
        (["--labels", tmp_path / "l.csv", "--budget", "3"], "drop --budget"),
        (["--selector", "usl"], "Missing option --budget"),
        (["--selector", "usl", "--budget", "3"], "no labelled test split"),
    ]
    for extra, message in cases:
        result = CliRunner().invoke(main, ["run", "--dataset", f"folder:{folder}", "--learner", "knn", "--encoder",
                                           "pixels", "--results-root", str(tmp_path / "results"),
                                           *map(str, extra)])
        assert result.exit_code != 0 and message in result.output, (extra, result.output)
    result = CliRunner().invoke(main, ["select", "--dataset", f"folder:{folder}", "--selector", "usl_t", "--budget",
                                       "3", "--already-labeled", str(tmp_path / "l.csv"), "--results-root",
                                       str(tmp_path / "results")])
    assert result.exit_code != 0 and "Selector 'usl_t' cannot take an already-labeled set" in result.output
    assert not (tmp_path / "results" / "cache").exists()


def test_labels_checked_against_the_picks(tmp_path):
    """A labels file from elsewhere (Label Studio's CSV export): `--picks` names labeled images that
    were not picked and picks left without a label; both are warnings, the run goes on."""
    folder = image_folder(tmp_path / "pool", broken=False)
    results = tmp_path / "results"
    result = invoke("select", "--dataset", f"folder:{folder}", "--encoder", "pixels", "--selector", "random",
                    "--budget", "4", "--results-root", results, "--export", tmp_path / "tasks.json",
                    "--export-format", "label-studio")
    assert result.exit_code == 0, result.output
    picked = [task["data"]["path"] for task in json.loads((tmp_path / "tasks.json").read_text(encoding="utf-8"))]
    extra = next(p.name for p in sorted(folder.iterdir()) if p.name not in picked)
    text = "path,label\n" + "".join(f"{p},{true_class(p)}\n" for p in picked[:3] + [extra])
    (tmp_path / "annotations.csv").write_text(text, encoding="utf-8")
    with pytest.warns(DataWarning) as caught:
        result = invoke("run", "--dataset", f"folder:{folder}", "--labels", tmp_path / "annotations.csv", "--picks",
                        tmp_path / "tasks.json", "--learner", "knn", "--encoder", "pixels", "--results-root", results)
    assert result.exit_code == 0, result.output
    messages = [str(w.message) for w in caught if "annotations.csv" in str(w.message)]
    assert messages == [
        f"labels file annotations.csv: 1 labeled image(s) were not picked by the selection ('{extra}'); they are "
        "used as labeled all the same",
        f"labels file annotations.csv: 1 of the 4 picked image(s) have no label ('{picked[3]}'); they stay unlabeled"]
    assert "m=4" in result.output
