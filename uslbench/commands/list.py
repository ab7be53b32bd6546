"""`list`: the registered entries of each kind with their one-line descriptions."""
from __future__ import annotations

import click

from ..registry import REGISTRIES
from ..traits import non_default


@click.command("list")
@click.argument("kind", required=False, type=click.Choice(sorted(REGISTRIES)))
def list_command(kind: str | None) -> None:
    """List registered entries with their one-line descriptions.

    \b
    Example:
      python cli.py list selectors
    """
    from .. import catalog  # noqa: F401  (lazy: importing the catalogue registers every entry)

    kinds = [kind] if kind else sorted(REGISTRIES)
    for name in kinds:
        registry = REGISTRIES[name]
        click.echo(f"{name}:")
        for entry_name in registry.names():
            entry = registry.get(entry_name)
            traits = non_default(entry.traits)
            shown = ", ".join(name if value is True else f"{name}={value}" for name, value in traits.items())
            click.echo(f"  {entry_name:<14} {entry.description}" + (f"  [{shown}]" if shown else ""))
