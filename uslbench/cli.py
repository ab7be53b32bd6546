"""Command-line interface: the Click group and its commands (each in uslbench/commands/).

Each command is a thin wrapper over a library function; the command modules import their library
inside the command, so `--help`, `list`, `describe`, `status`, `leaderboard` and `select --features`
start without importing torch, torchvision, scikit-learn or open_clip.
"""
from __future__ import annotations

import sys

import click

from .commands.describe import describe
from .commands.leaderboard import leaderboard
from .commands.list import list_command
from .commands.perf import perf_group
from .commands.pretrain import pretrain_command
from .commands.run import run
from .commands.select import select_command
from .commands.status import status
from .commands.sweep import sweep
from .errors import UserError


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


for _command in (describe, leaderboard, list_command, perf_group, pretrain_command, run, select_command, status,
                 sweep):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
