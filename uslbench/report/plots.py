"""PNG plots: the class distribution of each selector's labeled set (paper Fig. 5) and accuracy
vs budget per selector with a ±1 std band over seeds."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .stats import per_class_table
from .tables import ORACLE_MARK, aggregate, selector_order


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


def class_distribution_plots(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One figure per (data set, encoder, budget): a panel per selector with the share of the
    labeled set in each class, averaged over seeds (each selection counted once, whatever the
    number of learners trained on it). The dashed line is the uniform share 1/C."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    usable = df[df["class_histogram"].notna()]
    if usable.empty:
        return written
    usable = usable.drop_duplicates(subset=["dataset", "encoder", "selector", "budget", "seed", "selection_key"])
    agg_order = aggregate(df)
    for (dataset, encoder, budget), part in usable.groupby(["dataset", "encoder", "budget"], sort=True):
        selectors = [s for s in selector_order(agg_order[agg_order["dataset"] == dataset]) if s in set(part["selector"])]
        oracle = set(part.loc[part["oracle"], "selector"])
        columns = min(4, len(selectors))
        rows = math.ceil(len(selectors) / columns)
        fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), sharey=True, squeeze=False)
        for ax, selector in zip(axes.flat, selectors):
            hists = np.array([np.asarray(h, dtype=float) for h in part.loc[part["selector"] == selector,
                                                                          "class_histogram"]])
            shares = (hists / hists.sum(axis=1, keepdims=True)).mean(axis=0)
            n_classes = len(shares)
            ax.bar(np.arange(n_classes), shares, color="tab:red" if selector in oracle else "tab:blue")
            ax.axhline(1.0 / n_classes, color="black", linestyle="--", linewidth=0.8)
            label = f"{selector} {ORACLE_MARK}" if selector in oracle else selector
            covered = float(np.mean((hists > 0).sum(axis=1)))
            ax.set_title(f"{label} (classes hit {covered:.1f}/{n_classes})", fontsize=9)
            ax.set_xticks(np.arange(n_classes))
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(selectors):]:
            ax.axis("off")
        for ax in axes[:, 0]:
            ax.set_ylabel("share of labeled set", fontsize=8)
        fig.suptitle(f"{dataset}: class distribution of the selected labels, m = {budget} "
                     f"(mean over seeds; dashed: uniform)", fontsize=10)
        written.append(_save(fig, out_dir / f"class_distribution_{_safe(dataset)}_{_safe(encoder)}_m{budget}.png"))
    return written


def accuracy_vs_budget_plots(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One figure per (data set, encoder, learner): mean top-1 vs budget per selector, ±1 std band."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    agg = aggregate(df)
    written = []
    for (dataset, encoder, learner), part in agg.groupby(["dataset", "encoder", "learner"], sort=True):
        fig, ax = plt.subplots(figsize=(8.5, 4.5))
        order = selector_order(part)
        tab20 = plt.get_cmap("tab20").colors
        colours = tab20[::2] + tab20[1::2]  # the 10 dark tones, then their light pairs; markers differ too
        markers = "osD^v<>pPX*h"
        for i, selector in enumerate(order):
            rows = part[part["selector"] == selector].sort_values("budget")
            oracle = bool(rows["oracle"].any())
            label = f"{selector} {ORACLE_MARK}" if oracle else selector
            # each series a little to the side on the log axis, so equal budgets do not hide each other
            x = rows["budget"].to_numpy(dtype=float) * 1.025 ** (i - (len(order) - 1) / 2)
            ax.errorbar(x, rows["mean"], yerr=rows["std"].fillna(0.0), marker=markers[i % len(markers)],
                        color=colours[i % len(colours)], label=label, capsize=2,
                        linestyle="--" if oracle else "-", linewidth=2.2 if selector == "usl" else 1.2,
                        markersize=5)
        budgets = sorted(set(part["budget"]))
        ax.set_xscale("log")
        ax.set_xticks(budgets)
        ax.set_xticklabels([str(b) for b in budgets])
        ax.minorticks_off()
        ax.set_xlabel("labeling budget m (log scale)")
        ax.set_ylabel("final top-1 on the test split (%)")
        ax.set_title(f"{dataset} · learner {learner}\nencoder {encoder}; mean ± std over seeds (bars)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        written.append(_save(fig, out_dir / f"accuracy_vs_budget_{_safe(dataset)}_{_safe(encoder)}_{_safe(learner)}.png"))
    return written


def per_class_plots(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One heatmap per (data set, encoder, learner, budget): rows = selectors, columns = classes,
    colour and text = per-class test accuracy (%) averaged over seeds. Shows which classes a
    selector's labeled set leaves the learner unable to recognise."""
    table = per_class_table(df)
    if table.empty:
        return []
    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    agg = aggregate(df)
    written = []
    for (dataset, encoder, learner, budget), part in table.groupby(["dataset", "encoder", "learner", "budget"],
                                                                   sort=True):
        order = [s for s in selector_order(agg[agg["dataset"] == dataset]) if s in set(part["selector"])]
        classes = sorted(set(part["class"]))
        grid = part.pivot(index="selector", columns="class", values="mean").reindex(index=order, columns=classes)
        fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(classes), 0.9 + 0.42 * len(order)))
        image = ax.imshow(grid.to_numpy(dtype=float), vmin=0, vmax=100, cmap="viridis", aspect="auto")
        if len(classes) <= 20:
            for i in range(len(order)):
                for j in range(len(classes)):
                    value = grid.iat[i, j]
                    if not math.isnan(value):
                        ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                                color="white" if value < 50 else "black")
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels(order, fontsize=8)
        ax.set_xticks(range(len(classes)))
        ax.set_xticklabels([str(c) for c in classes], fontsize=7)
        ax.set_xlabel("class")
        fig.colorbar(image, ax=ax, fraction=0.04, label="top-1 (%)")
        ax.set_title(f"{dataset} · {learner} · m = {budget}: per-class accuracy (mean over seeds)", fontsize=9)
        written.append(_save(fig, out_dir / f"per_class_{_safe(dataset)}_{_safe(encoder)}_{_safe(learner)}_m{budget}.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # legends placed outside the axes included
    plt.close(fig)
    return path
