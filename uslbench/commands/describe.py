"""`describe`: one entry's traits, config fields, defaults, presets and documentation, optionally
resolved for a data set (its presets applied)."""
from __future__ import annotations

import click

from ..errors import UserError, unknown_name_message

FIDELITY_DOC = "docs/fidelity.md"
FIDELITY_KINDS = ("selector", "learner")  # the registries whose entries have a section in FIDELITY_DOC


def fidelity_line(kind: str, name: str) -> str | None:
    """'fidelity: docs/fidelity.md#NAME' for selectors and learners (their section there compares
    each mechanism and default with the reference code); None for other entries."""
    return f"fidelity: {FIDELITY_DOC}#{name}" if kind in FIDELITY_KINDS else None


@click.command("describe")
@click.argument("name")
@click.option("--dataset", default=None, help="show the config as resolved for this data set (its presets applied)")
@click.option("--budget", default=None, type=int, help="with --dataset: the budget m, for settings that depend on it")
def describe(name: str, dataset: str | None, budget: int | None) -> None:
    """Show an entry's traits, config fields, defaults, presets and documentation.

    \b
    Examples:
      python cli.py describe usl
      python cli.py describe usl --dataset cifar10
      python cli.py describe fixmatch --dataset digits
    """
    from ..catalog import REGISTRIES  # lazy: importing the catalogue registers every entry

    found = [registry for registry in REGISTRIES.values() if name in registry]
    if not found:
        every = [n for registry in REGISTRIES.values() for n in registry.names()]
        raise UserError(unknown_name_message("entry", name, every))
    if budget is not None and dataset is None:
        raise UserError("--budget applies with --dataset (for example: describe usl --dataset digits --budget 40).")
    pool_size = None
    if dataset is not None:
        REGISTRIES["datasets"].get(dataset)  # an unknown data set gets the close matches
        pool_size = REGISTRIES["datasets"].traits(dataset).pool_size
    parts = []
    for registry in found:
        line = fidelity_line(registry.kind, registry.get(name).name)
        text = registry.describe(name, dataset, pool_size=pool_size, budget=budget)
        parts.append(text + (f"\n{line}" if line else ""))
    click.echo("\n\n".join(parts))
