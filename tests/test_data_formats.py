"""Data sets read through the real loaders from fixtures written in each source's on-disk format."""
from __future__ import annotations

import pickle
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from uslbench.datasets import load_dataset
from uslbench.datasets.imagenet import imagenet100_classes
from uslbench.datasets.testing import class_images, write_cifar, write_image_folder, write_medmnist, write_npz
from uslbench.errors import UserError


def _load_quiet(name, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(name, **kwargs)


# CIFAR ------------------------------------------------------------------------------------------
def test_cifar10_pickle_folder_loads_exact_pixels_and_warns_on_checksums(tmp_path):
    root = write_cifar(tmp_path / "data", "cifar10", per_class_train=4, per_class_test=2)
    with pytest.warns(UserWarning, match="differ from the official archive"):
        ds = load_dataset("cifar10", data_root=str(root))
    assert (len(ds.train), len(ds.test), ds.num_classes, ds.image_size) == (40, 20, 10, 32)
    assert ds.train.array.dtype == np.uint8 and ds.train.array.shape == (40, 32, 32, 3)
    expected_x, expected_y = class_images(4, 10, seed=0)
    np.testing.assert_array_equal(ds.train.array, expected_x)   # batches concatenated in order, HWC
    np.testing.assert_array_equal(ds.train.labels, expected_y)
    assert np.bincount(ds.test.labels).tolist() == [2] * 10
    assert ds.class_names[3] == "class3" and ds.default_encoder == "simclr"
    assert set(ds.identity["md5"]) == {"data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                       "data_batch_5", "test_batch", "batches.meta"}


def test_cifar100_fine_labels(tmp_path):
    root = write_cifar(tmp_path, "cifar100", per_class_train=1, per_class_test=1)
    ds = _load_quiet("cifar100", data_root=str(root))
    assert (len(ds.train), ds.num_classes) == (100, 100)
    assert sorted(ds.train.labels.tolist()) == list(range(100))


def test_cifar_identity_names_content_not_path(tmp_path):
    write_cifar(tmp_path / "a", "cifar10", per_class_train=1)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    first = _load_quiet("cifar10", data_root=str(tmp_path / "a")).identity
    assert first == _load_quiet("cifar10", data_root=str(tmp_path / "b")).identity
    assert str(tmp_path) not in repr(first)


def test_cifar_missing_root_names_files_and_download(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset("cifar10", data_root=str(tmp_path / "nowhere"))
    message = str(err.value)
    assert "cifar-10-batches-py/data_batch_1" in message and "--download" in message and "--data-root" in message


def test_cifar_incomplete_and_malformed_folders(tmp_path):
    root = write_cifar(tmp_path, "cifar10", per_class_train=1)
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(UserError, match="missing cifar-10-batches-py/data_batch_3"):
        load_dataset("cifar10", data_root=str(root))
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="not a CIFAR python pickle"):
        load_dataset("cifar10", data_root=str(root))
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps({"data": np.zeros((2, 5), np.uint8),
                                                                               "labels": [0, 1]}))
    with pytest.raises(UserError, match=r"shape \(N, 3072\)"):
        load_dataset("cifar10", data_root=str(root))


# BloodMNIST -------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [28, 64])
def test_bloodmnist_npz_through_medmnist(tmp_path, size):
    root = write_medmnist(tmp_path, size=size, per_class_train=3, per_class_test=2)
    ds = load_dataset("bloodmnist", data_root=str(root), size=size)
    assert (len(ds.train), len(ds.test), ds.num_classes, ds.image_size) == (24, 16, 8, size)
    expected_x, expected_y = class_images(3, 8, size=size, seed=0)
    np.testing.assert_array_equal(ds.train.array, expected_x)   # train split is the pool (val unused)
    np.testing.assert_array_equal(ds.train.labels, expected_y)
    assert ds.class_names[0] == "basophil"
    np.testing.assert_allclose(ds.mean, expected_x.reshape(-1, 3).mean(0) / 255, atol=1e-5)


def test_bloodmnist_missing_file_and_bad_size(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset("bloodmnist", data_root=str(tmp_path), size=64)
    assert "bloodmnist_64.npz" in str(err.value) and "--download" in str(err.value)
    with pytest.raises(UserError, match="28, 64, 128, 224"):
        load_dataset("bloodmnist", data_root=str(tmp_path), size=32)


# folder: ----------------------------------------------------------------------------------------
def test_image_folder_train_test_tree(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class_train=4, per_class_test=2, num_classes=3, size=12)
    ds = load_dataset(f"folder:{root}")
    assert (len(ds.train), len(ds.test), ds.num_classes, ds.image_size) == (12, 6, 3, 12)
    assert ds.class_names == ["class_0", "class_1", "class_2"]
    assert np.bincount(ds.train.labels).tolist() == [4, 4, 4]
    # PNG is lossless: the pixels of the first file of class_1 come back unchanged
    first = sorted((root / "train" / "class_1").iterdir())[0]
    position = ds.train.paths.index(str(first))
    np.testing.assert_array_equal(ds.train.array[position], np.asarray(Image.open(first)))
    shutil.copytree(root, tmp_path / "moved")
    assert load_dataset(f"folder:{tmp_path / 'moved'}").identity == ds.identity


def test_flat_folder_is_unlabeled_selection_only(tmp_path):
    x, _ = class_images(3, 2, size=8)
    for i, image in enumerate(x):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    ds = load_dataset(f"folder:{tmp_path}")
    assert len(ds.train) == 6 and ds.train.labels is None and ds.test is None and not ds.has_train_labels


def test_folder_mixed_sizes_modes_and_unreadable_files(tmp_path):
    for cls, (mode, size) in enumerate([("RGB", 10), ("L", 10), ("RGB", 14)]):
        folder = tmp_path / f"c{cls}"
        folder.mkdir()
        for i in range(2):
            Image.new(mode, (size, size), color=40 * (cls + 1) if mode == "L" else (40 * (cls + 1), 0, 0)).save(
                folder / f"{i}.png")
    (tmp_path / "c0" / "broken.png").write_bytes(b"\x89PNG but truncated")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset(f"folder:{tmp_path}")
    messages = " | ".join(str(w.message) for w in caught)
    assert "skipped 1 unreadable image file(s)" in messages and "broken.png" in messages
    assert "mixed modes" in messages and "mixed sizes" in messages
    assert ds.train.array.shape == (6, 10, 10, 3)        # most common size, RGB
    assert "broken.png" not in " ".join(ds.train.paths)
    grey = ds.train.array[ds.train.labels == 1]
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 0] == 80).all()


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        load_dataset(f"folder:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images found"):
        load_dataset(f"folder:{tmp_path / 'empty'}")


