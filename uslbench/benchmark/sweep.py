"""Sweep grids: axes from the command line or a YAML/JSON file, presets, and the plan of what to run.

A sweep is the cross product datasets x encoders x selectors x learners x budgets x seeds, with one
config override set per selector / learner name. Planning resolves and checks every spec (names,
config keys, budgets) before anything is submitted, then sorts the runs into the states that
`uslbench.benchmark.status` reads from the results folder: done, failed, crashed, running, new.
"""
from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import UserError, close_matches
from ..registry import LEARNERS, SELECTORS, load_all, parse_overrides
from .spec import RunSpec
from .status import Liveness, RunState, run_state

# Tags that keep a selector out of the CPU `quick` preset (they need a GPU, CLIP weights, or files).
CPU_EXCLUDED_TAGS = frozenset({"needs_clip", "gpu_only", "needs_gpu", "needs_weights", "needs_file"})

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "description": "every CPU selector x linear, labelprop (+ one fast SSL learner) on digits, "
                       "budgets 10/20/40, seeds 1-3, local executor",
        "dataset": ["digits"],
        "selector": "@cpu",        # resolved from the registry at run time
        "learner": ["linear", "labelprop"],
        "ssl_learner": "fixmatch",  # added when registered; override with --learner
        # a CPU-sized run of the SSL learner (its digits preset trains 400 steps with 4 unlabeled
        # batches per labeled one, ~45 s a run on this 2-core machine; this is ~6x cheaper). A short
        # run needs a short EMA: with 0.99 the averaged model still holds much of its random start
        # after 100 steps (22% top-1 vs 89% with 0.9, usl m=40 seed 1). The tables name the
        # override in the column, e.g. "fixmatch[ema=0.9,steps=100,unlabeled_ratio=1]".
        "ssl_learner_config": {"steps": 100, "unlabeled_ratio": 1, "ema": 0.9},
        "budget": [10, 20, 40],
        "seeds": [1, 2, 3],
        "executor": "local",
    },
}

AXES = ("dataset", "selector", "learner", "budget", "seeds", "encoder")
FILE_KEYS = frozenset(AXES) | {"selector_config", "learner_config", "encoder_config", "dataset_config",
                               "data_root", "encoder_weights", "preset"}


# ---------------------------------------------------------------------------------- axes
def parse_int_list(text: str | int | Iterable, what: str) -> list[int]:
    """'1-5' -> [1..5]; '10,20,40' -> [10, 20, 40]; '1-3,7' -> [1, 2, 3, 7]; ints pass through."""
    if isinstance(text, bool):
        raise UserError(f"{what} must be integers, got {text!r}.")
    if isinstance(text, int):
        return [text]
    if not isinstance(text, str):
        return [value for item in text for value in parse_int_list(item, what)]
    values: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                low, high = part.split("-", 1) if not part.startswith("-") else (part, "")
                low_i, high_i = int(low), int(high)
                if high_i < low_i:
                    raise UserError(f"{what} range {part!r} is empty (the end is below the start).")
                values.extend(range(low_i, high_i + 1))
            else:
                values.append(int(part))
        except ValueError:
            raise UserError(f"{what} {part!r} is not an integer or a range like 1-5 "
                            f"(use comma lists and ranges: 10,20,40 or 1-5).") from None
    return values


def parse_name_list(text: str | Iterable[str] | None) -> list[str]:
    """'usl,random' -> ['usl', 'random'] (order kept, duplicates dropped)."""
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else [str(t) for t in text]
    out: list[str] = []
    for item in (i.strip() for i in items):
        if item and item not in out:
            out.append(item)
    return out


def parse_scoped_overrides(pairs: Iterable[str], kind: str) -> dict[str, dict[str, str]]:
    """['usl.lam=1.0', 'usl.k=20'] -> {'usl': {'lam': '1.0', 'k': '20'}}."""
    scoped: dict[str, dict[str, str]] = {}
    for pair in pairs:
        name_key = pair.split("=", 1)[0]
        if "." not in name_key:
            raise UserError(f"--{kind}-config {pair!r} must name the {kind}: NAME.KEY=VALUE "
                            f"(for example usl.lam=1.0).")
        name, rest = pair.split(".", 1)
        scoped.setdefault(name.strip(), {}).update(parse_overrides([rest]))
    return scoped


