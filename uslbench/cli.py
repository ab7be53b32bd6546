"""Command-line interface. Every command is a thin wrapper over a library function."""
from __future__ import annotations

import sys

import click

from .errors import UserError
from .registry import REGISTRIES, load_all, parse_overrides


class Group(click.Group):
    """Prints a UserError as one paragraph and exits 2 (no traceback for a user's mistake); an
    interrupt exits 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt as exc:
            # SIGINT / SIGTERM: training has already said where its checkpoint is and how to resume
            # (training.loop.TrainingInterrupted); exit as the shell does for a signal, no traceback
            ctx.exit(128 + int(getattr(exc, "signum", 2)))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """uslbench: which m images should you label? Compare selectors under SSL learners.

    \b
    Example:
      python cli.py run --selector usl --learner linear --dataset digits --budget 40 --seed 1
    """


@main.command("list")
@click.argument("kind", required=False, type=click.Choice(sorted(REGISTRIES)))
def list_command(kind: str | None) -> None:
    """List registered entries with their one-line descriptions.

    \b
    Example:
      python cli.py list selectors
    """
    load_all()
    kinds = [kind] if kind else sorted(REGISTRIES)
    for name in kinds:
        registry = REGISTRIES[name]
        click.echo(f"{name}:")
        for entry_name in registry.names():
            entry = registry.get(entry_name)
            tags = f"  [{', '.join(entry.tags)}]" if entry.tags else ""
            click.echo(f"  {entry_name:<14} {entry.description}{tags}")


@main.command()
@click.argument("name")
def describe(name: str) -> None:
    """Show an entry's config fields, defaults, presets, tags and documentation.

    \b
    Example:
      python cli.py describe usl
    """
    load_all()
    found = [registry for registry in REGISTRIES.values() if name in registry]
    if not found:
        from .errors import unknown_name_message

        every = [n for registry in REGISTRIES.values() for n in registry.names()]
        raise UserError(unknown_name_message("entry", name, every))
    click.echo("\n\n".join(registry.describe(name) for registry in found))


def _overrides(values: tuple[str, ...]) -> dict[str, str]:
    return parse_overrides(values)


@main.command()
@click.option("--selector", required=True, help="selector name (see `list selectors`), or file:PATH")
@click.option("--learner", required=True, help="learner name (see `list learners`)")
@click.option("--dataset", required=True, help="data set name (see `list datasets`)")
@click.option("--budget", required=True, help="number of images to label (m)")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--encoder", default=None, help="encoder (default: the data set's default)")
@click.option("--encoder-weights", default=None, help="weights file for the encoder")
@click.option("--data-root", default=None, help="folder holding the data set's files")
@click.option("--download", is_flag=True, help="download the data set where its library can (cifar, bloodmnist)")
@click.option("--selector-config", multiple=True, metavar="KEY=VALUE", help="selector config override (repeatable)")
@click.option("--learner-config", multiple=True, metavar="KEY=VALUE", help="learner config override (repeatable)")
@click.option("--encoder-config", multiple=True, metavar="KEY=VALUE", help="encoder config override (repeatable)")
@click.option("--results-root", default="results", show_default=True, help="where caches and records go")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, or auto")
@click.option("--force", is_flag=True, help="recompute the run even if a finished record exists")
def run(selector, learner, dataset, budget, seed, encoder, encoder_weights, data_root, download, selector_config,
        learner_config, encoder_config, results_root, device, force) -> None:
    """Select a labeled set, train a learner on it, evaluate, and write a record.

    \b
    Example:
      python cli.py run --selector usl --learner linear --dataset digits --budget 40 --seed 1
    """
    from .benchmark.pipeline import run_spec
    from .benchmark.spec import RunSpec

    spec = RunSpec(dataset=dataset, selector=selector, learner=learner, budget=budget, seed=seed,
                   encoder=encoder, encoder_weights=encoder_weights, data_root=data_root,
                   selector_config=_overrides(selector_config), learner_config=_overrides(learner_config),
                   encoder_config=_overrides(encoder_config), dataset_config={"download": True} if download else {})
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


def resolve_device(device: str) -> str:
    if device == "auto":
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            return "cpu"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {device} was asked for, but no CUDA GPU is visible here; use --device cpu.")
    elif device != "cpu":
        raise UserError(f"Unknown device {device!r}; use cpu, cuda, cuda:N or auto.")
    return device


# Commands that live with their subsystem (one line each; keep this block sorted).
from .commands import harness as _harness  # noqa: E402
from .commands.data import pretrain_command  # noqa: E402
from .commands.select import perf_group, select_command  # noqa: E402

for _command in (pretrain_command, perf_group, select_command, _harness.sweep, _harness.status,
                 _harness.leaderboard):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
