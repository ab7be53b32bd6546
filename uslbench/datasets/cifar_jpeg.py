"""CIFAR-10 in torchvision's on-disk format from a JPEG copy, optionally a subset (tests, benchmarks).

The JPEG copy (`cifar10-jpeg.tar.gz` holding train/<class>/NNNN.jpg and test/<class>/NNNN.jpg,
numbered in original order within each class, plus `train_labels_original_order.npy` and
`test_labels_original_order.npy`) is the one the project keeps beside the repository; its
`build_cifar10.py` writes all 60,000 images. This writer keeps the same index order (image i of
the result is image i of the official set) but can stop after the first `n_train` / `n_test`
images of each split, which takes seconds instead of a minute: only those JPEGs are decoded.

    write_cifar10_subset(JPEG_DIR, OUT_ROOT, n_train=1000, n_test=500)
    # -> OUT_ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
"""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
ARCHIVE = "cifar10-jpeg.tar.gz"
LABEL_FILES = {"train": "train_labels_original_order.npy", "test": "test_labels_original_order.npy"}


def _needed(labels: np.ndarray) -> list[tuple[str, int]]:
    """(class name, rank within its class) of each image, in index order."""
    rank = np.zeros(len(CLASSES), dtype=np.int64)
    out = []
    for c in labels:
        out.append((CLASSES[int(c)], int(rank[c])))
        rank[c] += 1
    return out


def write_cifar10_subset(source: str | Path, out_root: str | Path, n_train: int | None = None,
                         n_test: int | None = None) -> Path:
    """Write the first `n_train` training and `n_test` test images (all when None), in original
    index order, as `<out_root>/cifar-10-batches-py/`. Returns `out_root`.

    Parameters
    ----------
    source : folder holding `cifar10-jpeg.tar.gz` and the two `*_labels_original_order.npy` files.
    out_root : folder to write into (created); pass it as `--data-root`.
    n_train, n_test : how many images of each split, from index 0 (50,000 / 10,000 at most).

    Raises
    ------
    UserError
        When the source files are missing or the archive lacks an image the labels call for.
    """
    source, out_root = Path(source), Path(out_root)
    missing = [name for name in (ARCHIVE, *LABEL_FILES.values()) if not (source / name).is_file()]
    if missing:
        raise UserError(f"The CIFAR-10 JPEG copy is incomplete: {', '.join(missing)} missing in {source}.")
    labels = {split: np.load(source / name).astype(np.int64) for split, name in LABEL_FILES.items()}
    counts = {"train": n_train, "test": n_test}
    for split, n in counts.items():
        labels[split] = labels[split][: len(labels[split]) if n is None else int(n)]
    wanted = {split: _needed(labels[split]) for split in labels}
    # compressed bytes of every file of the archive, keyed (split, class) -> {number: bytes}
    found: dict[tuple[str, str], dict[int, bytes]] = {}
    with tarfile.open(source / ARCHIVE) as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3 and parts[2].endswith(".jpg") and parts[0] in wanted:
                found.setdefault((parts[0], parts[1]), {})[int(parts[2][:-4])] = tar.extractfile(member).read()
    images = {}
    for split, items in wanted.items():
        ordered = {key: [files[k] for k in sorted(files)] for key, files in found.items() if key[0] == split}
        rows = np.empty((len(items), 3, 32, 32), dtype=np.uint8)
        for i, (cls, rank) in enumerate(items):
            files = ordered.get((split, cls), [])
            if rank >= len(files):
                raise UserError(f"{source / ARCHIVE} has {len(files)} {split} images of class {cls}; "
                                f"the labels need at least {rank + 1}.")
            pixels = np.asarray(Image.open(io.BytesIO(files[rank])).convert("RGB"), dtype=np.uint8)
            rows[i] = pixels.transpose(2, 0, 1)
        images[split] = rows.reshape(len(items), -1)  # CHW rows, as in the official pickles
    out = out_root / "cifar-10-batches-py"
    out.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(labels["train"]), 6).astype(int)
    for b in range(5):
        rows = slice(bounds[b], bounds[b + 1])
        _dump(out / f"data_batch_{b + 1}", {
            "batch_label": f"training batch {b + 1} of 5", "labels": labels["train"][rows].tolist(),
            "data": images["train"][rows],
            "filenames": [f"train_{i:05d}.png" for i in range(rows.start, rows.stop)]})
    _dump(out / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": labels["test"].tolist(),
                               "data": images["test"],
                               "filenames": [f"test_{i:05d}.png" for i in range(len(labels["test"]))]})
    _dump(out / "batches.meta", {"label_names": CLASSES, "num_cases_per_batch": 10000, "num_vis": 3072})
    return out_root


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=4)
