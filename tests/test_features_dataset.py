"""`features:PATH`: benchmark selectors and probes on embeddings you already have."""
from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from uslbench.cli import main
from uslbench.datasets import load_dataset
from uslbench.errors import UserError


def _blobs(tmp_path, name="emb.npz", n_per_class=60, classes=4, d=16, seed=0, **extra):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d)) * 4
    y = np.repeat(np.arange(classes), n_per_class)
    x = centres[y] + rng.normal(size=(len(y), d))
    yt = np.repeat(np.arange(classes), 15)
    xt = centres[yt] + rng.normal(size=(len(yt), d))
    arrays = dict(train=x.astype(np.float32), train_labels=y, test=xt.astype(np.float32), test_labels=yt)
    arrays.update(extra)
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_load_and_validate(tmp_path):
    ds = load_dataset(f"features:{_blobs(tmp_path, paths=np.array([f'img/{i}.png' for i in range(240)]))}")
    assert (ds.pool_size, ds.num_classes, len(ds.test), ds.default_encoder, ds.has_images) == (240, 4, 60,
                                                                                             "precomputed", False)
    assert ds.train.paths[3] == "img/3.png"
    with pytest.raises(UserError, match="holds precomputed features, no images"):
        ds.train.image(0)
    rng = np.random.default_rng(1)
    bad = {"nan.npz": dict(train=np.array([[0.0, np.nan], [1.0, 2.0]]), train_labels=np.array([0, 1])),
           "len.npz": dict(train=rng.normal(size=(3, 2)), train_labels=np.array([0, 1])),
           "gap.npz": dict(train=rng.normal(size=(3, 2)), train_labels=np.array([0, 2, 2])),
           "half.npz": dict(train=rng.normal(size=(3, 2)), train_labels=np.array([0, 1, 1]), test=rng.normal(size=(1, 2))),
           "dims.npz": dict(train=rng.normal(size=(2, 2)), train_labels=np.array([0, 1]), test=rng.normal(size=(1, 3)),
                            test_labels=np.array([0]))}
    messages = {"nan.npz": r"1 row\(s\) with NaN or infinite values \(e.g. rows 0\)",
                "len.npz": r"expected shape \(3,\), got \(2,\)",
                "gap.npz": r"class id\(s\) 1 have no train row", "half.npz": "test and test_labels go together",
                "dims.npz": "test rows have 3 dimensions, train rows 2"}
    for name, arrays in bad.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(UserError, match=messages[name]):
            load_dataset(f"features:{tmp_path / name}")


def _run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.slow
def test_selectors_and_probes_run_and_image_learners_refuse(tmp_path):
    data = f"features:{_blobs(tmp_path)}"
    root = str(tmp_path / "results")
    tops = {}
    for selector in ("random", "usl", "typiclust", "probcover", "coreset"):
        result = _run("run", "--selector", selector, "--learner", "linear", "--dataset", data, "--budget", "8",
                      "--seed", "1", "--results-root", root)
        assert result.exit_code == 0, result.output
        tops[selector] = float(result.output.split("top1 ")[1].split("%")[0])
    # four well-separated blobs: every selector that covers the 4 classes gets the probe far above chance
    assert tops["usl"] >= 90.0 and tops["typiclust"] >= 90.0
    for learner in ("knn", "labelprop"):
        assert _run("run", "--selector", "usl", "--learner", learner, "--dataset", data, "--budget", "8",
                    "--results-root", root).exit_code == 0
    result = CliRunner().invoke(main, ["run", "--selector", "usl", "--learner", "fixmatch", "--dataset", data,
                                       "--budget", "8", "--results-root", root])
    assert result.exit_code != 0 and "trains a network on images" in result.output and "linear, knn or labelprop" in result.output
    result = CliRunner().invoke(main, ["run", "--selector", "usl", "--learner", "linear", "--dataset", data,
                                       "--budget", "8", "--encoder", "pixels", "--results-root", root])
    assert result.exit_code != 0 and "reads images" in result.output
    board = _run("leaderboard", root)
    assert board.exit_code == 0 and "usl" in board.output


@pytest.mark.slow
def test_sweep_and_leaderboard_on_a_features_file(tmp_path):
    """Label-free selectors x the three probes on your own embeddings: every run done, one leaderboard
    row per selector; a learner that trains on images is refused when the sweep is planned, before
    any job (no record, no cache)."""
    data = f"features:{_blobs(tmp_path)}"
    root = tmp_path / "results"
    refused = CliRunner().invoke(main, ["sweep", "--dataset", data, "--selector", "usl,random", "--learner",
                                        "linear,fixmatch", "--budget", "8", "--executor", "inline",
                                        "--results-root", str(root)])
    assert refused.exit_code != 0
    assert "Learner 'fixmatch' trains a network on images" in refused.output and "linear, knn or labelprop" in refused.output
    assert not (root / "runs").exists() and not (root / "cache").exists()
    result = _run("sweep", "--dataset", data, "--selector", "random,usl,typiclust,probcover", "--learner",
                  "linear,knn,labelprop", "--budget", "8", "--seeds", "1", "--executor", "inline",
                  "--results-root", str(root))
    assert result.exit_code == 0, result.output
    assert "12 runs: 0 done, 0 failed, 0 crashed, 0 running, 12 new" in result.output
    assert "after the sweep: 12 done" in result.output
    board = _run("leaderboard", str(root))
    assert board.exit_code == 0
    table = board.output.split("### selectors × learners, m = 8")[1].split("###")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| selector")]
    assert sorted(line.split("|")[1].strip() for line in rows) == ["probcover", "random", "typiclust", "usl"]
    assert all(line.count("|") == 5 for line in rows)  # selector + knn, labelprop, linear


def test_bad_features_file_refused_before_any_output(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "results"
    cases = {"nan.npz": (dict(train=np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), train_labels=np.array([0, 1, 1])),
                         r"1 row\(s\) with NaN or infinite values \(e.g. rows 1\)"),
             "len.npz": (dict(train=rng.normal(size=(4, 2)), train_labels=np.array([0, 1, 1])),
                         r"expected shape \(4,\), got \(3,\)")}
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        for command in (["run", "--learner", "linear"], ["sweep", "--learner", "linear", "--executor", "inline"]):
            result = CliRunner().invoke(main, [*command, "--selector", "random", "--dataset",
                                               f"features:{tmp_path / name}", "--budget", "2",
                                               "--results-root", str(root)])
            assert result.exit_code != 0 and re.search(message, " ".join(result.output.split())), result.output
            assert not (root / "runs").exists() and not (root / "cache").exists()
