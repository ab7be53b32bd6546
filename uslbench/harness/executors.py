"""Executors for sweeps: inline (this process), local (submitit local processes), slurm (submitit).

They take a `Plan` and its `Resources`, turn each stage's work into `StageJob`s (one job array per
stage and resource shape on Slurm) and wait for them where asked.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import submitit
from tqdm import tqdm

from ..errors import UserError
from ..utils import progress_disabled
from .jobs import STAGES, StageJob
from .markers import mark_queued
from .plan import Plan, PlannedRun, StageWork, chunk_specs, plan_stages
from .resources import Resources
from .status import Liveness

Echo = Callable[[str], None]


def checkout_root() -> Path:
    """The folder holding the `uslbench` package that this process imported: jobs run this code."""
    return Path(__file__).resolve().parents[2]


@dataclass
class Submission:
    job_ids: list[str] = field(default_factory=list)
    n_jobs: int = 0
    waited: bool = False
    warnings: list[str] = field(default_factory=list)   # from the jobs' summaries, once each
    jobs: list[Any] = field(default_factory=list, repr=False)   # submitit jobs (slurm), to collect later

    def collect(self, summary: Any) -> None:
        """Keep the warnings of one job's summary (StageJob.__call__'s return value)."""
        if isinstance(summary, dict):
            for message in summary.get("warnings", []):
                if message not in self.warnings:
                    self.warnings.append(message)

    def collect_jobs(self, jobs: list[Any]) -> None:
        """The summaries of finished submitit jobs; a job that died has none (its runs show as
        crashed in the counts)."""
        for job in jobs:
            try:
                self.collect(job.result())
            except Exception:  # noqa: BLE001 - a killed or failed job returns nothing to collect
                continue


def execute(plan: Plan, resources: Resources, wait: bool = True, echo: Echo = print) -> Submission:
    """Run or submit the plan's work. inline and local always wait; slurm waits with `wait`."""
    work = plan_stages(plan, resources)
    runs = plan.to_submit
    if not runs:
        return Submission(waited=True)
    root = plan.root
    if resources.executor == "inline":
        return _execute_inline(work, root, runs, resources)
    _export_checkout_path()
    if resources.executor == "local":
        return _execute_local(work, root, runs, resources)
    return _execute_slurm(work, root, runs, resources, wait, echo)


def _progress(total: int, desc: str):
    return tqdm(total=total, desc=desc, unit="run", disable=progress_disabled(), file=sys.stderr)


def _count_finished(runs: list[PlannedRun], since: float) -> int:
    """Runs whose record was written after `since` (a stat per run: cheap enough to poll)."""
    count = 0
    for run in runs:
        try:
            count += run.resolved.record_path.stat().st_mtime >= since
        except FileNotFoundError:
            pass
    return count


def _execute_inline(work: list[StageWork], root: Path, runs: list[PlannedRun], resources: Resources) -> Submission:
    submission = Submission(waited=True, n_jobs=0)
    with _progress(len(runs), "runs") as bar:
        for item in work:
            if item.stage != "run":
                submission.collect(StageJob(item.stage, [s.to_dict() for s in item.specs], str(root),
                                            resources.device, live_warnings=False)())
                continue
            for spec in item.specs:
                submission.collect(StageJob("run", [spec.to_dict()], str(root), resources.device,
                                            live_warnings=False)())
                bar.update(1)
    return submission


def _export_checkout_path() -> None:
    """Local job processes import `uslbench` from this checkout, whatever their working folder."""
    root = str(checkout_root())
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root] + parts)


def _execute_local(work: list[StageWork], root: Path, runs: list[PlannedRun], resources: Resources) -> Submission:
    executor = submitit.LocalExecutor(folder=root / "jobs" / "%j", max_num_timeout=3, python=sys.executable)
    executor.update_parameters(timeout_min=resources.time_min)
    submission = Submission(waited=True)
    by_spec = {id(run.spec): run for run in runs}
    active: list[Any] = []
    submitted: list[Any] = []
    since = time.time()
    try:
        with _progress(len(runs), "runs") as bar:
            for item in work:  # stage barrier: selections are complete before the learner runs start
                pending = chunk_specs(item, resources)
                while pending or active:
                    while pending and len(active) < resources.max_parallel:
                        chunk = pending.pop(0)
                        job = executor.submit(StageJob(item.stage, [s.to_dict() for s in chunk], str(root),
                                                       resources.device))
                        submission.job_ids.append(str(job.job_id))
                        submission.n_jobs += 1
                        if item.stage == "run":
                            mark_queued([by_spec[id(s)] for s in chunk], "local", str(job.job_id), job.paths,
                                        pid=int(job.job_id))
                        active.append(job)
                        submitted.append(job)
                    time.sleep(1.0)
                    active = [job for job in active if not job.done()]
                    bar.n = _count_finished(runs, since)
                    bar.refresh()
                bar.n = _count_finished(runs, since)
                bar.refresh()
    except BaseException:
        for job in active:
            job.cancel(check=False)
        raise
    submission.collect_jobs(submitted)
    return submission