def cpu_selectors(datasets: Iterable[str] = (), budget: int = 10,
                  skipped: list[str] | None = None) -> list[str]:
    """Registered selectors that run on a CPU without extra files, read at run time so selectors
    added later are included. With `datasets`, a selector that refuses one of them (say, one whose
    fixed encoder is not installed) is left out and named in `skipped` with its reason."""
    from .pipeline import prepare
    from .spec import RunSpec

    load_all()
    names = []
    for name in SELECTORS.names():
        entry = SELECTORS.get(name)
        if entry.argument_field or CPU_EXCLUDED_TAGS.intersection(entry.tags) or any(
                tag.startswith("fixed_encoder:") for tag in entry.tags):
            continue
        try:
            with dataset_memo():
                for dataset in datasets:
                    prepare(RunSpec(dataset=dataset, selector=name, learner="linear", budget=budget),
                            tempfile.gettempdir())
        except UserError as exc:
            if skipped is not None:
                skipped.append(f"{name}: {str(exc).splitlines()[0]}")
            continue
        names.append(name)
    return names


# ---------------------------------------------------------------------------------- sweep
@dataclass
class Sweep:
    datasets: list[str]
    selectors: list[str]
    learners: list[str]
    budgets: list[int]
    seeds: list[int]
    encoders: list[str | None] = field(default_factory=lambda: [None])
    selector_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    learner_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    encoder_config: dict[str, Any] = field(default_factory=dict)
    dataset_config: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    encoder_weights: str | None = None
    preset: str | None = None
    notes: list[str] = field(default_factory=list)   # what a preset left out, and why

    def check(self) -> None:
        for axis, values in (("dataset", self.datasets), ("selector", self.selectors),
                             ("learner", self.learners), ("budget", self.budgets), ("seeds", self.seeds)):
            if not values:
                raise UserError(f"The sweep's {axis} axis is empty; give at least one value "
                                f"(for example --{axis} {_EXAMPLES[axis]}).")
        for scope, names, what in ((self.selector_config, self.selectors, "selector"),
                                   (self.learner_config, self.learners, "learner")):
            for name in scope:
                if name not in names:
                    hint = close_matches(name, names)
                    raise UserError(f"--{what}-config names {what} {name!r}, which is not in this sweep "
                                    f"({', '.join(names)})." + (f" Did you mean {hint[0]!r}?" if hint else ""))

    def specs(self) -> list[RunSpec]:
        self.check()
        out = []
        for dataset, encoder, selector, learner, budget, seed in itertools.product(
                self.datasets, self.encoders, self.selectors, self.learners, self.budgets, self.seeds):
            out.append(RunSpec(dataset=dataset, selector=selector, learner=learner, budget=budget, seed=seed,
                               encoder=encoder, selector_config=dict(self.selector_config.get(selector, {})),
                               learner_config=dict(self.learner_config.get(learner, {})),
                               encoder_config=dict(self.encoder_config), dataset_config=dict(self.dataset_config),
                               encoder_weights=self.encoder_weights, data_root=self.data_root))
        return out


_EXAMPLES = {"dataset": "digits", "selector": "usl,random", "learner": "linear", "budget": "10,20,40",
             "seeds": "1-3"}


