"""Your own images in the pipeline: the loop from picking images to training on them.

- `export_picks`: ``select --dataset folder:PATH --export picks.csv``: the picks table (paths
  relative to PATH, content digests, cluster and score) and a contact sheet PNG beside it;
- `labels_selection` / `LabelsFileSelection`: ``run --labels labels.csv``: the labels file is the
  selection (the labeled set is exactly its labeled images) and gives the pool its labels;
- `initial_labeled`: ``select --already-labeled labels.csv``: the pool indices already labeled,
  for a second round;
- `write_predictions`: the pool's predictions (``predictions.csv``) of a run on a labels file.

The pool's paths are the loaded split's own (`ImageSplit.paths`): a file the loader skipped
(unreadable) is not in the pool, so pool index i and path i always name the same image.
"""
from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..datasets.base import Dataset, ImageSplit
from ..errors import UserError, warn_data
from ..labeling.contact_sheet import contact_sheet_png
from ..labeling.labels_file import AttachedLabels, attach_labels, read_labels_file
from ..labeling.picks import build_picks, export_format, picks_bytes, read_picked_paths, relative_paths
from ..selectors.base import Selector
from ..traits import SelectorTraits
from ..utils import atomic_write_bytes, file_sha256

#: The selector name of a run whose labeled set comes from a labels file (records, tables).
LABELS_SELECTOR = "labels"
PREDICTIONS_FILE = "predictions.csv"


def pool_root(dataset_name: str) -> Path | None:
    """The folder of a ``folder:PATH`` data set (paths in exports are relative to it); None otherwise."""
    prefix, _, argument = dataset_name.partition(":")
    return Path(argument).expanduser() if prefix == "folder" and argument else None


def pool_paths(dataset: Dataset, dataset_name: str) -> list[str] | None:
    """The pool's image paths in pool order: relative to PATH (POSIX) for ``folder:PATH``, as given
    for other sources that name their files (``features:PATH`` with ``paths``); None without paths."""
    paths = dataset.train.paths
    if paths is None:
        return None
    root = pool_root(dataset_name)
    return relative_paths(paths, root) if root is not None else [str(p) for p in paths]


def pool_digest(dataset_name: str) -> Callable[[str], str] | None:
    """``digest(relative path) -> sha256`` of a pool file (memoised); None when the files are not
    on disk under a known folder. A missing file digests to "" (it matches no recorded digest)."""
    root = pool_root(dataset_name)
    if root is None:
        return None
    memo: dict[str, str] = {}

    def digest(relative: str) -> str:
        if relative not in memo:
            try:
                memo[relative] = file_sha256(root / relative)
            except OSError:
                memo[relative] = ""
        return memo[relative]

    return digest


def _attach(labels_path: str, dataset: Dataset, dataset_name: str, class_names: list[str] | None,
            picked: list[str] | None, what: str) -> AttachedLabels:
    paths = pool_paths(dataset, dataset_name)
    if paths is None:
        raise UserError(f"{what} needs the pool's image paths; {dataset_name} has none. Use it with your own "
                        "images (folder:PATH) or a features:PATH file that holds `paths`.")
    attached = attach_labels(read_labels_file(labels_path), paths, class_names=class_names, picked=picked,
                             digest=pool_digest(dataset_name))
    for message in attached.warnings:
        warn_data(message)
    return attached


# ------------------------------------------------------------------------------- run --labels
class LabelsFileSelection(Selector):
    """The selection of a run on a labels file: exactly the labeled images, in the file's order.
    Not registered (it is not a method to compare); the pipeline builds it for ``run --labels``.
    Its cache key holds the labels file's sha256 and the labeled positions, so two labels files
    never share a selection or a run."""

    registry_name = LABELS_SELECTOR
    traits = SelectorTraits(uses_features=False, seed_dependent=False, in_quick_preset=False)

    def __init__(self, attached: AttachedLabels) -> None:
        super().__init__(None)
        self.attached = attached

    def key_config(self) -> dict:
        from .cache import indices_digest

        return {"labels_sha256": self.attached.source["sha256"],
                "labeled_sha256": indices_digest(self.attached.labeled_indices)}

    def _select(self, features, budget, seed, context, timer):
        return self.attached.labeled_indices, {"labels_file": self.attached.source["file"],
                                               "labels_sha256": self.attached.source["sha256"]}


