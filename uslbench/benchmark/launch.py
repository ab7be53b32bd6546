"""Executors for sweeps: inline (this process), local (submitit local processes), slurm (submitit).

A sweep runs in up to three stages, each cached by content key: features (once per data set and
encoder), selections (once per data set, encoder, selector, budget and seed) and learner runs.
A stage only holds the items whose cache entry or record is missing, and it starts after the
stage before it (local: the sweep waits; Slurm: `--dependency=afterany:` on the previous arrays),
so a selection is computed once and then read by every learner that needs it.

Many cheap items go into one job (a chunk) because every job process pays the torch import; the
job is a submitit `Checkpointable`: on timeout or preemption it is requeued and continues with the
first item that has no result yet (learners resume from the checkpoint in the run folder).
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import shutil
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import submitit

from .. import SCHEMA_VERSION
from ..errors import UserError
from ..registry import ENCODERS, LEARNERS, SELECTORS
from ..utils import atomic_write_json, progress_disabled
from .spec import RunSpec
from .status import Liveness
from .sweep import Plan, PlannedRun, dataset_memo

EXECUTORS = ("inline", "local", "slurm")
STAGES = ("features", "selection", "run")
GPU_TAGS = frozenset({"trains", "gpu_recommended", "gpu_only", "needs_gpu"})
Echo = Callable[[str], None]


@dataclass
class Resources:
    """What each job asks for. `gpus` go only to jobs whose entries want a GPU (tags `trains`,
    `gpu_recommended`); probes and cheap selectors get none."""

    executor: str = "local"
    max_parallel: int = 2
    time_min: int = 120
    partition: str | None = None
    gpus: int = 0
    cpus: int | None = None
    mem: str | None = None
    array_parallelism: int | None = None
    account: str | None = None
    qos: str | None = None
    sbatch: dict[str, str] = field(default_factory=dict)
    runs_per_job: int = 0            # 0: automatic
    device: str = "auto"

    def check(self) -> None:
        if self.executor not in EXECUTORS:
            raise UserError(f"Unknown executor {self.executor!r}; use one of {', '.join(EXECUTORS)}.")
        if self.executor == "slurm" and shutil.which("sbatch") is None:
            raise UserError("--executor slurm needs Slurm's `sbatch` command, which is not on PATH on this "
                            "machine. Use --executor local to run the sweep here (local processes, "
                            "--max-parallel at a time), or start a single-node Slurm with scripts/slurm_up.sh "
                            "(as root).")
        if self.max_parallel < 1:
            raise UserError(f"--max-parallel must be at least 1, got {self.max_parallel}.")
        if self.time_min < 1:
            raise UserError(f"--time must be at least one minute, got {self.time_min} minutes.")
        if self.runs_per_job < 0:
            raise UserError(f"--runs-per-job must be 0 (automatic) or more, got {self.runs_per_job}.")


def parse_time_minutes(text: str | int) -> int:
    """'90' -> 90; '2:00:00' -> 120; '1-00:00:00' -> 1440 (Slurm's formats)."""
    text = str(text).strip()
    try:
        days = 0
        if "-" in text:
            day_text, text = text.split("-", 1)
            days = int(day_text)
        parts = [int(p) for p in text.split(":")]
        if len(parts) == 1:
            minutes = parts[0]
        elif len(parts) == 2:
            minutes = parts[0] + math.ceil(parts[1] / 60)
        elif len(parts) == 3:
            minutes = parts[0] * 60 + parts[1] + math.ceil(parts[2] / 60)
        else:
            raise ValueError
        return days * 1440 + minutes
    except ValueError:
        raise UserError(f"--time {text!r} is not minutes or [D-]HH:MM:SS (for example 90 or 2:00:00).") from None


# ---------------------------------------------------------------------------------- the job
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def checkout_root() -> Path:
    """The folder holding the `uslbench` package that this process imported: jobs run this code."""
    return Path(__file__).resolve().parents[2]


class StageJob(submitit.helpers.Checkpointable):
    """One job: process a list of specs for one stage, skipping what is already done, so a
    requeued job (timeout, preemption) resumes where it stopped. Errors of one item are recorded
    and the job goes on with the next item."""

    def __init__(self, stage: str, specs: list[dict[str, Any]], results_root: str, device: str = "auto",
                 live_warnings: bool = True) -> None:
        self.stage = stage
        self.specs = specs
        self.results_root = str(results_root)
        self.device = device
        self.live_warnings = live_warnings   # False: only in the summary (inline: the sweep prints them)

    def __call__(self) -> dict[str, Any]:
        device = resolve_job_device(self.device)
        # warnings (a corrupt cache recomputed, an unusable record replaced) go to the job's log and
        # back to the sweep in the summary, which prints them in its console summary
        summary: dict[str, Any] = {"stage": self.stage, "ok": 0, "failed": 0, "errors": [], "warnings": []}

        def warn(message: str) -> None:
            if getattr(self, "live_warnings", True):
                print(f"warning: {message}", file=sys.stderr, flush=True)
            if message not in summary["warnings"]:
                summary["warnings"].append(message)

        with dataset_memo():
            for spec_dict in self.specs:
                spec = RunSpec.from_dict(spec_dict)
                try:
                    self._process(spec, device, warn)
                    summary["ok"] += 1
                except Exception as exc:  # noqa: BLE001 - recorded; the next item still runs
                    summary["failed"] += 1
                    summary["errors"].append(f"{spec.short()}: {type(exc).__name__}: {exc}")
                    print(f"[uslbench] {self.stage} failed for {spec.short()}:\n{traceback.format_exc()}",
                          file=sys.stderr, flush=True)
        return summary

    def _process(self, spec: RunSpec, device: str, warn: Callable[[str], None]) -> None:
        from .pipeline import feature_stage, prepare, run_prepared, selection_stage

        try:
            prep = prepare(spec, self.results_root, device)
        except UserError as exc:  # cannot happen after planning, unless the code changed in between
            raise RuntimeError(f"the spec no longer validates: {exc}") from exc
        if self.stage == "run":
            try:
                run_prepared(prep, device, echo=warn)
            except UserError as exc:  # a labeled set the learner refuses: a failed record, not a crash
                _write_failed_record(prep, exc)
                raise
            finally:
                _finish_job_marker(prep.run_dir)
        elif self.stage == "features":
            feature_stage(prep, device, warn, always=True)
        else:  # the same features as `run` uses, the selection encoder's for clip_usl included
            selection_stage(prep, device, warn)


def resolve_job_device(device: str) -> str:
    """`auto` without a visible NVIDIA device is `cpu` without importing torch (seconds per job)."""
    if device == "auto" and shutil.which("nvidia-smi") is None and not Path("/dev/nvidia0").exists():
        return "cpu"
    from ..cli import resolve_device

    return resolve_device(device)


def _write_failed_record(prep: Any, exc: BaseException) -> None:
    atomic_write_json(prep.record_path, {
        "schema": SCHEMA_VERSION, "key": prep.run_key, "spec": prep.spec.to_dict(), "status": "failed",
        "error": f"{type(exc).__name__}: {exc}", "finished": _now()})


def _finish_job_marker(run_dir: Path) -> None:
    path = Path(run_dir) / "job.json"
    marker = _read(path)
    if marker is not None and marker.get("state") == "queued":
        atomic_write_json(path, dict(marker, state="finished", finished=_now()))


def _read(path: Path) -> dict | None:
    import json

    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None


# ---------------------------------------------------------------------------------- stages
@dataclass
class StageWork:
    stage: str
    gpus: int
    specs: list[RunSpec]
    runs: list[PlannedRun] = field(default_factory=list)   # stage "run" only: for job markers


def plan_stages(plan: Plan, resources: Resources) -> list[StageWork]:
    """Features and selections missing from the cache for the runs to submit, then the runs;
    each stage split by resource shape (with or without GPU)."""
    from .cache import FeatureCache, SelectionCache

    runs = plan.to_submit
    feature_items: dict[str, PlannedRun] = {}
    selection_items: dict[str, PlannedRun] = {}
    for run in runs:
        prep = run.prepared
        if prep.needs_features and prep.feature_key not in feature_items:
            if not FeatureCache(prep.root, prep.spec.dataset, prep.encoder_name, prep.feature_key).meta_path.exists():
                feature_items[prep.feature_key] = run
        if prep.selection_key not in selection_items:
            cache = SelectionCache(prep.root, prep.spec.dataset, prep.spec.selector, prep.budget, prep.spec.seed,
                                   prep.selection_key)
            if not cache.path.exists():
                selection_items[prep.selection_key] = run
    work: list[StageWork] = []

    def add(stage: str, items: list[tuple[RunSpec, bool, PlannedRun | None]]) -> None:
        for wants_gpu in (False, True):
            chosen = [(spec, run) for spec, gpu, run in items if gpu == wants_gpu]
            if chosen:
                work.append(StageWork(stage, resources.gpus if wants_gpu else 0, [s for s, _ in chosen],
                                      [r for _, r in chosen if r is not None]))

    # inline runs one item after the other: every stage happens in order anyway. local: the learner
    # jobs get whole selection groups (below), so each selection is computed once, by one job,
    # before its runs - without paying one more round of process start-ups for a selection stage.
    if resources.executor != "inline":
        add("features", [(run.spec, _wants_gpu(ENCODERS, run.prepared.encoder_name, resources), None)
                         for run in feature_items.values()])
    if resources.executor == "slurm":
        add("selection", [(run.spec, _wants_gpu(SELECTORS, run.spec.selector, resources), None)
                          for run in selection_items.values()])
    add("run", [(run.spec, _wants_gpu(LEARNERS, run.spec.learner, resources), run) for run in runs])
    return work


def _wants_gpu(registry: Any, name: str, resources: Resources) -> bool:
    return resources.gpus > 0 and bool(GPU_TAGS.intersection(registry.get(name).tags))


def chunk_specs(item: StageWork, resources: Resources) -> list[list[RunSpec]]:
    """Split a stage's items into jobs. Automatic size: local - one job per parallel slot;
    Slurm - one run per job for GPU runs, else 25 items per job. Runs sharing a selection stay in
    one job (largest groups first, each to the least loaded job), so that job computes the
    selection once and its runs reuse it."""
    specs = item.specs
    if not specs:
        return []
    if resources.executor == "inline":
        return [specs]
    if resources.runs_per_job:
        n_chunks = math.ceil(len(specs) / resources.runs_per_job)
    elif resources.executor == "local":
        n_chunks = resources.max_parallel
    else:
        n_chunks = len(specs) if (item.stage == "run" and item.gpus) else math.ceil(len(specs) / 25)
    n_chunks = max(1, min(n_chunks, len(specs)))
    groups: dict[str, list[RunSpec]] = {}
    if item.stage == "run" and len(item.runs) == len(specs):
        for run in item.runs:
            groups.setdefault(run.prepared.selection_key, []).append(run.spec)
    else:
        groups = {str(i): [spec] for i, spec in enumerate(specs)}
    chunks: list[list[RunSpec]] = [[] for _ in range(n_chunks)]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(chunks, key=len).extend(group)
    return [chunk for chunk in chunks if chunk]


# ---------------------------------------------------------------------------------- markers
def mark_queued(runs: list[PlannedRun], executor: str, job_id: str | None, paths: Any = None,
                pid: int | None = None) -> None:
    """job.json in each run folder: who will compute it, and where its log is."""
    for run in runs:
        marker = {"state": "queued", "executor": executor, "job_id": job_id, "host": socket.gethostname(),
                  "submitted": _now(), "spec": run.spec.to_dict()}
        if pid is not None:
            marker["pid"] = pid
        if paths is not None:
            marker.update(stdout=str(paths.stdout), stderr=str(paths.stderr))
        atomic_write_json(run.prepared.run_dir / "job.json", marker)


def release_markers(runs: list[PlannedRun]) -> None:
    """Take back the sweep's own `queued` markers of runs that were never handed to a job (a
    job's marker stays: if that job died, the run shows as crashed)."""
    for run in runs:
        marker = _read(run.prepared.run_dir / "job.json")
        if marker is not None and marker.get("executor") == "sweep":
            _finish_job_marker(run.prepared.run_dir)


# ---------------------------------------------------------------------------------- execution
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
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="run", disable=progress_disabled(), file=sys.stderr)


def _count_finished(runs: list[PlannedRun], since: float) -> int:
    """Runs whose record was written after `since` (a stat per run: cheap enough to poll)."""
    count = 0
    for run in runs:
        try:
            count += run.prepared.record_path.stat().st_mtime >= since
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
    import logging

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
