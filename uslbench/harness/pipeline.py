"""The four stages: features -> selection -> run (-> reports, in uslbench.report).

`run_spec` validates everything it can before any long computation (names, config keys, budget,
results root, data root, weights), then computes or loads each stage. A run whose record exists
with status "ok" is returned as is; an exception during the run stage leaves a record with status
"failed" and the error, so sweeps can show and retry it; a UserError found only during the run
(a refused labeled set, a selector's limit) leaves the run folder as it was, and an interrupt
(SIGINT, SIGTERM) leaves `running.json` marked interrupted (`markers.running_marker`).
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import json
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

from .. import RESULTS_ROOT, SCHEMA_VERSION, __version__
from ..catalog import DATASETS, ENCODERS, LEARNERS, SELECTORS
from ..datasets import DatasetLoader
from ..datasets.base import Dataset
from ..encoders.base import FeatureSet
from ..errors import UserError
from ..numerics import check_pinned, cpu_kernels
from ..learners.base import SINGLE_CLASS
from ..selectors.base import SelectionContext, check_budget
from ..traits import as_dict
from ..utils import atomic_write_json, writable_root
from .cache import FeatureCache, SelectionCache, indices_digest
from .markers import running_marker
from .own_data import LABELS_SELECTOR, PREDICTIONS_FILE, initial_labeled, labels_selection, write_predictions
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


@dataclass(frozen=True)
class FeatureSource:
    """The features one stage reads: those of the encoder `encoder` (registry name) on the run's
    data set, cached under the feature key `key`."""

    encoder: str
    key: str


@dataclass(frozen=True)
class ResolvedRun:
    """One spec resolved and checked: names, budget, content keys, resolved configs and where each
    stage's features come from. A plain value (picklable, no data set or model inside): the plan,
    the job markers and the records read it."""

    spec: RunSpec
    root: Path
    budget: int
    encoder_name: str                       # the run's encoder: the data set's default or --encoder
    dataset_key: str
    feature_key: str                        # the run encoder's features
    selection_key: str
    run_key: str                            # "" for a spec without a learner
    configs: dict[str, Any]                 # resolved configs and identities (record["resolved"])
    features: dict[str, FeatureSource] = field(default_factory=dict)  # stage ("selection", "learner") -> source

    @property
    def run_dir(self) -> Path:
        return self.root / "runs" / self.run_key

    @property
    def record_path(self) -> Path:
        return self.run_dir / "record.json"

    @property
    def needs_features(self) -> bool:
        """Whether some stage reads the run encoder's features."""
        return any(source.encoder == self.encoder_name for source in self.features.values())

    def record_head(self) -> dict[str, Any]:
        """The record fields fixed before anything runs: key, spec and resolved (budget, encoder
        name, resolved configs and identities). Every record starts with them; the leaderboard labels
        a planned run from them as it labels its record (`report.records.planned_cells`)."""
        return {"key": self.run_key, "spec": self.spec.to_dict(),
                "resolved": {"encoder_name": self.encoder_name, "budget": self.budget, **self.configs}}

    def feature_name(self, stage: str) -> str:
        """The name of a stage's features in a record's `cached` and `seconds`: "features" for the run
        encoder's, "<stage>_features" for another encoder's (clip_usl: "selection_features")."""
        source = self.features[stage]
        return "features" if source.encoder == self.encoder_name else f"{stage}_features"


@dataclass
class Prepared:
    """A resolved run and the live objects that compute it (nothing computed or written yet)."""

    resolved: ResolvedRun
    dataset: Dataset                        # with a labels file's labels for `run --labels`
    selector: Any                           # run --labels: own_data.LabelsFileSelection
    learner: Any                            # None for a spec without a learner
    encoders: dict[str, Any]                # by registry name: the run's encoder and any a stage reads
    initial_labeled: np.ndarray | None = None   # select --already-labeled: pool indices already labeled
    already_labeled_source: dict | None = None  # its {file, sha256, rows}

    # the resolved value's fields that the stages read most
    @property
    def spec(self) -> RunSpec:
        return self.resolved.spec

    @property
    def root(self) -> Path:
        return self.resolved.root

    @property
    def run_dir(self) -> Path:
        return self.resolved.run_dir

    @property
    def record_path(self) -> Path:
        return self.resolved.record_path

    @property
    def encoder(self) -> Any:
        """The run's encoder."""
        return self.encoders[self.resolved.encoder_name]

    def stage_encoder(self, stage: str) -> Any:
        """The encoder whose features `stage` reads (the run's when the stage reads none)."""
        source = self.resolved.features.get(stage)
        return self.encoders[source.encoder if source is not None else self.resolved.encoder_name]


