"""A run's folder and its markers: a refused run leaves nothing that `status` counts (or, in a
sweep's job, a failed record), and an interrupted run (SIGINT / SIGTERM outside training too) is
marked interrupted, counted as crashed and re-run by the next sweep."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from uslbench.cli import main
from uslbench.errors import UserError
from uslbench.harness.markers import RUNNING, RunInterrupted, running_marker
from uslbench.harness.pipeline import run_spec
from uslbench.harness.plan import plan_sweep
from uslbench.harness.resources import Resources
from uslbench.harness.spec import RunSpec
from uslbench.harness.status import run_state, scan_states, summarize
from uslbench.harness.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
# probcover with a ball radius that covers the whole pool: its graph has 1,814,409 edges (every
# pair of digits' 1,347 pool images), far above max_edges=10, so the selector refuses it during
# selection, after the run folder was made
TOO_MANY_EDGES = {"delta": 1000.0, "max_edges": 10}


def _probcover_spec() -> RunSpec:
    return RunSpec(dataset="digits", selector="probcover", learner="linear", budget=10, seed=1,
                   selector_config=dict(TOO_MANY_EDGES))


def _random_spec(seed: int = 1) -> RunSpec:
    return RunSpec(dataset="digits", selector="random", learner="linear", budget=10, seed=seed)


def _counts(root: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in scan_states(root):
        counts[state.state] = counts.get(state.state, 0) + 1
    return counts


# ------------------------------------------------------------------------------------ refused runs
def test_a_run_refused_during_selection_leaves_no_run_folder(tmp_path):
    root = tmp_path / "results"
    result = CliRunner().invoke(main, ["run", "--dataset", "digits", "--selector", "probcover", "--learner", "linear",
                                       "--budget", "10", "--selector-config", "probcover.delta=1000",
                                       "--selector-config", "probcover.max_edges=10", "--results-root", str(root)])
    assert result.exit_code == 2, result.output
    assert "gives 1,814,409 edges (limit 10)" in result.output
    assert list((root / "runs").iterdir()) == []          # the folder made for the run is gone
    assert scan_states(root) == []
    status = CliRunner().invoke(main, ["status", str(root)])
    assert status.exit_code == 0 and status.output == f"no runs under {root}\n"


def test_a_refused_rerun_puts_back_the_earlier_marker(tmp_path):
    """A run folder that existed before (an interrupted run) keeps its state when a rerun is refused."""
    from uslbench.harness.pipeline import prepare

    root = tmp_path / "results"
    # an interrupted earlier attempt of the same run: its folder, marker and checkpoint

    prep_dir = prepare(_probcover_spec(), root).run_dir
    prep_dir.mkdir(parents=True)
    earlier = json.dumps({"pid": 1, "host": socket.gethostname(), "started": "2020-01-01T00:00:00+00:00",
                          "state": "interrupted", "signal": "SIGTERM", "interrupted": "2020-01-01T00:01:00+00:00"})
    (prep_dir / RUNNING).write_text(earlier)
    (prep_dir / "train.ckpt.pt").write_bytes(b"kept")
    assert _counts(root) == {"crashed": 1}
    with pytest.raises(UserError, match="edges"):
        run_spec(_probcover_spec(), root)
    assert (prep_dir / RUNNING).read_text() == earlier
    assert (prep_dir / "train.ckpt.pt").read_bytes() == b"kept"
    assert _counts(root) == {"crashed": 1}


def test_a_learner_refusing_the_labeled_set(tmp_path, monkeypatch):
    """`run`: no folder left. In a sweep's job: a failed record on purpose, counted as failed
    (by status, the sweep's plan and its dry run), never as new."""
    from uslbench.learners.probes import LinearProbe

    def refuse(self, dataset, labeled_indices):
        raise UserError("this learner refuses the labeled set")

    monkeypatch.setattr(LinearProbe, "check", refuse)
    root = tmp_path / "results"
    with pytest.raises(UserError, match="refuses the labeled set"):
        run_spec(_random_spec(), root)
    assert list((root / "runs").iterdir()) == [] and scan_states(root) == []

    from uslbench.harness.grid import build_sweep

    sweep = build_sweep(dataset="digits", selector="random", learner="linear", budget="10", seeds="1-2")
    result = run_sweep(sweep, root, Resources(executor="inline"))
    assert result.final_counts == {"done": 0, "failed": 2, "crashed": 0, "running": 0, "new": 0}
    states = scan_states(root)
    assert [s.state for s in states] == ["failed", "failed"]
    assert {s.detail for s in states} == {"UserError: this learner refuses the labeled set"}
    assert not list(root.glob("runs/*/running.json"))
    dry = run_sweep(sweep, root, Resources(executor="inline"), dry_run=True)
    assert dry.plan.counts() == {"done": 0, "failed": 2, "crashed": 0, "running": 0, "new": 0}
    assert dry.plan.to_submit == []


def test_status_does_not_count_an_empty_run_folder(tmp_path):
    """An empty folder (left by a refused run of an older version) is no run."""
    (tmp_path / "runs" / "0123456789abcdef").mkdir(parents=True)
    assert scan_states(tmp_path) == []


# ------------------------------------------------------------------------------ running_marker itself
def test_running_marker_outcomes(tmp_path):
    from uslbench.training.loop import TrainingInterrupted

    run_dir = tmp_path / "runs" / "a"
    with running_marker(run_dir) as marker:
        on_disk = json.loads((run_dir / RUNNING).read_text())
        assert on_disk == marker and marker["pid"] == os.getpid() and marker["host"] == socket.gethostname()
        assert run_state(run_dir).state == "running"
    assert list(run_dir.iterdir()) == []                   # done: the marker is gone

    with pytest.raises(RuntimeError):                      # failed: the caller wrote the record
        with running_marker(run_dir):
            raise RuntimeError("boom")
    assert list(run_dir.iterdir()) == []

    checkpoint = run_dir / "train.ckpt.pt"
    with pytest.raises(TrainingInterrupted):               # stopped inside the training loop
        with running_marker(run_dir):
            raise TrainingInterrupted("stopped", signal.SIGINT, 4, checkpoint)
    stopped = json.loads((run_dir / RUNNING).read_text())
    assert (stopped["state"], stopped["signal"], stopped["checkpoint"]) == ("interrupted", "SIGINT", str(checkpoint))
    state = run_state(run_dir)   # this process is alive, yet the run is not running: it was stopped
    assert state.state == "crashed"
    assert state.detail.startswith(f"interrupted: pid {os.getpid()} on {socket.gethostname()} stopped by SIGINT at ")
    assert f"(training checkpoint {checkpoint}: the rerun resumes from it)" in state.detail


def test_sigterm_inside_the_block_raises_and_marks_the_run(tmp_path):
    run_dir = tmp_path / "runs" / "b"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with pytest.raises(RunInterrupted) as caught:
        with running_marker(run_dir):
            # never send SIGTERM to the test process unless the block's handler is in place
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)                                   # the handler interrupts the sleep
    assert caught.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL   # restored
    assert json.loads((run_dir / RUNNING).read_text())["signal"] == "SIGTERM"
    assert run_state(run_dir).state == "crashed"