def _execute_slurm(work: list[StageWork], root: Path, runs: list[PlannedRun], resources: Resources, wait: bool,
                   echo: Echo) -> Submission:
    logging.getLogger("submitit").setLevel(logging.ERROR)  # sacct is often disabled; we use squeue
    by_spec = {id(run.spec): run for run in runs}
    submission = Submission()
    stage_ids: dict[str, list[str]] = {}
    for item in work:
        executor = submitit.SlurmExecutor(folder=root / "jobs" / "%j", max_num_timeout=3, python=sys.executable)
        # each stage waits for every array of the stages before it (afterany: a failed selection
        # job does not block the runs, which then compute their selection themselves)
        earlier = [i for stage in STAGES[:STAGES.index(item.stage)] for i in stage_ids.get(stage, [])]
        executor.update_parameters(**_slurm_parameters(item, resources, ":".join(earlier)))
        chunks = chunk_specs(item, resources)
        try:
            with executor.batch():  # one job array per (stage, resource shape)
                jobs = [executor.submit(StageJob(item.stage, [s.to_dict() for s in chunk], str(root),
                                                 resources.device)) for chunk in chunks]
        except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError) as exc:
            message = " ".join(dict.fromkeys(line.strip() for line in str(exc).splitlines() if line.strip()))
            done = f" (already submitted: {', '.join(submission.job_ids)})" if submission.job_ids else ""
            raise UserError(f"sbatch refused the {item.stage} jobs: {message}. Check --partition, --account, "
                            f"--qos, --gpus and --sbatch options (`sinfo` lists the partitions){done}.") from None
        submission.jobs.extend(jobs)
        for job, chunk in zip(jobs, chunks):
            submission.job_ids.append(str(job.job_id))
            if item.stage == "run":
                mark_queued([by_spec[id(s)] for s in chunk], "slurm", str(job.job_id), job.paths)
        submission.n_jobs += len(jobs)
        stage_ids.setdefault(item.stage, []).extend(sorted({str(job.job_id).split("_", 1)[0] for job in jobs}))
    echo(f"submitted {submission.n_jobs} Slurm job(s) for {len(runs)} run(s): "
         + ", ".join(f"{stage} {','.join(ids)}" for stage, ids in stage_ids.items()))
    if wait:
        wait_for_slurm(submission.job_ids, runs)
        submission.waited = True
        submission.collect_jobs(submission.jobs)
    return submission


def _slurm_parameters(item: StageWork, resources: Resources, dependency: str) -> dict[str, Any]:
    checkout = checkout_root()
    params: dict[str, Any] = {
        "job_name": f"uslbench-{item.stage}",
        "time": resources.time_min,
        "setup": [f"cd {checkout}", f"export PYTHONPATH={checkout}${{PYTHONPATH:+:$PYTHONPATH}}"],
    }
    optional = {"partition": resources.partition, "cpus_per_task": resources.cpus, "mem": resources.mem,
                "account": resources.account, "qos": resources.qos,
                "array_parallelism": resources.array_parallelism, "gpus_per_node": item.gpus or None}
    params.update({k: v for k, v in optional.items() if v is not None})
    extra = dict(resources.sbatch)
    if dependency:
        params["dependency"] = f"afterany:{dependency}"
    if extra:
        params["additional_parameters"] = extra
    return params


def wait_for_slurm(job_ids: list[str], runs: list[PlannedRun], poll_seconds: float = 2.0) -> None:
    """Block until none of the jobs is pending or running; the bar counts finished runs."""
    since = time.time()
    with _progress(len(runs), "runs") as bar:
        while True:
            liveness = Liveness()
            alive = [j for j in job_ids if liveness.slurm_job_alive(j)]
            bar.n = _count_finished(runs, since)
            bar.refresh()
            if not alive:
                return
            time.sleep(poll_seconds)
