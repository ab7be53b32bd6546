"""Selection outside the pipeline: a selector on a bare feature matrix (`select --features`), reading
feature files and exporting the picked indices. The `select` command only parses and prints."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .. import selectors  # noqa: F401  (registers the selectors; the whole catalogue would import torch)
from ..errors import UserError
from ..registry import SELECTORS
from ..selectors.base import Selection, SelectionContext
from ..utils import atomic_save_npy, atomic_write_bytes, l2_normalise

EXPORT_SUFFIXES = (".npy", ".json", ".csv")


def load_feature_matrix(path: str | Path) -> np.ndarray:
    """An (N, d) floating-point matrix from a .npy file (or the 'features' array of a .npz)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"Feature file {path} does not exist.")
    try:
        data = np.load(path, allow_pickle=False, mmap_mode=None)
    except ValueError as exc:
        raise UserError(f"Feature file {path} is not a plain numpy array ({exc}).") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        if "features" not in data.files:
            raise UserError(f"{path} holds {data.files}; an .npz needs an array named 'features'.")
        data = data["features"]
    return data


def check_export_path(path: str | Path | None) -> Path | None:
    """The export path as a Path (None passes through); a UserError for a suffix or folder that cannot work."""
    if path is None:
        return None
    path = Path(path).expanduser()
    if path.suffix.lower() not in EXPORT_SUFFIXES:
        raise UserError(f"Export file {path} must end in {', '.join(EXPORT_SUFFIXES)}.")
    if path.parent.exists() and not path.parent.is_dir():
        raise UserError(f"Cannot write {path}: {path.parent} is not a folder.")
    return path


def export_indices(indices: np.ndarray, path: str | Path, per_pick: dict[str, Any] | None = None) -> Path:
    """Write picks that have no image paths (a feature matrix, a data set without files); atomic.

    Parameters
    ----------
    indices : (m,) int array
        Pool indices in selection order.
    path : path-like
        .npy (the int64 indices), .json (a list of them) or .csv: the picks table of a data set's
        export without its path columns (`labeling.picks`): a header, then rank, pool_index, and
        cluster and score where `per_pick` holds them. `file:PATH` reads all three back.
    per_pick : dict, optional
        `Selection.per_pick` (cluster, score of each pick, in the order of `indices`).
    """
    from ..labeling.picks import build_picks, picks_bytes

    path = check_export_path(path)
    indices = np.asarray(indices, dtype=np.int64)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        atomic_save_npy(path, indices)
    elif suffix == ".json":
        atomic_write_bytes(path, (json.dumps([int(i) for i in indices]) + "\n").encode())
    else:
        per_pick = per_pick or {}
        picks = build_picks(indices, clusters=per_pick.get("cluster"), scores=per_pick.get("score"))
        atomic_write_bytes(path, picks_bytes(picks, "csv"))
    return path


def select_features(features: np.ndarray, selector: str, budget: Any, seed: int = 1,
                    overrides: dict[str, Any] | None = None, dataset_name: str | None = None,
                    device: str = "cpu"):
    """Run a label-free selector on a bare (N, d) matrix on `device` (cpu, cuda[:N]); returns the
    Selection."""
    if SELECTORS.traits(selector).needs_labels:
        raise UserError(f"Selector {selector!r} reads labels; a bare feature matrix has none. "
                        "Use --dataset for it, or pick a label-free selector.")
    instance = SELECTORS.create(selector, dataset=dataset_name, **(overrides or {}))
    context = SelectionContext(pool_size=len(features) if hasattr(features, "__len__") else None,
                               dataset_name=dataset_name, device=device)
    return instance.select(features, budget, seed=seed, context=context)


def select_from_file(path: str | Path, selector: str, budget: Any, seed: int = 1,
                     overrides: dict[str, Any] | None = None, preset_dataset: str | None = None,
                     normalise: bool = True, device: str = "cpu") -> tuple[Selection, tuple[int, ...], bool]:
    """Read an (N, d) matrix (`load_feature_matrix`), L2-normalise its rows when `normalise` (as the
    encoders do; the presets assume it) and run `selector` on it. Returns (selection, the matrix's
    shape, whether rows were normalised). Zero, NaN or infinite rows stay so and are reported by the
    selector's input checks (UserError)."""
    features = load_feature_matrix(path)
    normalised = normalise and np.issubdtype(features.dtype, np.floating) and features.ndim == 2
    if normalised:
        with np.errstate(invalid="ignore", divide="ignore"):
            features = l2_normalise(features)
    selection = select_features(features, selector, budget, seed, overrides, preset_dataset, device=device)
    return selection, tuple(features.shape), normalised
