"""Labels that do not fit (issue 12, item 5): every source's labels are checked at load time by
one shared function (datasets.base.validate_labels): integer ids, inside the declared classes
(refused naming the values), declared classes present in train (a warning). An npz whose labels
are 1..C is remapped to 0..C-1 with a warning, never padded with an empty class 0."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from uslbench.datasets import load_dataset
from uslbench.datasets.testing import class_images, write_cifar, write_medmnist, write_npz
from uslbench.errors import UserError


def load(name, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_dataset(name, **kwargs)
    return dataset, [str(w.message) for w in caught if "official archive" not in str(w.message)]


def test_npz_labels_one_to_c_are_remapped_not_padded(tmp_path):
    x, y = class_images(3, 4, size=8)            # labels 0..3
    xt, yt = class_images(2, 4, size=8, seed=1)
    path = write_npz(tmp_path / "d.npz", x_train=x, y_train=y + 1, x_test=xt, y_test=yt + 1)
    ds, messages = load(f"npz:{path}")
    assert ds.num_classes == 4 and ds.class_names == ["1", "2", "3", "4"]
    np.testing.assert_array_equal(ds.train.labels, y)
    np.testing.assert_array_equal(ds.test.labels, yt)
    assert messages == [f"npz:{path}: y_train holds 4 class ids 1..4 (no 0); remapped to 0..3 in sorted order "
                        "(class names keep the original ids)"]


def test_npz_labels_with_gaps_and_float_ids(tmp_path):
    x, y = class_images(2, 3, size=8)
    ids = np.array([0, 2, 5])
    path = write_npz(tmp_path / "g.npz", x_train=x, y_train=ids[y].astype(np.float32), x_test=None, y_test=None)
    ds, messages = load(f"npz:{path}")
    assert ds.num_classes == 3 and ds.class_names == ["0", "2", "5"]
    np.testing.assert_array_equal(ds.train.labels, y)
    assert messages == [f"npz:{path}: y_train holds 3 class ids 0, 2, 5 (no 1, 3, 4); remapped to 0..2 in sorted "
                        "order (class names keep the original ids)"]
    plain = write_npz(tmp_path / "p.npz")        # labels 0..C-1: nothing to say
    assert load(f"npz:{plain}")[1] == []


def test_npz_test_ids_absent_from_train_are_refused(tmp_path):
    x, y = class_images(2, 3, size=8)
    yt = np.array([0, 1, 2, 7, 7, 9])
    path = write_npz(tmp_path / "t.npz", x_train=x, y_train=y, x_test=x, y_test=yt)
    with pytest.raises(UserError, match=r"y_test holds class ids that y_train never uses: 7 \(2 image\(s\)\), "
                                        r"9 \(1 image\(s\)\)"):
        load_dataset(f"npz:{path}")
    fractions = write_npz(tmp_path / "f.npz", x_train=x, y_train=y + 0.5, x_test=None, y_test=None)
    with pytest.raises(UserError, match="integer class ids"):
        load_dataset(f"npz:{fractions}")


@pytest.mark.filterwarnings("ignore:.*differ from the official archive")
def test_cifar_labels_outside_the_declared_classes_are_refused(tmp_path):
    root = write_cifar(tmp_path, "cifar10", per_class_train=1)
    batch_path = root / "cifar-10-batches-py" / "data_batch_2"
    batch = pickle.loads(batch_path.read_bytes())
    batch["labels"] = [10, 255]
    batch_path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UserError, match=r"cifar10: train labels must be class ids 0\.\.9 \(the 10 declared classes\); "
                                        r"2 image\(s\) carry other values: 10 \(1 image\(s\)\), 255 \(1 image\(s\)\)"):
        load_dataset("cifar10", data_root=str(root))


def test_bloodmnist_labels_outside_the_declared_classes_are_refused(tmp_path):
    root = write_medmnist(tmp_path, per_class_train=2, per_class_test=1)
    with np.load(root / "bloodmnist.npz") as archive:
        arrays = dict(archive)
    arrays["test_labels"][:3, 0] = 8          # 8 classes: ids 0..7
    np.savez_compressed(root / "bloodmnist.npz", **arrays)
    with pytest.raises(UserError, match=r"bloodmnist: test labels must be class ids 0\.\.7 .*8 \(3 image\(s\)\)"):
        load_dataset("bloodmnist", data_root=str(root))


def test_a_declared_class_without_train_images_is_named(tmp_path):
    root = write_cifar(tmp_path, "cifar10", per_class_train=1, per_class_test=2)
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        path = root / "cifar-10-batches-py" / name
        batch = pickle.loads(path.read_bytes())
        batch["labels"] = [0 if label == 9 else label for label in batch["labels"]]
        path.write_bytes(pickle.dumps(batch, protocol=2))
    ds, messages = load("cifar10", data_root=str(root))
    assert ds.num_classes == 10
    assert messages == ["cifar10: 1 of the 10 classes have no train image and cannot be learned: class9 "
                        "(2 test image(s) of them count as errors)"]


def test_split_labels_must_be_whole_numbers():
    from uslbench.datasets.base import ImageSplit, as_labels

    images = np.zeros((3, 4, 4, 1), np.uint8)
    assert ImageSplit(labels=np.array([0.0, 1.0, 2.0]), array=images).labels.dtype == np.int64
    for bad, message in (([0.0, 1.5, 2.0], "not whole numbers"), ([0, np.nan, 1], "not whole numbers"),
                         (["a", "b", "c"], "dtype <U1"), ([True, False, True], "dtype bool")):
        with pytest.raises(UserError, match=message):
            ImageSplit(labels=np.array(bad), array=images)
    with pytest.raises(UserError, match="1-D"):
        as_labels(np.zeros((3, 2)))
