"""The job that executors hand to submitit: one stage (features, selection or run) for a list of
specs. Many cheap items go into one job (a chunk) because every job process pays the torch
import; the job is a submitit `Checkpointable`: on timeout or preemption it is requeued and
continues with the first item that has no result yet (learners resume from the checkpoint in the
run folder)."""
from __future__ import annotations

import sys
import traceback
from typing import Any, Callable

import submitit

from .. import SCHEMA_VERSION
from ..datasets import DatasetLoader
from ..devices import resolve_job_device
from ..errors import UserError
from ..utils import atomic_write_json
from .markers import finish_job_marker, now
from .pipeline import EncoderMemo, feature_stage, prepare, run_prepared, selection_stage
from .spec import RunSpec

STAGES = ("features", "selection", "run")


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

        loader = DatasetLoader(memo=True)  # the specs of one job share their data sets and encoders
        encoders = EncoderMemo()
        for spec_dict in self.specs:
            spec = RunSpec.from_dict(spec_dict)
            try:
                self._process(spec, device, loader, encoders, warn)
                summary["ok"] += 1
            except Exception as exc:  # noqa: BLE001 - recorded; the next item still runs
                summary["failed"] += 1
                summary["errors"].append(f"{spec.short()}: {type(exc).__name__}: {exc}")
                print(f"[uslbench] {self.stage} failed for {spec.short()}:\n{traceback.format_exc()}",
                      file=sys.stderr, flush=True)
        return summary

    def _process(self, spec: RunSpec, device: str, loader: DatasetLoader, encoders: EncoderMemo,
                 warn: Callable[[str], None]) -> None:
        try:
            prep = prepare(spec, self.results_root, device, loader=loader, encoder_factory=encoders)
        except UserError as exc:  # cannot happen after planning, unless the code changed in between
            raise RuntimeError(f"the spec no longer validates: {exc}") from exc
        if self.stage == "run":
            try:
                run_prepared(prep, device, echo=warn)
            except UserError as exc:  # a labeled set the learner refuses: a failed record, not a crash
                _write_failed_record(prep, exc)
                raise
            finally:
                finish_job_marker(prep.run_dir)
        elif self.stage == "features":
            feature_stage(prep, device, warn, always=True)
        else:  # the same features as `run` uses, the selection encoder's for clip_usl included
            selection_stage(prep, device, warn)


def _write_failed_record(prep: Any, exc: BaseException) -> None:
    atomic_write_json(prep.record_path, {
        "schema": SCHEMA_VERSION, "key": prep.resolved.run_key, "spec": prep.spec.to_dict(), "status": "failed",
        "error": f"{type(exc).__name__}: {exc}", "finished": now()})
