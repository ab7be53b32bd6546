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
           "selection_key", "class_histogram", "num_classes", "per_class_top1", "schema", "status", "error"]
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


def _trait(record: dict, kind: str, trait: str, tag: str) -> bool:
    """A trait from the record's `<kind>_traits` dict. Records written before traits were typed
    (schema 1 as well) list free-string tags under `<kind>_tags` instead: an oracle selector had
    the tag "oracle", a feature learner the tag "probe"."""
    traits = record.get(f"{kind}_traits")
    if isinstance(traits, dict):
        return bool(traits.get(trait))
    return tag in (record.get(f"{kind}_tags") or [])


def record_row(record: dict) -> dict[str, Any] | None:
    """The table row of one record, or None when a needed field is missing."""
    row = {
        "key": _first(record, "key"),
        "dataset": _first(record, "spec.dataset"),
        "encoder": _encoder_name(record),
        "selector": _selector_label(record),
        "learner": _label(_first(record, "spec.learner"), _first(record, "spec.learner_config")),
        "budget": _first(record, "resolved.budget"),
        "seed": _first(record, "spec.seed"),
        "top1": _first(record, "metrics.top1"),
        "oracle": _trait(record, "selector", "needs_labels", "oracle"),
        "probe": _trait(record, "learner", "uses_features", "probe"),
        "selection_key": _first(record, "keys.selection"),
        "class_histogram": record.get("class_histogram") or None,
        "num_classes": _first(record, "dataset_summary.num_classes"),
        "per_class_top1": _first(record, "metrics.per_class_top1"),
        "schema": record.get("schema"),
        "status": "ok",
        "error": None,
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


def failed_row(record: dict) -> dict[str, Any] | None:
    """The row of a failed run: its cell and seed, top1 NaN, status "failed" and the error's first
    line; None when the record does not say which run it was."""
    row = record_row({**record, "metrics": {"top1": float("nan")}})
    if row is not None:
        error = str(record.get("error") or "no error message recorded").strip()
        row.update(status="failed", error=error.splitlines()[0] if error else error)
    return row


def load_records(root_or_paths: str | Path | Iterable[Path], warn: Warn = _warn,
                 keys: set[str] | None = None, include_failed: bool = False) -> pd.DataFrame:
    """A DataFrame (COLUMNS) of the finished runs under a results root (or of the given files).
    `keys`: only these run keys (a sweep's leaderboard shows that sweep's runs).
    `include_failed`: also failed runs, as rows with status "failed" and top1 NaN."""
    if isinstance(root_or_paths, (str, Path)):
        paths = record_paths(root_or_paths)
    else:
        paths = list(root_or_paths)
    rows, other_schema = [], []
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
                row = failed_row(record)
                if row is not None:
                    rows.append(row)
            continue
        if record.get("schema") != SCHEMA_VERSION:
            other_schema.append(path)
            continue
        row = record_row(record)
        if row is None:
            warn(f"skipped record {path}: it lacks the spec or the top-1 metric")
            continue
        rows.append(row)
    if other_schema:
        warn(f"skipped {len(other_schema)} record(s) of another schema than {SCHEMA_VERSION}, e.g. "
             f"{other_schema[0]}; re-run them with this version to include them")
    return pd.DataFrame(rows, columns=COLUMNS)
