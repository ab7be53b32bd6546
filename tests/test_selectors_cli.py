"""`select` and `perf` commands through Click's CliRunner."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from selector_helpers import mixture
from uslbench.cli import main


@pytest.fixture
def features_file(tmp_path):
    path = tmp_path / "feats.npy"
    np.save(path, mixture(200, 16, 4))
    return path


@pytest.mark.parametrize("suffix", [".npy", ".json", ".csv"])
def test_select_on_own_features_exports(features_file, tmp_path, suffix):
    out = tmp_path / f"picks{suffix}"
    result = CliRunner().invoke(main, ["select", "--features", str(features_file), "--selector", "usl",
                                       "--budget", "8", "--seed", "2", "--export", str(out)])
    assert result.exit_code == 0, result.output
    assert "seconds: knn_density" in result.output and "kmeans" in result.output
    if suffix == ".npy":
        picks = np.load(out).tolist()
    elif suffix == ".json":
        picks = json.loads(out.read_text())
    else:  # the picks table of a data set's export, without paths
        rows = list(csv.DictReader(out.read_text().splitlines()))
        assert list(rows[0]) == ["rank", "pool_index", "cluster", "score"]
        assert [int(r["rank"]) for r in rows] == list(range(1, 9))
        assert len({r["cluster"] for r in rows}) == 8  # USL: one pick per K-Means cluster
        assert all(np.isfinite(float(r["score"])) for r in rows)
        picks = [int(r["pool_index"]) for r in rows]
        assert "(8 picks: rank, pool index, cluster, score = usl_score)" in result.output
    assert len(set(picks)) == 8
    # the exported file is itself a selector
    again = CliRunner().invoke(main, ["select", "--features", str(features_file), "--selector", f"file:{out}",
                                      "--budget", "8"])
    assert again.exit_code == 0, again.output
    assert ", ".join(map(str, picks)) in again.output


def test_select_same_seed_same_indices(features_file, tmp_path):
    outs = []
    for i in range(2):
        out = tmp_path / f"p{i}.json"
        result = CliRunner().invoke(main, ["select", "--features", str(features_file), "--selector", "probcover",
                                           "--budget", "6", "--export", str(out)])
        assert result.exit_code == 0, result.output
        assert "coverage" in result.output
        outs.append(out.read_text())
    assert outs[0] == outs[1]


def test_select_through_the_dataset_and_its_caches(tmp_path):
    args = ["select", "--dataset", "digits", "--selector", "typiclust", "--budget", "10", "--seed", "1",
            "--results-root", str(tmp_path / "results"), "--export", str(tmp_path / "p.csv")]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "seconds: kmeans" in first.output
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0 and "reused cached features and selection" in second.output
    rows = list(csv.DictReader((tmp_path / "p.csv").read_text().splitlines()))
    assert list(rows[0]) == ["rank", "pool_index", "cluster", "score"] and len(rows) == 10
    assert "(10 picks: rank, pool index, cluster, score = typicality)" in first.output
    # `run` with the same selection reuses it
    run = CliRunner().invoke(main, ["run", "--dataset", "digits", "--selector", "typiclust", "--budget", "10",
                                    "--learner", "linear", "--results-root", str(tmp_path / "results")])
    assert run.exit_code == 0, run.output
    assert "reused cached features and selection" in run.output


def test_select_oracle_through_the_dataset(tmp_path):
    result = CliRunner().invoke(main, ["select", "--dataset", "digits", "--selector", "stratified", "--budget", "10",
                                       "--results-root", str(tmp_path)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args, message", [
    (["--selector", "usl", "--budget", "5"], "exactly one of --features"),
    (["--selector", "usl", "--budget", "0", "--features", "FEATS"], "positive integer"),
    (["--selector", "usl", "--budget", "500", "--features", "FEATS"], "exceeds the unlabeled pool"),
    (["--selector", "usl", "--budget", "5", "--features", "FEATS", "--export", "x.txt"], "must end in"),
    (["--selector", "stratified", "--budget", "5", "--features", "FEATS"], "reads labels"),
    (["--selector", "uls", "--budget", "5", "--features", "FEATS"], "Did you mean 'usl'"),
    (["--selector", "usl", "--budget", "5", "--features", "missing.npy"], "does not exist"),
    (["--selector", "usl", "--budget", "5", "--features", "FEATS", "--encoder", "pixels"], "applies to --dataset"),
])
def test_select_bad_input_is_one_clear_line(features_file, args, message):
    args = [str(features_file) if a == "FEATS" else a for a in args]
    result = CliRunner().invoke(main, ["select", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_perf_lists_cases_and_rejects_unknown_ones():
    listed = CliRunner().invoke(main, ["perf", "selectors", "--list"])
    assert listed.exit_code == 0 and "usl_imagenet" in listed.output
    bad = CliRunner().invoke(main, ["perf", "selectors", "--case", "usl_imagenett"])
    assert bad.exit_code == 2 and "usl_imagenet" in bad.output


def test_perf_writes_a_table(tmp_path, monkeypatch):
    from uslbench.perf import selectors as perf

    small = perf.Case("tiny_usl", "usl", 2_000, 10, 5, {"preset": "cifar10", "knn_k": 20}, 60, 4.0)
    monkeypatch.setattr(perf, "CASES", [small])
    monkeypatch.setattr(perf, "run_case_subprocess", lambda case, timeout: dict(perf.run_case(case), load_before=0.0))
    out = tmp_path / "perf.md"
    result = CliRunner().invoke(main, ["perf", "selectors", "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "| tiny_usl" in text and "peak RSS GB" in text and "knn_density" in text


def test_select_on_own_features_normalises_rows_by_default(features_file, tmp_path):
    """The presets assume unit-length rows (as every encoder writes them): a matrix scaled row by
    row picks the same points unless --no-l2-normalise asks for the raw matrix."""
    raw = np.load(features_file)
    scaled = tmp_path / "scaled.npy"
    np.save(scaled, raw * np.linspace(1, 50, len(raw), dtype=np.float32)[:, None])

    def picks(path, *extra):
        out = tmp_path / "p.json"
        result = CliRunner().invoke(main, ["select", "--features", str(path), "--selector", "usl", "--budget", "8",
                                           "--export", str(out), *extra])
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text()), result.output

    base, output = picks(features_file)
    assert "rows L2-normalised" in output
    assert picks(scaled)[0] == base
    as_given, output = picks(scaled, "--no-l2-normalise")
    assert "(as given)" in output and as_given != base


def test_select_on_own_features_reports_zero_rows_after_normalising(tmp_path):
    bad = mixture(50, 8, 2)
    bad[7] = 0.0
    path = tmp_path / "bad.npy"
    np.save(path, bad)
    result = CliRunner().invoke(main, ["select", "--features", str(path), "--selector", "usl", "--budget", "4"])
    assert result.exit_code == 2 and "all-zero rows" in result.output
