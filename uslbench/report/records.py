"""Records: the one reader and validator of `record.json` files, and one DataFrame row per finished run.

Every reader of records (run states, the pipeline's "already done?" check, the tables) goes through
`read_record_file`, which returns the record or the reason it cannot be used: unreadable bytes,
text that is not UTF-8, text that is not JSON, or JSON that is not a record (`record_problem`).
A record that cannot be used is reported (path and reason) and treated as missing, so a sweep
runs it again.

Records of the current schema are read as they are. Records of an older schema are read when the
fields the reports need can be found (a warning says so), and skipped with a warning otherwise;
failed runs never reach a table.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .. import SCHEMA_VERSION
from .versions import data_identity, encoder_identity, separate_versions

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["key", "dataset", "encoder", "selector", "learner", "budget", "seed", "top1", "oracle", "probe",
           "selection_key", "class_histogram", "num_classes", "schema", "data_id", "encoder_id", "finished"]
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


NEEDED = ("dataset", "selector", "learner", "budget", "seed", "top1")
STATUSES = ("ok", "failed")


def record_problem(record: Any) -> str | None:
    """Why `record` (parsed JSON) is not a usable run record, or None when it is.

    A record is a JSON object with an integer `schema` (absent: 0, the first layout) and a
    `status` of "ok" or "failed"; an "ok" record holds the spec fields and a top-1 accuracy in
    [0, 100]. A record of a newer schema than this version's is not judged (its layout is unknown):
    it is left alone, and the tables skip it with a warning.
    """
    if not isinstance(record, dict):
        kind = {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
                type(None): "null"}.get(type(record), type(record).__name__)
        return f"holds a JSON {kind}, not a record (a JSON object)"
    schema = record.get("schema", 0)
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 0:
        return f"has schema {schema!r}, which is not a version number"
    if schema > SCHEMA_VERSION:
        return None
    status = record.get("status", "ok" if schema == 0 else None)
    if status not in STATUSES:
        return ("has no status" if status is None else f"has status {status!r}") + " (expected 'ok' or 'failed')"
    if status == "failed":
        return None
    row = _raw_row(record)
    missing = [name for name in NEEDED if row[name] is None]
    if missing:
        return f"says status 'ok' but lacks {', '.join(missing)}"
    try:
        budget, seed, top1 = int(row["budget"]), int(row["seed"]), float(row["top1"])
    except (TypeError, ValueError):
        return (f"has a non-numeric budget, seed or top-1 (budget {row['budget']!r}, seed {row['seed']!r}, "
                f"top-1 {row['top1']!r})")
    if isinstance(row["top1"], bool) or not math.isfinite(top1) or not 0.0 <= top1 <= 100.0:
        return f"has top-1 {row['top1']!r}, not a percentage in [0, 100]"
    if budget < 1 or seed < 0:
        return f"has budget {budget} and seed {seed} (a budget is at least 1, a seed at least 0)"
    return None


def read_json_file(path: str | Path) -> tuple[Any, str | None]:
    """(parsed JSON, None), (None, reason) when the bytes cannot be read or are not UTF-8 JSON,
    or (ABSENT, None) when there is no file."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return ABSENT, None
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"is not UTF-8 text (byte {exc.start} of {len(raw)}: {exc.reason})"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
    except RecursionError:
        return None, "is not valid JSON (nested too deeply)"


ABSENT = object()


def read_record_file(path: str | Path) -> tuple[dict | None, str | None]:
    """(record, None) for a valid record; (None, reason) for a file that cannot be used, the
    reason naming what is wrong ("is not UTF-8 text ...", "holds a JSON list, not a record ...");
    (None, None) when there is no file."""
    data, problem = read_json_file(path)
    if data is ABSENT:
        return None, None
    if problem is None:
        problem = record_problem(data)
    return (None, problem) if problem else (data, None)


def _raw_row(record: dict) -> dict[str, Any]:
    return {
        "key": _first(record, "key"),
        "dataset": _first(record, "spec.dataset", "dataset"),
        "encoder": _encoder_name(record),
        "selector": _label(_first(record, "spec.selector", "selector"), _first(record, "spec.selector_config")),
        "learner": _label(_first(record, "spec.learner", "learner"), _first(record, "spec.learner_config")),
        "budget": _first(record, "resolved.budget", "spec.budget", "budget"),
        "seed": _first(record, "spec.seed", "seed"),
        "top1": _first(record, "metrics.top1", "top1", "accuracy"),
        "oracle": "oracle" in (record.get("selector_tags") or []),
        "probe": "probe" in (record.get("learner_tags") or []),
        "selection_key": _first(record, "keys.selection", "selection.key"),
        "class_histogram": record.get("class_histogram") or None,
        "num_classes": _first(record, "dataset_summary.num_classes"),
        "schema": record.get("schema", 0),
        "data_id": data_identity(record),
        "encoder_id": encoder_identity(record),
        "finished": record.get("finished"),
    }


def record_row(record: dict) -> dict[str, Any] | None:
    """The table row of one record, or None when a needed field is missing."""
    row = _raw_row(record)
    if any(row[k] is None for k in NEEDED):
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
    `keys`: only these run keys (a sweep's leaderboard shows that sweep's runs).
    Records that cannot be used are reported through `warn` (path and reason) and left out."""
    import pandas as pd

    if isinstance(root_or_paths, (str, Path)):
        paths = record_paths(root_or_paths)
    else:
        paths = list(root_or_paths)
    rows, old_read, old_skipped = [], 0, []
    for path in paths:
        if keys is not None and path.parent.name not in keys:
            continue
        record, unreadable = read_json_file(path)
        if record is ABSENT:
            continue
        if unreadable is not None:
            warn(f"skipped unreadable record {path}: it {unreadable}; treated as missing (a sweep runs it again)")
            continue
        problem = record_problem(record)
        if problem is not None:
            schema = record.get("schema") if isinstance(record, dict) else None
            if type(schema) is int and 0 <= schema < SCHEMA_VERSION:  # a declared older layout: counted below
                old_skipped.append((path, problem))
            else:
                warn(f"skipped invalid record {path}: it {problem}; treated as missing (a sweep runs it again)")
            continue
        if record.get("status", "ok") != "ok":
            continue
        schema = record.get("schema", 0)
        if schema > SCHEMA_VERSION:
            old_skipped.append((path, f"has schema {schema}, newer than this version's ({SCHEMA_VERSION})"))
            continue
        if schema != SCHEMA_VERSION:
            old_read += 1
        rows.append(record_row(record))
    if old_read:
        warn(f"read {old_read} record(s) of an older schema (current schema {SCHEMA_VERSION}); "
             "their missing fields (tags, class histograms) show as unknown")
    if old_skipped:
        path, reason = old_skipped[0]
        warn(f"skipped {len(old_skipped)} record(s) of another schema that lack needed fields, "
             f"e.g. {path} (it {reason}); re-run them to include them")
    return separate_versions(pd.DataFrame(rows, columns=COLUMNS), warn)
