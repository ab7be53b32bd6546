"""Sweeps on a real Slurm (scripts/slurm_up.sh starts a single-node one; .ci/run does under CI).

Without Slurm these tests skip with a message, except under CI=true where they fail.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from uslbench.harness.resources import Resources
from uslbench.harness.status import scan_states, summarize
from uslbench.harness.grid import build_sweep
from uslbench.harness.sweep import run_sweep

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _slurm_up() -> str | None:
    """None when a Slurm node accepts jobs here, else why not."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "sbatch/sinfo are not installed"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo failed: {exc}"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s in ("idle", "mix", "alloc") for s in states):
        return f"no Slurm node is up (sinfo: {out.stdout.strip() or out.stderr.strip()})"
    return None


@pytest.fixture(scope="module")
def slurm_root(tmp_path_factory):
    problem = _slurm_up()
    if problem is not None:
        message = f"Slurm is needed for this test but {problem}; start it with scripts/slurm_up.sh (as root)."
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(message)
        pytest.skip(message)
    return tmp_path_factory.mktemp("slurm")


def _sweep(seeds: str):
    return build_sweep(dataset="digits", selector="random,usl", learner="linear", budget="10", seeds=seeds)


def _wait_gone(job_ids: list[str], timeout_s: float = 120) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        out = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True).stdout
        alive = [line for line in out.splitlines() if line.split()[0].split("_")[0] in
                 {j.split("_")[0] for j in job_ids}]
        if not alive:
            return
        time.sleep(0.5)
    raise AssertionError(f"jobs {job_ids} still in the queue after {timeout_s}s")


def test_slurm_sweep_collects_records_and_resubmits_nothing(slurm_root):
    start = time.perf_counter()
    result = run_sweep(_sweep("1-2"), slurm_root, Resources(executor="slurm", time_min=10), wait=True)
    seconds = time.perf_counter() - start
    assert result.submitted == 4 and result.job_ids
    assert result.final_counts["done"] == 4, summarize(scan_states(slurm_root))
    records = [json.loads(p.read_text()) for p in (slurm_root / "runs").glob("*/record.json")]
    assert len(records) == 4 and all(r["status"] == "ok" and r["job_id"] for r in records)
    assert all(r["metrics"]["top1"] > 30 for r in records)
    # each job's log is recorded next to its run
    markers = [json.loads(p.read_text()) for p in (slurm_root / "runs").glob("*/job.json")]
    assert all(m["executor"] == "slurm" and os.path.exists(m["stderr"]) for m in markers)
    again = run_sweep(_sweep("1-2"), slurm_root, Resources(executor="slurm"), wait=True)
    assert again.submitted == 0 and again.job_ids == []
    print(f"\nslurm sweep of 4 runs (features, selection and run arrays): {seconds:.1f}s")


def test_scancel_shows_as_crashed_and_retry_succeeds(slurm_root):
    result = run_sweep(_sweep("3"), slurm_root, Resources(executor="slurm", time_min=10, runs_per_job=1), wait=False)
    assert result.submitted == 2
    run_jobs = [j for j in result.job_ids if json.dumps(j) in
                "".join(p.read_text() for p in (slurm_root / "runs").glob("*/job.json"))]
    victim = run_jobs[0]
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it once it runs (its Python is still starting up)
        state = subprocess.run(["squeue", "-h", "-j", victim, "-o", "%T"], capture_output=True, text=True).stdout
        if state.strip() == "RUNNING":
            break
        time.sleep(0.1)
    subprocess.run(["scancel", "--full", "--signal=KILL", victim], check=True)
    _wait_gone(result.job_ids)
    states = {s.key: s for s in scan_states(slurm_root)}
    killed = [s for s in states.values() if s.job_id == victim]
    assert len(killed) == 1 and killed[0].state in ("crashed", "failed"), summarize(list(states.values()))
    text = summarize(list(states.values()))
    assert f"[{killed[0].state}] digits" in text and "log: " in text
    retry = run_sweep(_sweep("3"), slurm_root, Resources(executor="slurm", time_min=10), retry_failed=True,
                      wait=True)
    assert retry.submitted == 1
    assert retry.final_counts == {"done": 2, "failed": 0, "crashed": 0, "running": 0, "new": 0}


def test_sbatch_refusal_is_a_user_error(slurm_root, tmp_path):
    from uslbench.errors import UserError

    with pytest.raises(UserError, match="sbatch refused the features jobs: .*partition"):
        run_sweep(_sweep("1"), tmp_path, Resources(executor="slurm", partition="no_such_partition"))
    assert not list(tmp_path.glob("runs/*/job.json"))   # nothing claimed: a corrected sweep submits it all
