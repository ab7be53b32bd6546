"""`select`: run one selector on a feature matrix or a data set and export the indices;
`perf selectors`: time every selector on synthetic features (see uslbench.benchmark.perf)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..encoders.base import l2_normalise
from ..errors import UserError
from ..registry import SELECTORS, load_all, parse_overrides
from ..utils import atomic_save_npy, atomic_write_bytes

EXPORT_SUFFIXES = (".npy", ".json", ".csv")


def load_feature_matrix(path: str | Path) -> np.ndarray:
    """An (N, d) floating-point matrix from a .npy file (or the 'features' array of a .npz)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"Feature file {path} does not exist.")
    try:
        data = np.load(path, allow_pickle=False, mmap_mode=None)
    except ValueError as exc:
        raise UserError(f"Feature file {path} is not a plain numpy array ({exc}).") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        if "features" not in data.files:
            raise UserError(f"{path} holds {data.files}; an .npz needs an array named 'features'.")
        data = data["features"]
    return data


def check_export_path(path: str | Path | None) -> Path | None:
    if path is None:
        return None
    path = Path(path).expanduser()
    if path.suffix.lower() not in EXPORT_SUFFIXES:
        raise UserError(f"Export file {path} must end in {', '.join(EXPORT_SUFFIXES)}.")
    if path.parent.exists() and not path.parent.is_dir():
        raise UserError(f"Cannot write {path}: {path.parent} is not a folder.")
    return path


def export_indices(indices: np.ndarray, path: str | Path) -> Path:
    """Write indices as .npy (int64), .json (a list) or .csv (one index per line); atomic."""
    path = check_export_path(path)
    indices = np.asarray(indices, dtype=np.int64)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        atomic_save_npy(path, indices)
    elif suffix == ".json":
        atomic_write_bytes(path, (json.dumps([int(i) for i in indices]) + "\n").encode())
    else:
        atomic_write_bytes(path, "".join(f"{int(i)}\n" for i in indices).encode())
    return path


def select_features(features: np.ndarray, selector: str, budget: Any, seed: int = 1,
                    overrides: dict[str, Any] | None = None, dataset_name: str | None = None):
    """Run a label-free selector on a bare (N, d) matrix; returns the Selection."""
    from ..selectors.base import SelectionContext

    load_all()
    if SELECTORS.get(selector).factory.needs_labels:
        raise UserError(f"Selector {selector!r} reads labels; a bare feature matrix has none. "
                        "Use --dataset for it, or pick a label-free selector.")
    instance = SELECTORS.create(selector, dataset=dataset_name, **(overrides or {}))
    context = SelectionContext(pool_size=len(features) if hasattr(features, "__len__") else None,
                               dataset_name=dataset_name)
    return instance.select(features, budget, seed=seed, context=context)


def _format_seconds(seconds: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}s" for k, v in seconds.items()) or "-"


@click.command("select")
@click.option("--selector", required=True, help="selector name (see `list selectors`), or file:PATH")
@click.option("--budget", required=True, help="number of images to label (m)")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--features", "features_path", default=None, help="(N, d) float matrix (.npy) to select from")
@click.option("--dataset", default=None, help="data set name: select through the pipeline's feature cache")
@click.option("--encoder", default=None, help="with --dataset: encoder (default: the data set's)")
@click.option("--encoder-weights", default=None, help="with --dataset: weights file for the encoder")
@click.option("--data-root", default=None, help="with --dataset: folder holding the data set's files")
@click.option("--encoder-config", multiple=True, metavar="KEY=VALUE",
              help="with --dataset: encoder config override (repeatable), e.g. model=resnet50 for --encoder timm")
@click.option("--selector-config", multiple=True, metavar="KEY=VALUE", help="selector config override (repeatable)")
@click.option("--preset", "preset_dataset", default=None,
              help="with --features: take the selector's presets for this data set (e.g. cifar10, imagenet)")
@click.option("--l2-normalise/--no-l2-normalise", "normalise", default=True, show_default=True,
              help="with --features: scale every row to unit length first, as the encoders do (the presets "
                   "assume it); --no-l2-normalise uses the matrix as given")
