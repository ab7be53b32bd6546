"""A run's folder and its markers: a refused run leaves nothing that `status` counts (or, in a
sweep's job, a failed record)."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from uslbench.cli import main
from uslbench.errors import UserError
from uslbench.harness.markers import RUNNING
from uslbench.harness.pipeline import run_spec
from uslbench.harness.resources import Resources
from uslbench.harness.spec import RunSpec
from uslbench.harness.status import scan_states
from uslbench.harness.sweep import run_sweep

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
