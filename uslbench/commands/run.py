"""`run`: one spec in this process: select a labeled set, train a learner on it, evaluate, write a record."""
from __future__ import annotations

import click

from .. import DEFAULT_SEED
from ..errors import UserError
from ..devices import resolve_device
from .options import BUDGET, config_overrides, data_root_option, device_option, overrides_for, results_root_option


@click.command("run")
@click.option("--selector", default=None, help="selector name (see `list selectors`), or file:PATH; not with --labels")
@click.option("--learner", required=True, help="learner name (see `list learners`)")
@click.option("--dataset", required=True, help="data set name (see `list datasets`)")
@click.option("--budget", default=None, type=BUDGET,
              help="number of images to label (m), a positive integer; with --labels: the file's labeled images")
@click.option("--labels", "labels_path", default=None, metavar="LABELS.csv",
              help="train on your own labels: a path,label CSV (paths relative to folder:PATH; a filled-in picks "
                   "export works as it is). Its labeled images are the labeled set, every other pool image is "
                   "unlabeled; without a test split the run writes predictions.csv instead of accuracy")
@click.option("--picks", "picks_path", default=None, metavar="PICKS.csv",
              help="with --labels: the picks export the labels answer (warns about labeled images that were not "
                   "picked and picks left unlabeled)")
@click.option("--seed", default=DEFAULT_SEED, show_default=True, type=int)
@click.option("--encoder", default=None, help="encoder (default: the data set's default)")
@click.option("--encoder-weights", default=None, help="weights file for the encoder")
@data_root_option()
@click.option("--download", is_flag=True, help="fetch what is missing: the data set where its library can (cifar, "
              "bloodmnist) and the encoder's published checkpoint (CLD for CIFAR, MoCo v2/EMAN for ImageNet)")
@config_overrides("selector", "learner", "encoder")
@results_root_option()
@device_option()
@click.option("--force", is_flag=True, help="recompute the run even if a finished record exists")
def run(selector, learner, dataset, budget, labels_path, picks_path, seed, encoder, encoder_weights, data_root,
        download, selector_config, learner_config, encoder_config, results_root, device, force) -> None:
    """Select a labeled set, train a learner on it, evaluate, and write a record.

    \b
    Examples:
      python cli.py run --selector usl --learner linear --dataset digits --budget 40 --seed 1
      python cli.py run --dataset folder:my_images --labels picks.csv --learner fixmatch
    """
    from ..harness.own_data import LABELS_SELECTOR
    from ..harness.spec import RunSpec

    if labels_path is not None:
        from ..labeling.labels_file import read_labels_file  # light: the budget is the file's labeled rows

        if selector is not None:
            raise UserError(f"--labels is the labeled set of this run; drop --selector {selector}.")
        if budget is not None:
            raise UserError("--labels fixes the labeled set (its labeled images); drop --budget.")
        selector, budget = LABELS_SELECTOR, len(read_labels_file(labels_path).rows)
    else:
        if picks_path is not None:
            raise UserError("--picks goes with --labels (the labels it checks).")
        for flag, value in (("--selector", selector), ("--budget", budget)):
            if value is None:
                raise UserError(f"Missing option {flag} (or train on your own labels with --labels FILE).")
    from ..harness.pipeline import run_spec  # lazy: the pipeline imports every entry (torch)

    spec = RunSpec(dataset=dataset, selector=selector, learner=learner, budget=budget, seed=seed,
                   encoder=encoder, encoder_weights=encoder_weights, data_root=data_root,
                   selector_config=overrides_for("selector", selector, selector_config),
                   learner_config=overrides_for("learner", learner, learner_config),
                   encoder_config=overrides_for("encoder", encoder, encoder_config),
                   dataset_config={"download": True} if download else {}, labels=labels_path,
                   labels_picks=picks_path)
    outcome = run_spec(spec, results_root, device=resolve_device(device),
                       echo=lambda m: click.echo(f"warning: {m}", err=True), force=force)
    record = outcome.record
    if outcome.cached.get("run"):
        click.echo("cached: this run is already done; nothing recomputed (use --force to redo it)")
    else:
        reused = [stage for stage in ("features", "selection") if outcome.cached.get(stage)]
        if reused:
            click.echo(f"reused cached {' and '.join(reused)}")
    seconds = record.get("seconds", {})
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items())
    top1 = record["metrics"].get("top1")
    score = f"top1 {top1:.2f}%" if top1 is not None else "no accuracy (no test split)"
    click.echo(f"{spec.short()} | {score} | classes covered "
               f"{record.get('classes_covered')}/{record['dataset_summary']['num_classes']}"
               + (f" | {timing}" if timing else "") + f"\nrecord: {outcome.record_path}")
    if record.get("predictions"):
        model = record.get("model_file")
        click.echo(f"predictions: {outcome.record_path.parent / record['predictions']['file']} "
                   f"({record['predictions']['rows']} pool images: path, prediction, confidence, label)"
                   + (f"\nmodel: {outcome.record_path.parent / model}" if model else ""))
    if record.get("degenerate") == "single_class":
        click.echo("note: the selection holds a single class; the run is scored all the same "
                   f"({record['metrics'].get('prediction_rule') or 'the learner trained on that one class'}).")