def _config_dict(config: Any) -> dict:
    return asdict(config) if config is not None else {}


def make_encoder(name: str, dataset_name: str, weights: str | None, overrides: dict, download: bool = False) -> Any:
    entry = ENCODERS.get(name)
    fields = {f.name for f in entry.config_fields()}
    overrides = dict(overrides)
    if download and "download" in fields:  # `run --download` also lets the encoder fetch published weights
        overrides.setdefault("download", "true")
    if weights is not None:
        if "weights" not in fields:
            raise UserError(f"Encoder {name!r} takes no weights file; drop --encoder-weights.")
        overrides["weights"] = weights
    return ENCODERS.create(name, dataset=dataset_name, **overrides)


def fixed_encoder(selector: Any) -> str | None:
    """The encoder whose features a selector must see whatever the run's encoder (clip_usl: "clip")."""
    return selector.traits.fixed_encoder


class EncoderMemo:
    """Builds each distinct encoder (name, data set, weights, config, download) once: a sweep's
    planning prepares every spec, and building a timm encoder loads its weights (about 0.3 s and
    one log line each; 336 specs of the CIFAR-10 sweep share one encoder)."""

    def __init__(self) -> None:
        self._memo: dict[str, Any] = {}

    def __call__(self, name: str, dataset_name: str, weights: str | None, overrides: dict,
                 download: bool = False) -> Any:
        key = json.dumps([name, dataset_name, weights, overrides, download], sort_keys=True, default=str)
        if key not in self._memo:
            self._memo[key] = make_encoder(name, dataset_name, weights, overrides, download)
        return self._memo[key]


