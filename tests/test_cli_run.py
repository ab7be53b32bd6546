"""`run` end to end on digits: Click runner, a real subprocess, caching, and every bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from uslbench.cli import main

REPO = Path(__file__).resolve().parents[1]
BASE = ["run", "--selector", "usl", "--learner", "linear", "--dataset", "digits", "--budget", "40", "--seed", "1"]


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_run_writes_a_complete_record_then_hits_the_cache(results_root):
    first = invoke(*BASE, "--results-root", str(results_root))
    assert first.exit_code == 0, first.output
    assert "top1" in first.output and "classes covered" in first.output
    records = list(results_root.glob("runs/*/record.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["status"] == "ok"
    assert record["spec"]["selector"] == "usl" and record["spec"]["budget"] == 40  # parsed at the command line
    assert record["resolved"]["budget"] == 40
    assert len(record["selection"]["indices"]) == 40 and len(set(record["selection"]["indices"])) == 40
    assert sum(record["class_histogram"]) == 40 and len(record["class_histogram"]) == 10
    assert 0 < record["metrics"]["top1"] <= 100
    assert {"features", "selection", "learner"} <= set(record["seconds"])
    assert record["versions"]["numpy"] and "git_commit" in record
    assert record["selection"]["info"]["resolved_config"]["preset"] == "small"
    assert not list(results_root.glob("runs/*/running.json"))

    mtimes = {p: p.stat().st_mtime_ns for p in files_under(results_root)}
    second = invoke(*BASE, "--results-root", str(results_root))
    assert second.exit_code == 0
    assert "nothing recomputed" in second.output
    assert {p: p.stat().st_mtime_ns for p in files_under(results_root)} == mtimes  # nothing rewritten


def test_another_learner_reuses_features_and_selection(results_root):
    invoke(*BASE, "--results-root", str(results_root))
    other = invoke(*[a if a != "linear" else "knn" for a in BASE], "--results-root", str(results_root))
    assert other.exit_code == 0 and "reused cached features and selection" in other.output
    assert len(list(results_root.glob("runs/*/record.json"))) == 2


def test_subprocess_python_cli_py(tmp_path):
    env = dict(os.environ, CI="true")
    out = subprocess.run([sys.executable, "cli.py", *BASE, "--results-root", str(tmp_path / "r")],
                         cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "digits | usl | linear | m=40 | seed=1 | top1" in out.stdout
    assert "record: " in out.stdout
    record_path = Path(out.stdout.split("record: ")[1].strip())
    assert json.loads(record_path.read_text())["status"] == "ok"


def test_corrupt_feature_cache_is_detected_and_recomputed(results_root):
    invoke(*BASE, "--results-root", str(results_root))
    # the features themselves (beside them: derived caches such as usl's density, checked separately)
    feature_file = next(results_root.glob("cache/features/digits/*.json")).with_suffix(".npy")
    good = np.load(feature_file)
    data = bytearray(feature_file.read_bytes())
    data[-8:] = b"\x00" * 8
    feature_file.write_bytes(bytes(data))
    result = invoke(*BASE, "--results-root", str(results_root), "--force")
    assert result.exit_code == 0
    assert "corrupt" in result.output and "recomputing" in result.output
    np.testing.assert_array_equal(np.load(feature_file), good)


def test_corrupt_selection_cache_is_detected_and_recomputed(results_root):
    invoke(*BASE, "--results-root", str(results_root))
    sel_file = next(results_root.glob("cache/selections/digits/*.json"))
    good = json.loads(sel_file.read_text())["indices"]
    data = json.loads(sel_file.read_text())
    data["indices"][0] = (data["indices"][0] + 1) % 1000
    sel_file.write_text(json.dumps(data))
    result = invoke(*BASE, "--results-root", str(results_root), "--force")
    assert "corrupt" in result.output
    assert json.loads(sel_file.read_text())["indices"] == good
    sel_file.write_text("{not json")
    result = invoke(*BASE, "--results-root", str(results_root), "--force")
    assert result.exit_code == 0 and "corrupt" in result.output


BAD_INPUTS = [
    (["--selector", "usll"], "Unknown selector 'usll'. Did you mean 'usl'"),
    (["--learner", "lineer"], "Unknown learner 'lineer'. Did you mean 'linear'"),
    (["--dataset", "digts"], "Unknown dataset 'digts'. Did you mean 'digits'"),
    (["--encoder", "pixel"], "Unknown encoder 'pixel'. Did you mean 'pixels'"),
    (["--budget", "0"], "Budget must be a positive integer"),
    (["--budget", "-5"], "Budget must be a positive integer"),
    (["--budget", "2.5"], "Budget must be a positive integer"),
    (["--budget", "many"], "Budget must be a positive integer"),
    (["--budget", "5000"], "exceeds the unlabeled pool of 1347 images"),
    (["--selector", "stratified", "--budget", "5"], "at least the number of classes (10)"),
    (["--selector-config", "usl.lamb=1"], "Unknown config key 'lamb' for selector 'usl'. Did you mean 'lam'"),
    (["--learner-config", "linear.CC=3"], "Unknown config key 'CC' for learner 'linear'"),
    (["--selector-config", "lam"], "is not NAME.KEY=VALUE"),
    (["--selector-config", "lam=1.0"], "write for example usl.lam=1.0"),   # the old run syntax: the fix shown
    (["--selector-config", "random.lam=1.0"], "this command's selector is 'usl'; write usl.KEY=VALUE"),
    (["--encoder-config", "pixels.x=1"], "--encoder-config needs --encoder NAME"),
    (["--device", "cuda"], "no CUDA GPU"),
]


def _with(overrides: list[str]) -> list[str]:
    args = list(BASE)
    for flag, value in zip(overrides[::2], overrides[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


@pytest.mark.parametrize("overrides,message", BAD_INPUTS)
def test_bad_input_gives_one_paragraph_nonzero_exit_and_writes_nothing(overrides, message, results_root):
    if overrides[:2] == ["--device", "cuda"]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    result = CliRunner().invoke(main, _with(overrides) + ["--results-root", str(results_root)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0  # one paragraph
    assert not results_root.exists()


def test_unwritable_results_root_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = CliRunner().invoke(main, BASE + ["--results-root", str(blocker / "results")])
    assert result.exit_code == 2 and "not usable" in result.output
    result = CliRunner().invoke(main, BASE + ["--results-root", "/proc/uslbench-results"])
    assert result.exit_code == 2 and "not writable" in result.output


def test_list_and_describe():
    listing = invoke("list", "selectors")
    assert listing.exit_code == 0 and "usl" in listing.output and "stratified" in listing.output
    described = invoke("describe", "usl")
    assert "knn_k" in described.output and "imagenet_moco" in described.output
    unknown = CliRunner().invoke(main, ["describe", "uslt"])
    assert unknown.exit_code == 2 and "Did you mean" in unknown.output
    assert "stratified     ORACLE" in listing.output and "[needs_labels, uses_features=False]" in listing.output


def test_describe_for_a_dataset_shows_the_resolved_numbers():
    assert "  lam: float | None = None" in invoke("describe", "usl").output
    cifar10 = invoke("describe", "usl", "--dataset", "cifar10").output
    assert "config for data set cifar10" in cifar10
    assert "  preset: str = 'cifar10'" in cifar10 and "  knn_k: int | None = 400" in cifar10
    assert "  lam: float | None = 0.5" in cifar10 and "= None" not in cifar10.split("knn_k")[1].split("n_clusters")[0]
    digits = invoke("describe", "usl", "--dataset", "digits", "--budget", "40").output
    assert "  preset: str = 'small'" in digits and "  knn_k: int | None = 16" in digits  # 1,347 // (2 * 40)
    assert "knn_k becomes max(3" in invoke("describe", "usl", "--dataset", "digits").output
    simclrv2 = invoke("describe", "simclrv2", "--dataset", "cifar100").output
    assert "  arch: str = 'resnet18_cifar'" in simclrv2 and "  weight_decay: float = 0.0001" in simclrv2
    assert "  steps: int = 0" in simclrv2
    unknown = CliRunner().invoke(main, ["describe", "usl", "--dataset", "cifar1O"])
    assert unknown.exit_code == 2 and "cifar10" in unknown.output


def test_every_data_root_option_says_its_default(monkeypatch, tmp_path):
    """One help text on every command with --data-root, naming the default resolve_data_root applies."""
    import click

    from uslbench.commands.options import DATA_ROOT_DEFAULT
    from uslbench.datasets.files import resolve_data_root

    assert DATA_ROOT_DEFAULT == "$USLBENCH_DATA when set, else ./data in the working folder"
    ctx = click.Context(main)
    with_option = {}
    for name in main.list_commands(ctx):
        for param in main.get_command(ctx, name).params:
            if "--data-root" in param.opts:
                with_option[name] = param.help
    assert sorted(with_option) == ["leaderboard", "pretrain", "run", "select", "sweep"]
    from_file = ("leaderboard", "sweep")  # a sweep file's data_root comes first
    assert all(text.endswith(f"(default: {DATA_ROOT_DEFAULT})") for name, text in with_option.items()
               if name not in from_file)
    assert all(with_option[name].endswith(f"(default: the sweep file's data_root, else {DATA_ROOT_DEFAULT})")
               for name in from_file)
    assert "$USLBENCH_DATA when set" in invoke("run", "--help").output
    monkeypatch.delenv("USLBENCH_DATA", raising=False)
    assert resolve_data_root(None) == Path("data")
    monkeypatch.setenv("USLBENCH_DATA", str(tmp_path))
    assert resolve_data_root(None) == tmp_path and resolve_data_root("elsewhere") == Path("elsewhere")


def test_help_shows_an_example():
    result = invoke("run", "--help")
    assert "python cli.py run --selector usl" in result.output
