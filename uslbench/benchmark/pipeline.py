"""The four stages: features -> selection -> run (-> reports, in uslbench.report).

`run_spec` validates everything it can before any long computation (names, config keys, budget,
results root, data root, weights), then computes or loads each stage. A run whose record exists
with status "ok" is returned as is; an exception during training leaves a record with status
"failed" and the error, so sweeps can show and retry it.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import SCHEMA_VERSION, __version__
from ..datasets import load_dataset
from ..datasets.base import Dataset
from ..encoders.base import FeatureSet
from ..errors import UserError
from ..numerics import check_pinned, cpu_kernels
from ..registry import DATASETS, ENCODERS, LEARNERS, SELECTORS, load_all
from ..selectors.base import SelectionContext, check_budget
from ..utils import atomic_write_json, writable_root
from .cache import FeatureCache, SelectionCache, indices_digest
from .spec import RunSpec, dataset_key, feature_key, run_key, selection_key

Echo = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass
class RunOutcome:
    record: dict[str, Any]
    record_path: Path
    cached: dict[str, bool] = field(default_factory=dict)

    @property
    def top1(self) -> float | None:
        return self.record.get("metrics", {}).get("top1")


@dataclass
class Prepared:
    """Everything resolved and checked for one spec; nothing computed or written yet."""

    spec: RunSpec
    root: Path
    dataset: Dataset
    encoder_name: str
    encoder: Any
    selector: Any
    learner: Any
    budget: int
    dataset_key: str
    feature_key: str
    selection_key: str
    run_key: str
    needs_features: bool
    configs: dict[str, Any]
    # a selector with a fixed encoder (clip_usl) sees features of its own encoder; None: the run's
    selection_encoder_name: str | None = None
    selection_encoder: Any = None
    selection_feature_key: str | None = None

    @property
    def run_dir(self) -> Path:
        return self.root / "runs" / self.run_key

    @property
    def record_path(self) -> Path:
        return self.run_dir / "record.json"


def _config_dict(config: Any) -> dict:
    return asdict(config) if config is not None else {}


def make_encoder(name: str, dataset_name: str, weights: str | None, overrides: dict) -> Any:
    entry = ENCODERS.get(name)
    fields = {f.name for f in entry.config_fields()}
    overrides = dict(overrides)
    if weights is not None:
        if "weights" not in fields:
            raise UserError(f"Encoder {name!r} takes no weights file; drop --encoder-weights.")
        overrides["weights"] = weights
    return ENCODERS.create(name, dataset=dataset_name, **overrides)


def prepare(spec: RunSpec, results_root: str | os.PathLike = "results", device: str = "cpu") -> Prepared:
    """Resolve names and configs and check the input. Raises UserError; writes nothing.
    A spec without a learner (`select --dataset`) prepares the features and selection stages only."""
    load_all()
    for registry, name in ((DATASETS, spec.dataset), (SELECTORS, spec.selector), (LEARNERS, spec.learner)):
        if name is not None or registry is not LEARNERS:
            registry.get(name)
    if spec.encoder is not None:
        ENCODERS.get(spec.encoder)
    selector = SELECTORS.create(spec.selector, dataset=spec.dataset, **spec.selector_config)
    learner = LEARNERS.create(spec.learner, dataset=spec.dataset, **spec.learner_config) if spec.learner else None
    fixed_encoder = getattr(selector, "fixed_encoder", None)
    if fixed_encoder and fixed_encoder not in ENCODERS:
        raise UserError(f"Selector {spec.selector!r} computes its features with the {fixed_encoder!r} encoder, which "
                        f"is not available in this installation (known encoders: {', '.join(ENCODERS.names())}). "
                        "Install the package with its clip extra (pip install -e '.[clip]') and provide the weights "
                        "as that encoder's documentation says, or run select --features on your own embeddings.")
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, (int, np.integer)) or spec.seed < 0:
        raise UserError(f"Seed must be a non-negative integer, got {spec.seed!r}.")
    check_budget(spec.budget, sys.maxsize)  # positive integer, before loading anything
    root = writable_root(results_root)
    dataset = load_dataset(spec.dataset, data_root=spec.data_root, **spec.dataset_config)
    budget = check_budget(spec.budget, dataset.pool_size)
    encoder_name = spec.encoder or dataset.default_encoder
    encoder = make_encoder(encoder_name, spec.dataset, spec.encoder_weights, spec.encoder_config)
    encoder.use_results_root(root)  # default weights location: <results-root>/weights/<dataset>/
    selection_encoder_name = fixed_encoder if fixed_encoder and fixed_encoder != encoder_name else None
    selection_encoder = make_encoder(fixed_encoder, spec.dataset, None, {}) if selection_encoder_name else None
    if selection_encoder is not None:
        selection_encoder.use_results_root(root)
    learner_uses_features = learner is not None and learner.uses_features
    needs_features = learner_uses_features or (selector.uses_features and selection_encoder is None)
    if needs_features:
        encoder.check(dataset)
    if selection_encoder is not None:
        selection_encoder.check(dataset)
    labels_allowed = selector.needs_labels
    if labels_allowed and not dataset.has_train_labels:
        raise UserError(f"Selector {spec.selector!r} reads labels, but {dataset.name} has no train labels.")
    selector.validate(dataset.pool_size, budget, SelectionContext(
        pool_size=dataset.pool_size, dataset=dataset, dataset_name=spec.dataset, labels=dataset.train.labels,
        labels_allowed=labels_allowed, encoder=selection_encoder or encoder))
    if learner is not None:
        learner.check_dataset(dataset)
        learner.check_device(device)
    d_key = dataset_key(dataset.identity)
    f_key = feature_key(dataset.identity, encoder.identity())
    sf_key = feature_key(dataset.identity, selection_encoder.identity()) if selection_encoder is not None else None
    selector_cfg = _config_dict(selector.config)
    key_cfg = selector.key_config() if hasattr(selector, "key_config") else selector_cfg
    s_key = selection_key((sf_key or f_key) if selector.uses_features else d_key, spec.selector, key_cfg,
                          budget, spec.seed)
    learner_cfg = _config_dict(learner.config) if learner is not None else {}
    r_key = run_key(s_key, spec.learner, learner_cfg, spec.seed, f_key if learner_uses_features else d_key) \
        if learner is not None else ""
    configs = {"dataset": dataset.identity, "encoder": encoder.identity(), "selector": selector_cfg,
               "learner": learner_cfg}
    if selection_encoder is not None:
        configs["selection_encoder"] = selection_encoder.identity()
    return Prepared(spec, root, dataset, encoder_name, encoder, selector, learner, budget, d_key, f_key,
                    s_key, r_key, needs_features, configs, selection_encoder_name, selection_encoder, sf_key)


def compute_features(prep: Prepared, device: str = "cpu", echo: Echo = _stderr,
                     for_selection: bool = False) -> tuple[FeatureSet, bool, float]:
    """The run encoder's features, or with for_selection=True the selection encoder's (clip_usl)."""
    separate = for_selection and prep.selection_encoder is not None
    encoder_name = prep.selection_encoder_name if separate else prep.encoder_name
    encoder = prep.selection_encoder if separate else prep.encoder
    key = prep.selection_feature_key if separate else prep.feature_key
    cache = FeatureCache(prep.root, prep.spec.dataset, encoder_name, key)
    loaded = cache.load(echo)
    if loaded is not None:
        train, test, meta = loaded
        return FeatureSet(train=train, test=test), True, 0.0
    start = time.perf_counter()
    features = encoder.encode(prep.dataset, device=device)
    seconds = time.perf_counter() - start
    cache.save(features.train, features.test, {
        "schema": SCHEMA_VERSION, "key": key, "dataset": prep.spec.dataset,
        "encoder": encoder_name, "identity": encoder.identity(), "seconds": seconds,
        "created": _now()})
    return features, False, seconds


def compute_selection(prep: Prepared, features: FeatureSet | None, device: str = "cpu",
                      echo: Echo = _stderr) -> tuple[dict, bool]:
    spec = prep.spec
    cache = SelectionCache(prep.root, spec.dataset, spec.selector, prep.budget, spec.seed, prep.selection_key)
    loaded = cache.load(echo)
    if loaded is not None:
        return loaded, True
    context = SelectionContext(pool_size=prep.dataset.pool_size, dataset=prep.dataset, dataset_name=spec.dataset,
                               labels=prep.dataset.train.labels if prep.selector.needs_labels else None,
                               labels_allowed=prep.selector.needs_labels,
                               encoder=prep.selection_encoder or prep.encoder, device=device,
                               workdir=prep.root / "cache" / "work")
    selection = prep.selector.select(features.train if features is not None else None, prep.budget,
                                     seed=spec.seed, context=context)
    data = {"schema": SCHEMA_VERSION, "key": prep.selection_key, "selector": spec.selector,
            "budget": prep.budget, "seed": spec.seed, "config": _config_dict(prep.selector.config),
            "indices": selection.indices, "info": selection.info, "seconds": selection.seconds,
            "reads_labels": prep.selector.needs_labels, "created": _now()}
    cache.save(data)
    data["indices"] = selection.indices
    return data, False


def feature_stage(prep: Prepared, device: str = "cpu", echo: Echo = _stderr, cached: dict | None = None,
                  seconds: dict | None = None, always: bool = False) -> tuple[FeatureSet | None, FeatureSet | None]:
    """The run encoder's features (when the learner or selector needs them, or `always`) and, for a
    selector with a fixed encoder (clip_usl), that encoder's features. Returns (run features,
    selection features); the flags and seconds go into `cached` / `seconds`."""
    cached = {} if cached is None else cached
    seconds = {} if seconds is None else seconds
    features = None
    if prep.needs_features or always:
        features, cached["features"], seconds["features"] = compute_features(prep, device, echo)
    selection_features = features
    if prep.selection_encoder is not None:
        selection_features, cached["selection_features"], seconds["selection_features"] = \
            compute_features(prep, device, echo, for_selection=True)
    return features, selection_features


def selection_stage(prep: Prepared, device: str = "cpu", echo: Echo = _stderr, cached: dict | None = None,
                    seconds: dict | None = None) -> tuple[FeatureSet | None, dict]:
    """Features, then the selection, through the caches. Returns (run features, selection data)."""
    cached = {} if cached is None else cached
    seconds = {} if seconds is None else seconds
    features, selection_features = feature_stage(prep, device, echo, cached, seconds)
    t0 = time.perf_counter()
    selection, cached["selection"] = compute_selection(prep, selection_features, device, echo)
    seconds["selection"] = 0.0 if cached["selection"] else time.perf_counter() - t0
    return features, selection


def run_spec(spec: RunSpec, results_root: str | os.PathLike = "results", device: str = "cpu",
             echo: Echo = _stderr, force: bool = False) -> RunOutcome:
    return run_prepared(prepare(spec, results_root, device), device, echo, force)


def run_prepared(prep: Prepared, device: str = "cpu", echo: Echo = _stderr, force: bool = False) -> RunOutcome:
    """The run stage of an already prepared (validated) spec."""
    spec = prep.spec
    existing = read_record(prep.record_path, echo)
    if existing is not None and existing.get("status") == "ok" and not force:
        return RunOutcome(existing, prep.record_path, {"features": True, "selection": True, "run": True})
    if force:  # a finished training checkpoint would otherwise be reloaded instead of retrained
        for checkpoint in prep.run_dir.glob("*.ckpt.pt"):
            checkpoint.unlink()
    not_pinned = check_pinned()
    if not_pinned:
        echo(not_pinned)
    prep.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(prep.run_dir / "running.json", _running_marker())
    seconds: dict[str, float] = {}
    cached = {"features": False, "selection": False, "run": False}
    record = _base_record(prep)
    record["device"] = device
    try:
        features, selection = selection_stage(prep, device, echo, cached, seconds)
        indices = np.asarray(selection["indices"], dtype=np.int64)
        record["selection"] = {"key": prep.selection_key, "indices": indices.tolist(),
                               "indices_sha256": indices_digest(indices), "info": selection.get("info", {}),
                               "seconds": selection.get("seconds", {}), "cached": cached["selection"]}
        record["class_histogram"] = class_histogram(prep.dataset, indices)
        record["classes_covered"] = int(sum(1 for v in record["class_histogram"] if v > 0))
        prep.learner.check(prep.dataset, indices)
        t0 = time.perf_counter()
        metrics = prep.learner.fit(prep.dataset, indices, seed=spec.seed, device=device,
                                   workdir=prep.run_dir, features=features,
                                   encoder=prep.encoder)
        seconds["learner"] = time.perf_counter() - t0
        record.update(status="ok", metrics=metrics, seconds=seconds, cached=cached, finished=_now())
    except (UserError, KeyboardInterrupt, SystemExit):  # refused or interrupted, not failed: no record
        _remove(prep.run_dir / "running.json")
        raise
    except Exception as exc:  # noqa: BLE001 - recorded, then re-raised
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(),
                      seconds=seconds, cached=cached, finished=_now())
        atomic_write_json(prep.record_path, record)
        _remove(prep.run_dir / "running.json")
        raise
    atomic_write_json(prep.record_path, record)
    _remove(prep.run_dir / "running.json")
    return RunOutcome(record, prep.record_path, cached)


def select_spec(spec: RunSpec, results_root: str | os.PathLike = "results", device: str = "cpu",
                echo: Echo = _stderr) -> tuple[dict, dict[str, bool], dict[str, float]]:
    """The features and selection stages of a spec without a learner (spec.learner None),
    through the same caches as run_spec. Returns (selection data, cached flags, seconds)."""
    prep = prepare(spec, results_root, device)
    cached: dict[str, bool] = {}
    seconds: dict[str, float] = {}
    _, selection = selection_stage(prep, device, echo, cached, seconds)
    for stage_record in (cached, seconds):  # without a learner, the only features are the selector's
        if "selection_features" in stage_record:
            stage_record["features"] = stage_record.pop("selection_features")
    return selection, cached, seconds


def class_histogram(dataset: Dataset, indices: np.ndarray) -> list[int]:
    """Selected images per class (computed after selection, for reporting only)."""
    if dataset.train.labels is None:
        return []
    return np.bincount(dataset.train.labels[indices], minlength=dataset.num_classes).astype(int).tolist()


def read_record(path: Path, echo: Echo | None = None) -> dict | None:
    """The run's record, or None when there is none or it cannot be used (then `echo` says why,
    and the run is computed again and the file replaced)."""
    from ..report.records import read_record_file

    record, problem = read_record_file(path)
    if problem is not None and echo is not None:
        echo(f"record {path} {problem}; treated as missing, so it runs again")
    return record


def _base_record(prep: Prepared) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION, "key": prep.run_key, "spec": prep.spec.to_dict(),
        "resolved": {"encoder_name": prep.encoder_name, "budget": prep.budget, **prep.configs},
        "keys": {"dataset": prep.dataset_key, "features": prep.feature_key, "selection": prep.selection_key},
        "selector_tags": list(SELECTORS.get(prep.spec.selector).tags),
        "learner_tags": list(LEARNERS.get(prep.spec.learner).tags),
        "dataset_summary": {"pool_size": prep.dataset.pool_size, "num_classes": prep.dataset.num_classes,
                            "test_size": len(prep.dataset.test) if prep.dataset.test is not None else 0},
        "versions": versions(), "cpu_kernels": cpu_kernels(), "git_commit": git_commit(),
        "host": socket.gethostname(),
        "device": "cpu", "job_id": os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_JOB_ID"),
        "started": _now(),
    }


def _running_marker() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(),
            "job_id": os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_JOB_ID")}


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"uslbench": __version__, "python": platform.python_version()}
    for package in ("numpy", "torch", "torchvision", "faiss-cpu", "scikit-learn"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    return out


_GIT_COMMIT: list[str | None] = []


def git_commit() -> str | None:
    if not _GIT_COMMIT:
        try:
            out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                                 capture_output=True, text=True, timeout=5)
            commit = out.stdout.strip() if out.returncode == 0 else None
            if commit:
                dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                       cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5)
                if dirty.stdout.strip():
                    commit += "-dirty"
            _GIT_COMMIT.append(commit)
        except (OSError, subprocess.SubprocessError):
            _GIT_COMMIT.append(None)
    return _GIT_COMMIT[0]
