"""Shared fixtures. Progress bars stay quiet in tests."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("USLBENCH_QUIET", "1")


@pytest.fixture(scope="session")
def digits_dataset():
    from uslbench.datasets import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_features(digits_dataset):
    from uslbench.catalog import ENCODERS

    return ENCODERS.create("pixels").encode(digits_dataset)


@pytest.fixture
def one_torch_thread():
    """Small convolutions run faster on one thread than on two contended ones (shared CI cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """A tiny synthetic CIFAR-10 in torchvision's on-disk format (2 train / 1 test image per class)."""
    import warnings

    from uslbench.datasets import load_dataset
    from uslbench.datasets.testing import write_cifar

    root = write_cifar(tmp_path_factory.mktemp("cifar"), "cifar10", per_class_train=2, per_class_test=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the synthetic files differ from the official checksums
        return load_dataset("cifar10", data_root=str(root))


def digits_subset(n_pool: int, n_test: int):
    """The digits data set cut to its first n_pool pool and n_test test images."""
    import dataclasses

    from uslbench.datasets import load_dataset
    from uslbench.datasets.base import ImageSplit

    full = load_dataset("digits")
    return dataclasses.replace(
        full, train=ImageSplit(labels=full.train.labels[:n_pool], array=full.train.array[:n_pool]),
        test=ImageSplit(labels=full.test.labels[:n_test], array=full.test.array[:n_test]),
        identity={**full.identity, "subset": f"{n_pool}/{n_test}"})


@pytest.fixture(scope="module")
def small_digits():
    """The digits data set cut to a 240-image pool and 120 test images (fast, still 10 classes)."""
    return digits_subset(240, 120)


@pytest.fixture
def results_root(tmp_path):
    return tmp_path / "results"


def gaussian_mixture(n: int = 600, d: int = 16, clusters: int = 8, seed: int = 0) -> np.ndarray:
    """Seeded, L2-normalised Gaussian-mixture features."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d)) * 3
    x = centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# --- real CIFAR-10 ---------------------------------------------------------------------------------
REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
CIFAR10_JPEG = REPO.parent / "shared" / "data" / "cifar10"   # the JPEG copy kept beside the repository
CIFAR10_TRAIN, CIFAR10_TEST = 1000, 500                      # the first images of each split, original order


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory):
    """A torchvision-format CIFAR-10 folder (pass as --data-root) with the first 1,000 training
    and 500 test images of the real data set, built once per session from ../shared/data/cifar10/.
    CI has that folder beside the clone: its absence is a failure, not a skip."""
    import os
    from pathlib import Path

    from uslbench.datasets.cifar_jpeg import write_cifar10_subset

    source = Path(os.environ.get("USLBENCH_CIFAR10_JPEG", CIFAR10_JPEG))
    if not (source / "cifar10-jpeg.tar.gz").is_file():
        pytest.fail(f"Real CIFAR-10 is needed by this test: no cifar10-jpeg.tar.gz in {source} (the shared data "
                    "folder beside the repository; set USLBENCH_CIFAR10_JPEG to its location).")
    return write_cifar10_subset(source, tmp_path_factory.mktemp("cifar10"), CIFAR10_TRAIN, CIFAR10_TEST)


@pytest.fixture(scope="session")
def cifar10_real(cifar10_root):
    """The loaded real CIFAR-10 subset (uslbench Dataset)."""
    import warnings

    from uslbench.datasets import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checksums differ from the official archive, by design
        return load_dataset("cifar10", data_root=str(cifar10_root))
