"""Reading and validating one `record.json`: the one reader every user of records goes through
(run states, the pipeline's "already done?" check, the tables in `uslbench.report.records`).

`read_record_file` returns the record, or the reason it cannot be used: unreadable bytes, text that
is not UTF-8, text that is not JSON, or JSON that is not a record (`record_problem`). A record that
cannot be used is reported (path and reason) and treated as missing, so a sweep runs it again.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .. import SCHEMA_VERSION


def _first(record: dict, *paths: str) -> Any:
    for path in paths:
        value: Any = record
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None


NEEDED = ("dataset", "selector", "learner", "budget", "seed", "top1")
STATUSES = ("ok", "failed")


def record_trait(record: dict, kind: str, trait: str, tag: str) -> bool:
    """A trait from the record's `<kind>_traits` dict (kind: "selector" or "learner"). Records
    written before traits were typed (schema 1 as well) list free-string tags under `<kind>_tags`
    instead: an oracle selector had the tag "oracle", a feature learner "probe", a feature reader
    "uses_features"."""
    traits = record.get(f"{kind}_traits")
    if isinstance(traits, dict):
        return bool(traits.get(trait))
    return tag in (record.get(f"{kind}_tags") or [])


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
    if record.get("evaluated") is False:  # run --labels without a test split: predictions, no accuracy
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
    """The fields `record_problem` checks (the final top-1)."""
    return {"dataset": _first(record, "spec.dataset"), "selector": _first(record, "spec.selector"),
            "learner": _first(record, "spec.learner"), "budget": _first(record, "resolved.budget", "spec.budget"),
            "seed": _first(record, "spec.seed"), "top1": _first(record, "metrics.top1")}
