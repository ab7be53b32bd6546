"""`describe`: one entry's config fields, defaults, presets, tags and documentation."""
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
    parts = []
    for registry in found:
        line = fidelity_line(registry.kind, registry.get(name).name)
        parts.append(registry.describe(name) + (f"\n{line}" if line else ""))
    click.echo("\n\n".join(parts))
