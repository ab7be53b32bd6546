"""Bringing labels back: a CSV with columns ``path,label`` (more columns are allowed, so the picks
CSV with a filled-in ``label`` column works as it is).

``path`` is relative to the folder given as ``folder:PATH`` (as in the export); ``label`` is a class
name (any string). Everything is checked before any work:

- paths not in the pool: an error naming them (and, when the file carries the ``sha256`` column of
  the export, whether each was renamed, changed or removed since the selection);
- the same path twice: an error when the labels differ, a warning when they agree;
- empty labels: a warning, and the row stays unlabeled;
- a listed image that was not picked (when the picks are known): a warning (it is used as
  labeled all the same), and picks left without a label are counted in another;
- a class name outside the class list that a test split fixes: an error naming it;
- fewer rows than the budget: allowed (the rest of the pool stays unlabeled);
- images at another pool position than the export's ``pool_index`` (files were added to or
  removed from the folder): a warning naming them (labels are matched by path).

The file's sha256 enters the run's identity, so two label files never share a cache entry.
"""
from __future__ import annotations

import csv
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..datasets.base import UNLABELED
from ..errors import UserError
from ..utils import file_sha256


def _norm(path: str) -> str:
    """Paths compare in Unicode NFC with forward slashes and no leading './' (macOS writes NFD
    names, Windows backslashes)."""
    path = unicodedata.normalize("NFC", path.strip().replace("\\", "/"))
    while path.startswith("./"):
        path = path[2:]
    return path


@dataclass(frozen=True)
class LabelRow:
    """One labeled image of a labels file: its path relative to the folder, its class name, and,
    when the file is a filled-in picks export, the content digest and pool index it had at
    selection time."""

    path: str
    label: str
    sha256: str | None = None
    pool_index: int | None = None


@dataclass
class LabelsFile:
    """A parsed labels file: its labeled rows in file order, and the rows left without a label."""

    path: Path
    sha256: str
    rows: list[LabelRow]
    warnings: list[str] = field(default_factory=list)
    unlabeled: list[str] = field(default_factory=list)   # paths listed with an empty label

    @property
    def paths(self) -> list[str]:
        return [row.path for row in self.rows]


