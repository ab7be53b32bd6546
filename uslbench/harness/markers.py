"""Run markers. `job.json` in a run folder says which job will compute the run and where its log
is (`"state": "queued"` until the job has processed the run, then `"finished"`). `running.json`
says which process computes it (`running_marker`, around the run stage). `status` reads them to
tell a running run from a crashed or interrupted one."""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import signal
import socket
import threading
from pathlib import Path
from typing import Any, Iterator

from ..errors import UserError
from ..utils import atomic_write_bytes, atomic_write_json

RUNNING = "running.json"
INTERRUPTED = "interrupted"   # running.json's "state" once the run was stopped by a signal


def now() -> str:
    """UTC time stamp, ISO 8601, whole seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_json(path: Path) -> dict | None:
    """The JSON object in `path`, or None when the file is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None


def mark_queued(runs: list[Any], executor: str, job_id: str | None, paths: Any = None,
                pid: int | None = None) -> None:
    """job.json in each run folder (`runs`: PlannedRun): who will compute it, and where its log is."""
    for run in runs:
        marker = {"state": "queued", "executor": executor, "job_id": job_id, "host": socket.gethostname(),
                  "submitted": now(), "spec": run.spec.to_dict()}
        if pid is not None:
            marker["pid"] = pid
        if paths is not None:
            marker.update(stdout=str(paths.stdout), stderr=str(paths.stderr))
        atomic_write_json(run.resolved.run_dir / "job.json", marker)


def finish_job_marker(run_dir: Path) -> None:
    """Mark a queued run as processed by its job (whatever the outcome: the record tells)."""
    path = Path(run_dir) / "job.json"
    marker = read_json(path)
    if marker is not None and marker.get("state") == "queued":
        atomic_write_json(path, dict(marker, state="finished", finished=now()))


def release_markers(runs: list[Any]) -> None:
    """Take back the sweep's own `queued` markers of runs that were never handed to a job (a
    job's marker stays: if that job died, the run shows as crashed)."""
    for run in runs:
        marker = read_json(run.resolved.run_dir / "job.json")
        if marker is not None and marker.get("executor") == "sweep":
            finish_job_marker(run.resolved.run_dir)


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM stopped a run outside its training loop (features, selection, evaluation), as SIGINT
    raises KeyboardInterrupt; `signum` is the signal (the CLI exits 128 + signum). Inside the
    training loop the loop's own `training.loop.TrainingInterrupted` is raised instead."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def _terminate_raises() -> Iterator[None]:
    """While a run computes, SIGTERM raises `RunInterrupted` in the main thread (its default action
    kills the process on the spot, which would leave running.json behind). Only where SIGTERM has
    its default action: a handler installed by someone else (submitit's, in a Slurm job) is left
    alone, and nothing changes outside the main thread. Forked workers keep the default action.
    Python runs the handler between bytecodes, so a long C call (a faiss k-means) ends first; a
    second SIGTERM kills at once."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return
    owner = os.getpid()

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        signal.signal(signum, signal.SIG_DFL)
        if os.getpid() != owner:  # a forked worker: the default action, as without this handler
            os.kill(os.getpid(), signum)
            return
        # os.write: a signal handler must not re-enter a buffered stream the run may be writing to
        os.write(2, (f"\n{signal.Signals(signum).name} received: stopping the run; `status` shows it as "
                     "crashed (interrupted) and the next sweep, or the same command, runs it again.\n").encode())
        raise RunInterrupted(signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _signal_name(exc: BaseException) -> str:
    """The signal that stopped a run: SIGINT for a plain KeyboardInterrupt, "exit" for SystemExit."""
    signum = getattr(exc, "signum", None)
    if signum is not None:
        with contextlib.suppress(ValueError):
            return signal.Signals(signum).name
    return "exit" if isinstance(exc, SystemExit) else "SIGINT"


@contextlib.contextmanager
def running_marker(run_dir: Path, spec: dict | None = None) -> Iterator[dict]:
    """`running.json` in the run folder while the block computes the run: pid, host, start time, job
    id, and the run's `spec` (a RunSpec's dict) when given, so `status` can name a run without record.

    How the block ends decides what is left:

    - normally, or with any other exception (the caller has written the failed record): the marker
      is removed;
    - a `UserError` (the run is refused: a config value or labeled set found wrong only now): the
      folder is left as it was before, so `status` counts nothing new: a folder this block created
      is removed with what is in it, otherwise the earlier `running.json` (if any) is put back;
    - SIGINT, SIGTERM (`RunInterrupted`, raised here outside the training loop) or SystemExit: the
      marker stays with `"state": "interrupted"`, the signal and the time (and the training
      checkpoint when training wrote one), so `status` counts the run as crashed at once (no
      liveness check) and the next sweep runs it again.

    Yields the marker (a dict). Raises whatever the block raised."""
    run_dir = Path(run_dir)
    path = run_dir / RUNNING
    created = not run_dir.exists()
    try:
        previous = None if created else path.read_bytes()
    except FileNotFoundError:
        previous = None
    run_dir.mkdir(parents=True, exist_ok=True)
    marker = {"pid": os.getpid(), "host": socket.gethostname(), "started": now(),
              "job_id": os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_JOB_ID")}
    if spec is not None:
        marker["spec"] = spec
    atomic_write_json(path, marker)
    try:
        with _terminate_raises():
            yield marker
    except UserError:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        elif previous is not None:
            atomic_write_bytes(path, previous)
        else:
            _remove(path)
        raise
    except (KeyboardInterrupt, SystemExit) as exc:
        stopped = dict(marker, state=INTERRUPTED, signal=_signal_name(exc), interrupted=now())
        checkpoint = getattr(exc, "checkpoint", None)   # training.loop.TrainingInterrupted
        if checkpoint is not None:
            stopped["checkpoint"] = str(checkpoint)
        atomic_write_json(path, stopped)
        raise
    except BaseException:
        _remove(path)
        raise
    _remove(path)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
