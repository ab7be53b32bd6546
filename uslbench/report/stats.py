"""Statistics researchers expect next to a leaderboard cell.

- `ci95_halfwidth`: half-width of the two-sided 95% Student-t confidence interval of a mean over
  seeds, ``t_{0.975, n-1} * s / sqrt(n)`` (undefined for a single seed).
- `paired_vs_baseline`: each selector against ``random`` over the seeds both ran with the same
  data set, encoder, learner and budget: wins / ties / losses, the mean paired difference and the
  two-sided **paired t-test** p-value (``scipy.stats.ttest_rel``). Seed s pairs with seed s: for
  the SSL learners that is the same initialisation and data order, so the paired test removes the
  seed's share of the variance (Demšar, "Statistical Comparisons of Classifiers over Multiple Data
  Sets", JMLR 2006, discusses paired tests over repeated runs); for the deterministic probes
  (linear, knn, labelprop) the seed only changes the selection and the pairing is by seed index.
  No correction for the number of cells tested.
- `per_class_table`: per-class test accuracy (records hold ``metrics.per_class_top1``) averaged
  over seeds, long format for a CSV and a heatmap.
- `classes_covered`: how many classes each labeled set hits (from the records' class histograms).

All functions are pure over the DataFrame of `report.records.load_records`; scipy does the maths.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

BASELINE = "random"
CELL = ["dataset", "encoder", "learner", "budget"]
PAIRED_COLUMNS = CELL + ["selector", "n_pairs", "wins", "ties", "losses", "mean_diff", "p_value", "test"]
PAIRED_TEST = "paired t-test, two-sided"


def ci95_halfwidth(std: float, n: int) -> float:
    """Half-width (same unit as `std`, here accuracy points) of the 95% t-interval of a mean.

    Parameters
    ----------
    std : float
        Sample standard deviation (ddof=1) over the n seeds.
    n : int
        Number of seeds.

    Returns
    -------
    float
        ``t.ppf(0.975, n - 1) * std / sqrt(n)``; NaN when n < 2 (no interval from one seed).
    """
    from scipy import stats

    n = int(n)
    if n < 2 or not math.isfinite(std):
        return math.nan
    return float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))


def paired_p_value(diffs: np.ndarray) -> float:
    """Two-sided paired t-test p-value of the mean of `diffs` (selector minus baseline, per seed).

    NaN with fewer than 2 pairs, and when the differences are all equal and non-zero (zero
    variance: the t statistic is undefined); 1.0 when every difference is 0.
    """
    from scipy import stats

    diffs = np.asarray(diffs, dtype=float)
    if diffs.size < 2:
        return math.nan
    if np.all(diffs == diffs[0]):
        return 1.0 if diffs[0] == 0 else math.nan
    return float(stats.ttest_1samp(diffs, 0.0).pvalue)


def paired_vs_baseline(df: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Each selector against `baseline` over the seeds both ran, per (data set, encoder, learner, budget).

    Parameters
    ----------
    df : DataFrame
        Rows of `load_records` (needs dataset, encoder, selector, learner, budget, seed, top1).
        When a seed occurs twice for one selector in a cell (it should not) the mean is used.

    Returns
    -------
    DataFrame
        Columns `PAIRED_COLUMNS`: n_pairs (shared seeds), wins / ties / losses of the selector,
        mean_diff (selector - baseline, accuracy points), p_value (paired t-test, see
        `paired_p_value`), test (the test's name). No rows for the baseline itself, or for cells
        without a baseline run.
    """
    if df.empty:
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    per_seed = df.groupby(CELL + ["selector", "seed"], sort=True)["top1"].mean().reset_index()
    rows = []
    for key, part in per_seed.groupby(CELL, sort=True):
        base = part[part["selector"] == baseline].set_index("seed")["top1"]
        if base.empty:
            continue
        for selector, runs in part[part["selector"] != baseline].groupby("selector", sort=True):
            runs = runs.set_index("seed")["top1"]
            shared = sorted(set(runs.index) & set(base.index))
            diffs = np.array([runs[s] - base[s] for s in shared], dtype=float)
            rows.append(dict(zip(CELL, key), selector=selector, n_pairs=len(shared),
                             wins=int((diffs > 0).sum()), ties=int((diffs == 0).sum()),
                             losses=int((diffs < 0).sum()),
                             mean_diff=float(diffs.mean()) if len(diffs) else math.nan,
                             p_value=paired_p_value(diffs), test=PAIRED_TEST))
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def format_paired(wins: int, ties: int, losses: int, mean_diff: float, p_value: float) -> str:
    """'4-0-1 (+3.2, p=0.031)': wins-ties-losses against the baseline over shared seeds, the mean
    paired difference and the p-value; '-' without shared seeds."""
    if wins + ties + losses == 0:
        return "-"
    p = "p n/a" if math.isnan(p_value) else (f"p={p_value:.3f}" if p_value >= 0.001 else "p<0.001")
    return f"{wins}-{ties}-{losses} ({mean_diff:+.1f}, {p})"


