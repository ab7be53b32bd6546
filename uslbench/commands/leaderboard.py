"""`leaderboard`: paper-style tables and plots of the finished runs under a results root."""
from __future__ import annotations

import click

from .options import RESULTS_ROOT


@click.command()
@click.argument("root", default=RESULTS_ROOT, required=False)
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "latex"]), default="markdown",
              show_default=True)
@click.option("--output", default=None, help="folder for the tables and plots  [default: ROOT/leaderboards]")
@click.option("--plots/--no-plots", default=True, show_default=True, help="also write the PNG plots")
@click.option("--metric", type=click.Choice(["final", "best", "median20"]), default="final", show_default=True,
              help="which top-1 of each run: final (the final evaluated model, EMA weights for the SSL learners), "
                   "best (best evaluation during training, as the USL FixMatch fork and USB report), median20 "
                   "(median of the last 20 evaluations, as the FixMatch and MixMatch papers report)")
@click.option("--sweep-file", default=None, type=click.Path(dir_okay=False, exists=True),
              help="take the caption (and, without --output, the folder) from this sweep file's `leaderboard` key")
def leaderboard(root: str, fmt: str, output: str | None, plots: bool, metric: str, sweep_file: str | None) -> None:
    """Paper-style tables of the finished runs (mean ± std (n) and delta over random), and plots.

    \b
    Example:
      python cli.py leaderboard results --format markdown > LEADERBOARD.md
      python cli.py leaderboard results --metric median20
      python cli.py leaderboard RESULTS --sweep-file sweeps/cifar10_efficientnet.yaml
    """
    from ..report.leaderboard import write_leaderboard  # lazy: pandas; `--help` stays light

    caption = None
    if sweep_file is not None:
        from ..harness.grid import load_sweep_file

        board_key = load_sweep_file(sweep_file).get("leaderboard") or {}
        caption = board_key.get("caption")
        output = output or board_key.get("output")
    board = write_leaderboard(root, fmt=fmt, out_dir=output, plots=plots, metric=metric, caption=caption,
                              warn=lambda m: click.echo(f"warning: {m}", err=True))
    click.echo(board.text, nl=not board.text.endswith("\n"))
    click.echo(f"written: {board.path}" + (f" (+ {len(board.plots)} plots)" if board.plots else ""), err=True)