@click.option("--export", "export_path", default=None, help="write the indices to FILE (.npy, .json or .csv)")
@click.option("--results-root", default="results", show_default=True, help="with --dataset: caches go here")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, or auto")
def select_command(selector, budget, seed, features_path, dataset, encoder, encoder_weights, data_root,
                   encoder_config, selector_config, preset_dataset, normalise, export_path, results_root, device) -> None:
    """Select m images from your own features or a data set; print per-phase seconds; export.

    \b
    Examples:
      python cli.py select --features clip.npy --selector usl --budget 40 --seed 1 --export picks.npy
      python cli.py select --dataset digits --selector typiclust --budget 20 --export picks.csv
    """
    from ..cli import resolve_device

    if (features_path is None) == (dataset is None):
        raise UserError("Give exactly one of --features FILE.npy (your own embeddings) or --dataset NAME.")
    check_export_path(export_path)
    overrides = parse_overrides(selector_config)
    if features_path is not None:
        for flag, value in (("--encoder", encoder), ("--encoder-weights", encoder_weights), ("--data-root", data_root),
                            ("--encoder-config", encoder_config or None)):
            if value is not None:
                raise UserError(f"{flag} applies to --dataset; with --features your matrix is the features.")
        features = load_feature_matrix(features_path)
        normalised = normalise and np.issubdtype(features.dtype, np.floating) and features.ndim == 2
        if normalised:  # zero, NaN or infinite rows stay so and are reported by the selector's checks
            with np.errstate(invalid="ignore", divide="ignore"):
                features = l2_normalise(features)
        selection = select_features(features, selector, budget, seed, overrides, preset_dataset)
        indices, info, seconds = selection.indices, selection.info, selection.seconds
        click.echo(f"{selector} | m={len(indices)} | seed={seed} | {features.shape[0]} x {features.shape[1]} features"
                   + (" (rows L2-normalised; --no-l2-normalise uses them as given)" if normalised else " (as given)"))
    else:
        from ..benchmark.pipeline import select_spec
        from ..benchmark.spec import RunSpec

        if preset_dataset is not None:
            raise UserError("--preset applies to --features; with --dataset the data set's presets are used.")
        spec = RunSpec(dataset=dataset, selector=selector, learner=None, budget=budget, seed=seed, encoder=encoder,
                       encoder_weights=encoder_weights, data_root=data_root, selector_config=overrides,
                       encoder_config=parse_overrides(encoder_config))
        data, cached, stage_seconds = select_spec(spec, results_root, device=resolve_device(device),
                                                  echo=lambda m: click.echo(f"warning: {m}", err=True))
        indices, info, seconds = np.asarray(data["indices"], dtype=np.int64), data.get("info", {}), data.get("seconds", {})
        reused = [stage for stage, hit in cached.items() if hit]
        click.echo(f"{dataset} | {selector} | m={len(indices)} | seed={seed}"
                   + (f" | reused cached {' and '.join(reused)}" if reused else ""))
    click.echo(f"seconds: {_format_seconds(seconds)} (total {sum(seconds.values()):.2f}s)")
    diagnostics = {k: v for k, v in info.items() if k != "resolved_config"}
    if diagnostics:
        click.echo("info: " + json.dumps(diagnostics, sort_keys=True, default=str))
    if export_path:
        click.echo(f"wrote {export_indices(indices, export_path)}")
    else:
        shown = ", ".join(str(int(i)) for i in indices[:20])
        click.echo(f"indices: {shown}{', ...' if len(indices) > 20 else ''} (use --export FILE to save them)")


@click.group("perf")
def perf_group() -> None:
    """Performance benchmarks (seconds and peak memory), written as markdown tables.

    \b
    Example:
      python cli.py perf selectors --quick
    """


@perf_group.command("selectors")
@click.option("--case", "cases", multiple=True, help="case name to run (repeatable; default: all, see --list)")
@click.option("--quick", is_flag=True, help="only the small cases (N = 50,000); skips the ImageNet-scale ones")
@click.option("--list", "list_cases", is_flag=True, help="list the cases and exit")
@click.option("--output", default="results/perf/selectors.md", show_default=True, help="markdown table to write")
@click.option("--timeout-seconds", default=1800, show_default=True, type=int, help="per case")
def perf_selectors(cases, quick, list_cases, output, timeout_seconds) -> None:
    """Time each selector on seeded L2-normalised Gaussian-mixture features, each case in its own
    subprocess (so peak memory does not mix), and write a markdown table.

    \b
    Example:
      python cli.py perf selectors --quick --output /tmp/perf.md
    """
    from ..benchmark import perf

    if list_cases:
        for case in perf.CASES:
            click.echo(f"{case.name:<22} {case.describe()}")
        return
    chosen = perf.choose_cases(cases, quick)
    results = []
    for case in chosen:
        click.echo(f"running {case.name}: {case.describe()} ...")
        result = perf.run_case_subprocess(case, timeout_seconds)
        results.append(result)
        click.echo("  " + perf.result_line(result))
    path = perf.write_table(results, output)
    click.echo(f"wrote {path}")
