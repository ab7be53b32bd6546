"""The plan of a sweep: every spec resolved and checked, with its run's state read from the results
folder (done, failed, crashed, running, new; see `uslbench.harness.status`), and the work per
stage that the executors turn into jobs.

A sweep runs in up to three stages, each cached by content key: features (once per data set and
encoder), selections (once per data set, encoder, selector, budget and seed) and learner runs.
A stage only holds the items whose cache entry or record is missing, and it starts after the
stage before it (local: the sweep waits; Slurm: `--dependency=afterany:` on the previous arrays),
so a selection is computed once and then read by every learner that needs it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import ENCODERS, LEARNERS, SELECTORS
from ..datasets import DatasetLoader
from .cache import FeatureCache, SelectionCache
from .pipeline import EncoderMemo, ResolvedRun, prepare
from .resources import Resources
from .spec import RunSpec
from .status import STATES, Liveness, RunState, run_state



@dataclass
class PlannedRun:
    spec: RunSpec
    resolved: ResolvedRun
    state: RunState

    @property
    def key(self) -> str:
        return self.resolved.run_key


@dataclass
class Plan:
    root: Path
    runs: list[PlannedRun]
    retry_failed: bool = False

    def counts(self) -> dict[str, int]:
        counts = {state: 0 for state in STATES}
        for run in self.runs:
            counts[run.state.state] += 1
        return counts

    @property
    def to_submit(self) -> list[PlannedRun]:
        """New and crashed runs (a crashed run left no record), plus failed ones on --retry-failed."""
        wanted = {"new", "crashed"} | ({"failed"} if self.retry_failed else set())
        return [run for run in self.runs if run.state.state in wanted]


def plan_sweep(specs: list[RunSpec], results_root: str | os.PathLike, retry_failed: bool = False,
               liveness: Liveness | None = None) -> Plan:
    """Resolve and check every spec (UserError before anything runs), then read each run's state."""
    liveness = liveness or Liveness()
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    loader = DatasetLoader(memo=True)  # prepare() loads the data set and builds the encoders of every spec
    encoders = EncoderMemo()
    for spec in specs:
        resolved = prepare(spec, results_root, loader=loader, encoder_factory=encoders).resolved
        if resolved.run_key in seen:
            continue
        seen.add(resolved.run_key)
        runs.append(PlannedRun(spec, resolved, run_state(resolved.run_dir, liveness)))
    root = Path(runs[0].resolved.root) if runs else Path(results_root).absolute()
    return Plan(root, runs, retry_failed)


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
    runs = plan.to_submit
    feature_items: dict[str, PlannedRun] = {}
    selection_items: dict[str, PlannedRun] = {}
    for run in runs:
        prep = run.resolved
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
        add("features", [(run.spec, _wants_gpu(ENCODERS, run.resolved.encoder_name, resources), None)
                         for run in feature_items.values()])
    if resources.executor == "slurm":
        add("selection", [(run.spec, _wants_gpu(SELECTORS, run.spec.selector, resources), None)
                          for run in selection_items.values()])
    add("run", [(run.spec, _wants_gpu(LEARNERS, run.spec.learner, resources), run) for run in runs])
    return work


def _wants_gpu(registry: Any, name: str, resources: Resources) -> bool:
    return resources.gpus > 0 and registry.traits(name).gpu_recommended


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
            groups.setdefault(run.resolved.selection_key, []).append(run.spec)
    else:
        groups = {str(i): [spec] for i, spec in enumerate(specs)}
    chunks: list[list[RunSpec]] = [[] for _ in range(n_chunks)]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(chunks, key=len).extend(group)
    return [chunk for chunk in chunks if chunk]
