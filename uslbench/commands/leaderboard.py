"""`leaderboard`: paper-style tables and plots of the finished runs under a results root."""
from __future__ import annotations

import click

from .options import RESULTS_ROOT, data_root_option


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
              help="the sweep's own leaderboard: only its runs, each cell expecting the seeds the sweep planned "
                   "for its row, and the caption (and, without --output, the folder) from its `leaderboard` key")
@data_root_option("with --sweep-file (planning reads the data sets): ", "the sweep file's data_root, else ")
def leaderboard(root: str, fmt: str, output: str | None, plots: bool, metric: str, sweep_file: str | None,
                data_root: str | None) -> None:
    """Paper-style tables of the finished runs (mean ± std (n) and delta over random), and plots.

    \b
    Example:
      python cli.py leaderboard results --format markdown > LEADERBOARD.md
      python cli.py leaderboard results --metric median20
      python cli.py leaderboard RESULTS --sweep-file sweeps/cifar10_efficientnet.yaml
    """
    from ..report.leaderboard import write_leaderboard  # lazy: pandas; `--help` stays light

    caption, keys, planned = None, None, None
    if sweep_file is not None:  # the same tables as `sweep --file` writes when its grid is done
        from ..harness.grid import build_sweep
        from ..harness.plan import plan_sweep

        built = build_sweep(sweep_file=sweep_file, data_root=data_root)
        keys, planned = sweep_scope(plan_sweep(built.specs(), root))
        caption = built.leaderboard_caption
        output = output or built.leaderboard_output
    board = write_leaderboard(root, fmt=fmt, out_dir=output, plots=plots, metric=metric, caption=caption,
                              keys=keys, planned=planned, warn=lambda m: click.echo(f"warning: {m}", err=True))
    click.echo(board.text, nl=not board.text.endswith("\n"))
    click.echo(f"written: {board.path}" + (f" (+ {len(board.plots)} plots)" if board.plots else ""), err=True)


def sweep_scope(plan) -> tuple[set[str], list[tuple]]:
    """A sweep's leaderboard scope, for `write_leaderboard(keys=..., planned=...)`: the run keys of
    its `harness.plan.Plan` and the cells it planned (each cell expects the seeds the grid planned
    for its row; extra grids may plan fewer)."""
    from ..report.records import planned_cells

    return {run.key for run in plan.runs}, planned_cells(run.resolved.record_head() for run in plan.runs)