def prepare(spec: RunSpec, results_root: str | os.PathLike = RESULTS_ROOT, device: str = "cpu",
            loader: DatasetLoader | None = None, encoder_factory: Callable[..., Any] | None = None) -> Prepared:
    """Resolve names and configs and check the input. Raises UserError; writes nothing.
    A spec without a learner (`select --dataset`) prepares the features and selection stages only.
    `loader` loads the data set (a memoising one when many specs share data sets); `encoder_factory`
    builds the encoders (default `make_encoder`; an `EncoderMemo` when many specs share them)."""
    loader = loader or DatasetLoader()
    encoder_factory = encoder_factory or make_encoder
    from_labels = spec.labels is not None  # run --labels: the labels file is the selection
    _check_own_labels(spec)
    for registry, name in ((DATASETS, spec.dataset), (SELECTORS, spec.selector), (LEARNERS, spec.learner)):
        if registry is SELECTORS and from_labels:
            continue
        if name is not None or registry is not LEARNERS:
            registry.get(name)
    if spec.encoder is not None:
        ENCODERS.get(spec.encoder)
    selector = None if from_labels else SELECTORS.create(spec.selector, dataset=spec.dataset, **spec.selector_config)
    learner = LEARNERS.create(spec.learner, dataset=spec.dataset, **spec.learner_config) if spec.learner else None
    if selector is not None and spec.already_labeled is not None:
        selector.check_initial_labeled()  # a selector that cannot take one: refused before loading anything
    selector_encoder = fixed_encoder(selector) if selector is not None else None
    if selector_encoder and selector_encoder not in ENCODERS:
        raise UserError(f"Selector {spec.selector!r} computes its features with the {selector_encoder!r} encoder, "
                        f"which is not available in this installation (known encoders: {', '.join(ENCODERS.names())}). "
                        "Install the package with its clip extra (pip install -e '.[clip]') and provide the weights "
                        "as that encoder's documentation says, or run select --features on your own embeddings.")
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, (int, np.integer)) or spec.seed < 0:
        raise UserError(f"Seed must be a non-negative integer, got {spec.seed!r}.")
    root = writable_root(results_root)
    dataset = loader(spec.dataset, data_root=spec.data_root, **spec.dataset_config)
    initial, initial_source = None, None
    if from_labels:
        dataset, selector = labels_selection(spec.labels, dataset, spec.dataset, spec.labels_picks)
        rows = len(selector.attached.labeled_indices)
        if spec.budget != rows:
            raise UserError(f"The labels file {spec.labels} labels {rows} image(s) of the pool, but the run's budget "
                            f"is {spec.budget}; with a labels file the budget is its number of labeled images.")
    elif spec.already_labeled is not None:
        initial, initial_source = initial_labeled(spec.already_labeled, dataset, spec.dataset)
    budget = check_budget(spec.budget, dataset.pool_size)
    encoder_name = spec.encoder or dataset.default_encoder
    if not dataset.has_images:  # features:PATH: embeddings only, nothing that reads images can run
        if learner is not None and not learner.traits.uses_features:
            raise UserError(f"Learner {spec.learner!r} trains a network on images; {spec.dataset} holds precomputed "
                            "features only. Use a feature probe: linear, knn or labelprop.")
        if ENCODERS.traits(encoder_name).reads_images:
            raise UserError(f"Encoder {encoder_name!r} reads images; {spec.dataset} holds precomputed features. "
                            "Leave --encoder out (the data set's own embeddings are used).")
        if selector_encoder and selector_encoder != encoder_name:
            raise UserError(f"Selector {spec.selector!r} computes its own features with the {selector_encoder!r} "
                            f"encoder from images; {spec.dataset} has none. If your embeddings come from that "
                            "encoder, run the selector it is built on with its preset (clip_usl: --selector usl "
                            "--selector-config usl.preset=imagenet_clip).")
    encoders = {encoder_name: encoder_factory(encoder_name, spec.dataset, spec.encoder_weights, spec.encoder_config,
                                              download=bool(spec.dataset_config.get("download")))}
    # each stage that reads features names its encoder: the run's, or the one its entry fixes
    stage_encoders: dict[str, str] = {}
    if selector.traits.uses_features:
        stage_encoders["selection"] = selector_encoder or encoder_name
    if learner is not None and learner.traits.uses_features:
        stage_encoders["learner"] = encoder_name
    for name in stage_encoders.values():
        if name not in encoders:
            encoders[name] = encoder_factory(name, spec.dataset, None, {})
    for encoder in encoders.values():
        encoder.use_results_root(root)  # default weights location: <results-root>/weights/<dataset>/
        if hasattr(encoder, "allow_download"):  # --download also fetches the authors' published checkpoint
            encoder.allow_download(bool(spec.dataset_config.get("download")))
    for name in dict.fromkeys(stage_encoders.values()):
        encoders[name].check(dataset)
    labels_allowed = selector.traits.needs_labels
    if labels_allowed and not dataset.has_train_labels:
        raise UserError(f"Selector {spec.selector!r} reads labels, but {dataset.name} has no train labels.")
    selection_encoder = encoders[stage_encoders.get("selection", encoder_name)]
    if initial is not None:
        selector.check_initial_labeled(initial, dataset.pool_size, budget)
    selector.validate(dataset.pool_size, budget, SelectionContext(
        pool_size=dataset.pool_size, dataset=dataset, dataset_name=spec.dataset, labels=dataset.train.labels,
        labels_allowed=labels_allowed, encoder=selection_encoder, initial_labeled=initial))
    if learner is not None:
        learner.check_dataset(dataset)
        learner.check_device(device)
    d_key = dataset_key(dataset.identity)
    feature_keys = {name: feature_key(dataset.identity, encoder.identity()) for name, encoder in encoders.items()}
    sources = {stage: FeatureSource(name, feature_keys[name]) for stage, name in stage_encoders.items()}
    selector_cfg = _config_dict(selector.config)
    key_cfg = selector.key_config() if hasattr(selector, "key_config") else selector_cfg
    if initial is not None:  # a second round: another already-labeled set is another selection
        key_cfg = {**key_cfg, "already_labeled_sha256": indices_digest(initial)}
    s_key = selection_key(sources["selection"].key if "selection" in sources else d_key, spec.selector, key_cfg,
                          budget, spec.seed)
    learner_cfg = _config_dict(learner.config) if learner is not None else {}
    learner_key_cfg = learner.key_config() if hasattr(learner, "key_config") else learner_cfg
    r_key = run_key(s_key, spec.learner, learner_key_cfg, spec.seed,
                    sources["learner"].key if "learner" in sources else d_key) if learner is not None else ""
    configs = {"dataset": dataset.identity, "encoder": encoders[encoder_name].identity(), "selector": selector_cfg,
               "learner": learner_cfg}
    for stage, source in sources.items():
        if source.encoder != encoder_name:
            configs[f"{stage}_encoder"] = encoders[source.encoder].identity()
    if dataset.labels_source is not None:
        configs["labels_source"] = dict(dataset.labels_source)
    if initial_source is not None:
        configs["already_labeled"] = dict(initial_source)
    resolved = ResolvedRun(spec, root, budget, encoder_name, d_key, feature_keys[encoder_name], s_key, r_key, configs,
                           sources)
    return Prepared(resolved, dataset, selector, learner, encoders, initial, initial_source)