def build_sweep(*, preset: str | None = None, sweep_file: str | os.PathLike | None = None,
                dataset: str | None = None, selector: str | None = None, learner: str | None = None,
                budget: str | None = None, seeds: str | None = None, encoder: str | None = None,
                selector_config: Iterable[str] = (), learner_config: Iterable[str] = (),
                encoder_config: Iterable[str] = (), data_root: str | None = None,
                encoder_weights: str | None = None) -> Sweep:
    """Layers, later wins: preset, then the sweep file, then command-line axes."""
    values: dict[str, Any] = {}
    preset_values: dict[str, Any] = {}
    if sweep_file is not None:
        file_values = load_sweep_file(sweep_file)
        preset = preset or file_values.pop("preset", None)
        file_values.pop("preset", None)
    else:
        file_values = {}
    if preset is not None:
        preset_values = resolve_preset(preset)
        values.update({k: v for k, v in preset_values.items() if k not in ("learner_config", "notes")})
    values.update(file_values)
    cli_axes = {"dataset": dataset, "selector": selector, "learner": learner, "budget": budget,
                "seeds": seeds, "encoder": encoder}
    values.update({k: v for k, v in cli_axes.items() if v is not None})
    missing = [axis for axis in ("dataset", "selector", "learner", "budget") if axis not in values]
    if missing:
        raise UserError(f"The sweep needs {', '.join('--' + m for m in missing)} (or a sweep file / "
                        "--preset quick). Example: python cli.py sweep --selector usl,random --learner linear "
                        "--dataset digits --budget 10,20,40 --seeds 1-3")
    sel_cfg = _scoped(values.get("selector_config"), "selector")
    for name, overrides in parse_scoped_overrides(selector_config, "selector").items():
        sel_cfg.setdefault(name, {}).update(overrides)
    learners = parse_name_list(values["learner"])
    # the preset's learner overrides apply to its learners that are still in the sweep
    learn_cfg = {k: dict(v) for k, v in preset_values.get("learner_config", {}).items() if k in learners}
    for scope in (_scoped(values.get("learner_config"), "learner"), parse_scoped_overrides(learner_config, "learner")):
        for name, overrides in scope.items():
            learn_cfg.setdefault(name, {}).update(overrides)
    enc_cfg = dict(values.get("encoder_config") or {})
    enc_cfg.update(parse_overrides(encoder_config))
    encoders = parse_name_list(values.get("encoder")) or [None]
    sweep = Sweep(datasets=parse_name_list(values["dataset"]), selectors=parse_name_list(values["selector"]),
                  learners=learners,
                  budgets=parse_int_list(values["budget"], "Budget"),
                  seeds=parse_int_list(values.get("seeds", "1"), "Seed"), encoders=encoders,
                  selector_config=sel_cfg, learner_config=learn_cfg, encoder_config=enc_cfg,
                  dataset_config=dict(values.get("dataset_config") or {}),
                  data_root=data_root or values.get("data_root"),
                  encoder_weights=encoder_weights or values.get("encoder_weights"), preset=preset,
                  notes=list(preset_values.get("notes", [])))
    sweep.check()
    return sweep


def _scoped(value: Any, kind: str) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise UserError(f"{kind}_config in a sweep file maps {kind} names to their overrides, for example "
                        f"{{usl: {{lam: 1.0}}}}; got {value!r}.")
    return {str(k): dict(v) for k, v in value.items()}


def resolve_preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise UserError(f"Unknown sweep preset {name!r}. Known presets: {', '.join(sorted(PRESETS))}.")
    load_all()
    preset = {k: v for k, v in PRESETS[name].items() if k in AXES}
    if preset.get("selector") == "@cpu":
        skipped: list[str] = []
        preset["selector"] = cpu_selectors(preset["dataset"], min(preset["budget"]), skipped)
        preset["notes"] = [f"preset {name}: left out selector {line}" for line in skipped]
    learners = [learner for learner in preset["learner"] if learner in LEARNERS]
    # the SSL learner is configurable (USLBENCH_QUICK_SSL_LEARNER=mixmatch, or empty for none)
    ssl = os.environ.get("USLBENCH_QUICK_SSL_LEARNER", PRESETS[name].get("ssl_learner"))
    if ssl and ssl in LEARNERS and ssl not in learners:
        learners.append(ssl)
        fields = {f.name for f in LEARNERS.get(ssl).config_fields()}
        overrides = {k: v for k, v in PRESETS[name].get("ssl_learner_config", {}).items() if k in fields}
        if overrides:
            preset["learner_config"] = {ssl: overrides}
    preset["learner"] = learners
    return preset


def preset_executor(name: str | None) -> str | None:
    return PRESETS.get(name, {}).get("executor") if name else None


