"""The contract every registered data set and encoder meets, driven by the registries: each entry's
test settings (a tiny copy of its files, random weights) come from its registration (`test_config`).

Data sets: splits of the declared size and types, labels in range, images of the declared mode, an
identity that names the content and never the path (moving the files keeps every cache key).
Encoders: float32 (N, d) features with unit rows for train and test, the same on a second run,
and an identity with the weights' digest but never their path."""
from __future__ import annotations

import dataclasses
import json
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from uslbench.datasets import load_dataset
from uslbench.datasets.base import Dataset, ImageSplit
from uslbench.catalog import DATASETS, ENCODERS
from uslbench.errors import UserError



def load(name, workdir):
    overrides = DATASETS.get(name).test_overrides(workdir)
    with warnings.catch_warnings():  # tiny copies: "found 3 class folders, expected 1000" and the like
        warnings.simplefilter("ignore")
        return load_dataset(name, **overrides), overrides


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_contract(name, tmp_path):
    dataset, overrides = load(name, tmp_path / "a")
    traits = DATASETS.traits(name)
    assert isinstance(dataset, Dataset) and dataset.name.split(":", 1)[0] == name
    assert bool(overrides) == traits.needs_files  # a data set that reads files is tested on a written copy
    if not traits.needs_files:
        assert dataset.pool_size == traits.pool_size
    assert dataset.default_encoder in ENCODERS
    assert dataset.has_images == traits.images
    # a data set of precomputed features names an encoder that does not read images, and only it
    assert ENCODERS.traits(dataset.default_encoder).reads_images == traits.images
    if traits.images:
        assert len(dataset.mean) == len(dataset.std) == dataset.channels and min(dataset.std) > 0
    for split_name, split in (("train", dataset.train), ("test", dataset.test)):
        assert len(split) > 0
        if split.labels is not None:
            assert split.labels.dtype == np.int64 and split.labels.shape == (len(split),)
            assert 0 <= split.labels.min() and split.labels.max() < dataset.num_classes
        if split.array is not None:
            assert split.array.dtype == np.uint8 and split.array.shape[1:] == (
                dataset.image_size, dataset.image_size, dataset.channels)
        if not traits.images:  # one finite float32 row per image, and no image to read
            matrix = dataset.features[split_name]
            assert matrix.dtype == np.float32 and matrix.shape[0] == len(split) and np.isfinite(matrix).all()
            with pytest.raises(UserError, match="holds precomputed features, no images"):
                split.image(0)
            continue
        image = split.image(len(split) - 1)
        assert isinstance(image, Image.Image) and image.mode == ("L" if dataset.channels == 1 else "RGB")
    assert len(np.unique(dataset.train.labels)) == dataset.num_classes
    # the identity names the content: the same after the files move, never holding the path
    text = json.dumps(dataset.identity, sort_keys=True)
    assert str(tmp_path) not in text
    if traits.needs_files:
        shutil.copytree(tmp_path / "a", tmp_path / "moved")
        moved = {k: v.replace(str(tmp_path / "a"), str(tmp_path / "moved")) for k, v in overrides.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            again = load_dataset(name, **moved)
        assert moved != overrides and json.dumps(again.identity, sort_keys=True) == text


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory):
    """4 train and 2 test images of a written CIFAR-10 copy (CLIP's ViT-B/16 runs at 224 px on CPU)."""
    dataset, _ = load("cifar10", tmp_path_factory.mktemp("cifar"))
    return dataclasses.replace(dataset, train=ImageSplit(dataset.train.labels[:4], dataset.train.array[:4]),
                               test=ImageSplit(dataset.test.labels[:2], dataset.test.array[:2]))


# CLIP's ViT-B/16 at 224 px takes ~9 s on a CPU; every other encoder ~3 s or less
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "clip" else n
                                  for n in ENCODERS.names()])
def test_encoder_contract(name, tiny_cifar, tmp_path, one_torch_thread):
    if name == "clip":
        pytest.importorskip("open_clip")
    entry = ENCODERS.get(name)
    overrides = entry.test_overrides(tmp_path / "a")
    encoder = ENCODERS.create(name, dataset="cifar10", **overrides)
    encoder.use_results_root(tmp_path / "results")
    if not entry.traits.reads_images:  # it serves the embeddings of a features:PATH data set, and refuses images
        with pytest.raises(UserError):
            encoder.check(tiny_cifar)
        tiny_cifar = load("features", tmp_path / "features")[0]
    encoder.check(tiny_cifar)
    features = encoder.encode(tiny_cifar)
    for split, matrix in ((tiny_cifar.train, features.train), (tiny_cifar.test, features.test)):
        assert matrix.dtype == np.float32 and matrix.ndim == 2 and matrix.shape[0] == len(split)
        assert np.isfinite(matrix).all() and np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    assert features.train.shape[1] == features.test.shape[1]
    # weights at another path, same content: same identity (digest, not path) and same features
    other = encoder  # without a weights file: the same object again (building CLIP twice costs ~10 s)
    if "weights" in overrides:
        assert entry.traits.needs_weights
        shutil.copytree(tmp_path / "a", tmp_path / "b")
        other = ENCODERS.create(name, dataset="cifar10", **{**overrides, "weights": overrides["weights"].replace(
            str(tmp_path / "a"), str(tmp_path / "b"))})
        other.use_results_root(tmp_path / "results")
        other.check(tiny_cifar)
    assert np.array_equal(other.encode(tiny_cifar).train, features.train), "same weights, same features"
    identity = json.dumps(encoder.identity(), sort_keys=True)
    assert identity == json.dumps(other.identity(), sort_keys=True) and str(tmp_path) not in identity
