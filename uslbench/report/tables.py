"""Paper-style tables: rows = selectors, columns = learners (per data set and budget) or budgets
(per data set and learner); cells `mean ± std (n)` over seeds with the difference to `random`.

No seed drops out of a cell silently: a cell's expected seeds are the seeds run anywhere in its
column (same data set, encoder, learner and budget). A cell that averages fewer shows
`(n=4/5)`, and a note under the table names each missing seed: failed (with the error) or not
run. A cell whose every seed failed shows `no score (n=0/5)`.

The maths (aggregation, deltas) lives in small pure functions that tests check by hand; the
text is rendered with tabulate (markdown, LaTeX) and pandas (CSV).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import pandas as pd

from .stats import BASELINE, PAIRED_TEST, ci95_halfwidth, classes_covered, format_paired, paired_vs_baseline

ORACLE_MARK = "†"
MISSING = "-"
FORMATS = ("markdown", "csv", "latex")
GROUP = ["dataset", "encoder", "selector", "learner", "budget"]


COLUMN = ["dataset", "encoder", "learner", "budget"]
SEED_COLUMNS = ["n_expected", "seeds_failed", "seeds_missing"]


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, encoder, selector, learner, budget): mean, sample std (0 for a single
    seed), n (scored runs), ci95 (half-width of the 95% t-interval of the mean; NaN below 2 seeds),
    oracle, delta = mean - mean of `random` in the same cell (NaN without
    random), and the seed accounting: n_expected (n plus the seeds of the column this cell lacks),
    seeds_failed and seeds_missing (space-separated seeds; "" when none). Rows with status
    "failed" (load_records(include_failed=True)) count as failed seeds, never as scores."""
    if df.empty:
        return pd.DataFrame(columns=GROUP + ["mean", "std", "n", "ci95", "oracle", "delta"] + SEED_COLUMNS)
    scored_mask = df["top1"].notna()
    if "status" in df.columns:
        scored_mask &= df["status"].fillna("ok") == "ok"
    column_seeds = {key: set(part["seed"]) for key, part in df.groupby(COLUMN, sort=True)}
    rows = []
    for key, part in df.groupby(GROUP, sort=True):
        scored = part.loc[scored_mask[part.index], "top1"].astype(float)
        ok_seeds = set(part.loc[scored_mask[part.index], "seed"])
        failed = sorted(set(part.loc[~scored_mask[part.index], "seed"]) - ok_seeds)
        expected = column_seeds[(key[0], key[1], key[3], key[4])]
        missing = sorted(expected - ok_seeds - set(failed))
        n = int(len(scored))
        rows.append({**dict(zip(GROUP, key)),
                     "mean": float(scored.mean()) if n else math.nan,
                     "std": float(scored.std(ddof=1)) if n > 1 else (0.0 if n else math.nan),
                     "n": n, "ci95": ci95_halfwidth(float(scored.std(ddof=1)), n) if n > 1 else math.nan,
                     "oracle": bool(part["oracle"].any()),
                     "n_expected": n + len(failed) + len(missing),
                     "seeds_failed": " ".join(str(int(v)) for v in failed),
                     "seeds_missing": " ".join(str(int(v)) for v in missing)})
    agg = pd.DataFrame(rows)
    baseline = agg[agg["selector"] == BASELINE].set_index(["dataset", "encoder", "learner", "budget"])["mean"]
    keys = list(zip(agg["dataset"], agg["encoder"], agg["learner"], agg["budget"]))
    agg["delta"] = [agg_mean - baseline.get(key, math.nan) for agg_mean, key in zip(agg["mean"], keys)]
    agg.loc[agg["selector"] == BASELINE, "delta"] = math.nan
    return agg[GROUP + ["mean", "std", "n", "ci95", "oracle", "delta"] + SEED_COLUMNS]


