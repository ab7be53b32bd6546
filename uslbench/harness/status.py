"""Run states read from the results folder: done, failed, crashed, running, new.

Two markers live in `runs/<key>/` besides the record:

- `running.json` (written by the pipeline while a run computes): pid, host, start time, job id, spec;
  `"state": "interrupted"` with the signal and time once SIGINT / SIGTERM stopped the run
  (`uslbench.harness.markers.running_marker`).
- `job.json` (written by the sweep at submission): executor, job id, host, log paths, and
  `"state": "queued"` until the job has processed this run (then `"finished"`).

A marker whose process or job is alive means running. A marker left behind by a process or job
that is gone, with no record written, means crashed (killed, out of memory, node lost): no
half-written record exists because records are written atomically, and the next sweep re-runs it.
A run marked interrupted counts as crashed at once (its process is exiting, or has exited), unless
its record says done or failed. An empty run folder is no run (nothing in it says what it was) and
is not counted. Liveness is checked without accounting: the pid (with its start time) on this host, or `squeue`
for a Slurm job id.

A record that cannot be used (unreadable bytes, not UTF-8, not JSON, or JSON that is not a record;
see `uslbench.report.records.read_record_file`) is treated as missing: the run counts as new (or
crashed, or running, as its markers say), `RunState.problem` names the file and the reason, and
the next sweep runs it again.
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from .markers import INTERRUPTED

STATES = ("done", "failed", "crashed", "running", "new")
_SLURM_ALIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"}


def _read_json(path: Path) -> dict | None:
    """A marker file's object, or None when it is absent or unusable (not UTF-8, not JSON)."""
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError, RecursionError):  # ValueError: JSON and UTF-8 decoding errors
        return None


class Liveness:
    """Answers "is this process / job still alive?", with one `squeue` snapshot per instance."""

    def __init__(self) -> None:
        self.host = socket.gethostname()
        self._squeue: dict[str, str] | None = None

    def slurm_states(self) -> dict[str, str]:
        if self._squeue is None:
            self._squeue = {}
            if shutil.which("squeue"):
                try:
                    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i %A %T"], capture_output=True,
                                         text=True, timeout=30)
                    for line in out.stdout.splitlines():
                        parts = line.split()
                        if len(parts) == 3:
                            self._squeue[parts[0]] = parts[2]
                            self._squeue[parts[1]] = parts[2]
                except (OSError, subprocess.SubprocessError):
                    pass
        return self._squeue

    def slurm_job_alive(self, job_id: str) -> bool:
        states = self.slurm_states()
        state = states.get(str(job_id))
        if state is None and "_" in str(job_id):  # a pending array task is listed as 12_[0-9]
            array_id = str(job_id).split("_", 1)[0]
            state = next((s for i, s in states.items() if i.startswith(array_id + "_[") and s == "PENDING"), None)
        return state in _SLURM_ALIVE

    def pid_alive(self, pid: int, started: str | None = None) -> bool:
        try:
            process = psutil.Process(int(pid))
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            if started:  # a recycled pid belongs to a process started after the marker
                marker_time = _dt.datetime.fromisoformat(started).timestamp()
                if process.create_time() > marker_time + 2:
                    return False
            return True
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError, TypeError):
            return False

    def marker_alive(self, marker: dict[str, Any]) -> bool:
        """True while the process or job named by a marker is alive; True when it cannot be told
        (another host without Slurm): a run is never re-submitted on a guess."""
        same_host = marker.get("host") == self.host
        executor = marker.get("executor")
        if marker.get("pid") and same_host:
            return self.pid_alive(marker["pid"], marker.get("started") or marker.get("submitted"))
        job_id = marker.get("job_id")
        if job_id and (executor == "slurm" or executor is None) and shutil.which("squeue"):
            return self.slurm_job_alive(str(job_id))
        if executor == "local" and same_host and job_id:
            return self.pid_alive(int(job_id), marker.get("submitted"))
        return not same_host


@dataclass
class RunState:
    key: str
    state: str                    # one of STATES
    run_dir: Path
    record: dict | None = None
    detail: str = ""              # first error line, or why the run is counted as crashed/running
    log: str | None = None        # the job's log file (or the record for in-process runs)
    job_id: str | None = None
    spec: dict | None = None      # from the record, or from a marker of a run without record
    problem: str | None = None    # "<record path> <why it cannot be used>"; the run counts as without record


