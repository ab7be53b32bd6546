"""`status`: counts of runs per state under a results root, failed and crashed runs with their logs."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError
from ..harness.status import scan_states, summarize
from .options import RESULTS_ROOT


@click.command()
@click.argument("root", default=RESULTS_ROOT, required=False)
def status(root: str) -> None:
    """Counts per state (done, failed, crashed, running, new); failed runs with their error and log.

    \b
    Example:
      python cli.py status results
    """
    if not Path(root).exists():
        raise UserError(f"Results root {root} does not exist.")
    states = scan_states(root)
    if not states:
        click.echo(f"no runs under {root}")
        return
    click.echo(summarize(states))