def scored_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The runs that have a score (status ok and a top-1): what the paired and per-seed tables use."""
    mask = df["top1"].notna()
    if "status" in df.columns:
        mask &= df["status"].fillna("ok") == "ok"
    return df[mask]


def format_cell(mean: float, std: float, n: int, delta: float | None = None, n_expected: int | None = None,
                ci95: float | None = None) -> str:
    """'74.6 ± 3.1 [70.7, 78.5] (5) (+8.7)': mean ± sample std, the 95% t-interval of the mean when
    `ci95` is given, the number of seeds, then the difference to random (none for random itself or
    without a random run). A single seed shows '40.0 (1)': no fake '± 0.0'. A cell that averages
    fewer seeds than its column ran: '74.6 ± 3.1 (n=4/5) (+8.7)'; none at all: 'no score (n=0/5)'."""
    incomplete = n_expected is not None and int(n) < int(n_expected)
    if incomplete and int(n) == 0:
        return f"no score (n=0/{int(n_expected)})"
    count = f"n={int(n)}/{int(n_expected)}" if incomplete else f"{int(n)}"
    if int(n) < 2:
        text = f"{mean:.1f} ({count})"
    elif ci95 is not None and not math.isnan(ci95):
        text = f"{mean:.1f} ± {std:.1f} [{mean - ci95:.1f}, {mean + ci95:.1f}] ({count})"
    else:
        text = f"{mean:.1f} ± {std:.1f} ({count})"
    if delta is not None and not math.isnan(delta):
        text += f" ({delta:+.1f})"
    return text


def seed_notes(part: pd.DataFrame, df: pd.DataFrame) -> list[str]:
    """One line per incomplete cell of `part` (aggregated rows): which seeds are missing and why."""
    notes = []
    for r in part.itertuples():
        if r.n >= r.n_expected:
            continue
        reasons = []
        for seed in (int(v) for v in r.seeds_failed.split()):
            errors = df.loc[(df["dataset"] == r.dataset) & (df["encoder"] == r.encoder) & (df["selector"] == r.selector)
                            & (df["learner"] == r.learner) & (df["budget"] == r.budget) & (df["seed"] == seed)
                            & df["top1"].isna(), "error"] if "error" in df.columns else pd.Series(dtype=object)
            error = next((str(e) for e in errors if isinstance(e, str) and e), "no error recorded")
            reasons.append(f"seed {seed} failed ({error[:100]}{'...' if len(error) > 100 else ''})")
        missing = r.seeds_missing.split()
        if missing:
            reasons.append(f"seed{'s' if len(missing) > 1 else ''} {', '.join(missing)} not run (no record)")
        notes.append(f"{r.selector} / {r.learner} / m = {r.budget}: {'; '.join(reasons)}")
    return notes


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
               f"{PAIRED_TEST} on the per-seed differences (n/a: fewer than 2 shared seeds, or the same difference "
               f"on every seed).")


@dataclass
class Table:
    section: str          # data set and encoder: the caption is printed once per section
    title: str
    frame: pd.DataFrame   # strings; index = selector labels; columns = learners or budgets
    caption: str
    notes: list[str] = field(default_factory=list)  # cells missing seeds: which, and why
    note: str = ""        # printed under the title (tables whose cells mean something else)

    @property
    def note_text(self) -> str:
        return ("n=k/N: the cell averages k of the N seeds run in its column; missing seeds: "
                + " · ".join(self.notes) + ".") if self.notes else ""


def _pivot(part: pd.DataFrame, column: str, rows: list[str], columns: list, oracle: set[str],
           column_label) -> pd.DataFrame:
    cells = {(r.selector, getattr(r, column)): format_cell(r.mean, r.std, r.n, r.delta, r.n_expected, r.ci95)
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
            cells = part[part["budget"] == budget]
            frame = _pivot(cells, "learner", rows, learners, oracle, str)
            tables.append(Table(section, f"selectors × learners, m = {budget}", frame, cap, seed_notes(cells, df)))
        for learner in learners:
            cells = part[part["learner"] == learner]
            frame = _pivot(cells, "budget", rows, budgets, oracle, lambda b: f"m = {b}")
            tables.append(Table(section, f"selectors × budgets, learner {learner}", frame, cap,
                                seed_notes(cells, df)))
        sub = scored_rows(df[(df["dataset"] == dataset) & (df["encoder"] == encoder)])
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
        if table.notes:
            parts += [table.note_text, ""]
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
        notes = [r"\par\footnotesize " + _latex_escape(table.note_text)] if table.notes else []
        parts += [r"\begin{table}[t]", r"\centering", f"\\caption{{{title}. {_latex_escape((table.note + ' ' if table.note else '') + table.caption)}}}",
                  body, *notes, r"\end{table}", ""]
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
