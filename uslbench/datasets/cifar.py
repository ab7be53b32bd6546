"""CIFAR-10 and CIFAR-100 in torchvision's on-disk format (the python pickles).

We read the pickles ourselves instead of going through torchvision's class: torchvision refuses a
folder whose MD5s differ from the official archive ("not found or corrupted"), while a modified
copy or a test fixture is perfectly usable. Here a checksum mismatch is a warning, a missing or
malformed file is a UserError that names the expected files and the --download option.
"""
from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError, name_some, warn_data
from ..registry import DATASETS
from ..traits import DatasetTraits
from .base import Dataset, DatasetSource, ImageSplit
from .files import missing_files_error, resolve_data_root
from .testing import cifar_test_config


@dataclass
class CifarConfig:
    data_root: str | None = field(default=None, metadata={"help": "folder holding cifar-10-batches-py/ or cifar-100-python/"})
    download: bool = field(default=False, metadata={"help": "fetch the archive with torchvision when the files are absent"})


@dataclass(frozen=True)
class _Layout:
    name: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str        # key of the labels inside each batch
    names_key: str        # key of the class names inside the meta file
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CIFAR10 = _Layout("cifar10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                  "batches.meta", "labels", "label_names", 10,
                  (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100 = _Layout("cifar100", "cifar-100-python", ("train",), ("test",), "meta", "fine_labels",
                   "fine_label_names", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


def official_md5s(layout: _Layout) -> dict[str, str]:
    """MD5s of the official archive's files, as torchvision lists them (no copy kept here)."""
    from torchvision.datasets import CIFAR10 as TV10, CIFAR100 as TV100  # lazy: torch, see the class

    tv = TV10 if layout is CIFAR10 else TV100
    md5s = {name: md5 for name, md5 in tv.train_list + tv.test_list}
    md5s[tv.meta["filename"]] = tv.meta["md5"]
    return md5s


class CifarSource(DatasetSource):
    """Loads one CIFAR layout from `<data_root>/<folder>/`."""

    layout: _Layout

    @property
    def folder(self) -> Path:
        return resolve_data_root(self.config.data_root) / self.layout.folder

    def _missing(self) -> list[str]:
        files = self.layout.train_files + self.layout.test_files + (self.layout.meta_file,)
        return [f"{self.layout.folder}/{f}" for f in files if not (self.folder / f).is_file()]

    def _download(self) -> None:
        # lazy: torchvision (and torch) only when downloading; the data sets register without them
        from torchvision.datasets import CIFAR10 as TV10, CIFAR100 as TV100

        root = resolve_data_root(self.config.data_root)
        root.mkdir(parents=True, exist_ok=True)
        tv = TV10 if self.layout is CIFAR10 else TV100
        try:
            tv(str(root), train=True, download=True)
        except Exception as exc:  # network errors come in many types
            raise UserError(f"Downloading {self.layout.name} into {root} failed ({exc}). Download "
                            f"{tv.url} yourself and extract it there.") from exc

    def load(self) -> Dataset:
        missing = self._missing()
        if missing and self.config.download:
            self._download()
            missing = self._missing()
        if missing:
            expected = [f"{self.layout.folder}/{{{', '.join(self.layout.train_files + self.layout.test_files)}, "
                        f"{self.layout.meta_file}}}"]
            raise missing_files_error(self.layout.name, resolve_data_root(self.config.data_root), expected, missing,
                                      "add --download to `run` (or `pretrain`) to fetch the archive (about 170 MB) where the network allows")
        md5s: dict[str, str] = {}
        train_x, train_y = self._read_batches(self.layout.train_files, md5s)
        test_x, test_y = self._read_batches(self.layout.test_files, md5s)
        meta = self._read_pickle(self.layout.meta_file, md5s)
        class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(self.layout.names_key, [])]
        self._check_md5s(md5s)
        return Dataset(
            name=self.layout.name,
            train=ImageSplit(labels=train_y, array=train_x),
            test=ImageSplit(labels=test_y, array=test_x),
            num_classes=self.layout.num_classes, image_size=32, channels=3,
            mean=self.layout.mean, std=self.layout.std, default_encoder="simclr",
            class_names=class_names or [str(c) for c in range(self.layout.num_classes)],
            identity={"source": self.layout.name, "format": "python-pickle", "md5": md5s},
        )

    def _read_pickle(self, name: str, md5s: dict[str, str]) -> dict:
        path = self.folder / name
        raw = path.read_bytes()
        md5s[name] = hashlib.md5(raw).hexdigest()
        try:
            data = pickle.loads(raw, encoding="latin1")
        except Exception as exc:  # a truncated or foreign file raises many kinds of errors
            raise UserError(f"{path} is not a CIFAR python pickle ({type(exc).__name__}: {exc}). Replace it, "
                            "or delete the folder and use --download.") from exc
        if not isinstance(data, dict):
            raise UserError(f"{path} is not a CIFAR python pickle (holds a {type(data).__name__}, not a dict).")
        return data

    def _read_batches(self, names: tuple[str, ...], md5s: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for name in names:
            batch = self._read_pickle(name, md5s)
            if "data" not in batch or self.layout.label_key not in batch:
                raise UserError(f"{self.folder / name} lacks the 'data' or '{self.layout.label_key}' entry of "
                                f"a {self.layout.name} batch (found {sorted(batch)[:6]}).")
            data = np.asarray(batch["data"], dtype=np.uint8)
            targets = np.asarray(batch[self.layout.label_key], dtype=np.int64)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(targets):
                raise UserError(f"{self.folder / name}: expected 'data' of shape (N, 3072) and N labels; got "
                                f"{data.shape} and {len(targets)} labels.")
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(targets)
        return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)

    def _check_md5s(self, md5s: dict[str, str]) -> None:
        official = official_md5s(self.layout)
        differing = sorted(name for name, md5 in md5s.items() if official.get(name) not in (None, md5))
        if differing:
            warn_data(f"{self.layout.name}: {len(differing)} file(s) under {self.folder} differ from the official "
                      f"archive's checksums (a modified copy?): {name_some(differing)}; loaded anyway, results are "
                      "not comparable with published CIFAR numbers")


@DATASETS.register("cifar10", "CIFAR-10: 50,000 train (pool) / 10,000 test 32x32 colour images, 10 classes",
                   config=CifarConfig, test_config=cifar_test_config)
class Cifar10(CifarSource):
    """CIFAR-10 from torchvision's python-pickle folder `<data_root>/cifar-10-batches-py/`
    (data_batch_1..5, test_batch, batches.meta). `--download` fetches it where the network allows."""

    traits = DatasetTraits(pool_size=50_000)

    layout = CIFAR10


@DATASETS.register("cifar100", "CIFAR-100: 50,000 train (pool) / 10,000 test 32x32 colour images, 100 classes",
                   config=CifarConfig, test_config=cifar_test_config)
class Cifar100(CifarSource):
    """CIFAR-100 (fine labels) from torchvision's folder `<data_root>/cifar-100-python/` (train, test,
    meta). `--download` fetches it where the network allows."""

    traits = DatasetTraits(pool_size=50_000)

    layout = CIFAR100
