"""Empty class folders (issue 12, item 4): never a class; left out with a warning, the same way
in train/ and test/, so the class list, the labels and "classes covered" agree."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from uslbench.datasets import load_dataset
from uslbench.datasets.testing import write_image_folder
from uslbench.errors import UserError


def load_with_warnings(path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_dataset(f"folder:{path}")
    return dataset, [str(w.message) for w in caught]


def empty(folder):
    shutil.rmtree(folder)
    folder.mkdir()


def test_empty_train_class_folder_is_left_out_with_its_test_images(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class_train=3, per_class_test=2, num_classes=4, size=8)
    empty(root / "train" / "class_1")
    ds, messages = load_with_warnings(root)
    assert ds.num_classes == 3 and ds.class_names == ["class_0", "class_2", "class_3"]
    assert np.bincount(ds.train.labels).tolist() == [3, 3, 3]
    assert np.bincount(ds.test.labels).tolist() == [2, 2, 2] and len(ds.test) == 6
    assert messages == [f"folder:{root}: 1 empty class folder(s) left out: train/class_1; "
                        "their 2 test image(s) left out too"]
    # the remaining labels still name the right folders
    for split in (ds.train, ds.test):
        for path, label in zip(split.paths, split.labels):
            assert f"/{ds.class_names[label]}/" in path


def test_empty_test_class_folder_warns_that_the_class_is_not_evaluated(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class_train=3, per_class_test=2, num_classes=3, size=8)
    empty(root / "test" / "class_2")
    (root / "test" / "class_9").mkdir()  # an empty test folder of a class train/ lacks
    ds, messages = load_with_warnings(root)
    assert (ds.num_classes, len(ds.train), len(ds.test)) == (3, 9, 4)
    assert messages == [f"folder:{root}: 1 empty class folder(s) in test/ with no train/ folder ignored: test/class_9",
                        f"folder:{root}: 1 class(es) have no test images, so they are not evaluated: test/class_2"]
    Image.new("RGB", (8, 8)).save(root / "test" / "class_9" / "x.png")
    with pytest.raises(UserError, match="test/ has classes absent from train/: class_9"):
        load_dataset(f"folder:{root}")


def test_empty_class_folder_without_splits(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class_train=2, num_classes=3, size=8, splits=False)
    (root / "class_3_empty").mkdir()
    empty(root / "class_0")
    ds, messages = load_with_warnings(root)
    assert (ds.num_classes, ds.class_names, len(ds.train)) == (2, ["class_1", "class_2"], 4)
    assert np.bincount(ds.train.labels).tolist() == [2, 2]
    assert messages == [f"folder:{root}: 2 empty class folder(s) left out: class_0, class_3_empty"]


def test_oracle_covers_every_class_after_an_empty_folder(tmp_path):
    """Before: the empty folder was a class, and the oracle reported 'classes covered 3/4'."""
    from uslbench.harness.pipeline import run_spec
    from uslbench.harness.spec import RunSpec

    root = write_image_folder(tmp_path / "imgs", per_class_train=3, per_class_test=1, num_classes=4, size=8)
    empty(root / "train" / "class_3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = run_spec(RunSpec(dataset=f"folder:{root}", selector="stratified", learner="linear", budget=3,
                                   seed=1, encoder="pixels"), tmp_path / "results", echo=lambda m: None)
    record = outcome.record
    assert (record["classes_covered"], record["dataset_summary"]["num_classes"]) == (3, 3)
    assert record["class_histogram"] == [1, 1, 1] and record["dataset_summary"]["test_size"] == 3
