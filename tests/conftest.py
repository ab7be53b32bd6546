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
    from uslbench.registry import ENCODERS

    return ENCODERS.create("pixels").encode(digits_dataset)


@pytest.fixture
def one_torch_thread():
    """Small convolutions run faster on one thread than on two contended ones (shared CI cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def results_root(tmp_path):
    return tmp_path / "results"


def gaussian_mixture(n: int = 600, d: int = 16, clusters: int = 8, seed: int = 0) -> np.ndarray:
    """Seeded, L2-normalised Gaussian-mixture features."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d)) * 3
    x = centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
