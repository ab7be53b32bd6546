"""On-disk caches for features and selections, verified by recorded digests.

A cache file whose content no longer matches the digest recorded beside it (truncated copy,
disk error, hand edit) is reported with a warning and recomputed, never silently trusted.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..utils import array_digest, atomic_save_npy, atomic_write_json, canonical_json, file_sha256

Warn = Callable[[str], None]


def indices_digest(indices: np.ndarray) -> str:
    return hashlib.sha256(canonical_json([int(i) for i in indices]).encode()).hexdigest()


class FeatureCache:
    def __init__(self, root: Path, dataset: str, encoder: str, key: str) -> None:
        folder = Path(root) / "cache" / "features" / dataset.replace(":", "_").replace("/", "_")
        self.meta_path = folder / f"{encoder}-{key}.json"
        self.train_path = folder / f"{encoder}-{key}.npy"
        self.test_path = folder / f"{encoder}-{key}.test.npy"

    def load(self, warn: Warn) -> tuple[np.ndarray, np.ndarray | None, dict] | None:
        if not self.meta_path.exists():
            return None
        try:
            meta = json.loads(self.meta_path.read_text())
            train = self._load_checked(self.train_path, meta["train_sha256"])
            test = self._load_checked(self.test_path, meta["test_sha256"]) if meta.get("test_sha256") else None
            return train, test, meta
        except Exception as exc:  # noqa: BLE001 - any unreadable cache is recomputed
            warn(f"cached features {self.train_path} are corrupt ({exc}); recomputing them.")
            return None

    @staticmethod
    def _load_checked(path: Path, expected: str) -> np.ndarray:
        actual = file_sha256(path)
        if actual != expected:
            raise ValueError(f"sha256 {actual[:12]} differs from the recorded {expected[:12]}")
        return np.load(path, allow_pickle=False)

    def save(self, train: np.ndarray, test: np.ndarray | None, meta: dict[str, Any]) -> None:
        atomic_save_npy(self.train_path, train)
        meta = dict(meta, train_sha256=file_sha256(self.train_path), train_shape=list(train.shape))
        if test is not None:
            atomic_save_npy(self.test_path, test)
            meta.update(test_sha256=file_sha256(self.test_path), test_shape=list(test.shape))
        atomic_write_json(self.meta_path, meta)  # written last: it marks the entry complete


class SelectionCache:
    def __init__(self, root: Path, dataset: str, selector: str, budget: int, seed: int, key: str) -> None:
        folder = Path(root) / "cache" / "selections" / dataset.replace(":", "_").replace("/", "_")
        safe_selector = selector.replace(":", "_").replace("/", "_")[:60]
        self.path = folder / f"{safe_selector}-m{budget}-s{seed}-{key}.json"

    def load(self, warn: Warn) -> dict | None:
        if not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_text())
            indices = np.asarray(data["indices"], dtype=np.int64)
            if indices_digest(indices) != data["indices_sha256"]:
                raise ValueError("indices do not match their recorded digest")
            data["indices"] = indices
            return data
        except Exception as exc:  # noqa: BLE001
            warn(f"cached selection {self.path} is corrupt ({exc}); recomputing it.")
            return None

    def save(self, data: dict[str, Any]) -> None:
        data = dict(data, indices_sha256=indices_digest(data["indices"]))
        atomic_write_json(self.path, data)


__all__ = ["FeatureCache", "SelectionCache", "indices_digest", "array_digest"]
