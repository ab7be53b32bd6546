"""Selector interface.

    selector = SELECTORS.create("usl", dataset="cifar10", lam=1.0)
    selection = selector.select(features, budget, seed=1, context=ctx)

`select` validates its input (before any long computation), times the work, and checks the
output contract: exactly `budget` unique int64 indices in range. Subclasses implement `_select`.
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import DEFAULT_SEED
from ..errors import UserError
from ..traits import SelectorTraits
from ..utils import Timer


class LabelAccessError(RuntimeError):
    """A selector that did not declare `needs_labels` tried to read the labels."""


@dataclass
class Selection:
    indices: np.ndarray                     # int64, exactly m unique train indices
    info: dict[str, Any] = field(default_factory=dict)     # label-free diagnostics
    seconds: dict[str, float] = field(default_factory=dict)  # per phase

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))


class SelectionContext:
    """Optional extras for a selector. Labels are handed out only to selectors declaring
    `needs_labels`; any other access raises LabelAccessError (the contract tests rely on it)."""

    def __init__(self, *, pool_size: int | None = None, dataset: Any = None, dataset_name: str | None = None,
                 labels: np.ndarray | None = None, encoder: Any = None, device: str = "cpu",
                 labels_allowed: bool = False, workdir: Any = None) -> None:
        self.pool_size = pool_size
        self.dataset = dataset
        self.dataset_name = dataset_name or getattr(dataset, "name", None)
        self._labels = labels
        self.encoder = encoder
        self.device = device
        self.labels_allowed = labels_allowed
        self.workdir = workdir
        self.labels_read = False

    @property
    def labels(self) -> np.ndarray:
        if not self.labels_allowed:
            raise LabelAccessError("this selector does not declare needs_labels and may not read labels")
        if self._labels is None:
            raise UserError("This selector reads the labels of the pool, but the data set has no train labels.")
        self.labels_read = True
        return self._labels


def check_budget(budget: Any, pool_size: int) -> int:
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        if isinstance(budget, str) and budget.strip().lstrip("+").isdigit():
            budget = int(budget)
        else:
            raise UserError(f"Budget must be a positive integer (number of images to label), got {budget!r}.")
    budget = int(budget)
    if budget < 1:
        raise UserError(f"Budget must be a positive integer (number of images to label), got {budget}.")
    if budget > pool_size:
        raise UserError(f"Budget {budget} exceeds the unlabeled pool of {pool_size} images; "
                        f"choose a budget of at most {pool_size}.")
    return budget


def check_features(features: Any) -> np.ndarray:
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


def count_distinct_rows(features: np.ndarray, seed: int = 0) -> int:
    """Number of distinct rows, via two random projections (exact duplicates collide, others do not)."""
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((features.shape[1], 2)).astype(np.float64)
    keys = features.astype(np.float64) @ projection
    return len(np.unique(keys, axis=0))


class Selector:
    """Base class: subclasses declare `traits` and implement `_select`."""

    traits = SelectorTraits()

    def __init__(self, config: Any = None) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return getattr(type(self), "registry_name", type(self).__name__)

    def select(self, features: np.ndarray | None, budget: int, seed: int = DEFAULT_SEED,
               context: SelectionContext | None = None) -> Selection:
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
        if self.traits.uses_features and budget > 1:
            distinct = count_distinct_rows(features)
            if budget > distinct:
                raise UserError(f"Budget {budget} exceeds the {distinct} distinct points among the {pool_size} "
                                "feature rows (the rest are exact duplicates); lower the budget or deduplicate.")
        self.validate(pool_size, budget, context)
        timer = Timer()
        indices, info = self._select(features, budget, int(seed), context, timer)
        indices = np.asarray(indices, dtype=np.int64)
        if indices.shape != (budget,) or len(np.unique(indices)) != budget \
                or indices.min() < 0 or indices.max() >= pool_size:
            raise AssertionError(f"selector {self.name} broke its contract: {len(indices)} indices, "
                                 f"{len(np.unique(indices))} unique, budget {budget}, pool {pool_size}")
        return Selection(indices=indices, info=dict(info), seconds=dict(timer.seconds))

    def key_config(self) -> dict:
        """What of the config enters the selection cache key (never a path: see file:PATH)."""
        return dataclasses.asdict(self.config) if self.config is not None else {}

    def validate(self, pool_size: int, budget: int, context: SelectionContext) -> None:
        """Extra checks that must fail before work starts (e.g. stratified: budget >= classes)."""

    def _select(self, features: np.ndarray | None, budget: int, seed: int,
                context: SelectionContext, timer: Timer) -> tuple[np.ndarray, dict]:
        raise NotImplementedError
