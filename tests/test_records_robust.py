"""Faults in the results root (issue 12, items 18, 19, 22): a record that cannot be read, or that is
JSON but not a record, is reported with its path and reason and treated as missing (status,
leaderboard and sweep go on; the sweep runs it again); a sweep whose grid ends with failed or
crashed runs exits 1 with the counts, and warnings raised inside its jobs reach its console."""
from __future__ import annotations

import json
import math
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from uslbench.harness.resources import Resources
from uslbench.harness.status import scan_states, summarize
from uslbench.harness.grid import build_sweep
from uslbench.harness.sweep import run_sweep
from uslbench.cli import main
from uslbench.report import records

# two cheap runs: random x linear on digits, m = 10, seeds 1 and 2
SWEEP = ["sweep", "--dataset", "digits", "--selector", "random", "--learner", "linear", "--budget", "10",
         "--seeds", "1-2", "--executor", "inline", "--no-leaderboard"]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    """A results root holding the two finished runs (copied by each test before it damages one)."""
    root = tmp_path_factory.mktemp("records") / "results"
    result = run_sweep(build_sweep(dataset="digits", selector="random", learner="linear", budget="10", seeds="1-2"),
                       root, Resources(executor="inline"))
    assert result.final_counts["done"] == 2
    return root


@pytest.fixture
def root(two_runs, tmp_path) -> Path:
    copy = tmp_path / "results"
    shutil.copytree(two_runs, copy)
    return copy


def _records(root: Path) -> list[Path]:
    return sorted(root.glob("runs/*/record.json"))


def _non_utf8_bytes() -> bytes:
    """300 random bytes that are not UTF-8 (0xff never occurs in UTF-8)."""
    return b"\xff" + np.random.default_rng(0).integers(0, 256, 299, dtype=np.uint8).tobytes()


# ------------------------------------------------------------------------------------- the validator
@pytest.mark.parametrize("data, reason", [
    ([], "holds a JSON list, not a record (a JSON object)"),
    ("ok", "holds a JSON string, not a record (a JSON object)"),
    (None, "holds a JSON null, not a record (a JSON object)"),
    ({"status": "ok"}, "says status 'ok' but lacks dataset, selector, learner, budget, seed, top1"),
    ({"schema": 1}, "has no status (expected 'ok' or 'failed')"),
    ({"schema": 1, "status": "done"}, "has status 'done' (expected 'ok' or 'failed')"),
    ({"schema": "1", "status": "ok"}, "has schema '1', which is not a version number"),
    ({"schema": 1, "status": "ok", "spec": {"dataset": "digits", "selector": "random", "learner": "linear",
                                            "budget": 10, "seed": 1}, "metrics": {"top1": math.nan}},
     "has top-1 nan, not a percentage in [0, 100]"),
    ({"schema": 1, "status": "ok", "spec": {"dataset": "digits", "selector": "random", "learner": "linear",
                                            "budget": 10, "seed": 1}, "metrics": {"top1": 140.0}},
     "has top-1 140.0, not a percentage in [0, 100]"),
])
def test_record_problem_names_the_reason(data, reason):
    assert records.record_problem(data) == reason


def test_valid_records_pass_the_validator(two_runs):
    for path in _records(two_runs):
        record, problem = records.read_record_file(path)
        assert problem is None and record["status"] == "ok"
    assert records.record_problem({"schema": 1, "status": "failed", "error": "RuntimeError: x"}) is None
    assert records.record_problem({"schema": 99, "anything": True}) is None   # a newer layout is not judged


def test_read_record_file_reasons(tmp_path):
    path = tmp_path / "record.json"
    assert records.read_record_file(path) == (None, None)
    path.write_bytes(_non_utf8_bytes())
    assert records.read_record_file(path) == (None, "is not UTF-8 text (byte 0 of 300: invalid start byte)")
    path.write_text("{ half written")
    assert records.read_record_file(path) == (
        None, "is not valid JSON (Expecting property name enclosed in double quotes at line 1, column 3)")


# ------------------------------------------------------------------------------------- item 18
def test_non_utf8_record_is_reported_and_treated_as_missing(root):
    bad, good = _records(root)
    bad.write_bytes(_non_utf8_bytes())
    reason = "is not UTF-8 text (byte 0 of 300: invalid start byte)"

    states = {s.run_dir.name: s for s in scan_states(root)}
    assert states[bad.parent.name].state == "new" and states[good.parent.name].state == "done"
    assert states[bad.parent.name].problem == f"{bad} {reason}"
    assert f"  {bad} {reason}" in summarize(list(states.values())).splitlines()

    status = invoke("status", str(root))
    assert status.exit_code == 0
    assert status.output.splitlines()[0] == "2 runs: 1 done, 0 failed, 0 crashed, 0 running, 1 new"
    assert f"{bad} {reason}" in status.output

    board = invoke("leaderboard", str(root), "--no-plots", "--output", str(root.parent / "board"))
    assert board.exit_code == 0
    assert f"warning: skipped unreadable record {bad}: it {reason}" in board.stderr
    assert "| random     | " in board.stdout and "(1)" in board.stdout   # the one good seed, counted as one

    sweep = invoke(*SWEEP, "--results-root", str(root))
    assert sweep.exit_code == 0, sweep.output
    assert sweep.stderr.count(f"warning: record {bad} {reason}; treated as missing, so it runs again") == 1
    assert "2 runs: 1 done, 0 failed, 0 crashed, 0 running, 1 new (to run: 1)" in sweep.stdout
    assert "after the sweep: 2 done" in sweep.stdout
    assert records.read_record_file(bad)[1] is None


