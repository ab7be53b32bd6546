"""Paper-style tables: rows = selectors, columns = learners (per data set and budget) or budgets
(per data set and learner); cells `mean ± std (n)` over seeds with the difference to `random`.

No seed drops out of a cell silently: a cell's expected seeds are the seeds its sweep planned
for that row (when the tables are given the plan: `planned`, after a sweep), else the seeds run
anywhere in its column (same data set, encoder, learner and budget). A grid may plan a row with
fewer seeds on purpose (a sweep file's `extra_grids`: published selections exist for seeds 1, 2
and 5 only); with the plan, such a row is complete. A cell that averages fewer shows `(n=4/5)`,
and a note under the table names each missing seed: failed (with the error) or not run. A cell
whose every seed failed, or a planned cell without any record, shows `no score (n=0/5)`.

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


Planned = Iterable[tuple]  # (dataset, encoder, selector, learner, budget, seed[, run key]): records.planned_cells


def planned_seeds(planned: Planned | None, df: pd.DataFrame | None = None) -> dict[tuple, set[int]] | None:
    """{(dataset, encoder, selector, learner, budget): the seeds planned for that cell}, or None
    without a plan.

    `versions.separate_versions` may have relabelled a record's data set or encoder ("digits
    @3f2a91"; a run that reads no features is shown in each encoder version). A planned run given
    with its run key (7th item) whose record is in `df` lands in the section(s) of that record; one
    without a record lands where the recorded runs of its cell landed (else those of its data set
    and encoder, else under its own labels), so its seed is expected beside theirs."""
    if planned is None:
        return None
    sections: dict[str, set[tuple]] = {}
    if df is not None and not df.empty and "key" in df.columns:
        for key, dataset, encoder in zip(df["key"], df["dataset"], df["encoder"]):
            sections.setdefault(key, set()).add((dataset, encoder))
    entries = [(tuple(entry[:4]) + (int(entry[4]), int(entry[5])), entry[6] if len(entry) > 6 else None)
               for entry in planned]
    by_cell: dict[tuple, set[tuple]] = {}
    by_section: dict[tuple, set[tuple]] = {}
    for cell, run_key in entries:
        for section in sections.get(run_key, ()):
            by_cell.setdefault(cell[:5], set()).add(section)
            by_section.setdefault(cell[:2], set()).add(section)
    seeds: dict[tuple, set[int]] = {}
    for cell, run_key in entries:
        found = (sections.get(run_key) or by_cell.get(cell[:5]) or by_section.get(cell[:2])
                 or {cell[:2]})
        for section in sorted(found):
            seeds.setdefault((*section, *cell[2:5]), set()).add(cell[5])
    return seeds


def aggregate(df: pd.DataFrame, planned: Planned | None = None) -> pd.DataFrame:
    """One row per (dataset, encoder, selector, learner, budget): mean, sample std (0 for a single
    seed), n (scored runs), ci95 (half-width of the 95% t-interval of the mean; NaN below 2 seeds),
    oracle, delta = mean - mean of `random` in the same cell (NaN without
    random), and the seed accounting: n_expected (n plus the expected seeds this cell lacks),
    seeds_failed and seeds_missing (space-separated seeds; "" when none). Rows with status
    "failed" (load_records(include_failed=True)) count as failed seeds, never as scores.

    A cell's expected seeds: without `planned`, the seeds run anywhere in its column (same data
    set, encoder, learner and budget). With `planned` ((dataset, encoder, selector, learner,
    budget, seed[, run key]) tuples labelled like the records: `records.planned_cells`), the seeds
    planned for the cell itself, and every planned cell is a row, one without any record as n = 0
    with all its seeds missing; a cell of `df` the plan does not name keeps the column rule."""
    plan = planned_seeds(planned, df)
    if df.empty and not plan:
        return pd.DataFrame(columns=GROUP + ["mean", "std", "n", "ci95", "oracle", "delta"] + SEED_COLUMNS)
    if df.empty:
        df = pd.DataFrame(columns=GROUP + ["seed", "top1", "oracle"])
    scored_mask = df["top1"].notna()
    if "status" in df.columns:
        scored_mask &= df["status"].fillna("ok") == "ok"
    column_seeds = {key: set(part["seed"]) for key, part in df.groupby(COLUMN, sort=True)}
    rows = []
    for key, part in df.groupby(GROUP, sort=True):
        scored = part.loc[scored_mask[part.index], "top1"].astype(float)
        ok_seeds = set(part.loc[scored_mask[part.index], "seed"])
        failed = sorted(set(part.loc[~scored_mask[part.index], "seed"]) - ok_seeds)
        if plan is not None and key in plan:
            expected = plan[key]
        else:
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
    seen = set(df.groupby(GROUP, sort=True).groups) if not df.empty else set()
    oracle = set(df.loc[df["oracle"].astype(bool), "selector"]) if not df.empty else set()
    for key, seeds in (plan or {}).items():
        if key in seen:
            continue
        rows.append({**dict(zip(GROUP, key)), "mean": math.nan, "std": math.nan, "n": 0, "ci95": math.nan,
                     "oracle": key[2] in oracle, "n_expected": len(seeds), "seeds_failed": "",
                     "seeds_missing": " ".join(str(v) for v in sorted(seeds))})
    agg = pd.DataFrame(rows).sort_values(GROUP, kind="stable", ignore_index=True)
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
    """random first, then the other label-free selectors by name (a config variant such as
    `usl[lam=0.1]` right after its selector), then rows with a free label such as
    `usl (published)` (a file selector's `label`), then oracles (they read labels)."""
    oracle = set(agg.loc[agg["oracle"], "selector"])
    names = sorted(set(agg["selector"]), key=lambda name: (" " in name, name))
    head = [BASELINE] if BASELINE in names else []
    return head + [n for n in names if n != BASELINE and n not in oracle] + sorted(oracle - set(head))


def row_label(name: str, oracle: set[str]) -> str:
    return f"{name} {ORACLE_MARK}" if name in oracle else name


PAIRED_NOTE = (f"Cells: wins-ties-losses of the selector against `{BASELINE}` over the seeds both ran (seed s "
               f"against seed s: for the SSL learners the same seed is the same initialisation and data order; for "
               f"the deterministic probes the seed only changes the selection, so the pairing is by seed index), "
               f"the mean paired difference in points, and the p-value of a {PAIRED_TEST} on the per-seed "
               f"differences (n/a: fewer than 2 shared seeds, or the same difference on every seed). One test per "
               f"cell, not corrected for the number of cells.")


@dataclass
class Table:
    section: str          # data set and encoder: the caption is printed once per section
    title: str
    frame: pd.DataFrame   # strings; index = selector labels; columns = learners or budgets
    caption: str
    notes: list[str] = field(default_factory=list)  # cells missing seeds: which, and why
    note: str = ""        # printed under the title (tables whose cells mean something else)
    planned: bool = False  # expected seeds from the sweep's plan (else: the seeds run in the column)

    @property
    def note_text(self) -> str:
        expected = "of the N seeds planned" if self.planned else "of the N seeds run in its column"
        return (f"n=k/N: the cell averages k {expected}; missing seeds: "
                + " · ".join(self.notes) + ".") if self.notes else ""


def _pivot(part: pd.DataFrame, column: str, rows: list[str], columns: list, oracle: set[str],
           column_label) -> pd.DataFrame:
    cells = {(r.selector, getattr(r, column)): format_cell(r.mean, r.std, r.n, r.delta, r.n_expected, r.ci95)
             for r in part.itertuples()}
    # a row with no cell in this table (e.g. a set published at one budget only) is left out
    kept = [sel for sel in rows if any((sel, col) in cells for col in columns)]
    data = [[cells.get((sel, col), MISSING) for col in columns] for sel in kept]
    return pd.DataFrame(data, index=[row_label(s, oracle) for s in kept],
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


def build_tables(df: pd.DataFrame, planned: Planned | None = None) -> list[Table]:
    """Per data set and encoder: one selectors x learners table per budget, then one
    selectors x budgets table per learner. `planned`: the sweep's planned runs (see `aggregate`)."""
    if df.empty:  # no record at all: nothing to tabulate, planned or not
        return []
    agg = aggregate(df, planned)
    is_planned = planned is not None
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
            tables.append(Table(section, f"selectors × learners, m = {budget}", frame, cap, seed_notes(cells, df),
                                planned=is_planned))
        for learner in learners:
            cells = part[part["learner"] == learner]
            frame = _pivot(cells, "budget", rows, budgets, oracle, lambda b: f"m = {b}")
            tables.append(Table(section, f"selectors × budgets, learner {learner}", frame, cap,
                                seed_notes(cells, df), planned=is_planned))
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


def render_csv(df: pd.DataFrame, planned: Planned | None = None) -> str:
    """Tidy CSV of the aggregated cells (machine-readable: numbers, not formatted text)."""
    agg = aggregate(df, planned)
    agg.insert(len(GROUP), "metric", table_metric(df))
    return agg.to_csv(index=False, float_format="%.4f")


def render(df: pd.DataFrame, fmt: str = "markdown", planned: Planned | None = None) -> str:
    """The leaderboard text in `fmt` (FORMATS); `planned`: the sweep's planned runs (see `aggregate`)."""
    if fmt not in FORMATS:
        from ..errors import UserError

        raise UserError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if fmt == "csv":
        return render_csv(df, planned)
    tables = build_tables(df, planned)
    return render_markdown(tables) if fmt == "markdown" else render_latex(tables)
