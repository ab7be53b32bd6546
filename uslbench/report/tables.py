"""Paper-style tables: rows = selectors, columns = learners (per data set and budget) or budgets
(per data set and learner); cells `mean ± std (n)` over seeds with the difference to `random`.

The maths (aggregation, deltas) lives in small pure functions that tests check by hand; the
text is rendered with tabulate (markdown, LaTeX) and pandas (CSV).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import pandas as pd

from .stats import BASELINE, PAIRED_TEST, ci95_halfwidth, classes_covered, format_paired, paired_vs_baseline

ORACLE_MARK = "†"
MISSING = "-"
FORMATS = ("markdown", "csv", "latex")
GROUP = ["dataset", "encoder", "selector", "learner", "budget"]


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, encoder, selector, learner, budget): mean, sample std (0 for a single
    seed), n, ci95 (half-width of the 95% t-interval of the mean; NaN for a single seed), oracle, and
    delta = mean - mean of `random` in the same cell (NaN without random)."""
    if df.empty:
        return pd.DataFrame(columns=GROUP + ["mean", "std", "n", "ci95", "oracle", "delta"])
    grouped = df.groupby(GROUP, sort=True)
    agg = grouped["top1"].agg(mean="mean", std=lambda s: float(s.std(ddof=1)) if len(s) > 1 else 0.0,
                              n="count").reset_index()
    agg["ci95"] = [ci95_halfwidth(std, n) for std, n in zip(agg["std"], agg["n"])]
    agg["oracle"] = grouped["oracle"].any().values
    baseline = agg[agg["selector"] == BASELINE].set_index(["dataset", "encoder", "learner", "budget"])["mean"]
    keys = list(zip(agg["dataset"], agg["encoder"], agg["learner"], agg["budget"]))
    agg["delta"] = [agg_mean - baseline.get(key, math.nan) for agg_mean, key in zip(agg["mean"], keys)]
    agg.loc[agg["selector"] == BASELINE, "delta"] = math.nan
    return agg


def format_cell(mean: float, std: float, n: int, delta: float | None = None, ci95: float | None = None) -> str:
    """'74.6 ± 3.1 [70.7, 78.5] (5) (+8.7)': mean ± sample std, the 95% t-interval of the mean when
    `ci95` is given, the number of seeds, then the difference to random (none for random itself or
    without a random run). A single seed shows '40.0 (1)': no fake '± 0.0'."""
    if int(n) < 2:
        text = f"{mean:.1f} ({int(n)})"
    elif ci95 is not None and not math.isnan(ci95):
        text = f"{mean:.1f} ± {std:.1f} [{mean - ci95:.1f}, {mean + ci95:.1f}] ({int(n)})"
    else:
        text = f"{mean:.1f} ± {std:.1f} ({int(n)})"
    if delta is not None and not math.isnan(delta):
        text += f" ({delta:+.1f})"
    return text


def selector_order(agg: pd.DataFrame) -> list[str]:
    """random first, then the other label-free selectors by name, then oracles (they read labels)."""
    oracle = set(agg.loc[agg["oracle"], "selector"])
    names = sorted(set(agg["selector"]))
    head = [BASELINE] if BASELINE in names else []
    return head + [n for n in names if n != BASELINE and n not in oracle] + sorted(oracle - set(head))


def row_label(name: str, oracle: set[str]) -> str:
    return f"{name} {ORACLE_MARK}" if name in oracle else name


PAIRED_NOTE = (f"Cells: wins-ties-losses of the selector against `{BASELINE}` over the seeds both ran (same "
               f"seed = same learner initialisation), the mean paired difference in points, and the p-value of a "
               f"{PAIRED_TEST} on the per-seed differences (n/a: fewer than 2 shared seeds, or the same difference on every seed).")


@dataclass
class Table:
    section: str          # data set and encoder: the caption is printed once per section
    title: str
    frame: pd.DataFrame   # strings; index = selector labels; columns = learners or budgets
    caption: str
    note: str = ""        # printed under the title (tables whose cells mean something else)


def _pivot(part: pd.DataFrame, column: str, rows: list[str], columns: list, oracle: set[str],
           column_label) -> pd.DataFrame:
    cells = {(r.selector, getattr(r, column)): format_cell(r.mean, r.std, r.n, r.delta, r.ci95)
             for r in part.itertuples()}
    data = [[cells.get((sel, col), MISSING) for col in columns] for sel in rows]
    return pd.DataFrame(data, index=[row_label(s, oracle) for s in rows],
                        columns=[column_label(c) for c in columns])


METRIC_CAPTIONS = {
    "final": "Final top-1 accuracy (%)",
    "best": ("Best top-1 accuracy (%) over the evaluations during training (as the USL FixMatch fork and USB "
             "report; chosen on the test split, so optimistic)"),
    "median20": ("Median top-1 accuracy (%) of the last 20 evaluations during training (as the FixMatch and "
                 "MixMatch papers report)"),
}


def table_metric(df: pd.DataFrame) -> str:
    """The metric the rows were read with (records.load_records(metric=...)); "final" by default."""
    if "metric" not in df.columns or df.empty:
        return "final"
    values = set(df["metric"].dropna())
    if len(values) > 1:
        raise ValueError(f"rows read with different metrics: {sorted(values)}")
    return values.pop() if values else "final"