# ------------------------------------------------------------------------------------- item 19
@pytest.mark.parametrize("content, reason", [
    ("[]", "holds a JSON list, not a record (a JSON object)"),
    ('{"status": "ok"}', "says status 'ok' but lacks dataset, selector, learner, budget, seed, top1"),
])
def test_json_that_is_not_a_record_is_reported_and_run_again(root, content, reason):
    bad, good = _records(root)
    bad.write_text(content)

    states = {s.run_dir.name: s for s in scan_states(root)}
    assert [states[bad.parent.name].state, states[good.parent.name].state] == ["new", "done"]
    assert states[bad.parent.name].problem == f"{bad} {reason}"

    board = invoke("leaderboard", str(root), "--no-plots", "--output", str(root.parent / "board"))
    assert board.exit_code == 0
    assert f"warning: skipped invalid record {bad}: it {reason}" in board.stderr

    sweep = invoke(*SWEEP, "--results-root", str(root))
    assert sweep.exit_code == 0, sweep.output
    assert f"warning: record {bad} {reason}; treated as missing, so it runs again" in sweep.stderr
    assert "after the sweep: 2 done" in sweep.stdout
    record, problem = records.read_record_file(bad)
    assert problem is None and record["spec"]["seed"] in (1, 2)


def test_run_replaces_an_invalid_record(root):
    """`run` itself (not only sweep): an invalid record is reported and the run computed again."""
    bad, _ = _records(root)
    seed = json.loads(bad.read_text())["spec"]["seed"]
    bad.write_text("[]")
    out = invoke("run", "--selector", "random", "--learner", "linear", "--dataset", "digits", "--budget", "10",
                 "--seed", str(seed), "--results-root", str(root))
    assert out.exit_code == 0, out.output
    assert f"warning: record {bad} holds a JSON list, not a record (a JSON object); treated as missing" in out.stderr
    assert "cached: this run is already done" not in out.stdout
    assert records.read_record_file(bad)[1] is None


# ------------------------------------------------------------------------------------- item 22
def test_sweep_with_failed_runs_exits_1_with_the_counts(root):
    """A record saying failed (e.g. a learner that crashed) is part of the grid: without
    --retry-failed the sweep submits nothing but still reports the grid as incomplete."""
    bad, _ = _records(root)
    record = json.loads(bad.read_text())
    bad.write_text(json.dumps({"schema": 1, "key": record["key"], "spec": record["spec"], "status": "failed",
                               "error": "RuntimeError: boom"}))
    sweep = invoke(*SWEEP, "--results-root", str(root))
    assert sweep.exit_code == 1
    assert "sweep incomplete: 1 failed of 2 runs (exit status 1)" in sweep.stderr
    retried = invoke(*SWEEP, "--results-root", str(root), "--retry-failed")
    assert retried.exit_code == 0, retried.output
    assert "after the sweep: 2 done" in retried.stdout


def test_sweep_with_crashed_runs_exits_1(root, monkeypatch):
    """A run whose job dies without writing a record (here: the learner raises inside the job, and
    the record write is skipped as a kill would) counts as crashed, and the sweep exits 1."""
    from uslbench.harness import jobs

    for path in _records(root):
        shutil.rmtree(path.parent)

    def killed(prep, *args, **kwargs):
        prep.run_dir.mkdir(parents=True, exist_ok=True)
        (prep.run_dir / "running.json").write_text(json.dumps({"pid": 999999999, "host": socket.gethostname()}))
        raise RuntimeError("killed")

    monkeypatch.setattr(jobs, "run_prepared", killed)   # the job calls the run stage through this name
    sweep = invoke(*SWEEP, "--results-root", str(root))
    assert sweep.exit_code == 1
    assert "sweep incomplete: 2 crashed of 2 runs (exit status 1)" in sweep.stderr


def test_cache_corruption_inside_a_job_reaches_the_sweep_console(root):
    """A corrupt selection cache is found inside the job (it recomputes it); the warning is in the
    sweep's console summary, not only in the job's log."""
    cache = next(root.glob("cache/selections/digits/random-m10-s1-*.json"))
    data = json.loads(cache.read_text())
    data["indices"][0] = (data["indices"][0] + 1) % 1000
    cache.write_text(json.dumps(data))
    for path in _records(root):   # make the runs new again so the job reads the cache
        path.unlink()
    sweep = invoke(*SWEEP, "--results-root", str(root))
    assert sweep.exit_code == 0, sweep.output
    warning = f"warning: cached selection {cache} is corrupt (indices do not match their recorded digest); " \
              "recomputing it."
    assert sweep.stderr.count(warning) == 1
    assert sweep.output.index(warning) > sweep.output.index("2 runs: ")   # in the summary, after the counts


def test_sweep_with_local_jobs_brings_their_warnings_back(root):
    """The same through the local executor: the warning travels back in the job's summary."""
    cache = next(root.glob("cache/selections/digits/random-m10-s2-*.json"))
    cache.write_text("not json")
    for path in _records(root):
        path.unlink()
    sweep = invoke(*[a if a != "inline" else "local" for a in SWEEP], "--max-parallel", "1",
                   "--results-root", str(root))
    assert sweep.exit_code == 0, sweep.output
    assert f"warning: cached selection {cache} is corrupt" in sweep.stderr


def test_a_run_without_a_test_split_is_a_valid_record():
    """`run --labels` on a folder without test images writes `evaluated: false` and no top-1: a
    valid record (the run is done, a second identical run recomputes nothing), not a broken one."""
    from uslbench.harness.record_file import record_problem

    record = {"schema": 1, "status": "ok", "evaluated": False, "metrics": {"top1": None},
              "spec": {"dataset": "folder:x", "selector": "labels", "learner": "linear", "seed": 1},
              "resolved": {"budget": 6}}
    assert record_problem(record) is None
    assert "lacks top1" in record_problem({**record, "evaluated": True})
