"""`select`: run one selector on a feature matrix or a data set and export the indices (the library
side is uslbench.harness.selection and uslbench.harness.pipeline.select_spec)."""
from __future__ import annotations

import json

import click

from .. import DEFAULT_SEED
from ..devices import resolve_device
from ..errors import UserError
from .options import BUDGET, config_overrides, device_option, overrides_for, results_root_option


def _format_seconds(seconds: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}s" for k, v in seconds.items()) or "-"


@click.command("select")
@click.option("--selector", required=True, help="selector name (see `list selectors`), or file:PATH")
@click.option("--budget", required=True, type=BUDGET, help="number of images to label (m), a positive integer")
@click.option("--seed", default=DEFAULT_SEED, show_default=True, type=int)
@click.option("--features", "features_path", default=None, help="(N, d) float matrix (.npy) to select from")
@click.option("--dataset", default=None, help="data set name: select through the pipeline's feature cache")
@click.option("--encoder", default=None, help="with --dataset: encoder (default: the data set's)")
@click.option("--encoder-weights", default=None, help="with --dataset: weights file for the encoder")
@click.option("--data-root", default=None, help="with --dataset: folder holding the data set's files")
@config_overrides("selector", "encoder")
@click.option("--preset", "preset_dataset", default=None,
              help="with --features: take the selector's presets for this data set (e.g. cifar10, imagenet)")
@click.option("--l2-normalise/--no-l2-normalise", "normalise", default=True, show_default=True,
              help="with --features: scale every row to unit length first, as the encoders do (the presets "
                   "assume it); --no-l2-normalise uses the matrix as given")
@click.option("--export", "export_path", default=None, help="write the indices to FILE (.npy, .json or .csv)")
@results_root_option("with --dataset: caches go here")
@device_option("where selection runs: cpu, cuda[:N] (needs faiss-gpu: the `gpu` extra), or auto (a GPU when "
               "one is visible; faiss stays on the CPU without faiss-gpu)")
def select_command(selector, budget, seed, features_path, dataset, encoder, encoder_weights, data_root,
                   encoder_config, selector_config, preset_dataset, normalise, export_path, results_root, device) -> None:
    """Select m images from your own features or a data set; print per-phase seconds; export.

    \b
    Examples:
      python cli.py select --features clip.npy --selector usl --budget 40 --seed 1 --export picks.npy
      python cli.py select --dataset digits --selector typiclust --budget 20 --export picks.csv
    """
    # lazy: numpy, the selectors and (with --dataset) the pipeline; `select --help` stays light
    import numpy as np

    from ..harness.selection import check_export_path, export_indices, select_from_file
    from ..selectors.toolkit import check_selection_device

    if (features_path is None) == (dataset is None):
        raise UserError("Give exactly one of --features FILE.npy (your own embeddings) or --dataset NAME.")
    check_export_path(export_path)
    check_selection_device(device)  # --device cuda without a GPU or faiss-gpu: refused before any work
    overrides = overrides_for("selector", selector, selector_config)
    if features_path is not None:
        for flag, value in (("--encoder", encoder), ("--encoder-weights", encoder_weights), ("--data-root", data_root),
                            ("--encoder-config", encoder_config or None)):
            if value is not None:
                raise UserError(f"{flag} applies to --dataset; with --features your matrix is the features.")
        selection, shape, normalised = select_from_file(features_path, selector, budget, seed, overrides,
                                                        preset_dataset, normalise, device=device)
        indices, info, seconds = selection.indices, selection.info, selection.seconds
        click.echo(f"{selector} | m={len(indices)} | seed={seed} | {shape[0]} x {shape[1]} features"
                   + (" (rows L2-normalised; --no-l2-normalise uses them as given)" if normalised else " (as given)"))
    else:
        from ..harness.pipeline import select_spec  # lazy: the pipeline imports every entry (torch)
        from ..harness.spec import RunSpec

        if preset_dataset is not None:
            raise UserError("--preset applies to --features; with --dataset the data set's presets are used.")
        spec = RunSpec(dataset=dataset, selector=selector, learner=None, budget=budget, seed=seed, encoder=encoder,
                       encoder_weights=encoder_weights, data_root=data_root, selector_config=overrides,
                       encoder_config=overrides_for("encoder", encoder, encoder_config))
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
