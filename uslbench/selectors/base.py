"""Selector interface.

    selector = SELECTORS.create("usl", dataset="cifar10", lam=1.0)
    selection = selector.select(features, budget, seed=1, context=ctx)

`select` validates its input (before any long computation), times the work, and checks the
output contract: exactly `budget` unique int64 indices in range. Subclasses implement `_select`.

Duplicate rows: a pool may hold exact copies (the same image twice, or identical features).
Every selector that reads features obeys one rule, enforced here for all of them: a selection
never holds two identical feature rows while distinct unpicked rows remain (labelling a copy
twice wastes the budget). The selector runs on the full pool (copies still count as density),
then `replace_duplicate_picks` swaps every repeated copy for a distinct row, farthest-first from
the selection (the k-center rule). A pool without duplicates is never touched. Selectors that do
not read features (random, stratified, file:PATH) are outside the rule: their picks never depend
on features (random is the uniform baseline over images, and its cache key holds no features).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import DEFAULT_SEED
from ..errors import UserError
from ..traits import SelectorTraits
from ..utils import Timer, check_budget  # noqa: F401  (selectors import check_budget from here)
from .toolkit import compute_device


class LabelAccessError(RuntimeError):
    """A selector whose traits do not declare `needs_labels` tried to read the labels."""


@dataclass
class Selection:
    """What `Selector.select` returns.

    Attributes
    ----------
    indices : np.ndarray of int64, shape (m,)
        Exactly m = budget unique pool (train-split) indices, each in [0, N).
    info : dict
        Label-free diagnostics (cluster counts, radii, ...), JSON-serialisable; stored with the
        cached selection and the run record.
    seconds : dict of str to float
        Wall-clock seconds per named phase (``knn_density``, ``kmeans``, ...).
    """

    indices: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        """Sum of the phase durations, in seconds."""
        return float(sum(self.seconds.values()))


class SelectionContext:
    """Optional extras for a selector.

    Labels are handed out only when `labels_allowed` (the pipeline sets it from the selector's
    `needs_labels` trait); any other access raises `LabelAccessError`, and `labels_read` records
    whether they were read (the contract tests check both).

    Parameters
    ----------
    pool_size : int, optional
        N, for selectors that need no features (random, stratified, file:PATH).
    dataset : Dataset, optional
        The loaded data set (images: usl_t in backbone mode trains on them).
    dataset_name : str, optional
        The registry name of the data set (default: ``dataset.name``).
    labels : np.ndarray of int64, shape (N,), optional
        The pool's labels, for selectors that declare `needs_labels` (an oracle).
    encoder : Encoder, optional
        The encoder of the selection features (usl_t backbone mode fine-tunes its network).
    device : str, default "cpu"
        Where the toolkit and any training run ("cpu", "cuda[:N]" or "auto"); a selector that
        uses features records in its info where it ran (selection_device, faiss_gpu, gpu_ops).
    labels_allowed : bool, default False
        Whether `labels` may be read.
    workdir : path-like, optional
        A folder for the selector's scratch files.
    feature_cache_stem : str, optional
        Where the selection features lie in the feature cache, without suffix
        (`FeatureSet.cache_stem`): a selector may store data derived only from the features next
        to it, named by it (usl's k-NN density: ``STEM.usl_density_k400.npy``), so later
        selections on the same features read it. None: nothing is cached.
    """

    def __init__(self, *, pool_size: int | None = None, dataset: Any = None, dataset_name: str | None = None,
                 labels: np.ndarray | None = None, encoder: Any = None, device: str = "cpu",
                 labels_allowed: bool = False, workdir: Any = None, feature_cache_stem: str | None = None) -> None:
        self.pool_size = pool_size
        self.dataset = dataset
        self.dataset_name = dataset_name or getattr(dataset, "name", None)
        self._labels = labels
        self.encoder = encoder
        self.device = device
        self.labels_allowed = labels_allowed
        self.workdir = workdir
        self.feature_cache_stem = feature_cache_stem
        self.labels_read = False

    @property
    def labels(self) -> np.ndarray:
        if not self.labels_allowed:
            raise LabelAccessError("this selector does not declare needs_labels and may not read labels")
        if self._labels is None:
            raise UserError("This selector reads the labels of the pool, but the data set has no train labels.")
        self.labels_read = True
        return self._labels


def check_features(features: Any) -> np.ndarray:
    """Validate a feature matrix before any work.

    Parameters
    ----------
    features : np.ndarray of shape (n_samples, n_features), floating point
        One row per pool image (the encoders' rows are L2-normalised).

    Returns
    -------
    np.ndarray of float32, shape (n_samples, n_features), C-contiguous

    Raises
    ------
    UserError
        Not a 2-D floating numpy array, empty, NaN / infinite values, or all-zero rows; the
        message names the first offending rows.
    """
    if not isinstance(features, np.ndarray):
        raise UserError(f"Features must be a numpy array of shape (N, d), got {type(features).__name__}.")
    if features.ndim != 2:
        raise UserError(f"Features must be a 2-D array (N, d), got shape {features.shape}.")
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise UserError(f"Features are empty (shape {features.shape}).")
    if not np.issubdtype(features.dtype, np.floating):
        raise UserError(f"Features must be floating point, got dtype {features.dtype}.")
    features = np.ascontiguousarray(features, dtype=np.float32)
    finite = np.isfinite(features).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise UserError(f"Features contain NaN or infinite values in {len(bad)} rows "
                        f"(first: {bad[:5].tolist()}); fix the encoder output before selecting.")
    zero = ~np.any(features != 0, axis=1)
    if zero.any():
        bad = np.flatnonzero(zero)
        raise UserError(f"Features contain {len(bad)} all-zero rows (first: {bad[:5].tolist()}); "
                        "they cannot be L2-normalised. Remove them or fix the encoder.")
    return features


def duplicate_representatives(features: np.ndarray, block_rows: int = 16_384) -> np.ndarray:
    """For every row, the index of the first row holding exactly the same values (itself when it
    is the first or only one). int64 (N,). Exact: -0.0 equals 0.0, nothing else is rounded.

    Rows are hashed by their bit patterns (a uint32 multiply-add that wraps exactly, so the hash
    of a row does not depend on summation order or BLAS kernels, unlike a float projection);
    only rows whose hash is shared (copies, and rare collisions) are then compared value by
    value, so a pool without duplicates costs one pass over the data (0.4 s per 100,000 x 512).
    """
    features = np.ascontiguousarray(features, dtype=np.float32)
    n, d = features.shape
    weights = np.random.default_rng(0).integers(1, 2**32, size=d, dtype=np.uint64).astype(np.uint32) | np.uint32(1)
    keys = np.empty(n, dtype=np.uint32)
    for start in range(0, n, block_rows):
        bits = (features[start:start + block_rows] + np.float32(0.0)).view(np.uint32)  # -0.0 -> 0.0
        with np.errstate(over="ignore"):
            keys[start:start + block_rows] = (bits * weights).sum(axis=1, dtype=np.uint32)
    representative = np.arange(n, dtype=np.int64)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    shared = np.flatnonzero(counts[inverse] > 1)  # ascending row order
    if len(shared) == 0:
        return representative
    rows = features[shared] + np.float32(0.0)
    row_view = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.dtype.itemsize * d)))[:, 0]
    _, first, groups = np.unique(row_view, return_index=True, return_inverse=True)
    representative[shared] = shared[first[groups.reshape(-1)]]
    return representative


def count_distinct_rows(features: np.ndarray) -> int:
    """Number of distinct rows (exact)."""
    representative = duplicate_representatives(features)
    return int(np.count_nonzero(representative == np.arange(len(representative))))


def replace_duplicate_picks(features: np.ndarray, indices: np.ndarray,
                            representative: np.ndarray) -> tuple[np.ndarray, int]:
    """Enforce the duplicate rule on a selection: the first pick (in the selector's order) of each
    group of identical rows stays; every later copy is replaced, in place, by the distinct row
    farthest from everything selected so far (k-center greedy, ties: lowest index; Sener &
    Savarese 2018), never by a copy of a row already selected. Returns (indices, replaced).
    A selection that was sorted stays sorted. Assumes the pool holds at least len(indices)
    distinct rows (`Selector.select` checks it first)."""
    from .toolkit import FarthestFirst

    indices = np.asarray(indices, dtype=np.int64).copy()
    groups = representative[indices]
    _, first = np.unique(groups, return_index=True)
    repeated = np.setdiff1d(np.arange(len(indices)), first)
    if len(repeated) == 0:
        return indices, 0
    was_sorted = bool(np.all(np.diff(indices) > 0))
    state = FarthestFirst(features)
    state.add_many(indices[first])
    taken = np.isin(representative, groups)  # every copy of a selected row
    state.min_sq[taken] = -1.0
    for position in repeated:
        pick = state.next()
        indices[position] = pick
        state.add(pick)
        state.min_sq[representative == representative[pick]] = -1.0
    return (np.sort(indices) if was_sorted else indices), int(len(repeated))


class Selector:
    """Base class of the selectors: which m of the N pool images should be labeled?

    The problem setting is the USL paper's (Wang, Lian & Yu, "Unsupervised Selective Labeling for
    More Effective Semi-Supervised Learning", ECCV 2022): one shot, no labels, a fixed budget.
    Subclasses are registered with ``@SELECTORS.register(name, description, config=...)``,
    declare their `traits` and implement `_select` (and, if needed, `validate`); `select` does
    the checks and the timing that every selector shares. Constructors only store the config.

    Parameters
    ----------
    config : dataclass instance, optional
        The resolved config (defaults, data-set preset, overrides); see ``describe NAME``.

    Attributes
    ----------
    traits : SelectorTraits
        Declared once on the class: reads labels, uses features, fixed encoder, ... .
    """

    traits = SelectorTraits()

    def __init__(self, config: Any = None) -> None:
        self.config = config

    @property
    def name(self) -> str:
        """The registry name (the class name for an unregistered subclass)."""
        return getattr(type(self), "registry_name", type(self).__name__)

    def select(self, features: np.ndarray | None, budget: int, seed: int = DEFAULT_SEED,
               context: SelectionContext | None = None) -> Selection:
        """Choose `budget` pool images to label.

        Parameters
        ----------
        features : np.ndarray of shape (N, d), floating point, or None
            One L2-normalised row per pool image (the encoder's features). None for selectors
            whose traits say ``uses_features=False`` (then `context.pool_size` gives N).
        budget : int
            m, the number of images to label; 1 <= m <= N (and <= the distinct rows).
        seed : int, default 1
            Every random choice derives from it: same features + seed = same indices.
        context : SelectionContext, optional
            Labels (only for label readers), images, encoder, device.

        Returns
        -------
        Selection
            m unique int64 indices, diagnostics, and seconds per phase.

        Raises
        ------
        UserError
            Bad features or budget (before any work starts), or what `validate` refuses.
        LabelAccessError
            The selector read `context.labels` without being allowed to.
        AssertionError
            The subclass broke the output contract (a bug in the selector, not the user's input).
        """
        context = context or SelectionContext()
        if self.traits.uses_features:
            if features is None:
                raise UserError(f"Selector {self.name!r} needs features.")
            features = check_features(features)
            pool_size = features.shape[0]
        else:
            pool_size = features.shape[0] if features is not None else context.pool_size
            if pool_size is None:
                raise ValueError("give features or context.pool_size")
        budget = check_budget(budget, pool_size)
        representative = None
        if self.traits.uses_features:
            representative = duplicate_representatives(features)
            distinct = int(np.count_nonzero(representative == np.arange(pool_size)))
            if distinct == pool_size:
                representative = None  # no duplicates: nothing to enforce
            elif budget > distinct:
                raise UserError(f"Budget {budget} exceeds the {distinct} distinct points among the {pool_size} "
                                "feature rows (the rest are exact duplicates); lower the budget or deduplicate.")
        self.validate(pool_size, budget, context)
        timer = Timer()
        with compute_device(context.device) as compute:  # where the toolkit runs (see toolkit.compute_device)
            indices, info = self._select(features, budget, int(seed), context, timer)
        if self.traits.uses_features:
            info = {**info, **compute.record()}
        indices = np.asarray(indices, dtype=np.int64)
        info = dict(info)
        if indices.shape != (budget,) or len(np.unique(indices)) != budget \
                or indices.min() < 0 or indices.max() >= pool_size:
            raise AssertionError(f"selector {self.name} broke its contract: {len(indices)} indices, "
                                 f"{len(np.unique(indices))} unique, budget {budget}, pool {pool_size}")
        if representative is not None:
            with timer("duplicate_replacement"):
                indices, replaced = replace_duplicate_picks(features, indices, representative)
            info.update(pool_distinct_rows=distinct, duplicate_picks_replaced=replaced)
        return Selection(indices=indices, info=info, seconds=dict(timer.seconds))

    def key_config(self) -> dict:
        """What of the config enters the selection cache key.

        Returns
        -------
        dict
            JSON-serialisable; never a path (file:PATH puts the file's sha256 instead).
        """
        return dataclasses.asdict(self.config) if self.config is not None else {}

    def validate(self, pool_size: int, budget: int, context: SelectionContext) -> None:
        """Extra checks that must fail before work starts (stratified: budget >= classes).

        The pipeline calls it while preparing a run, before any features are computed.

        Parameters
        ----------
        pool_size : int
            N.
        budget : int
            m, already checked to lie in [1, N].
        context : SelectionContext
            As for `select`.

        Raises
        ------
        UserError
            The settings cannot work on this pool; say what to change.
        """

    def _select(self, features: np.ndarray | None, budget: int, seed: int,
                context: SelectionContext, timer: Timer) -> tuple[np.ndarray, dict]:
        """The method itself (implemented by each selector).

        Parameters
        ----------
        features : np.ndarray of float32, shape (N, d), or None
            Checked and C-contiguous (None for ``uses_features=False``).
        budget : int
            m, checked.
        seed : int
            Seed of every random choice (numpy Generator, faiss, torch).
        context : SelectionContext
            Labels only for label readers.
        timer : Timer
            ``with timer("phase"): ...`` records seconds per phase.

        Returns
        -------
        indices : array-like of int, shape (m,)
            Unique pool indices (checked by `select`).
        info : dict
            Label-free diagnostics, JSON-serialisable.
        """
        raise NotImplementedError