# npz: -------------------------------------------------------------------------------------------
def test_npz_arrays(tmp_path):
    path = write_npz(tmp_path / "d.npz", per_class_train=4, per_class_test=2, num_classes=3, size=10)
    ds = load_dataset(f"npz:{path}")
    assert (len(ds.train), len(ds.test), ds.num_classes, ds.image_size, ds.channels) == (12, 6, 3, 10, 3)
    # channels-first floats in [0, 1] and grey (N, H, W) are accepted too
    x, y = class_images(2, 2, size=6)
    chw = write_npz(tmp_path / "f.npz", x_train=x.transpose(0, 3, 1, 2) / 255.0, y_train=y, x_test=None, y_test=None)
    loaded = load_dataset(f"npz:{chw}")
    np.testing.assert_array_equal(loaded.train.array, x)
    assert loaded.test is None
    grey = write_npz(tmp_path / "g.npz", x_train=x[..., 0], y_train=y, x_test=x[..., 0], y_test=y)
    assert load_dataset(f"npz:{grey}").train.array.shape == (4, 6, 6, 1)


def test_npz_bad_input(tmp_path):
    with pytest.raises(UserError, match="needs an array 'x_train'"):
        load_dataset(f"npz:{write_npz(tmp_path / 'a.npz', x_train=None)}")
    with pytest.raises(UserError, match=r"expected shape \(15,\)"):
        load_dataset(f"npz:{write_npz(tmp_path / 'b.npz', y_train=np.zeros(14, np.int64))}")
    with pytest.raises(UserError, match="x_test and y_test go together"):
        load_dataset(f"npz:{write_npz(tmp_path / 'c.npz', y_test=None)}")
    with pytest.raises(UserError, match="no such file"):
        load_dataset(f"npz:{tmp_path / 'missing.npz'}")


# ImageNet ---------------------------------------------------------------------------------------
def test_imagenet100_class_list_is_package_data():
    classes = imagenet100_classes()
    assert len(classes) == 100 == len(set(classes))
    assert classes[:3] == ["n02869837", "n01749939", "n02488291"] and classes[-1] == "n02090622"


def test_imagenet100_lazy_tree(tmp_path):
    classes = imagenet100_classes()
    for split, count in (("train", 2), ("val", 1)):
        for index, wnid in enumerate(classes):
            folder = tmp_path / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (20 + index % 3, 16), color=(index, i * 50, 0)).save(folder / f"{i}.JPEG")
    (tmp_path / "train" / "n99999999").mkdir()  # an extra class of the full ImageNet is ignored
    ds = load_dataset("imagenet100", data_root=str(tmp_path))
    assert ds.train.array is None and (len(ds.train), len(ds.test), ds.num_classes) == (200, 100, 100)
    wnid = sorted(classes)[5]
    assert ds.class_names[5] == wnid and ds.train.labels[10] == 5
    assert ds.train.image(10).size == (20 + classes.index(wnid) % 3, 16)
    assert str(tmp_path) not in repr(ds.identity)
    shutil.rmtree(tmp_path / "val" / classes[7])
    with pytest.raises(UserError, match=classes[7]):
        load_dataset("imagenet100", data_root=str(tmp_path))


def test_imagenet_missing_root(tmp_path):
    with pytest.raises(UserError, match="train/ and val/"):
        load_dataset("imagenet", data_root=str(tmp_path))
