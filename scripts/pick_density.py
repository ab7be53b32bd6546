"""How representative are the picks? Mean k-NN density percentile of every selection in a results root.

USL's utility (paper Eq. 4-8) trades density (representativeness) against a diversity regulariser;
TypiClust picks the most typical point of each cluster; random picks sit wherever the pool does.
This diagnostic ranks every pool image by USL's own k-NN density on the run's cached features (the
same k and the same cached density as `usl`, `<features>.usl_density_k{k}.npy`) and reports, for
each leaderboard row and budget, where the picks fall: percentile 0 is the densest image of the
pool, 50 is what a uniform draw gives on average. It reads labels of no image; the class columns
come from the records.

    python scripts/pick_density.py RESULTS [--dataset cifar10] [--knn-k 400] [--output FILE.md]

Used for results/cifar10/PICK_DENSITY.md (why our `usl` trails the published USL sets on
EfficientNet-Lite0 features). Prints a Markdown table; exit status 1 when no run was found.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from uslbench.harness.cache import FeatureCache  # noqa: E402
from uslbench.report.records import read_json_file, record_paths, record_row  # noqa: E402
from uslbench.selectors.toolkit import KnnParams  # noqa: E402
from uslbench.selectors.usl import cached_knn_density  # noqa: E402


def density_percentiles(mean_sq: np.ndarray) -> np.ndarray:
    """(N,) float64 mean squared k-NN distances -> (N,) percentile of each point, 0 = densest
    (smallest mean distance), 100 * (N - 1) / N = sparsest; ties share their average rank."""
    from scipy.stats import rankdata

    return (rankdata(mean_sq, method="average") - 1.0) * 100.0 / len(mean_sq)


def collect(root: Path, dataset: str | None) -> list[dict]:
    """One entry per distinct selection (learners sharing a selection count once): its row label,
    budget, seed, data set, encoder, feature key, indices, classes covered, max images per class."""
    seen: dict[tuple, str | None] = {}
    out = []
    for path in record_paths(root):
        record, problem = read_json_file(path)
        if not isinstance(record, dict) or problem is not None:
            continue
        row = record_row(record)
        indices = (record.get("selection") or {}).get("indices")
        keys = record.get("keys") or {}
        if row is None or indices is None or "features" not in keys or (dataset and row["dataset"] != dataset):
            continue
        ident = (row["dataset"], row["encoder"], keys["features"], row["selector"], row["budget"], row["seed"])
        selection = keys.get("selection")
        if ident in seen:  # learners sharing a selection: counted once
            if seen[ident] != selection:
                print(f"warning: two different selections for {row['selector']} m = {row['budget']} seed "
                      f"{row['seed']} ({seen[ident]}, {selection}; say, runs of two code versions or configs "
                      f"with one row label): kept the first; use a results root of one sweep", file=sys.stderr)
            continue
        seen[ident] = selection
        hist = row["class_histogram"] or []
        out.append(dict(dataset=row["dataset"], encoder=row["encoder"], feature_key=keys["features"],
                        selector=row["selector"], budget=row["budget"], seed=row["seed"],
                        indices=np.asarray(indices, dtype=np.int64), covered=sum(1 for c in hist if c),
                        max_per_class=max(hist) if hist else 0))
    return out


def table(root: Path, entries: list[dict], knn_k: int) -> str:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for e in entries:
        groups[(e["dataset"], e["encoder"], e["feature_key"])].append(e)
    lines = []
    for (dataset, encoder, feature_key), members in sorted(groups.items()):
        cache = FeatureCache(root, dataset, encoder, feature_key)
        loaded = cache.load(lambda m: print(f"warning: {m}", file=sys.stderr))
        if loaded is None:
            print(f"warning: no cached features for {dataset}/{encoder}-{feature_key}; skipped", file=sys.stderr)
            continue
        features = loaded[0]
        mean_sq, _, _ = cached_knn_density(features, knn_k, KnnParams(), seed=0, stats=None,
                                           cache_stem=str(cache.train_path.with_suffix("")))
        pct = density_percentiles(mean_sq)
        budgets = sorted({m["budget"] for m in members})
        cells: dict[tuple, list[tuple]] = defaultdict(list)
        for m in members:
            cells[(m["selector"], m["budget"])].append((float(pct[m["indices"]].mean()), m["covered"],
                                                         m["max_per_class"], m["seed"]))
        lines += [f"## {dataset} (encoder {encoder}, features {feature_key}, N = {len(pct):,}, k = {knn_k})", "",
                  "Mean density percentile of the picks (0 = the densest image of the pool, 50 = a uniform "
                  "draw's expectation), mean ± sample std over seeds (number of seeds); then classes covered "
                  "and the largest number of picks in one class, averaged over seeds.", "",
                  "| selector | " + " | ".join(f"m = {b}" for b in budgets) + " |",
                  "|:--|" + "--:|" * len(budgets)]
        for selector in sorted({m["selector"] for m in members}, key=str):
            row = []
            for b in budgets:
                values = sorted(cells.get((selector, b), []), key=lambda v: v[3])
                if not values:
                    row.append("-")
                    continue
                p = np.array([v[0] for v in values])
                spread = f" ± {p.std(ddof=1):.1f}" if len(p) > 1 else ""
                row.append(f"{p.mean():.1f}{spread} ({len(p)}); {np.mean([v[1] for v in values]):.1f} cls, "
                           f"max {np.mean([v[2] for v in values]):.1f}")
            lines.append(f"| {selector} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_root", type=Path)
    parser.add_argument("--dataset", default=None, help="only this data set's runs")
    parser.add_argument("--knn-k", type=int, default=400, help="k of the density (USL's CIFAR preset: 400)")
    parser.add_argument("--output", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    if args.knn_k < 1:
        parser.error("--knn-k must be a positive integer")
    entries = collect(args.results_root, args.dataset)
    if not entries:
        print(f"no finished runs with a selection under {args.results_root}"
              + (f" for data set {args.dataset}" if args.dataset else ""), file=sys.stderr)
        return 1
    text = table(args.results_root, entries, args.knn_k)
    print(text)
    if args.output is not None:
        args.output.write_text("# Where the picks fall: k-NN density percentile\n\n"
                               f"Written by `python scripts/pick_density.py RESULTS --knn-k {args.knn_k}"
                               + (f" --dataset {args.dataset}" if args.dataset else "")
                               + f" --output {args.output.name}`.\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
