"""Sweep grids: axes from the command line or a YAML/JSON file, and named presets.

A sweep is the cross product datasets x encoders x selectors x learners x budgets x seeds, with one
config override set per selector / learner name. `uslbench.harness.plan` then resolves and checks
every spec before anything is submitted.
"""
from __future__ import annotations

import itertools
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .. import DEFAULT_SEED
import yaml

from ..catalog import LEARNERS, SELECTORS
from ..datasets import DatasetLoader
from ..errors import UserError, close_matches
from ..registry import parse_scoped_overrides
from .pipeline import EncoderMemo, prepare
from .spec import RunSpec

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "description": "every CPU selector x linear, labelprop (+ one fast SSL learner) on digits, "
                       "budgets 10/20/40, seeds 1-3, local executor",
        "dataset": ["digits"],
        "selector": "@cpu",        # resolved from the registry at run time
        "learner": ["linear", "labelprop"],
        "ssl_learner": "fixmatch",  # added when registered; --learner replaces the learner list
        # a CPU-sized run of the SSL learner (its digits preset, learners/presets.py, takes ~45 s a
        # run on this 2-core machine; this is ~6x cheaper). A short
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
                               "data_root", "encoder_weights", "preset", "extra_grids", "leaderboard"}
# what an `extra_grids` entry may set (the rest it takes from the file's top level)
EXTRA_GRID_KEYS = frozenset({"selector", "learner", "budget", "seeds", "selector_config", "learner_config"})


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


def cpu_selectors(datasets: Iterable[str] = (), budget: int = 10,
                  skipped: list[str] | None = None) -> list[str]:
    """Registered selectors whose traits say `in_quick_preset`, read at run time so selectors
    added later are included. With `datasets`, a selector that refuses one of them (say, one whose
    fixed encoder is not installed) is left out and named in `skipped` with its reason."""
    names = []
    loader, encoders = DatasetLoader(memo=True), EncoderMemo()
    for name in SELECTORS.names():
        if not SELECTORS.traits(name).in_quick_preset:
            continue
        try:
            for dataset in datasets:
                prepare(RunSpec(dataset=dataset, selector=name, learner="linear", budget=budget),
                        tempfile.gettempdir(), loader=loader, encoder_factory=encoders)
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
    encoder_config: dict[str, Any] = field(default_factory=dict)      # every encoder (sweep files)
    encoder_configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # per encoder name
    dataset_config: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    encoder_weights: str | None = None
    preset: str | None = None
    notes: list[str] = field(default_factory=list)   # what a preset left out, and why
    extra: list["Sweep"] = field(default_factory=list)  # a sweep file's extra_grids, run as well
    leaderboard_output: str | None = None   # a sweep file's leaderboard.output (absolute)
    leaderboard_caption: str | None = None  # a sweep file's leaderboard.caption (markdown)

    def check(self) -> None:
        for axis, values in (("dataset", self.datasets), ("selector", self.selectors),
                             ("learner", self.learners), ("budget", self.budgets), ("seeds", self.seeds)):
            if not values:
                raise UserError(f"The sweep's {axis} axis is empty; give at least one value "
                                f"(for example --{axis} {_EXAMPLES[axis]}).")
        for extra in self.extra:
            extra.check()
        for scope, names, what in ((self.selector_config, _with_prefixes(self.selectors), "selector"),
                                   (self.learner_config, self.learners, "learner"),
                                   (self.encoder_configs, [e for e in self.encoders if e], "encoder")):
            for name in scope:
                if name not in names:
                    hint = close_matches(name, names)
                    listed = (f"({', '.join(names)})" if names else
                              "(it uses each data set's default encoder; name the encoder with --encoder)")
                    raise UserError(f"--{what}-config names {what} {name!r}, which is not in this sweep {listed}."
                                    + (f" Did you mean {hint[0]!r}?" if hint else ""))

    def specs(self) -> list[RunSpec]:
        """The runs of the grid, then those of each extra grid (duplicates are dropped by the plan)."""
        self.check()
        out = []
        for dataset, encoder, selector, learner, budget, seed in itertools.product(
                self.datasets, self.encoders, self.selectors, self.learners, self.budgets, self.seeds):
            # a `prefix:ARGUMENT` selector takes the overrides of its prefix (`file`), then its own
            selector_config = {**self.selector_config.get(selector.split(":", 1)[0], {}),
                               **(self.selector_config.get(selector, {}) if ":" in selector else {})}
            out.append(RunSpec(dataset=dataset, selector=selector, learner=learner, budget=budget, seed=seed,
                               encoder=encoder, selector_config=selector_config,
                               learner_config=dict(self.learner_config.get(learner, {})),
                               encoder_config={**self.encoder_config, **self.encoder_configs.get(encoder, {})},
                               dataset_config=dict(self.dataset_config),
                               encoder_weights=self.encoder_weights, data_root=self.data_root))
        for extra in self.extra:
            out.extend(extra.specs())
        return out