def labels_selection(labels_path: str, dataset: Dataset, dataset_name: str,
                     picks_path: str | None = None) -> tuple[Dataset, LabelsFileSelection]:
    """A labels file as the selection of a run: the data set with the file's labels (every other
    pool image UNLABELED) and the selection that returns the labeled images.

    The class list is the test split's when there is one (a label outside it is refused), else
    the sorted class names of the file. `picks_path` (the export the labels answer) adds the
    picked-but-unlabeled and labeled-but-not-picked warnings.

    Raises
    ------
    UserError
        No paths in the pool, or any fault `read_labels_file` / `attach_labels` refuse.
    """
    picked = read_picked_paths(picks_path) if picks_path is not None else None
    fixed = list(dataset.class_names) if dataset.evaluated else None
    attached = _attach(labels_path, dataset, dataset_name, fixed, picked, "--labels")
    train = dataset.train
    split = ImageSplit(labels=attached.labels, array=train.array, loader=train.loader, length=train.length,
                       paths=train.paths)
    labeled = dataclasses.replace(dataset, train=split, num_classes=len(attached.class_names),
                                  class_names=list(attached.class_names), labels_source=dict(attached.source))
    return labeled, LabelsFileSelection(attached)


def write_predictions(path: Path, dataset: Dataset, dataset_name: str, predicted: np.ndarray,
                      confidence: np.ndarray) -> Path:
    """``predictions.csv``: one row per pool image in pool order: path, prediction (class name),
    confidence (the model's probability of it), label (the given label of a labeled image, else
    empty). Written atomically."""
    paths = pool_paths(dataset, dataset_name) or [str(i) for i in range(dataset.pool_size)]
    names = dataset.class_names
    given = dataset.train.labels
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "prediction", "confidence", "label"])
    for i, (p, c) in enumerate(zip(predicted.tolist(), confidence.tolist())):
        label = names[given[i]] if given is not None and given[i] >= 0 else ""
        writer.writerow([paths[i], names[p], f"{c:.4f}", label])
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
    return path


# ------------------------------------------------------------------- select --already-labeled
def initial_labeled(labels_path: str, dataset: Dataset, dataset_name: str) -> tuple[np.ndarray, dict]:
    """The pool indices a labels file labels (sorted int64) and its source ({file, sha256, rows}),
    for a second round of selection. The labels themselves are not read by any selector.

    Raises
    ------
    UserError
        No paths in the pool, or any fault of the labels file (paths not in the pool, ...).
    """
    attached = _attach(labels_path, dataset, dataset_name, None, None, "--already-labeled")
    return np.sort(attached.labeled_indices), dict(attached.source)


# ------------------------------------------------------------------------------ select --export
def export_picks(dataset: Dataset, dataset_name: str, indices: np.ndarray, per_pick: dict[str, Any],
                 path: str | Path, fmt: str = "auto") -> list[Path]:
    """Write the picks table of a pool with paths, and its contact sheet beside it.

    Parameters
    ----------
    dataset : Dataset
        The loaded data set (its `train.paths`, and its images for the sheet).
    dataset_name : str
        ``folder:PATH``: paths are written relative to PATH, with each picked file's sha256.
    indices : (m,) int array
        The picks, in selection order.
    per_pick : dict
        `Selection.per_pick` (cluster, score, cluster sizes), possibly empty.
    path : path-like
        The export; its format from `fmt` or the suffix (csv, json, label-studio, npy).

    Returns
    -------
    list of Path
        The export, then ``<stem>.contact.png`` (a data set of images only).

    Raises
    ------
    UserError
        A pool without paths, or an unknown format. Nothing is written then: both files are built
        in memory first.
    """
    path = Path(path).expanduser()
    fmt = export_format(path, fmt)
    paths = pool_paths(dataset, dataset_name)
    if paths is None:
        raise UserError(f"{dataset_name} has no image paths to export; export indices instead.")
    indices = np.asarray(indices, dtype=np.int64)
    digest = pool_digest(dataset_name)
    digests = {int(i): digest(paths[i]) for i in indices} if digest is not None else None
    picks = build_picks(indices, paths, clusters=per_pick.get("cluster"), scores=per_pick.get("score"),
                        digests=digests)
    table = picks_bytes(picks, fmt)
    written = [(path, table)]
    if dataset.has_images:
        sizes = {int(c): int(n) for c, n in (per_pick.get("cluster_sizes") or {}).items()}
        sheet = contact_sheet_png(picks, dataset.train.image, sizes)
        written.append((path.with_name(path.stem + ".contact.png"), sheet))
    for target, data in written:
        atomic_write_bytes(target, data)
    return [target for target, _ in written]
