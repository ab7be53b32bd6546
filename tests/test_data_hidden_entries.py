"""Hidden entries (issue 12, item 3): `.ipynb_checkpoints`, `.DS_Store`, macOS '._x.png' files are
ignored everywhere, the same way: train/, test/, class folders, flat folders, ImageNet trees."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from uslbench.datasets import load_dataset
from uslbench.datasets.imagenet import imagenet100_classes
from uslbench.datasets.testing import class_images, write_image_folder


def litter(folder: Path) -> None:
    """What notebooks and macOS leave behind: a hidden folder holding an image, a .DS_Store file
    and an AppleDouble '._' file with an image extension (not an image)."""
    checkpoints = folder / ".ipynb_checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 12), color=(9, 9, 9)).save(checkpoints / "copy-checkpoint.png")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "._0000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")


def quiet_load(name: str, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_dataset(name, **kwargs)
    return dataset, [str(w.message) for w in caught]


def test_train_test_tree_with_hidden_entries_everywhere(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class_train=4, per_class_test=2, num_classes=3, size=12)
    for folder in (root, root / "train", root / "test", root / "train" / "class_1", root / "test" / "class_2"):
        litter(folder)
    ds, messages = quiet_load(f"folder:{root}")
    assert (len(ds.train), len(ds.test), ds.num_classes) == (12, 6, 3)
    assert ds.class_names == ["class_0", "class_1", "class_2"]
    assert np.bincount(ds.train.labels).tolist() == [4, 4, 4] and np.bincount(ds.test.labels).tolist() == [2, 2, 2]
    assert not any(part.startswith(".") for p in ds.train.paths + ds.test.paths
                   for part in Path(p).relative_to(root).parts)
    assert messages == []  # hidden entries are not data: nothing to warn about


def test_class_folders_without_splits_and_flat_folders(tmp_path):
    root = write_image_folder(tmp_path / "classes", per_class_train=3, num_classes=2, size=12, splits=False)
    litter(root)
    litter(root / "class_0")
    ds, messages = quiet_load(f"folder:{root}")
    assert (len(ds.train), ds.num_classes, ds.class_names) == (6, 2, ["class_0", "class_1"])
    assert messages == []
    flat = tmp_path / "flat"
    flat.mkdir()
    x, _ = class_images(3, 2, size=8)
    for i, image in enumerate(x):
        Image.fromarray(image).save(flat / f"{i:04d}.png")
    litter(flat)
    ds, messages = quiet_load(f"folder:{flat}")
    assert len(ds.train) == 6 and ds.train.labels is None and messages == []


def test_imagenet_tree_with_hidden_entries(tmp_path):
    classes = imagenet100_classes()
    for split in ("train", "val"):
        for index, wnid in enumerate(classes):
            folder = tmp_path / split / wnid
            folder.mkdir(parents=True)
            Image.new("RGB", (16, 16), color=(index, 0, 0)).save(folder / "0.JPEG")
        litter(tmp_path / split)
        litter(tmp_path / split / classes[3])
    ds = load_dataset("imagenet100", data_root=str(tmp_path))
    assert (len(ds.train), len(ds.test), ds.num_classes) == (100, 100, 100)
    full, _ = quiet_load("imagenet", data_root=str(tmp_path))  # classes = the visible folders of train/
    assert full.num_classes == 100 and ".ipynb_checkpoints" not in full.class_names