def _with_prefixes(selectors: list[str]) -> list[str]:
    """The selector names plus the registry prefix of each `prefix:ARGUMENT` one (what a config
    override may be scoped to)."""
    names = list(selectors)
    names += [s.split(":", 1)[0] for s in selectors if ":" in s and s.split(":", 1)[0] not in names]
    return names


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
    def only(names: list) -> str | None:  # the entry an unscoped override meant, for the error's fix
        return names[0].split(":", 1)[0] if len(names) == 1 and names[0] else None

    selectors = parse_name_list(values["selector"])
    sel_cfg = _scoped(values.get("selector_config"), "selector")
    if selector is not None:  # --selector narrowed the file's grid: its overrides of the others are dropped
        sel_cfg = {k: v for k, v in sel_cfg.items() if k in _with_prefixes(selectors)}
    for name, overrides in parse_scoped_overrides(selector_config, "selector", only(selectors)).items():
        sel_cfg.setdefault(name, {}).update(overrides)
    learners = parse_name_list(values["learner"])
    # the preset's learner overrides apply to its learners that are still in the sweep
    learn_cfg = {k: dict(v) for k, v in preset_values.get("learner_config", {}).items() if k in learners}
    file_learn_cfg = _scoped(values.get("learner_config"), "learner")
    if learner is not None:  # --learner narrowed the file's grid, as above
        file_learn_cfg = {k: v for k, v in file_learn_cfg.items() if k in learners}
    for scope in (file_learn_cfg, parse_scoped_overrides(learner_config, "learner", only(learners))):
        for name, overrides in scope.items():
            learn_cfg.setdefault(name, {}).update(overrides)
    enc_cfg = dict(values.get("encoder_config") or {})
    encoders = parse_name_list(values.get("encoder")) or [None]
    enc_cfgs = parse_scoped_overrides(encoder_config, "encoder", only(encoders))
    sweep = Sweep(datasets=parse_name_list(values["dataset"]), selectors=selectors,
                  learners=learners,
                  budgets=parse_int_list(values["budget"], "Budget"),
                  seeds=parse_int_list(values.get("seeds", str(DEFAULT_SEED)), "Seed"), encoders=encoders,
                  selector_config=sel_cfg, learner_config=learn_cfg, encoder_config=enc_cfg, encoder_configs=enc_cfgs,
                  dataset_config=dict(values.get("dataset_config") or {}),
                  data_root=data_root or values.get("data_root"),
                  encoder_weights=encoder_weights or values.get("encoder_weights"), preset=preset,
                  notes=list(preset_values.get("notes", [])))
    for position, entry in enumerate(file_values.get("extra_grids") or []):
        sweep.extra.append(_extra_grid(sweep, entry, values, position))
    board = file_values.get("leaderboard") or {}
    sweep.leaderboard_output, sweep.leaderboard_caption = board.get("output"), board.get("caption")
    sweep.check()
    return sweep