def classes_covered(df: pd.DataFrame) -> pd.DataFrame:
    """Mean number of classes with at least one labeled image, per (data set, encoder, selector,
    budget), each selection counted once whatever the number of learners trained on it.

    Returns columns dataset, encoder, selector, budget, covered (mean over seeds), num_classes, n.
    """
    columns = ["dataset", "encoder", "selector", "budget", "covered", "num_classes", "n"]
    usable = df[df["class_histogram"].notna()] if "class_histogram" in df else df.iloc[0:0]
    if usable.empty:
        return pd.DataFrame(columns=columns)
    usable = usable.drop_duplicates(subset=["dataset", "encoder", "selector", "budget", "seed", "selection_key"])
    rows = []
    for key, part in usable.groupby(["dataset", "encoder", "selector", "budget"], sort=True):
        hists = [np.asarray(h) for h in part["class_histogram"]]
        rows.append(dict(zip(["dataset", "encoder", "selector", "budget"], key),
                         covered=float(np.mean([(h > 0).sum() for h in hists])),
                         num_classes=int(max(len(h) for h in hists)), n=len(hists)))
    return pd.DataFrame(rows, columns=columns)


def per_class_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per-class test accuracy (%) averaged over seeds, long format.

    Returns columns dataset, encoder, selector, learner, budget, class, mean, std, n; empty when no
    record holds `per_class_top1`. A class absent from the test split (None in the record) is left
    out of that seed's average.
    """
    columns = ["dataset", "encoder", "selector", "learner", "budget", "class", "mean", "std", "n"]
    if "per_class_top1" not in df:
        return pd.DataFrame(columns=columns)
    usable = df[df["per_class_top1"].notna()]
    rows = []
    for row in usable.itertuples():
        for cls, value in enumerate(row.per_class_top1):
            if value is not None:
                rows.append({"dataset": row.dataset, "encoder": row.encoder, "selector": row.selector,
                             "learner": row.learner, "budget": row.budget, "class": cls, "value": float(value)})
    if not rows:
        return pd.DataFrame(columns=columns)
    long = pd.DataFrame(rows)
    out = (long.groupby(["dataset", "encoder", "selector", "learner", "budget", "class"], sort=True)["value"]
           .agg(mean="mean", std=lambda s: float(s.std(ddof=1)) if len(s) > 1 else math.nan, n="count")
           .reset_index())
    return out[columns]


def per_seed_table(df: pd.DataFrame) -> pd.DataFrame:
    """The raw rows, one per run (seed), sorted, with classes covered: the per-seed CSV."""
    columns = ["dataset", "encoder", "selector", "learner", "budget", "seed", "top1", "classes_covered", "key"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    out = df.copy()
    out["classes_covered"] = pd.array([int((np.asarray(h) > 0).sum()) if isinstance(h, (list, tuple, np.ndarray))
                                       else None for h in out["class_histogram"]], dtype="Int64")
    return out.sort_values(["dataset", "encoder", "learner", "budget", "selector", "seed"])[columns]
