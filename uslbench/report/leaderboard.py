"""Write the leaderboard (markdown / CSV / LaTeX) and its plots for a results root."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..utils import atomic_write_bytes
from .plots import accuracy_vs_budget_plots, class_distribution_plots
from .records import load_records
from .tables import FORMATS, render

SUFFIX = {"markdown": "md", "csv": "csv", "latex": "tex"}


@dataclass
class Leaderboard:
    text: str
    path: Path
    plots: list[Path] = field(default_factory=list)
    n_records: int = 0


def write_leaderboard(root: str | Path, fmt: str = "markdown", out_dir: str | Path | None = None,
                      plots: bool = True, keys: set[str] | None = None, name: str = "LEADERBOARD",
                      warn: Callable[[str], None] | None = None) -> Leaderboard:
    """Tables of the finished runs under `root` (only `keys` when given), written to
    `out_dir` (default ROOT/leaderboards) as NAME.md/.csv/.tex, plus PNG plots beside them."""
    if fmt not in FORMATS:
        raise UserError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    root = Path(root)
    if not root.exists():
        raise UserError(f"Results root {root} does not exist; run a sweep first or pass the right folder.")
    kwargs = {"warn": warn} if warn is not None else {}
    every = load_records(root, keys=keys, include_failed=True, **kwargs)
    df = every[every["status"] == "ok"]  # failed runs only mark their cells (n=k/N and a note)
    if df.empty:
        raise UserError(f"No finished runs under {root}; `python cli.py status {root}` shows what is there.")
    out_dir = Path(out_dir) if out_dir is not None else root / "leaderboards"
    text = render(every, fmt)
    path = out_dir / f"{name}.{SUFFIX[fmt]}"
    atomic_write_bytes(path, text.encode())
    written = class_distribution_plots(df, out_dir) + accuracy_vs_budget_plots(df, out_dir) if plots else []
    return Leaderboard(text, path, written, len(df))
