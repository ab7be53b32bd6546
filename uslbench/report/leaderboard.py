"""Write the leaderboard (markdown / CSV / LaTeX) and its plots for a results root."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..errors import UserError
from ..utils import atomic_write_bytes
from .plots import accuracy_vs_budget_plots, class_distribution_plots, per_class_plots
from .records import load_records
from .stats import paired_vs_baseline, per_class_table, per_seed_table
from .tables import FORMATS, render

SUFFIX = {"markdown": "md", "csv": "csv", "latex": "tex"}


@dataclass
class Leaderboard:
    text: str
    path: Path
    plots: list[Path] = field(default_factory=list)
    n_records: int = 0
    tables: list[Path] = field(default_factory=list)   # the companion CSVs (per seed, paired, per class)


def write_leaderboard(root: str | Path, fmt: str = "markdown", out_dir: str | Path | None = None,
                      plots: bool = True, keys: set[str] | None = None, name: str = "LEADERBOARD",
                      warn: Callable[[str], None] | None = None, metric: str = "final",
                      caption: str | None = None, planned: Iterable[tuple] | None = None) -> Leaderboard:
    """Tables of the finished runs under `root` (only `keys` when given), written to
    `out_dir` (default ROOT/leaderboards) as NAME.md/.csv/.tex, plus beside them:

    - NAME.seeds.csv: one row per run (seed) with its top-1 and classes covered (the raw numbers);
    - NAME.paired.csv: each selector against random over shared seeds (wins, ties, losses, mean
      paired difference, paired t-test p-value; see `report.stats.paired_vs_baseline`);
    - NAME.per_class.csv: per-class test accuracy averaged over seeds (when records hold it);
    - PNG plots: class distribution of the labeled sets, accuracy vs budget, per-class accuracy.

    `metric` chooses the top-1 of each run (records.METRICS): "final" (the final evaluated model,
    the headline), "best" (best evaluation during training) or "median20" (median of the last 20
    evaluations); the captions name it. Per-class accuracies are always the final model's.
    `caption` (markdown; a sweep file's leaderboard.caption): a paragraph put under the markdown
    title (LaTeX: a comment block at the top; CSV: not written).
    `planned` (after a sweep): its planned runs as (dataset, encoder, selector, learner, budget,
    seed, run key) tuples labelled like the records (`records.planned_cells`); each cell then expects
    exactly the seeds planned for its row (a row planned with fewer seeds on purpose is complete,
    a planned cell without any record shows as `no score (n=0/N)`). Without it a cell expects the
    seeds run anywhere in its column (`tables.aggregate`).

    Raises
    ------
    UserError
        Unknown format or metric, missing root, or no finished run under it.
    """
    if fmt not in FORMATS:
        raise UserError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    root = Path(root)
    if not root.exists():
        raise UserError(f"Results root {root} does not exist; run a sweep first or pass the right folder.")
    kwargs = {"warn": warn} if warn is not None else {}
    every = load_records(root, keys=keys, include_failed=True, metric=metric, **kwargs)
    df = every[every["status"] == "ok"]  # failed runs only mark their cells (n=k/N and a note)
    if df.empty:
        raise UserError(f"No finished runs under {root}; `python cli.py status {root}` shows what is there.")
    out_dir = Path(out_dir) if out_dir is not None else root / "leaderboards"
    planned = list(planned) if planned is not None else None
    text = render(every, fmt, planned)
    if caption:
        if fmt == "markdown":
            title, _, rest = text.partition("\n")
            text = f"{title}\n\n{caption.strip()}\n{rest}"
        elif fmt == "latex":
            text = "".join(f"% {line}\n" for line in caption.strip().splitlines()) + "\n" + text
    path = out_dir / f"{name}.{SUFFIX[fmt]}"
    companions = []
    for suffix, frame in (("seeds", per_seed_table(df)), ("paired", paired_vs_baseline(df)),
                          ("per_class", per_class_table(df))):
        if frame.empty:
            continue
        companion = out_dir / f"{name}.{suffix}.csv"
        atomic_write_bytes(companion, frame.to_csv(index=False, float_format="%.4f").encode())
        companions.append(companion)
    written = (class_distribution_plots(df, out_dir) + accuracy_vs_budget_plots(df, out_dir)
               + per_class_plots(df, out_dir)) if plots else []
    if fmt == "markdown" and (companions or written):
        text = text.rstrip("\n") + "\n\n" + files_section(companions, written) + "\n"
    atomic_write_bytes(path, text.encode())
    return Leaderboard(text, path, written, len(df), companions)


FILE_NOTES = {"seeds": "one row per run (seed): top-1 and classes covered",
              "paired": "each selector against random over shared seeds: wins, ties, losses, mean difference, p-value",
              "per_class": "per-class test accuracy averaged over seeds"}


def files_section(companions: list[Path], plots: list[Path]) -> str:
    """The markdown list of the files written beside the leaderboard (relative links);
    companions are NAME.<kind>.csv with kind a key of FILE_NOTES."""
    lines = ["## Files beside this table", ""]
    for path in companions:
        lines.append(f"- [{path.name}]({path.name}): {FILE_NOTES[path.suffixes[-2][1:]]}")
    for path in plots:
        lines.append(f"- [{path.name}]({path.name})")
    return "\n".join(lines)