def _extra_grid(main: Sweep, entry: dict[str, Any], values: dict[str, Any], position: int) -> Sweep:
    """One `extra_grids` entry of a sweep file: its axes and overrides replace the file's top-level
    ones; data set, encoder, encoder options, data root and weights are the main grid's. Top-level
    selector / learner overrides apply to the entry's selectors / learners that they name."""
    merged = {axis: values[axis] for axis in ("selector", "learner", "budget", "seeds") if axis in values}
    merged.update({k: v for k, v in entry.items() if k in AXES})
    selectors = parse_name_list(merged["selector"])
    learners = parse_name_list(merged["learner"])
    sel_names = _with_prefixes(selectors)
    sel_cfg = {k: dict(v) for k, v in main.selector_config.items() if k in sel_names}
    for name, overrides in _scoped(entry.get("selector_config"), "selector").items():
        sel_cfg.setdefault(name, {}).update(overrides)
    learn_cfg = {k: dict(v) for k, v in main.learner_config.items() if k in learners}
    for name, overrides in _scoped(entry.get("learner_config"), "learner").items():
        learn_cfg.setdefault(name, {}).update(overrides)
    return Sweep(datasets=list(main.datasets), selectors=selectors, learners=learners,
                 budgets=parse_int_list(merged["budget"], f"extra_grids[{position}] budget"),
                 seeds=parse_int_list(merged.get("seeds", str(DEFAULT_SEED)), f"extra_grids[{position}] seed"),
                 encoders=list(main.encoders), selector_config=sel_cfg, learner_config=learn_cfg,
                 encoder_config=dict(main.encoder_config), encoder_configs=dict(main.encoder_configs),
                 dataset_config=dict(main.dataset_config), data_root=main.data_root,
                 encoder_weights=main.encoder_weights)


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
    preset = {k: v for k, v in PRESETS[name].items() if k in AXES}
    if preset.get("selector") == "@cpu":
        skipped: list[str] = []
        preset["selector"] = cpu_selectors(preset["dataset"], min(preset["budget"]), skipped)
        preset["notes"] = [f"preset {name}: left out selector {line}" for line in skipped]
    learners = [learner for learner in preset["learner"] if learner in LEARNERS]
    # another SSL learner: --learner linear,labelprop,mixmatch (and --learner-config mixmatch.steps=100 ...)
    ssl = PRESETS[name].get("ssl_learner")
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
    """Read a YAML or JSON sweep file; unknown keys and empty axes are errors.

    `extra_grids` (optional): a list of partial grids run as well, each a mapping of axes
    (selector, learner, budget, seeds) and selector_config / learner_config that replace the
    top-level values for that grid only, e.g. published index files at their own budget:

        extra_grids:
          - selector: "file:../indices.json#usl_40_seed1"
            selector_config: {file: {label: "usl (published)"}}
            budget: 40
            seeds: 1

    `leaderboard` (optional): {output: FOLDER, caption: TEXT}: where the sweep's leaderboard step
    writes LEADERBOARD.md, its CSVs and plots (default RESULTS_ROOT/leaderboards), and a markdown
    paragraph put under its title (how the numbers were made, the command that regenerates them).

    A relative path in a `file:PATH` selector or in leaderboard.output is resolved against the sweep
    file's folder (so the file works from any working directory); absolute paths are kept."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Sweep file {path} does not exist.")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
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
    folder = path.parent.absolute()
    _resolve_file_selectors(data, folder)
    board = data.get("leaderboard")
    if board is not None:
        if not isinstance(board, dict) or set(board) - {"output", "caption"}:
            raise UserError(f"Sweep file {path}: leaderboard is a mapping with the keys output (a folder) and "
                            f"caption (markdown text), got {board!r}.")
        if board.get("output"):
            board["output"] = os.path.normpath(os.path.join(folder, os.path.expanduser(str(board["output"]))))
        if board.get("caption") is not None:
            board["caption"] = str(board["caption"]).strip()
    extra = data.get("extra_grids")
    if extra is not None:
        if not isinstance(extra, list) or not all(isinstance(e, dict) for e in extra):
            raise UserError(f"Sweep file {path}: extra_grids must be a list of mappings (selector, learner, budget, "
                            f"seeds, selector_config, learner_config), got {extra!r}.")
        grids = []
        for position, entry in enumerate(extra):
            entry = {str(k).replace("-", "_"): v for k, v in entry.items()}
            if "seed" in entry and "seeds" not in entry:
                entry["seeds"] = entry.pop("seed")
            unknown = sorted(set(entry) - EXTRA_GRID_KEYS)
            if unknown:
                raise UserError(f"Sweep file {path}: extra_grids[{position}] has unknown keys {', '.join(map(repr, unknown))}; "
                                f"an extra grid may set {', '.join(sorted(EXTRA_GRID_KEYS))} (the rest comes from the top level).")
            for axis in ("selector", "learner", "budget", "seeds"):
                if axis in entry:
                    value = entry[axis]
                    if value is None or (isinstance(value, (list, str)) and not parse_name_list(value)):
                        raise UserError(f"Sweep file {path}: extra_grids[{position}] axis {axis!r} is empty.")
                    if isinstance(value, list):
                        entry[axis] = ",".join(str(v) for v in value)
                    elif isinstance(value, int) and not isinstance(value, bool):
                        entry[axis] = str(value)
            if "selector" not in entry and "selector" not in data:
                raise UserError(f"Sweep file {path}: extra_grids[{position}] names no selector and the file has none.")
            _resolve_file_selectors(entry, folder)
            grids.append(entry)
        data["extra_grids"] = grids
    return data


def _resolve_file_selectors(values: dict[str, Any], folder: Path) -> None:
    """`file:PATH[#KEY]` selectors (and their selector_config keys) with a relative PATH: PATH
    joined to the sweep file's folder, in place."""
    def resolve(name: str) -> str:
        if not name.startswith("file:"):
            return name
        path, sep, key = name[len("file:"):].partition("#")
        path = os.path.expanduser(path)
        if path and not os.path.isabs(path):
            path = os.path.normpath(os.path.join(folder, path))
        return f"file:{path}{sep}{key}"

    if isinstance(values.get("selector"), str):
        values["selector"] = ",".join(resolve(n) for n in parse_name_list(values["selector"]))
    config = values.get("selector_config")
    if isinstance(config, dict):
        values["selector_config"] = {resolve(str(k)): v for k, v in config.items()}
