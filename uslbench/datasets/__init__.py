"""Data sets: one module per source; importing this package registers them all."""
from __future__ import annotations

import json
from typing import Any

from .base import Dataset, ImageSplit  # noqa: F401
from . import cifar, custom, digits, features, imagenet, medmnist  # noqa: F401
from ..registry import DATASETS


def load_dataset(name: str, data_root: str | None = None, download: bool = False, **overrides) -> Dataset:
    """Create and load a registered data set; `data_root`/`download` go to entries that take them."""
    entry = DATASETS.get(name)
    fields = {f.name for f in entry.config_fields()}
    if "data_root" in fields:
        overrides.setdefault("data_root", data_root)
    if "download" in fields:
        overrides.setdefault("download", download or None)
    return DATASETS.create(name, **overrides).load()


class DatasetLoader:
    """Loads registered data sets by name (see `load_dataset`); the pipeline takes one.

    With ``memo=True`` each distinct (name, data root, overrides) is loaded once and the same
    `Dataset` object is returned after that: a sweep's planning and a job that runs many specs
    use one, since loading costs ~30 ms for digits and far more for image folders.
    """

    def __init__(self, memo: bool = False) -> None:
        self._memo: dict[str, Dataset] | None = {} if memo else None

    def __call__(self, name: str, data_root: str | None = None, **overrides: Any) -> Dataset:
        if self._memo is None:
            return load_dataset(name, data_root=data_root, **overrides)
        key = json.dumps([name, data_root, overrides], sort_keys=True, default=str)
        if key not in self._memo:
            self._memo[key] = load_dataset(name, data_root=data_root, **overrides)
        return self._memo[key]
