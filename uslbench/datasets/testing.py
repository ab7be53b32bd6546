"""Tiny data sets written in each source's real on-disk format, for tests and smoke runs.

Each writer draws class-dependent images (a per-class colour plus noise) so that a linear probe
on any sensible features beats chance, and returns the folder or file it wrote.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image


def class_images(per_class: int, num_classes: int, size: int = 32, channels: int = 3,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, size, size, channels) images whose mean colour depends on the class, labels (N,).
    The class colours are the same for every seed (train and test splits agree); the noise and
    the order of the images depend on the seed."""
    palette = np.random.default_rng(12345).integers(30, 225, size=(num_classes, channels))
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    noise = rng.normal(0, 25, size=(len(labels), size, size, channels))
    images = np.clip(palette[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    order = rng.permutation(len(labels))
    return images[order], labels[order].astype(np.int64)


def write_cifar(root: str | Path, variant: str = "cifar10", per_class_train: int = 5, per_class_test: int = 2,
                seed: int = 0) -> Path:
    """torchvision's python-pickle layout: cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    or cifar-100-python/{train, test, meta}. Returns the data root (the folder to pass as --data-root)."""
    root = Path(root)
    num_classes = 10 if variant == "cifar10" else 100
    train_x, train_y = class_images(per_class_train, num_classes, seed=seed)
    test_x, test_y = class_images(per_class_test, num_classes, seed=seed + 1)

    def batch(x: np.ndarray, y: np.ndarray, label_key: str) -> dict:
        return {"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1), label_key: y.tolist(),
                "filenames": [f"img_{i}.png" for i in range(len(x))]}

    def dump(path: Path, obj: dict) -> None:
        path.write_bytes(pickle.dumps(obj, protocol=2))

    if variant == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        for i, part in enumerate(np.array_split(np.arange(len(train_x)), 5), start=1):
            dump(folder / f"data_batch_{i}", batch(train_x[part], train_y[part], "labels"))
        dump(folder / "test_batch", batch(test_x, test_y, "labels"))
        dump(folder / "batches.meta", {"label_names": [f"class{c}" for c in range(10)]})
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        dump(folder / "train", batch(train_x, train_y, "fine_labels"))
        dump(folder / "test", batch(test_x, test_y, "fine_labels"))
        dump(folder / "meta", {"fine_label_names": [f"class{c}" for c in range(100)]})
    return root


def write_medmnist(root: str | Path, flag: str = "bloodmnist", size: int = 28, per_class_train: int = 6,
                   per_class_test: int = 3, num_classes: int = 8, seed: int = 0) -> Path:
    """MedMNIST's .npz: {train,val,test}_images uint8 (N, size, size, 3) and _labels uint8 (N, 1)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, per_class, offset in (("train", per_class_train, 0), ("val", 1, 1), ("test", per_class_test, 2)):
        x, y = class_images(per_class, num_classes, size=size, seed=seed + offset)
        arrays[f"{split}_images"] = x
        arrays[f"{split}_labels"] = y.astype(np.uint8)[:, None]
    name = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
    np.savez_compressed(root / name, **arrays)
    return root


def write_image_folder(root: str | Path, per_class_train: int = 5, per_class_test: int = 2, num_classes: int = 3,
                       size: int = 16, seed: int = 0, splits: bool = True, extension: str = ".png",
                       class_names: Sequence[str] | None = None, test_split: str = "test") -> Path:
    """ImageFolder tree: root/train/<class>/*.png and root/<test_split>/<class>/*.png (or
    root/<class>/ when splits=False). Class folders are `class_<c>` unless `class_names` are given."""
    root = Path(root)
    names = list(class_names) if class_names is not None else [f"class_{c}" for c in range(num_classes)]
    parts = (("train", per_class_train, 0), (test_split, per_class_test, 1)) if splits else (("", per_class_train, 0),)
    for split, per_class, offset in parts:
        x, y = class_images(per_class, len(names), size=size, seed=seed + offset)
        for i, (image, label) in enumerate(zip(x, y)):
            folder = root / split / names[label] if split else root / names[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:04d}{extension}")
    return root


def write_npz(path: str | Path, per_class_train: int = 5, per_class_test: int = 2, num_classes: int = 3,
              size: int = 16, seed: int = 0, **overrides: np.ndarray) -> Path:
    """An .npz with x_train, y_train, x_test, y_test (keys in `overrides` replace or add arrays;
    an override of None removes the key)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x_train, y_train = class_images(per_class_train, num_classes, size=size, seed=seed)
    x_test, y_test = class_images(per_class_test, num_classes, size=size, seed=seed + 1)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


# ------------------------------------------------------------------------------------------------
# Contract-test settings (`test_config=` of the registrations): each writes a tiny copy of the data
# set in its real format under `workdir` and returns the config overrides that point to it.

def cifar_test_config(workdir: Path, *, factory: type, **_: Any) -> dict[str, str]:
    """cifar10 / cifar100: a few images per class in torchvision's pickle folder."""
    variant = factory.layout.name
    return {"data_root": str(write_cifar(Path(workdir) / variant, variant, per_class_train=2, per_class_test=1))}


def medmnist_test_config(workdir: Path, *, factory: type, **_: Any) -> dict[str, str]:
    """bloodmnist: MedMNIST's .npz with a few images per class."""
    return {"data_root": str(write_medmnist(Path(workdir) / factory.flag, factory.flag))}


def folder_test_config(workdir: Path, **_: Any) -> dict[str, str]:
    """folder:PATH: an ImageFolder tree with train/ and test/."""
    return {"path": str(write_image_folder(Path(workdir) / "folder"))}


def npz_test_config(workdir: Path, **_: Any) -> dict[str, str]:
    """npz:PATH: x_train, y_train, x_test, y_test."""
    return {"path": str(write_npz(Path(workdir) / "arrays.npz"))}
