"""The picked images as a table a person can act on, and its writers.

One row per pick, in selection order: ``rank`` (1-based), ``pool_index`` (row of the pool, the
index every selector returns), ``path`` (the file, relative to the folder given as
``folder:PATH``; absent when selecting from a bare feature matrix), ``cluster`` (the selector's
cluster of the pick, where it has clusters) and ``score`` (the selector's score of the pick, e.g.
USL's utility or TypiClust's typicality, where it has one).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ..errors import UserError
from ..utils import atomic_write_bytes

EXPORT_FORMATS = ("auto", "csv", "json", "label-studio", "npy")
COLUMNS = ("rank", "pool_index", "path", "sha256", "cluster", "score")


@dataclass(frozen=True)
class Pick:
    rank: int
    pool_index: int
    path: str | None = None
    sha256: str | None = None     # content digest of the file: a later labels file is checked against it
    cluster: int | None = None
    score: float | None = None


def relative_paths(paths, root: str | Path) -> list[str]:
    """POSIX paths of `paths` relative to `root` (the folder the user named), for exports that
    must stay valid when the folder moves."""
    root = Path(root).expanduser()
    absolute_root, resolved_root = root.absolute(), root.resolve()
    out = []
    for path in paths:
        path = Path(path)
        try:  # as listed (a symlinked file stays under the folder) ...
            out.append(path.absolute().relative_to(absolute_root).as_posix())
            continue
        except ValueError:
            pass
        try:  # ... or with the folder itself reached through a link
            out.append(path.resolve().relative_to(resolved_root).as_posix())
        except ValueError:
            out.append(path.absolute().as_posix())
    return out


def build_picks(indices, paths: list[str] | None = None, clusters=None, scores=None,
                digests: dict[int, str] | None = None) -> list[Pick]:
    """Rows for the picks `indices` (pool positions, selection order).

    Parameters
    ----------
    indices : (m,) int array
        Pool positions in selection order.
    paths : list of str, length N (pool size), optional
        The pool's file paths (already relative to the folder); None for a bare feature matrix.
    clusters : sequence of int or None, length m, optional
        The selector's cluster of each pick, in selection order (`Selection.per_pick["cluster"]`);
        None entries for picks without one.
    scores : sequence of float or None, length m, optional
        The selector's score of each pick, in selection order (`Selection.per_pick["score"]`).
    digests : dict, optional
        Pool index -> sha256 of the picked file's content.
    """
    indices = np.asarray(indices, dtype=np.int64)
    for what, values in (("scores", scores), ("clusters", clusters)):
        if values is not None and len(values) != len(indices):
            raise ValueError(f"{len(values)} {what} for {len(indices)} picks")
    rows = []
    for rank, index in enumerate(indices, start=1):
        cluster = clusters[rank - 1] if clusters is not None else None
        score = scores[rank - 1] if scores is not None else None
        rows.append(Pick(rank=rank, pool_index=int(index),
                         path=paths[index] if paths is not None else None,
                         sha256=(digests or {}).get(int(index)),
                         cluster=int(cluster) if cluster is not None else None,
                         score=float(score) if score is not None else None))
    return rows


def export_format(path: str | Path, fmt: str = "auto") -> str:
    """The format to write: `fmt`, or from the suffix when "auto" (.csv, .json, .npy).

    Raises
    ------
    UserError
        Unknown format, or a suffix that does not say one.
    """
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"Unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}.")
    if fmt != "auto":
        return fmt
    suffix = Path(path).suffix.lower()
    formats = {".csv": "csv", ".json": "json", ".npy": "npy"}
    if suffix not in formats:
        raise UserError(f"Export file {path} must end in .csv, .json or .npy (or pass --export-format).")
    return formats[suffix]


def label_studio_tasks(picks: list[Pick]) -> list[dict]:
    """A Label Studio task list (JSON import): one task per picked image.

    ``data.image`` is Label Studio's local-files URL, ``/data/local-files/?d=<path>``, with the path
    relative to the folder: start Label Studio with ``LOCAL_FILES_SERVING_ENABLED=true`` and
    ``LOCAL_FILES_DOCUMENT_ROOT=<the folder>`` (or add it as local storage) and the images show.
    ``data.path`` keeps the plain relative path, which the labels file sent back must use.
    """
    tasks = []
    for pick in picks:
        if pick.path is None:
            raise UserError("A Label Studio task list needs image paths; selecting from a features file has none "
                            "(export indices as .csv / .json / .npy instead).")
        data = {"image": f"/data/local-files/?d={quote(pick.path)}", "path": pick.path, "rank": pick.rank,
                "pool_index": pick.pool_index}
        if pick.cluster is not None:
            data["cluster"] = pick.cluster
        tasks.append({"data": data})
    return tasks


def write_picks(picks: list[Pick], path: str | Path, fmt: str = "auto") -> Path:
    """Write `picks_bytes` to `path` (atomic) and return `path`."""
    path = Path(path).expanduser()
    atomic_write_bytes(path, picks_bytes(picks, export_format(path, fmt)))
    return path


def picks_bytes(picks: list[Pick], fmt: str) -> bytes:
    """The picks file's content. csv / json: the columns of `COLUMNS` that have values (the CSV
    ends with an empty ``label`` column when it has paths, to be filled in and passed back with
    ``--labels``); label-studio: `label_studio_tasks`; npy: the pool indices only (int64)."""
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, np.asarray([p.pool_index for p in picks], dtype=np.int64), allow_pickle=False)
        return buffer.getvalue()
    if fmt == "label-studio":
        return (json.dumps(label_studio_tasks(picks), indent=1, ensure_ascii=False) + "\n").encode()
    columns = [c for c in COLUMNS if any(getattr(p, c) is not None for p in picks)]
    if fmt == "json":
        rows = [{c: getattr(p, c) for c in columns} for p in picks]
        return (json.dumps(rows, indent=1, ensure_ascii=False) + "\n").encode()
    # with paths, an empty `label` column: fill it in and pass the file back as --labels
    with_label = "path" in columns
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns + (["label"] if with_label else []))
    for p in picks:
        writer.writerow(["" if getattr(p, c) is None else (f"{p.score:.6g}" if c == "score" else getattr(p, c))
                         for c in columns] + ([""] if with_label else []))
    return buffer.getvalue().encode()


def read_picked_paths(path: str | Path) -> list[str]:
    """The image paths of an exported picks file (csv or json from `write_picks`, or a Label
    Studio task list), to check a labels file against what was picked.

    Raises
    ------
    UserError
        Missing or unreadable file, or one without paths.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"Picks file {path} does not exist (the file `select --export` wrote).")
    text = path.read_text(encoding="utf-8-sig")
    try:
        if path.suffix.lower() == ".json":
            rows = json.loads(text)
            paths = [(row.get("data", row) if isinstance(row, dict) else {}).get("path") for row in rows]
        else:
            paths = [row.get("path") for row in csv.DictReader(text.splitlines())]
    except (json.JSONDecodeError, AttributeError, TypeError) as exc:
        raise UserError(f"Picks file {path} is not a picks export ({exc}).") from None
    if not paths or any(not p for p in paths):
        raise UserError(f"Picks file {path} has rows without a path: export the picks from a folder:PATH data set "
                        "(select --dataset folder:PATH --export picks.csv).")
    return [str(p) for p in paths]
