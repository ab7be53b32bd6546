"""Records -> one pandas DataFrame row per finished run.

Records of the current schema are read as they are. Records of an older schema are read when the
fields the reports need can be found (a warning says so), and skipped with a warning otherwise;
records that are not JSON, or failed runs, never reach a table.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from .. import SCHEMA_VERSION

COLUMNS = ["key", "dataset", "encoder", "selector", "learner", "budget", "seed", "top1", "oracle", "probe",
           "selection_key", "class_histogram", "num_classes", "schema"]
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
        "dataset": _first(record, "spec.dataset", "dataset"),
        "encoder": _encoder_name(record),
        "selector": _label(_first(record, "spec.selector", "selector"), _first(record, "spec.selector_config")),
        "learner": _label(_first(record, "spec.learner", "learner"), _first(record, "spec.learner_config")),
        "budget": _first(record, "resolved.budget", "spec.budget", "budget"),
        "seed": _first(record, "spec.seed", "seed"),
        "top1": _first(record, "metrics.top1", "top1", "accuracy"),
        "oracle": _trait(record, "selector", "needs_labels", "oracle"),
        "probe": _trait(record, "learner", "uses_features", "probe"),
        "selection_key": _first(record, "keys.selection", "selection.key"),
        "class_histogram": record.get("class_histogram") or None,
        "num_classes": _first(record, "dataset_summary.num_classes"),
        "schema": record.get("schema", 0),
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


def load_records(root_or_paths: str | Path | Iterable[Path], warn: Warn = _warn,
                 keys: set[str] | None = None) -> pd.DataFrame:
    """A DataFrame (COLUMNS) of the finished runs under a results root (or of the given files).
    `keys`: only these run keys (a sweep's leaderboard shows that sweep's runs)."""
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
        if not isinstance(record, dict) or record.get("status", "ok") != "ok":
            continue
        schema = record.get("schema", 0)
        row = record_row(record)
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