def run_state(run_dir: Path, liveness: Liveness | None = None) -> RunState:
    liveness = liveness or Liveness()
    run_dir = Path(run_dir)
    key = run_dir.name
    from .record_file import read_record_file

    record_path = run_dir / "record.json"
    record, unusable = read_record_file(record_path)
    problem = f"{record_path} {unusable}" if unusable else None
    running = _read_json(run_dir / "running.json")
    job = _read_json(run_dir / "job.json")
    log = (job or {}).get("stderr") or (job or {}).get("stdout")
    spec = (record or {}).get("spec") or (job or {}).get("spec") or (running or {}).get("spec")
    job_id = (job or {}).get("job_id") or (running or {}).get("job_id")
    interrupted = running is not None and running.get("state") == INTERRUPTED
    if running is not None and not interrupted and liveness.marker_alive(running):
        where = f"pid {running.get('pid')} on {running.get('host')}"
        return RunState(key, "running", run_dir, record, f"computing ({where})", log, job_id, spec, problem)
    queued = job is not None and job.get("state") == "queued"
    if queued and liveness.marker_alive(job):
        return RunState(key, "running", run_dir, record, f"queued in {job.get('executor')} job {job.get('job_id')}",
                        log, job_id, spec, problem)
    if record is not None and record.get("status", "ok") == "ok":
        return RunState(key, "done", run_dir, record, "", log, job_id, spec)
    if record is not None and record.get("status") == "failed":
        error = str(record.get("error") or "unknown error").strip().splitlines()
        return RunState(key, "failed", run_dir, record, error[0] if error else "unknown error",
                        log or str(record_path), job_id, spec)
    if interrupted:
        what = f"job {job_id}" if job_id else f"pid {running.get('pid')} on {running.get('host')}"
        checkpoint = running.get("checkpoint")
        return RunState(key, "crashed", run_dir, record,
                        f"interrupted: {what} stopped by {running.get('signal') or 'a signal'} at "
                        f"{running.get('interrupted')} without writing a record"
                        + (f" (training checkpoint {checkpoint}: the rerun resumes from it)" if checkpoint else ""),
                        log, job_id, spec, problem)
    if running is not None or queued:
        marker = running or job or {}
        what = f"job {job_id}" if job_id else f"pid {marker.get('pid')} on {marker.get('host')}"
        return RunState(key, "crashed", run_dir, record,
                        f"crashed: {what} ended without writing a record (killed, timed out or out of memory)",
                        log, job_id, spec, problem)
    detail = f"record unusable: {problem}; treated as missing" if problem else ""
    return RunState(key, "new", run_dir, record, detail, log, job_id, spec, problem)


def scan_states(root: str | Path) -> list[RunState]:
    """The state of every run folder under ROOT/runs."""
    runs = Path(root) / "runs"
    if not runs.is_dir():
        return []
    liveness = Liveness()
    return [run_state(d, liveness) for d in sorted(runs.iterdir()) if d.is_dir() and _holds_anything(d)]


def _holds_anything(run_dir: Path) -> bool:
    """False for an empty folder (left by an older version when a run was refused): no run."""
    try:
        return next(run_dir.iterdir(), None) is not None
    except OSError:
        return True


def summarize(states: list[RunState], max_listed: int = 20) -> str:
    """Counts per state, then the failed and crashed runs with their first error line and log."""
    counts = {state: 0 for state in STATES}
    for s in states:
        counts[s.state] += 1
    lines = [f"{len(states)} runs: " + ", ".join(f"{counts[s]} {s}" for s in STATES if s != "new" or counts[s])]
    bad = [s for s in states if s.state in ("failed", "crashed")]
    if bad:
        lines.append("")
        lines.append("failed and crashed runs (retry with: sweep ... --retry-failed):")
    for s in bad[:max_listed]:
        spec = s.spec or {}
        what = (f"{spec.get('dataset')} | {spec.get('selector')} | {spec.get('learner')} | m={spec.get('budget')}"
                f" | seed={spec.get('seed')}") if spec else s.key
        lines.append(f"  [{s.state}] {what} ({s.key})")
        lines.append(f"      {s.detail}")
        lines.append(f"      log: {s.log or s.run_dir}")
    if len(bad) > max_listed:
        lines.append(f"  ... and {len(bad) - max_listed} more")
    unusable = [s for s in states if s.problem]
    if unusable:
        lines.append("")
        lines.append(f"{len(unusable)} record(s) that cannot be used, treated as missing "
                     "(the next sweep runs them again):")
        lines.extend(f"  {s.problem}" for s in unusable[:max_listed])
        if len(unusable) > max_listed:
            lines.append(f"  ... and {len(unusable) - max_listed} more")
    running = [s for s in states if s.state == "running"]
    for s in running[:5]:
        lines.append(f"  [running] {s.key}: {s.detail}")
    return "\n".join(lines)
