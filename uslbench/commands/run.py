"""`run`: one spec in this process: select a labeled set, train a learner on it, evaluate, write a record."""
from __future__ import annotations

import click

from .. import DEFAULT_SEED
from ..devices import resolve_device
from .options import BUDGET, config_overrides, device_option, overrides_for, results_root_option


@click.command("run")
@click.option("--selector", required=True, help="selector name (see `list selectors`), or file:PATH")
@click.option("--learner", required=True, help="learner name (see `list learners`)")
@click.option("--dataset", required=True, help="data set name (see `list datasets`)")
@click.option("--budget", required=True, type=BUDGET, help="number of images to label (m), a positive integer")
@click.option("--seed", default=DEFAULT_SEED, show_default=True, type=int)
@click.option("--encoder", default=None, help="encoder (default: the data set's default)")
@click.option("--encoder-weights", default=None, help="weights file for the encoder")
@click.option("--data-root", default=None, help="folder holding the data set's files")
@click.option("--download", is_flag=True, help="fetch what is missing: the data set where its library can (cifar, "
              "bloodmnist) and the encoder's published checkpoint (CLD for CIFAR, MoCo v2/EMAN for ImageNet)")
@config_overrides("selector", "learner", "encoder")
@results_root_option()
@device_option()
@click.option("--force", is_flag=True, help="recompute the run even if a finished record exists")
def run(selector, learner, dataset, budget, seed, encoder, encoder_weights, data_root, download, selector_config,
        learner_config, encoder_config, results_root, device, force) -> None:
    """Select a labeled set, train a learner on it, evaluate, and write a record.

    \b
    Example:
      python cli.py run --selector usl --learner linear --dataset digits --budget 40 --seed 1
    """
    from ..harness.pipeline import run_spec  # lazy: the pipeline imports every entry (torch)
    from ..harness.spec import RunSpec

    spec = RunSpec(dataset=dataset, selector=selector, learner=learner, budget=budget, seed=seed,
                   encoder=encoder, encoder_weights=encoder_weights, data_root=data_root,
                   selector_config=overrides_for("selector", selector, selector_config),
                   learner_config=overrides_for("learner", learner, learner_config),
                   encoder_config=overrides_for("encoder", encoder, encoder_config),
                   dataset_config={"download": True} if download else {})
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
    click.echo(f"{spec.short()} | top1 {record['metrics']['top1']:.2f}% | classes covered "
               f"{record.get('classes_covered')}/{record['dataset_summary']['num_classes']}"
               + (f" | {timing}" if timing else "") + f"\nrecord: {outcome.record_path}")
    if record.get("degenerate") == "single_class":
        click.echo("note: the selection holds a single class; the run is scored all the same "
                   f"({record['metrics'].get('prediction_rule') or 'the learner trained on that one class'}).")
