"""Records -> one pandas DataFrame row per finished run.

Records of the current schema are read as they are. Records of an older schema are read when the
fields the reports need can be found (a warning says so), and skipped with a warning otherwise;
records that are not JSON never reach a table. Failed runs are left out unless
`include_failed=True` (the leaderboard uses it): they then come as rows with status "failed",
top1 NaN and the error, so a cell can say which of its seeds failed.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from .. import SCHEMA_VERSION

COLUMNS = ["key", "dataset", "encoder", "selector", "learner", "budget", "seed", "top1", "oracle", "probe",
           "selection_key", "class_histogram", "num_classes", "per_class_top1", "schema", "status", "error", "metric"]

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


def _first(record: dict, *paths: str) -> Any:
    for path in paths:
        value: Any = record
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None


def _label(name: str | None, overrides: dict | None) -> str | None:
    """A name with its config overrides, 'fixmatch[steps=100]': runs with other settings are
    another row or column, and the table says which settings it shows."""
    if name is None or not overrides:
        return name
    return f"{name}[{','.join(f'{k}={v}' for k, v in sorted(overrides.items()))}]"


def _encoder_name(record: dict) -> str:
    """The encoder's registry name: the spec's, else the resolved identity's (records keep the
    identity dict under resolved.encoder), else "default"."""
    value = _first(record, "spec.encoder", "resolved.encoder", "encoder")
    if isinstance(value, dict):
        value = value.get("encoder") or value.get("name")
    return str(value) if value else "default"


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


def record_row(record: dict, metric: str = "final") -> dict[str, Any] | None:
    """The table row of one record (its "top1" read under `metric`), or None when a needed field
    is missing."""
    row = {
        "key": _first(record, "key"),
        "dataset": _first(record, "spec.dataset", "dataset"),
        "encoder": _encoder_name(record),
        "selector": _label(_first(record, "spec.selector", "selector"), _first(record, "spec.selector_config")),
        "learner": _label(_first(record, "spec.learner", "learner"), _first(record, "spec.learner_config")),
        "budget": _first(record, "resolved.budget", "spec.budget", "budget"),
        "seed": _first(record, "spec.seed", "seed"),
        "top1": (metric_value(record.get("metrics"), metric) if isinstance(record.get("metrics"), dict)
                 else _first(record, "top1", "accuracy") if metric == "final" else None),
        "oracle": "oracle" in (record.get("selector_tags") or []),
        "probe": "probe" in (record.get("learner_tags") or []),
        "selection_key": _first(record, "keys.selection", "selection.key"),
        "class_histogram": record.get("class_histogram") or None,
        "num_classes": _first(record, "dataset_summary.num_classes"),
        "per_class_top1": _first(record, "metrics.per_class_top1"),
        "schema": record.get("schema", 0),
        "status": "ok",
        "error": None,
        "metric": metric,
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
    rows, old_read, old_skipped = [], 0, []
    for path in paths:
        if keys is not None and path.parent.name not in keys:
            continue
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            warn(f"skipped unreadable record {path}: {exc}")
            continue
        if not isinstance(record, dict):
            continue
        if record.get("status", "ok") != "ok":
            if include_failed and record.get("status") == "failed":
                row = failed_row(record, metric)
                if row is not None:
                    rows.append(row)
            continue
        schema = record.get("schema", 0)
        row = record_row(record, metric)
        if schema != SCHEMA_VERSION:
            if row is None or not isinstance(schema, int) or schema > SCHEMA_VERSION:
                old_skipped.append(path)
                continue
            old_read += 1
        elif row is None:
            warn(f"skipped record {path}: it lacks the spec or the top-1 metric")
            continue
        rows.append(row)
    if old_read:
        warn(f"read {old_read} record(s) of an older schema (current schema {SCHEMA_VERSION}); "
             "their missing fields (tags, class histograms) show as unknown")
    if old_skipped:
        warn(f"skipped {len(old_skipped)} record(s) of another schema that lack needed fields, "
             f"e.g. {old_skipped[0]}; re-run them to include them")
    return pd.DataFrame(rows, columns=COLUMNS)
