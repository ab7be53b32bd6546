"""`file:PATH` selector: a selection read from an index file (.npy, .json, .csv).

    --selector file:picks.npy
    --selector file:/work/shared/reference/usl_official_indices.json#cifar10/usl_40_seed1
    --selector file:usl_official_indices.json#usl_40_seed1      (looked up under the run's data set)
    --selector file:idx.json#usl_40_seed1 --selector-config "file.label=usl (published)"

`label` names the selection in tables and leaderboards instead of its path (it is not part of the
selection's cache key: the same file under another label is the same selection).

JSON files hold a list of indices, or (nested) objects of such lists: `#KEY` picks one, KEY being
a '/'-separated path; a bare key is also tried under the data set's name. CSV and text files hold
one index per line (an optional header line such as `index`, blank lines ignored), or are a picks
table (`select --export picks.csv`), whose `pool_index` column is read.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..registry import SELECTORS
from ..traits import SelectorTraits
from ..utils import file_sha256
from .base import Selector


@dataclass
class FileConfig:
    path: str = field(default="", metadata={"help": "index file (.npy, .json, .csv); PATH#KEY picks a set in a JSON file"})
    key: str | None = field(default=None, metadata={"help": "which set of a JSON file (overrides #KEY)"})
    label: str | None = field(default=None, metadata={
        "help": "the row name in tables, e.g. 'usl (published)' (default: file:PATH#KEY); runs with the same "
                "label form one row, their seeds its seeds"})


def split_path_key(argument: str, key: str | None) -> tuple[Path, str | None]:
    path, _, hash_key = argument.partition("#")
    return Path(path).expanduser(), key or (hash_key or None)


def _json_sets(data: Any, prefix: str = "") -> dict[str, Any]:
    """Every list reachable in a JSON document, by '/'-joined key path."""
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            out.update(_json_sets(v, f"{prefix}{k}/"))
        return out
    return {prefix.rstrip("/"): data}


def read_index_file(argument: str, key: str | None = None, dataset_name: str | None = None) -> tuple[np.ndarray, str]:
    """Raw entries of an index file as a 1-D array (not yet checked) and the key that was used."""
    path, key = split_path_key(argument, key)
    if not path.is_file():
        raise UserError(f"Index file {path} does not exist (selector file:PATH).")
    suffix = path.suffix.lower()
    used_key = ""
    if suffix == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise UserError(f"Index file {path} is not a plain .npy array ({exc}).") from None
        if values.ndim != 1:
            raise UserError(f"Index file {path} holds an array of shape {values.shape}; expected a 1-D list of indices.")
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"Index file {path} is not valid JSON ({exc}).") from None
        sets = _json_sets(data)
        if list(sets) == [""]:
            values = data
        else:
            candidates = [key] if key else []
            if key and dataset_name:
                candidates.append(f"{dataset_name.split(':', 1)[0]}/{key}")
            found = [c for c in candidates if c in sets]
            if not found:
                what = f"has no set {key!r}" if key else "holds several index sets"
                raise UserError(f"Index file {path} {what}; name one with file:{path}#KEY. "
                                f"Sets: {', '.join(sorted(sets))}.")
            used_key = found[0]
            values = sets[used_key]
        if not isinstance(values, list):
            raise UserError(f"Index set {used_key or path} in {path} is not a list of indices.")
        values = np.asarray(values, dtype=object)
    elif suffix in (".csv", ".txt"):
        rows = [[cell.strip() for cell in row] for row in csv.reader(path.read_text().splitlines())]
        rows = [row for row in rows if row and row[0]]
        column = 0
        if rows and not _looks_numeric(rows[0][0]):
            header, rows = rows[0], rows[1:]
            # a picks export (`select --export`) starts with rank: the indices are its pool_index column
            column = header.index("pool_index") if "pool_index" in header else 0
        values = np.asarray([row[column] if column < len(row) else "" for row in rows], dtype=object)
    else:
        raise UserError(f"Index file {path} has an unknown extension {suffix!r}; use .npy, .json or .csv.")
    return values, used_key


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def check_indices(values: np.ndarray, pool_size: int, where: str) -> np.ndarray:
    """Integer, in range, no duplicates: else a UserError naming the first offenders."""
    out = np.empty(len(values), dtype=np.int64)
    bad = []
    for position, value in enumerate(values):
        number = value
        if isinstance(value, str):
            try:
                number = float(value) if any(ch in value for ch in ".eE") else int(value)
            except ValueError:
                bad.append(repr(value))
                continue
        if isinstance(number, (bool, np.bool_)) or not isinstance(number, (int, float, np.integer, np.floating)) \
                or not float(number).is_integer():
            bad.append(repr(value))
            continue
        out[position] = int(number)
    if bad:
        raise UserError(f"{where} has {len(bad)} non-integer entries (first: {', '.join(bad[:5])}).")
    if len(out) == 0:
        raise UserError(f"{where} holds no indices.")
    outside = out[(out < 0) | (out >= pool_size)]
    if len(outside):
        raise UserError(f"{where} has {len(outside)} indices outside the pool 0..{pool_size - 1} "
                        f"(first: {outside[:5].tolist()}); is it meant for another data set?")
    unique, counts = np.unique(out, return_counts=True)
    if (counts > 1).any():
        raise UserError(f"{where} repeats {int((counts > 1).sum())} indices (first: {unique[counts > 1][:5].tolist()}).")
    return out


def contract_test_file(workdir: Path, *, pool_size: int, budget: int, **_: Any) -> dict[str, str]:
    """The contract tests' setting: an index file of `budget` distinct indices spread over the pool."""
    path = Path(workdir) / "picks.npy"
    np.save(path, np.arange(budget, dtype=np.int64) * (pool_size // budget))
    return {"path": str(path)}


@SELECTORS.register("file", "a selection read from an index file: file:PATH[#KEY] (.npy, .json, .csv)",
                    config=FileConfig, argument_field="path", test_config=contract_test_file)
class FileSelector(Selector):
    """Uses the indices stored in a file as the selection, so published index sets can be
    benchmarked. The budget must equal the number of indices in the file. The seed does not
    change the selection. The selection's cache key holds the file's sha256, not its path."""

    # the quick preset has no index file to read
    traits = SelectorTraits(uses_features=False, seed_dependent=False, in_quick_preset=False)

    def _load(self, pool_size: int, dataset_name: str | None) -> tuple[np.ndarray, str]:
        values, used_key = read_index_file(self.config.path, self.config.key, dataset_name)
        where = f"Index file {self.config.path}" + (f" (set {used_key})" if used_key else "")
        return check_indices(values, pool_size, where), used_key

    def validate(self, pool_size, budget, context):
        indices, _ = self._load(pool_size, context.dataset_name)
        if len(indices) != budget:
            raise UserError(f"Index file {self.config.path} holds {len(indices)} indices but the budget is {budget}; "
                            f"pass --budget {len(indices)}.")

    def key_config(self) -> dict:
        path, key = split_path_key(self.config.path, self.config.key)
        return {"file_sha256": file_sha256(path) if path.is_file() else None, "key": key}

    def _select(self, features, budget, seed, context, timer):
        pool_size = features.shape[0] if features is not None else context.pool_size
        with timer("read"):
            indices, used_key = self._load(pool_size, context.dataset_name)
        return indices, {"file": Path(split_path_key(self.config.path, None)[0]).name, "key": used_key}