def _check_own_labels(spec: RunSpec) -> None:
    """The labels options of a spec, before anything is loaded."""
    if spec.labels is not None:
        if spec.learner is None:
            raise UserError("A labels file (--labels) is the labeled set of a run: give --learner to train on it "
                            "(to pick more images to label, use select --already-labeled FILE).")
        if spec.selector != LABELS_SELECTOR:
            raise UserError(f"A run on a labels file takes its labeled set from the file; drop --selector "
                            f"{spec.selector} (the record names the selector {LABELS_SELECTOR!r}).")
        if spec.already_labeled is not None:
            raise UserError("--labels and --already-labeled do not go together: the first trains on your labels, "
                            "the second selects more images to label.")


def compute_features(prep: Prepared, source: FeatureSource, device: str = "cpu",
                     echo: Echo = _stderr) -> tuple[FeatureSet, bool, float]:
    """The features of `source` through the feature cache: (features, whether cached, seconds)."""
    cache = FeatureCache(prep.root, prep.spec.dataset, source.encoder, source.key)
    loaded = cache.load(echo)
    if loaded is not None:
        train, test, meta = loaded
        return FeatureSet(train=train, test=test, cache_stem=str(cache.train_path.with_suffix(""))), True, 0.0
    encoder = prep.encoders[source.encoder]
    start = time.perf_counter()
    features = encoder.encode(prep.dataset, device=device)
    seconds = time.perf_counter() - start
    cache.save(features.train, features.test, {
        "schema": SCHEMA_VERSION, "key": source.key, "dataset": prep.spec.dataset,
        "encoder": source.encoder, "identity": encoder.identity(), "seconds": seconds,
        "created": _now()})
    features = FeatureSet(train=features.train, test=features.test, cache_stem=str(cache.train_path.with_suffix("")))
    return features, False, seconds


def compute_selection(prep: Prepared, features: FeatureSet | None, device: str = "cpu",
                      echo: Echo = _stderr) -> tuple[dict, bool]:
    spec, resolved = prep.spec, prep.resolved
    cache = SelectionCache(prep.root, spec.dataset, spec.selector, resolved.budget, spec.seed, resolved.selection_key)
    loaded = cache.load(echo)
    if loaded is not None:
        return loaded, True
    reads_labels = prep.selector.traits.needs_labels
    context = SelectionContext(pool_size=prep.dataset.pool_size, dataset=prep.dataset, dataset_name=spec.dataset,
                               labels=prep.dataset.train.labels if prep.selector.traits.needs_labels else None,
                               labels_allowed=prep.selector.traits.needs_labels,
                               encoder=prep.stage_encoder("selection"), device=device,
                               workdir=prep.root / "cache" / "work", initial_labeled=prep.initial_labeled,
                               feature_cache_stem=getattr(features, "cache_stem", None))
    selection = prep.selector.select(features.train if features is not None else None, resolved.budget,
                                     seed=spec.seed, context=context)
    data = {"schema": SCHEMA_VERSION, "key": resolved.selection_key, "selector": spec.selector,
            "budget": resolved.budget, "seed": spec.seed, "config": _config_dict(prep.selector.config),
            "indices": selection.indices, "info": selection.info, "seconds": selection.seconds,
            "per_pick": selection.per_pick, "reads_labels": reads_labels, "created": _now()}
    if prep.already_labeled_source is not None:
        data["already_labeled"] = prep.already_labeled_source
    cache.save(data)
    data["indices"] = selection.indices
    return data, False


