"""Records: the one reader and validator of `record.json` files, and one DataFrame row per finished run.

Every reader of records (run states, the pipeline's "already done?" check, the tables) goes through
`read_record_file`, which returns the record or the reason it cannot be used: unreadable bytes,
text that is not UTF-8, text that is not JSON, or JSON that is not a record (`record_problem`).
A record that cannot be used is reported (path and reason) and treated as missing, so a sweep
runs it again. Runs of different data or encoder identities are never pooled into one cell
(`report.versions.separate_versions`).

Records of the current schema are read as they are. Records of an older schema are read when the
fields the reports need can be found (a warning says so), and skipped with a warning otherwise;
records that are not JSON never reach a table, nor do runs on your own labels without a test split
(`evaluated: false`: no accuracy, one warning counts them). Failed runs are left out unless
`include_failed=True` (the leaderboard uses it): they then come as rows with status "failed",
top1 NaN and the error, so a cell can say which of its seeds failed.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from .. import SCHEMA_VERSION
from ..harness.record_file import (ABSENT, _first, read_json_file, read_record_file,  # noqa: F401  (re-exported)
                                   record_problem, record_trait)
from .versions import data_identity, encoder_identity, separate_versions

COLUMNS = ["key", "dataset", "encoder", "selector", "learner", "budget", "seed", "top1", "oracle", "probe",
           "selection_key", "class_histogram", "num_classes", "per_class_top1", "schema", "status", "error", "metric",
           "data_id", "encoder_id", "finished"]

# --metric NAME -> how the "top1" column of a row is read (see `metric_value`)
METRICS = {
    "final": "top1 of the final evaluated model (the EMA weights for the SSL learners)",
    "best": "best top-1 over the evaluations during training (what the USL FixMatch fork and USB report)",
    "median20": "median top-1 of the last 20 evaluations (what the FixMatch and MixMatch papers report)",
}
Warn = Callable[[str], None]


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def record_paths(root: str | Path) -> list[Path]:
    """ROOT/runs/*/record.json (a results root), or every record.json below ROOT."""
    root = Path(root)
    runs = root / "runs"
    if runs.is_dir():
        return sorted(runs.glob("*/record.json"))
    return sorted(root.rglob("record.json"))



def _label(name: str | None, overrides: dict | None) -> str | None:
    """A name with its config overrides, 'fixmatch[steps=100]': runs with other settings are
    another row or column, and the table says which settings it shows."""
    if name is None or not overrides:
        return name
    return f"{name}[{','.join(f'{k}={v}' for k, v in sorted(overrides.items()))}]"


def _selector_label(record: dict) -> str | None:
    """The selector's row name: a `label` in its config (e.g. the file selector's "usl
    (published)") names the row as given, else the name with its other overrides."""
    overrides = dict(_first(record, "spec.selector_config") or {})
    label = overrides.pop("label", None)
    if label not in (None, ""):
        return str(label)
    return _label(_first(record, "spec.selector"), overrides)


def _encoder_name(record: dict) -> str:
    """The encoder's registry name: the spec's, else the one of the resolved identity (records keep
    the identity dict under resolved.encoder), else "default"."""
    return str(_first(record, "spec.encoder", "resolved.encoder.encoder") or "default")


def metric_value(metrics: dict | None, metric: str) -> float | None:
    """The top-1 of a run's metrics under `metric` (see METRICS).

    "best" reads `best_top1_over_training`, "median20" reads `median20_top1`; records written before
    those fields existed are read from their evaluation `curve` (max, or median of the last 20
    entries), and learners that evaluate once (the probes: no curve) give their only top-1."""
    if metric not in METRICS:
        from ..errors import UserError

        raise UserError(f"Unknown metric {metric!r}; use one of {', '.join(METRICS)}.")
    metrics = metrics if isinstance(metrics, dict) else {}
    top1 = metrics.get("top1")
    if metric == "final" or top1 is None:
        return top1
    stored = metrics.get("best_top1_over_training" if metric == "best" else "median20_top1")
    if stored is not None:
        return stored
    curve = [c.get("top1") for c in metrics.get("curve") or [] if isinstance(c, dict) and c.get("top1") is not None]
    if not curve:
        return top1
    if metric == "best":
        return max(curve)
    import numpy as np

    return float(np.median(curve[-20:]))


def _cell_fields(record: dict) -> dict[str, Any]:
    """The table coordinates of a record (or of a planned run's record head): data set, encoder,
    selector and learner row labels, budget and seed; values as stored (None when absent)."""
    return {
        "dataset": _first(record, "spec.dataset"),
        "encoder": _encoder_name(record),
        "selector": _selector_label(record),
        "learner": _label(_first(record, "spec.learner"), _first(record, "spec.learner_config")),
        "budget": _first(record, "resolved.budget"),
        "seed": _first(record, "spec.seed"),
    }


PlannedCell = tuple  # (dataset, encoder, selector, learner, budget, seed, run key): str x 4, int, int, str | None