def load_sweep_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML or JSON sweep file; unknown keys and empty axes are errors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Sweep file {path} does not exist.")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
        raise UserError(f"Sweep file {path} could not be parsed: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"Sweep file {path} must hold a mapping of axes (dataset, selector, learner, budget, "
                        f"seeds), got {type(data).__name__}.")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    if "seed" in data and "seeds" not in data:
        data["seeds"] = data.pop("seed")
    unknown = sorted(set(data) - FILE_KEYS)
    if unknown:
        hints = [f"{u!r} (did you mean {close_matches(u, FILE_KEYS)[0]!r}?)" if close_matches(u, FILE_KEYS)
                 else repr(u) for u in unknown]
        raise UserError(f"Sweep file {path} has unknown keys: {', '.join(hints)}. "
                        f"Known keys: {', '.join(sorted(FILE_KEYS))}.")
    for axis in AXES:
        if axis in data:
            value = data[axis]
            empty = value is None or (isinstance(value, (list, str, dict)) and not
                                      (parse_name_list(value) if not isinstance(value, dict) else value))
            if empty:
                raise UserError(f"Sweep file {path}: axis {axis!r} is empty; give at least one value "
                                f"(for example {axis}: [{_EXAMPLES.get(axis, 'pixels')}]).")
            if isinstance(value, list):
                data[axis] = ",".join(str(v) for v in value)
            elif isinstance(value, int) and not isinstance(value, bool):
                data[axis] = str(value)
    return data


# ---------------------------------------------------------------------------------- planning
@dataclass
class PlannedRun:
    spec: RunSpec
    prepared: Any            # pipeline.Prepared
    state: RunState

    @property
    def key(self) -> str:
        return self.prepared.run_key


@dataclass
class Plan:
    root: Path
    runs: list[PlannedRun]
    retry_failed: bool = False

    def counts(self) -> dict[str, int]:
        counts = {state: 0 for state in ("done", "failed", "crashed", "running", "new")}
        for run in self.runs:
            counts[run.state.state] += 1
        return counts

    @property
    def to_submit(self) -> list[PlannedRun]:
        """New and crashed runs (a crashed run left no record), plus failed ones on --retry-failed."""
        wanted = {"new", "crashed"} | ({"failed"} if self.retry_failed else set())
        return [run for run in self.runs if run.state.state in wanted]


@contextlib.contextmanager
def dataset_memo() -> Iterator[None]:
    """Load each data set once while planning or inside a job that runs many specs (prepare()
    loads the data set per spec, which costs ~30 ms for digits and far more for folders)."""
    from . import pipeline

    original = pipeline.load_dataset
    memo: dict[str, Any] = {}

    def cached(name: str, data_root: str | None = None, **overrides: Any):
        key = json.dumps([name, data_root, overrides], sort_keys=True, default=str)
        if key not in memo:
            memo[key] = original(name, data_root=data_root, **overrides)
        return memo[key]

    pipeline.load_dataset = cached
    try:
        yield
    finally:
        pipeline.load_dataset = original


def plan_sweep(specs: list[RunSpec], results_root: str | os.PathLike, retry_failed: bool = False,
               liveness: Liveness | None = None) -> Plan:
    """Resolve and check every spec (UserError before anything runs), then read each run's state."""
    from .pipeline import prepare

    liveness = liveness or Liveness()
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    with dataset_memo():
        for spec in specs:
            prepared = prepare(spec, results_root)
            if prepared.run_key in seen:
                continue
            seen.add(prepared.run_key)
            runs.append(PlannedRun(spec, prepared, run_state(prepared.run_dir, liveness)))
    root = Path(runs[0].prepared.root) if runs else Path(results_root).absolute()
    return Plan(root, runs, retry_failed)


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


# ---------------------------------------------------------------------------------- one sweep
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


def run_sweep(sweep: Sweep, results_root: str | os.PathLike, resources: Any, retry_failed: bool = False,
              dry_run: bool = False, wait: bool = True, echo=print) -> SweepResult:
    """Plan under the root lock, then run or submit what is not done. A second identical sweep
    finds every run done (or running) and submits nothing."""
    from .launch import execute, mark_queued, release_markers
    from .status import Liveness, run_state

    resources.check()                         # executor problems before any planning work
    specs = sweep.specs()
    root = Path(results_root).absolute()
    from ..utils import writable_root

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
            from .launch import wait_for_slurm

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
    counts = {state: 0 for state in ("done", "failed", "crashed", "running", "new")}
    for run in plan.runs:
        counts[run_state(run.prepared.run_dir, liveness).state] += 1
    result.final_counts = counts
    return result