def feature_stage(prep: Prepared, device: str = "cpu", echo: Echo = _stderr, cached: dict | None = None,
                  seconds: dict | None = None, always: bool = False) -> dict[str, FeatureSet]:
    """The features every stage reads (`ResolvedRun.features`), each source computed or loaded once,
    plus the run encoder's with `always` (the sweep's features jobs). Returns stage -> FeatureSet,
    with the run encoder's under "run" when computed; the flags and seconds go into `cached` /
    `seconds` under `ResolvedRun.feature_name(stage)`."""
    cached = {} if cached is None else cached
    seconds = {} if seconds is None else seconds
    resolved = prep.resolved
    sources = dict(resolved.features)
    if always and not resolved.needs_features:
        sources["run"] = FeatureSource(resolved.encoder_name, resolved.feature_key)
    by_key: dict[str, FeatureSet] = {}
    out: dict[str, FeatureSet] = {}
    for stage, source in sorted(sources.items(), key=lambda item: item[1].encoder != resolved.encoder_name):
        if source.key not in by_key:
            name = "features" if source.encoder == resolved.encoder_name else f"{stage}_features"
            by_key[source.key], cached[name], seconds[name] = compute_features(prep, source, device, echo)
        out[stage] = by_key[source.key]
    if resolved.feature_key in by_key:
        out["run"] = by_key[resolved.feature_key]
    return out


def selection_stage(prep: Prepared, device: str = "cpu", echo: Echo = _stderr, cached: dict | None = None,
                    seconds: dict | None = None) -> tuple[dict[str, FeatureSet], dict]:
    """Features, then the selection, through the caches. Returns (stage -> features, selection data)."""
    cached = {} if cached is None else cached
    seconds = {} if seconds is None else seconds
    features = feature_stage(prep, device, echo, cached, seconds)
    t0 = time.perf_counter()
    selection, cached["selection"] = compute_selection(prep, features.get("selection"), device, echo)
    seconds["selection"] = 0.0 if cached["selection"] else time.perf_counter() - t0
    return features, selection


def run_spec(spec: RunSpec, results_root: str | os.PathLike = RESULTS_ROOT, device: str = "cpu",
             echo: Echo = _stderr, force: bool = False) -> RunOutcome:
    return run_prepared(prepare(spec, results_root, device), device, echo, force)


def run_prepared(prep: Prepared, device: str = "cpu", echo: Echo = _stderr, force: bool = False) -> RunOutcome:
    """The run stage of an already prepared (validated) spec."""
    existing = read_record(prep.record_path, echo)
    if existing is not None and existing.get("status") == "ok" and not force:
        return RunOutcome(existing, prep.record_path, {"features": True, "selection": True, "run": True})
    if force:  # a finished training checkpoint would otherwise be reloaded instead of retrained
        for checkpoint in prep.run_dir.glob("*.ckpt.pt*"):  # with its digest, .prev and set-aside copies
            checkpoint.unlink()
    not_pinned = check_pinned()
    if not_pinned:
        echo(not_pinned)
    # running.json while the run computes: a refused run (UserError) leaves the folder as it was, an
    # interrupted one (SIGINT, SIGTERM) is marked interrupted, so `status` counts it as crashed
    with running_marker(prep.run_dir, prep.spec.to_dict()):
        return _compute_run(prep, device, echo)


