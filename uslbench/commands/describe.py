"""`describe`: one entry's config fields, defaults, presets, tags and documentation."""
from __future__ import annotations

import click

from ..errors import UserError, unknown_name_message


@click.command("describe")
@click.argument("name")
def describe(name: str) -> None:
    """Show an entry's config fields, defaults, presets, tags and documentation.

    \b
    Example:
      python cli.py describe usl
    """
    from ..catalog import REGISTRIES  # lazy: importing the catalogue registers every entry

    found = [registry for registry in REGISTRIES.values() if name in registry]
    if not found:
        every = [n for registry in REGISTRIES.values() for n in registry.names()]
        raise UserError(unknown_name_message("entry", name, every))
    click.echo("\n\n".join(registry.describe(name) for registry in found))
