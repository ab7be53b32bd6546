"""One sweep: plan under the results root's lock, then run or submit what is not done.

    grid (axes, presets, sweep files) -> plan (resolved specs + run states) -> executors (jobs)

A second identical sweep finds every run done (or running) and submits nothing.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..utils import writable_root
from .executors import execute, wait_for_slurm
from .grid import Sweep
from .markers import mark_queued, release_markers
from .plan import Plan, plan_sweep
from .resources import Resources
from .status import STATES, Liveness, run_state


@contextlib.contextmanager
def root_lock(root: Path) -> Iterator[None]:
    """Exclusive lock on the results root while a sweep plans and submits, so two sweeps sharing
    a root never submit the same run twice (the second one sees the first one's job markers)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".sweep.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass
class SweepResult:
    plan: Plan
    submitted: int = 0                       # runs handed to an executor
    job_ids: list[str] = field(default_factory=list)
    waited: bool = False
    final_counts: dict[str, int] = field(default_factory=dict)
    # records found unusable while planning, then what the jobs warned about (corrupt caches
    # recomputed, ...): the sweep's console summary prints them
    warnings: list[str] = field(default_factory=list)

    @property
    def unfinished(self) -> dict[str, int]:
        """Failed and crashed runs of the grid after the sweep (non-zero: the sweep did not
        complete its grid; the CLI exits 1)."""
        return {state: self.final_counts.get(state, 0) for state in ("failed", "crashed")
                if self.final_counts.get(state, 0)}


def run_sweep(sweep: Sweep, results_root: str | os.PathLike, resources: Resources, retry_failed: bool = False,
              dry_run: bool = False, wait: bool = True, echo=print) -> SweepResult:
    """Plan under the root lock, then run or submit what is not done. A second identical sweep
    finds every run done (or running) and submits nothing."""
    resources.check()                         # executor problems before any planning work
    specs = sweep.specs()
    root = Path(results_root).absolute()
    writable_root(root)
    with root_lock(root):
        plan = plan_sweep(specs, root, retry_failed)
        planning_warnings = [f"record {run.state.problem}; treated as missing"
                             + ("" if dry_run else ", so it runs again") for run in plan.runs if run.state.problem]
        if dry_run or not plan.to_submit:
            return SweepResult(plan, waited=True, final_counts=plan.counts(), warnings=planning_warnings)
        if resources.executor == "slurm":    # submitted (and marked) before the lock is released
            submission = execute(plan, resources, wait=False, echo=echo)
        else:                                 # claimed by this process until a job takes them
            mark_queued(plan.to_submit, "sweep", str(os.getpid()), pid=os.getpid())
    to_submit = plan.to_submit
    if resources.executor == "slurm":
        if wait:
            wait_for_slurm(submission.job_ids, to_submit)
            submission.collect_jobs(submission.jobs)
        result = SweepResult(plan, len(to_submit), submission.job_ids, wait)
    else:
        try:
            submission = execute(plan, resources, wait=True, echo=echo)
        finally:
            release_markers(to_submit)
        result = SweepResult(plan, len(to_submit), submission.job_ids, True)
    result.warnings = planning_warnings + [w for w in submission.warnings if w not in planning_warnings]
    liveness = Liveness()
    counts = {state: 0 for state in STATES}
    for run in plan.runs:
        counts[run_state(run.resolved.run_dir, liveness).state] += 1
    result.final_counts = counts
    return result
