"""`select`: run one selector on a feature matrix or a data set and export the indices (the library
side is uslbench.harness.selection and uslbench.harness.pipeline.select_spec)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .. import DEFAULT_SEED
from ..devices import resolve_device
from ..errors import UserError
from .options import BUDGET, config_overrides, data_root_option, device_option, overrides_for, results_root_option


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
@data_root_option("with --dataset: ")
@config_overrides("selector", "encoder")
@click.option("--preset", "preset_dataset", default=None,
              help="with --features: take the selector's presets for this data set (e.g. cifar10, imagenet)")
@click.option("--l2-normalise/--no-l2-normalise", "normalise", default=True, show_default=True,
              help="with --features: scale every row to unit length first, as the encoders do (the presets "
                   "assume it); --no-l2-normalise uses the matrix as given")
@click.option("--export", "export_path", default=None,
              help="write the picks to FILE (.csv, .json or .npy). A .csv has a header and one row per pick: rank, "
                   "pool_index, cluster and score where the selector has them; from a folder:PATH data set also "
                   "the path relative to PATH, sha256 and an empty label column to fill in, plus a contact sheet "
                   "FILE-stem.contact.png. Without image paths, .json and .npy hold the pool indices")
@click.option("--export-format", "export_format", default="auto", show_default=True,
              type=click.Choice(["auto", "csv", "json", "label-studio", "npy"]),
              help="format of --export (auto: from its suffix); label-studio: a task list for Label Studio's "
                   "JSON import (needs image paths)")
@click.option("--already-labeled", "already_labeled", default=None, metavar="LABELS.csv",
              help="with --dataset: images labeled in an earlier round (a path,label CSV such as a filled-in picks "
                   "export); picks --budget NEW images, using the labeled ones as the selector's paper describes")
@results_root_option("with --dataset: caches go here")
@device_option("where selection runs: cpu, cuda[:N] (needs faiss-gpu: the `gpu` extra), or auto (a GPU when "
               "one is visible; faiss stays on the CPU without faiss-gpu)")
def select_command(selector, budget, seed, features_path, dataset, encoder, encoder_weights, data_root,
                   encoder_config, selector_config, preset_dataset, normalise, export_path, export_format,
                   already_labeled, results_root, device) -> None:
    """Select m images from your own features or a data set; print per-phase seconds; export.

    \b
    Examples:
      python cli.py select --features clip.npy --selector usl --budget 40 --seed 1 --export picks.npy
      python cli.py select --dataset digits --selector typiclust --budget 20 --export picks.csv
      python cli.py select --dataset folder:my_images --encoder pixels --selector usl --budget 20 --export picks.csv
      python cli.py select --dataset folder:my_images --encoder pixels --selector usl --budget 20 \
          --already-labeled picks.csv --export round2.csv
    """
    # lazy: numpy, the selectors and (with --dataset) the pipeline; `select --help` stays light
    import numpy as np

    from ..harness.selection import check_export_path, export_indices, select_from_file
    from ..selectors.toolkit import check_selection_device

    if (features_path is None) == (dataset is None):
        raise UserError("Give exactly one of --features FILE.npy (your own embeddings) or --dataset NAME.")
    if export_path is not None:
        suffix_format = {".npy": "npy", ".json": "json", ".csv": "csv"}.get(check_export_path(export_path).suffix.lower())
        if export_format not in ("auto", suffix_format) and (export_format, suffix_format) != ("label-studio", "json"):
            raise UserError(f"--export-format {export_format} does not match the export file {export_path}: use a "
                            f"{'.json' if export_format == 'label-studio' else '.' + export_format} file.")
    check_selection_device(device)  # --device cuda without a GPU or faiss-gpu: refused before any work
    overrides = overrides_for("selector", selector, selector_config)
    if features_path is not None:
        for flag, value in (("--encoder", encoder), ("--encoder-weights", encoder_weights), ("--data-root", data_root),
                            ("--encoder-config", encoder_config or None), ("--already-labeled", already_labeled)):
            if value is not None:
                raise UserError(f"{flag} applies to --dataset; with --features your matrix is the features.")
        if export_path and export_format == "label-studio":
            raise UserError("A Label Studio task list needs image paths; a features matrix has none. Export the "
                            "indices (.csv, .json, .npy), or select from your images with --dataset folder:PATH.")
        selection, shape, normalised = select_from_file(features_path, selector, budget, seed, overrides,
                                                        preset_dataset, normalise, device=device)
        indices, info, seconds = selection.indices, selection.info, selection.seconds
        click.echo(f"{selector} | m={len(indices)} | seed={seed} | {shape[0]} x {shape[1]} features"
                   + (" (rows L2-normalised; --no-l2-normalise uses them as given)" if normalised else " (as given)"))
    else:
        from ..harness.own_data import pool_paths
        from ..harness.pipeline import prepare, select_prepared  # lazy: the pipeline imports every entry (torch)
        from ..harness.spec import RunSpec

        if preset_dataset is not None:
            raise UserError("--preset applies to --features; with --dataset the data set's presets are used.")
        spec = RunSpec(dataset=dataset, selector=selector, learner=None, budget=budget, seed=seed, encoder=encoder,
                       encoder_weights=encoder_weights, data_root=data_root, selector_config=overrides,
                       encoder_config=overrides_for("encoder", encoder, encoder_config), already_labeled=already_labeled)
        device = resolve_device(device)
        prep = prepare(spec, results_root, device)
        with_paths = pool_paths(prep.dataset, dataset) is not None
        if export_path and export_format == "label-studio" and not with_paths:
            raise UserError(f"A Label Studio task list needs image paths; {dataset} has none. Export the indices "
                            "(.csv, .json, .npy) instead.")
        data, cached, stage_seconds = select_prepared(prep, device,
                                                      echo=lambda m: click.echo(f"warning: {m}", err=True))
        indices, info, seconds = np.asarray(data["indices"], dtype=np.int64), data.get("info", {}), data.get("seconds", {})
        reused = [stage for stage, hit in cached.items() if hit]
        click.echo(f"{dataset} | {selector} | m={len(indices)} | seed={seed}"
                   + (f" | reused cached {' and '.join(reused)}" if reused else ""))
        if prep.already_labeled_source is not None:
            source = prep.already_labeled_source
            click.echo(f"already labeled: {source['rows']} image(s) of {source['file']}; picked {len(indices)} new "
                       "one(s), none of them already labeled")
    click.echo(f"seconds: {_format_seconds(seconds)} (total {sum(seconds.values()):.2f}s)")
    diagnostics = {k: v for k, v in info.items() if k != "resolved_config"}
    if diagnostics:
        click.echo("info: " + json.dumps(diagnostics, sort_keys=True, default=str))
    if export_path and dataset is not None and with_paths:
        from ..harness.own_data import export_picks

        per_pick = data.get("per_pick") or {}
        written = export_picks(prep.dataset, dataset, indices, per_pick, export_path, export_format)
        known = [k for k in ("cluster", "score") if k in per_pick]
        click.echo(f"wrote {written[0]} ({len(indices)} picks: rank, pool index, path, sha256"
                   + "".join(f", {k}" for k in known)
                   + (f" = {per_pick['score_name']}" if "score_name" in per_pick else "")
                   + (")" if export_format in ("label-studio", "npy") or Path(export_path).suffix.lower() != ".csv"
                      else "; fill in the label column and pass the file to run --labels)"))
        for extra in written[1:]:
            click.echo(f"wrote {extra} (contact sheet: look at the picks before labeling them)")
    elif export_path:
        per_pick = (selection.per_pick if dataset is None else data.get("per_pick")) or {}
        written = export_indices(indices, export_path, per_pick)
        known = [k for k in ("cluster", "score") if k in per_pick] if written.suffix.lower() == ".csv" else []
        click.echo(f"wrote {written} ({len(indices)} picks: "
                   + (", ".join(["rank", "pool index", *known]) if written.suffix.lower() == ".csv" else "pool indices")
                   + (f" = {per_pick['score_name']}" if "score" in known and "score_name" in per_pick else "") + ")")
        source = "--features has" if dataset is None else f"{dataset} has"
        click.echo(f"note: {source} no image paths, so the export names each pick by its pool index (its row of "
                   f"the {'matrix' if dataset is None else 'pool'}), in selection order")
    else:
        shown = ", ".join(str(int(i)) for i in indices[:20])
        click.echo(f"indices: {shown}{', ...' if len(indices) > 20 else ''} (use --export FILE to save them)")