def _compute_run(prep: Prepared, device: str, echo: Echo) -> RunOutcome:
    """The run stage inside its running marker: selection, training, evaluation; the record is
    written with status "ok", or "failed" and the error re-raised (a UserError: no record)."""
    spec = prep.spec
    seconds: dict[str, float] = {}
    cached = {"features": False, "selection": False, "run": False}
    record = _base_record(prep)
    record["device"] = device
    try:
        features, selection = selection_stage(prep, device, echo, cached, seconds)
        indices = np.asarray(selection["indices"], dtype=np.int64)
        record["selection"] = {"key": prep.resolved.selection_key, "indices": indices.tolist(),
                               "indices_sha256": indices_digest(indices), "info": selection.get("info", {}),
                               "seconds": selection.get("seconds", {}), "cached": cached["selection"]}
        record["class_histogram"] = class_histogram(prep.dataset, indices)
        record["classes_covered"] = int(sum(1 for v in record["class_histogram"] if v > 0))
        if record["classes_covered"] == 1:  # scored all the same (learners.base.single_class_metrics)
            record["degenerate"] = SINGLE_CLASS
        prep.learner.check(prep.dataset, indices)
        t0 = time.perf_counter()
        metrics = prep.learner.fit(prep.dataset, indices, seed=spec.seed, device=device,
                                   workdir=prep.run_dir, features=features.get("run"),
                                   encoder=prep.encoder)
        seconds["learner"] = time.perf_counter() - t0
        if prep.dataset.labels_source is not None:
            t0 = time.perf_counter()
            record.update(_pool_outputs(prep, features.get("run"), device))
            seconds["predictions"] = time.perf_counter() - t0
        if not prep.dataset.evaluated:
            record["evaluated"] = False
            record["note"] = (f"{prep.dataset.name} has no labelled test split: no accuracy; the pool's predictions "
                              f"are in {PREDICTIONS_FILE}")
        record.update(status="ok", metrics=metrics, seconds=seconds, cached=cached, finished=_now())
    except (UserError, KeyboardInterrupt, SystemExit):  # refused or interrupted, not failed: no record
        raise
    except Exception as exc:  # noqa: BLE001 - recorded, then re-raised
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(),
                      seconds=seconds, cached=cached, finished=_now())
        atomic_write_json(prep.record_path, record)
        raise
    atomic_write_json(prep.record_path, record)
    return RunOutcome(record, prep.record_path, cached)


def _pool_outputs(prep: Prepared, features: FeatureSet | None, device: str) -> dict[str, Any]:
    """A run on a labels file: predictions.csv for every pool image and the model file, in the run folder."""
    predicted, confidence = prep.learner.predict_pool(prep.dataset, features=features, device=device)
    path = write_predictions(prep.run_dir / PREDICTIONS_FILE, prep.dataset, prep.spec.dataset, predicted, confidence)
    model = prep.learner.save_model(prep.run_dir)
    counts = np.bincount(predicted, minlength=prep.dataset.num_classes)
    return {"predictions": {"file": path.name, "rows": int(len(predicted)),
                            "per_class": {name: int(n) for name, n in zip(prep.dataset.class_names, counts.tolist())}},
            "model_file": model.name if model is not None else None}


def select_spec(spec: RunSpec, results_root: str | os.PathLike = RESULTS_ROOT, device: str = "cpu",
                echo: Echo = _stderr) -> tuple[dict, dict[str, bool], dict[str, float]]:
    """The features and selection stages of a spec without a learner (spec.learner None),
    through the same caches as run_spec. Returns (selection data, cached flags, seconds)."""
    return select_prepared(prepare(spec, results_root, device), device, echo)


def select_prepared(prep: Prepared, device: str = "cpu",
                    echo: Echo = _stderr) -> tuple[dict, dict[str, bool], dict[str, float]]:
    """`select_spec` of an already prepared spec (the caller keeps `prep.dataset` for the export)."""
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
    from .record_file import read_record_file

    record, problem = read_record_file(path)
    if problem is not None and echo is not None:
        echo(f"record {path} {problem}; treated as missing, so it runs again")
    return record


def _base_record(prep: Prepared) -> dict[str, Any]:
    resolved = prep.resolved
    return {
        "schema": SCHEMA_VERSION, **resolved.record_head(),
        "keys": {"dataset": resolved.dataset_key, "features": resolved.feature_key,
                 "selection": resolved.selection_key},
        "selector_traits": as_dict(prep.selector.traits),
        **({"labels_source": dict(prep.dataset.labels_source)} if prep.dataset.labels_source is not None else {}),
        "learner_traits": as_dict(LEARNERS.traits(prep.spec.learner)),
        "dataset_summary": {"pool_size": prep.dataset.pool_size, "num_classes": prep.dataset.num_classes,
                            "test_size": len(prep.dataset.test) if prep.dataset.test is not None else 0},
        "versions": versions(), "cpu_kernels": cpu_kernels(), "git_commit": git_commit(),
        "host": socket.gethostname(),
        "device": "cpu", "job_id": os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_JOB_ID"),
        "started": _now(),
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
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