# --------------------------------------------------------- a real process stopped during selection
# `run` through the CLI in a child process, with the random selector slowed down: at selection it
# says "ready" and waits (up to 120 s) for the signal.
CHILD = textwrap.dedent('''
    import sys, time
    from pathlib import Path

    from uslbench.cli import main
    from uslbench.selectors.random import RandomSelector

    base = Path(sys.argv[1])
    original = RandomSelector._select

    def slow_select(self, *args, **kwargs):
        (base / "ready").touch()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.05)
        return original(self, *args, **kwargs)

    RandomSelector._select = slow_select
    main(["run", "--dataset", "digits", "--selector", "random", "--learner", "linear", "--budget", "10",
          "--seed", "1", "--results-root", str(base / "results")])
''')


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_selection_marks_the_run_interrupted_and_the_sweep_reruns_it(tmp_path, signum):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "USLBENCH_QUIET": "1"}
    child = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "ready").exists():
            assert child.poll() is None, child.communicate()[1]
            assert time.monotonic() < deadline, "the child never reached selection"
            time.sleep(0.02)
        child.send_signal(signum)
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 128 + signum, err   # as the shell reports a signal: 143 / 130
    assert "Traceback" not in err

    root = tmp_path / "results"
    [run_dir] = list((root / "runs").iterdir())
    assert sorted(p.name for p in run_dir.iterdir()) == [RUNNING]   # no record, the marker kept
    marker = json.loads((run_dir / RUNNING).read_text())
    assert (marker["state"], marker["signal"], marker["pid"]) == ("interrupted", signal.Signals(signum).name,
                                                                  child.pid)
    [state] = scan_states(root)
    assert state.state == "crashed" and "stopped by " + signal.Signals(signum).name in state.detail
    assert state.spec == _random_spec().to_dict()
    assert summarize([state]).startswith("1 runs: 0 done, 0 failed, 1 crashed, 0 running")
    assert f"  [crashed] digits | random | linear | m=10 | seed=1 ({run_dir.name})" in summarize([state])

    plan = plan_sweep([_random_spec()], root)
    assert [r.key for r in plan.to_submit] == [run_dir.name]   # the next sweep runs it again
    outcome = run_spec(_random_spec(), root)
    assert outcome.record["status"] == "ok"
    assert not (run_dir / RUNNING).exists() and run_state(run_dir).state == "done"