def planned_cells(heads: Iterable[dict]) -> list[PlannedCell]:
    """The table coordinates of a sweep's planned runs, labelled exactly as their records will be.

    Parameters
    ----------
    heads : iterable of dict
        Record-shaped dicts with "spec" (RunSpec.to_dict()), "resolved" ({"budget", "encoder", ...})
        and "key" (the run key; may be absent): what `harness.pipeline.ResolvedRun.record_head`
        returns, one per planned run.

    Returns
    -------
    list of tuple
        (dataset, encoder, selector, learner, budget, seed, key) per run, in the order given, with
        the row labels of `record_row` ("usl (published)", "usl[lam=0.1]"); budget and seed are
        int, key a str or None (the tables follow a record's section when its data or encoder
        version relabels it, `versions.separate_versions`). Heads without a data set, selector,
        learner, budget or seed are left out (a spec without a learner is no table row).
    """
    cells = []
    for head in heads:
        fields = _cell_fields(head)
        if any(fields[k] is None for k in ("dataset", "selector", "learner", "budget", "seed")):
            continue
        try:
            cells.append((str(fields["dataset"]), fields["encoder"], fields["selector"], fields["learner"],
                          int(fields["budget"]), int(fields["seed"]), _first(head, "key")))
        except (TypeError, ValueError):
            continue
    return cells


def record_row(record: dict, metric: str = "final") -> dict[str, Any] | None:
    """The table row of one record, or None when a needed field is missing."""
    row = {
        "key": _first(record, "key"),
        **_cell_fields(record),
        "top1": metric_value(record.get("metrics"), metric),
        "oracle": record_trait(record, "selector", "needs_labels", "oracle"),
        "probe": record_trait(record, "learner", "uses_features", "probe"),
        "selection_key": _first(record, "keys.selection"),
        "class_histogram": record.get("class_histogram") or None,
        "num_classes": _first(record, "dataset_summary.num_classes"),
        "per_class_top1": _first(record, "metrics.per_class_top1"),
        "schema": record.get("schema"),
        "status": "ok",
        "error": None,
        "metric": metric,
        "data_id": data_identity(record),
        "encoder_id": encoder_identity(record),
        "finished": record.get("finished"),
    }
    needed = ("dataset", "selector", "learner", "budget", "seed", "top1")
    if any(row[k] is None for k in needed):
        return None
    try:
        row["budget"] = int(row["budget"])
        row["seed"] = int(row["seed"])
        row["top1"] = float(row["top1"])
    except (TypeError, ValueError):
        return None
    return row


def failed_row(record: dict, metric: str = "final") -> dict[str, Any] | None:
    """The row of a failed run: its cell and seed, top1 NaN, status "failed" and the error's first
    line; None when the record does not say which run it was."""
    row = record_row({**record, "metrics": {"top1": float("nan")}}, metric)
    if row is not None:
        error = str(record.get("error") or "no error message recorded").strip()
        row.update(status="failed", error=error.splitlines()[0] if error else error)
    return row


def load_records(root_or_paths: str | Path | Iterable[Path], warn: Warn = _warn,
                 keys: set[str] | None = None, include_failed: bool = False, metric: str = "final") -> pd.DataFrame:
    """A DataFrame (COLUMNS) of the finished runs under a results root (or of the given files).
    `keys`: only these run keys (a sweep's leaderboard shows that sweep's runs).
    `include_failed`: also failed runs, as rows with status "failed" and top1 NaN. `metric`: which
    top-1 fills the "top1" column (METRICS: final, best, median20)."""
    metric_value({}, metric)  # unknown metric: UserError before reading anything
    if isinstance(root_or_paths, (str, Path)):
        paths = record_paths(root_or_paths)
    else:
        paths = list(root_or_paths)
    rows, other_schema, unevaluated = [], [], []
    for path in paths:
        if keys is not None and path.parent.name not in keys:
            continue
        record, unreadable = read_json_file(path)
        if record is ABSENT:
            continue
        if unreadable is not None:
            warn(f"skipped unreadable record {path}: it {unreadable}; treated as missing (a sweep runs it again)")
            continue
        if record.get("evaluated") is False if isinstance(record, dict) else False:
            unevaluated.append(path)  # run --labels without a test split: predictions, no accuracy
            continue
        problem = record_problem(record)
        if problem is not None:
            schema = record.get("schema") if isinstance(record, dict) else None
            if type(schema) is int and 0 <= schema < SCHEMA_VERSION:  # a declared older layout: counted below
                other_schema.append(path)
            else:
                warn(f"skipped invalid record {path}: it {problem}; treated as missing (a sweep runs it again)")
            continue
        if record.get("status", "ok") != "ok":
            if include_failed and record.get("status") == "failed":
                row = failed_row(record, metric)
                if row is not None:
                    rows.append(row)
            continue
        if record.get("schema") != SCHEMA_VERSION:
            other_schema.append(path)
            continue
        row = record_row(record, metric)
        if row is None:
            warn(f"skipped record {path}: it lacks the spec or the top-1 metric")
            continue
        rows.append(row)
    if unevaluated:
        warn(f"skipped {len(unevaluated)} run(s) without a test split (no accuracy to rank; their predictions.csv "
             f"is in the run folder), e.g. {unevaluated[0].parent}")
    if other_schema:
        warn(f"skipped {len(other_schema)} record(s) of another schema than {SCHEMA_VERSION}, e.g. "
             f"{other_schema[0]}; re-run them with this version to include them")
    return separate_versions(pd.DataFrame(rows, columns=COLUMNS), warn)
