"""`list`: the registered entries of each kind with their one-line descriptions."""
from __future__ import annotations

import click

from ..registry import REGISTRIES


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
            tags = f"  [{', '.join(entry.tags)}]" if entry.tags else ""
            click.echo(f"  {entry_name:<14} {entry.description}{tags}")