def caption(dataset: str, encoder: str, probes: Iterable[str], oracle: set[str], metric: str = "final") -> str:
    probes = sorted(set(probes))
    text = (f"{METRIC_CAPTIONS[metric]} on the test split of {dataset}; selection and probes use encoder "
            f"`{encoder}`. Cells: mean ± sample std over seeds [95% t-interval of the mean] (number of seeds), "
            f"then the difference to `{BASELINE}` in the same column; a single seed shows its value alone; "
            f"{MISSING}: not run.")
    if oracle:
        text += f" {ORACLE_MARK}: oracle selector, reads the labels (a reference, not a competitor)."
    if probes:
        text += (f" {', '.join(probes)}: " + ("a probe on frozen features, not an SSL learner." if len(probes) == 1
                                              else "probes on frozen features, not SSL learners."))
    return text


def build_tables(df: pd.DataFrame) -> list[Table]:
    """Per data set and encoder: one selectors x learners table per budget, then one
    selectors x budgets table per learner."""
    agg = aggregate(df)
    metric = table_metric(df)
    tables: list[Table] = []
    for (dataset, encoder), part in agg.groupby(["dataset", "encoder"], sort=True):
        rows = selector_order(part)
        oracle = set(part.loc[part["oracle"], "selector"])
        probes = set(df.loc[(df["dataset"] == dataset) & (df["encoder"] == encoder) & df["probe"], "learner"])
        learners = sorted(set(part["learner"]), key=lambda n: (n not in probes, n))
        budgets = sorted(set(part["budget"]))
        cap = caption(dataset, encoder, probes, oracle, metric)
        section = f"{dataset} (encoder {encoder})"
        for budget in budgets:
            frame = _pivot(part[part["budget"] == budget], "learner", rows, learners, oracle, str)
            tables.append(Table(section, f"selectors × learners, m = {budget}", frame, cap))
        for learner in learners:
            frame = _pivot(part[part["learner"] == learner], "budget", rows, budgets, oracle, lambda b: f"m = {b}")
            tables.append(Table(section, f"selectors × budgets, learner {learner}", frame, cap))
        sub = df[(df["dataset"] == dataset) & (df["encoder"] == encoder)]
        paired = paired_vs_baseline(sub)
        if not paired.empty:
            for learner in learners:
                cells = {(r.selector, r.budget): format_paired(r.wins, r.ties, r.losses, r.mean_diff, r.p_value)
                         for r in paired[paired["learner"] == learner].itertuples()}
                paired_rows = [s for s in rows if s != BASELINE and any((s, b) in cells for b in budgets)]
                if not paired_rows:
                    continue
                frame = pd.DataFrame([[cells.get((s, b), MISSING) for b in budgets] for s in paired_rows],
                                     index=[row_label(s, oracle) for s in paired_rows],
                                     columns=[f"m = {b}" for b in budgets])
                tables.append(Table(section, f"paired comparison with {BASELINE}, learner {learner}", frame,
                                    cap, note=PAIRED_NOTE))
        covered = classes_covered(sub)
        if not covered.empty:
            cells = {(r.selector, r.budget): f"{r.covered:.1f} / {r.num_classes}" for r in covered.itertuples()}
            frame = pd.DataFrame([[cells.get((s, b), MISSING) for b in budgets] for s in rows],
                                 index=[row_label(s, oracle) for s in rows], columns=[f"m = {b}" for b in budgets])
            tables.append(Table(section, "classes covered by the labeled set (mean over seeds)", frame, cap))
    return tables


def render_markdown(tables: list[Table]) -> str:
    from tabulate import tabulate

    if not tables:
        return "No finished runs to tabulate.\n"
    parts = ["# Leaderboard", ""]
    section = None
    for table in tables:
        if table.section != section:
            section = table.section
            parts += [f"## {section}", "", table.caption, ""]
        body = tabulate(table.frame, headers=["selector"] + list(table.frame.columns), tablefmt="pipe",
                        stralign="left", disable_numparse=True)
        parts += [f"### {table.title}", ""] + ([table.note, ""] if table.note else []) + [body, ""]
    return "\n".join(parts)


def render_latex(tables: list[Table]) -> str:
    from tabulate import tabulate

    parts = []
    for table in tables:
        frame = table.frame.map(lambda c: c.replace("±", r"$\pm$"))
        frame.index = [i.replace(ORACLE_MARK, r"$^\dagger$") for i in frame.index]
        body = tabulate(frame, headers=["selector"] + list(frame.columns), tablefmt="latex_booktabs",
                        disable_numparse=True)
        body = body.replace(r"\$\textbackslash{}pm\$", r"$\pm$").replace(r"\$\^{}\textbackslash{}dagger\$",
                                                                            r"$^\dagger$")
        title = f"{table.section}: {table.title}".replace("×", "x")
        parts += [r"\begin{table}[t]", r"\centering", f"\\caption{{{title}. {_latex_escape((table.note + ' ' if table.note else '') + table.caption)}}}",
                  body, r"\end{table}", ""]
    return "\n".join(parts)


def _latex_escape(text: str) -> str:
    return (text.replace("%", r"\%").replace("_", r"\_").replace("±", r"$\pm$").replace(ORACLE_MARK, r"$^\dagger$")
            .replace("`", ""))


def render_csv(df: pd.DataFrame) -> str:
    """Tidy CSV of the aggregated cells (machine-readable: numbers, not formatted text)."""
    agg = aggregate(df)
    agg.insert(len(GROUP), "metric", table_metric(df))
    return agg.to_csv(index=False, float_format="%.4f")


def render(df: pd.DataFrame, fmt: str = "markdown") -> str:
    if fmt not in FORMATS:
        from ..errors import UserError

        raise UserError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if fmt == "csv":
        return render_csv(df)
    tables = build_tables(df)
    return render_markdown(tables) if fmt == "markdown" else render_latex(tables)