def _examples(items: Sequence[str], limit: int = 5, quote: bool = True) -> str:
    shown = ", ".join(repr(i) if quote else str(i) for i in list(items)[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def read_labels_file(path: str | Path) -> LabelsFile:
    """Parse and check a labels CSV on its own (columns, empty labels, duplicate paths).

    Raises
    ------
    UserError
        Missing file, no ``path`` / ``label`` column, or one path with two different labels.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"Labels file {path} does not exist. It is a CSV with columns path,label (paths relative "
                        "to the folder, as in the exported picks).")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"Labels file {path} is not UTF-8 text ({exc}); save it as UTF-8 CSV.") from None
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip().lower() for c in (reader.fieldnames or [])]
    if "path" not in columns or "label" not in columns:
        raise UserError(f"Labels file {path} needs a header with columns path and label (found: "
                        f"{', '.join(reader.fieldnames or []) or 'no header'}).")
    rename = {name: name.strip().lower() for name in reader.fieldnames}
    rows, empty, seen, conflicts, repeats = [], [], {}, [], []
    for line, raw in enumerate(reader, start=2):
        record = {rename[k]: (v or "") for k, v in raw.items() if k is not None}
        rel, label = _norm(record["path"]), record["label"].strip()
        if not rel:
            continue
        if not label:
            empty.append(rel)
            continue
        if rel in seen:
            if seen[rel] != label:
                conflicts.append(f"{rel!r} ({seen[rel]!r} and {label!r})")
            else:
                repeats.append(rel)
            continue
        seen[rel] = label
        position = (record.get("pool_index") or "").strip()
        rows.append(LabelRow(rel, label, (record.get("sha256") or "").strip() or None,
                             int(position) if position.isdigit() else None))
    if conflicts:
        raise UserError(f"Labels file {path} gives {len(conflicts)} path(s) two different labels: "
                        f"{_examples(conflicts, quote=False)}. Keep one row per image.")
    warnings = []
    if repeats:
        warnings.append(f"labels file {path.name}: {len(repeats)} path(s) listed twice with the same label "
                        f"({_examples(repeats)}); each is used once")
    if empty:
        warnings.append(f"labels file {path.name}: {len(empty)} row(s) with an empty label ({_examples(empty)}); "
                        "those images stay unlabeled")
    if not rows:
        raise UserError(f"Labels file {path} has no row with both a path and a label.")
    return LabelsFile(path=path, sha256=file_sha256(path), rows=rows, warnings=warnings,
                      unlabeled=[rel for rel in empty if rel not in seen])


@dataclass
class AttachedLabels:
    """Labels of the pool from a labels file."""

    labels: np.ndarray                 # (N,) int64: class id, or UNLABELED (-1)
    class_names: list[str]
    labeled_indices: np.ndarray        # (k,) int64 pool positions, in labels-file order
    warnings: list[str]
    source: dict                       # {"file": name, "sha256": ..., "rows": k} for the record


def attach_labels(labels_file: LabelsFile, pool_paths: Sequence[str], class_names: Sequence[str] | None = None,
                  picked: Sequence[str] | None = None,
                  digest: Callable[[str], str] | None = None) -> AttachedLabels:
    """Map a labels file onto the pool.

    Parameters
    ----------
    labels_file : LabelsFile
    pool_paths : sequence of str, length N
        The pool's paths relative to the folder, in pool order.
    class_names : sequence of str, optional
        The class list a test split fixes; None: the sorted distinct labels of the file.
    picked : sequence of str, optional
        Relative paths of the images the selection picked (a warning for labeled images outside it).
    digest : callable, optional
        ``digest(pool_path) -> sha256`` of a pool file (called with entries of `pool_paths`); used
        to tell a renamed or changed file
        from a removed one when the labels file carries the export's sha256 column.

    Raises
    ------
    UserError
        Paths not in the pool (named, with rename / change detection where possible), a file whose
        content changed since the selection, or class names outside `class_names`.
    """
    index = {_norm(p): i for i, p in enumerate(pool_paths)}
    rows = labels_file.rows
    missing = [row for row in rows if row.path not in index]
    if missing:
        by_digest = {}
        if digest is not None and any(row.sha256 for row in missing):
            by_digest = {digest(p): _norm(p) for p in pool_paths}
        notes = []
        for row in missing:
            if row.sha256 and row.sha256 in by_digest:
                notes.append(f"{row.path!r} (renamed to {by_digest[row.sha256]!r}: same content)")
            elif row.sha256:
                notes.append(f"{row.path!r} (removed, or renamed and changed, since the selection)")
            else:
                notes.append(f"{row.path!r} (not in the pool)")
        raise UserError(f"Labels file {labels_file.path}: {len(missing)} path(s) are not images of this folder: "
                        f"{_examples(notes, quote=False)}. Paths are relative to the folder given as folder:PATH, as "
                        "in the exported picks; fix the paths, or re-run select if the folder changed.")
    if digest is not None:
        changed = [row.path for row in rows if row.sha256 and digest(pool_paths[index[row.path]]) != row.sha256]
        if changed:
            raise UserError(f"Labels file {labels_file.path}: {len(changed)} image(s) changed content since they were "
                            f"selected: {_examples(changed)}. Check the labels still describe them, then drop the "
                            "sha256 column (or re-export the picks).")
    labels_in_file = {row.label for row in rows}
    names = sorted(labels_in_file) if class_names is None else list(class_names)
    unknown = sorted(labels_in_file - set(names))
    if unknown:
        raise UserError(f"Labels file {labels_file.path} uses class name(s) {_examples(unknown)} that the test "
                        f"split does not have (its classes: {_examples(names, 20)}). Fix the labels or the test folders.")
    class_id = {name: i for i, name in enumerate(names)}
    labels = np.full(len(pool_paths), UNLABELED, dtype=np.int64)
    order = []
    for row in rows:
        labels[index[row.path]] = class_id[row.label]
        order.append(index[row.path])
    warnings = list(labels_file.warnings)
    moved = [f"{row.path!r} ({row.pool_index} -> {index[row.path]})" for row in rows
             if row.pool_index is not None and row.pool_index != index[row.path]]
    if moved:
        warnings.append(f"labels file {labels_file.path.name}: the folder changed since the selection (images were "
                        f"added or removed): {len(moved)} labeled image(s) now sit at another pool position, "
                        f"{_examples(moved, quote=False)}; labels are matched by path, so they still apply")
    if picked is not None:
        picked_set = {_norm(p) for p in picked}
        outside = [row.path for row in rows if row.path not in picked_set]
        if outside:
            warnings.append(f"labels file {labels_file.path.name}: {len(outside)} labeled image(s) were not picked by "
                            f"the selection ({_examples(outside)}); they are used as labeled all the same")
        unanswered = sorted(picked_set - {row.path for row in rows})
        if unanswered:
            warnings.append(f"labels file {labels_file.path.name}: {len(unanswered)} of the {len(picked_set)} picked "
                            f"image(s) have no label ({_examples(unanswered)}); they stay unlabeled")
    present = sorted(set(labels[labels >= 0].tolist()))
    if len(present) < len(names):
        absent = [names[i] for i in range(len(names)) if i not in present]
        warnings.append(f"labels file {labels_file.path.name}: no labeled image of class(es) {_examples(absent)}")
    return AttachedLabels(labels=labels, class_names=names, labeled_indices=np.asarray(order, dtype=np.int64),
                          warnings=warnings,
                          source={"file": labels_file.path.name, "sha256": labels_file.sha256, "rows": len(order)})
