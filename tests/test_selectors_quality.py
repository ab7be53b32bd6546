"""On digits (pixels, linear probe) the label-free methods beat random at a small budget."""
from __future__ import annotations

import numpy as np
import pytest

from uslbench.datasets import load_dataset
from uslbench.registry import ENCODERS, LEARNERS, SELECTORS

SEEDS = (1, 2, 3)
BUDGET = 20


@pytest.fixture(scope="module")
def digits():
    dataset = load_dataset("digits")
    return dataset, ENCODERS.create("pixels").encode(dataset)


def mean_accuracy(name, digits):
    dataset, features = digits
    learner = LEARNERS.create("linear")
    accuracies = []
    for seed in SEEDS:
        indices = SELECTORS.create(name, dataset="digits").select(features.train, BUDGET, seed=seed).indices
        accuracies.append(learner.fit(dataset, indices, seed=seed, features=features)["top1"])
    return float(np.mean(accuracies))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["usl", "usl_t", "typiclust", "probcover"])
def test_beats_random_on_digits(name, digits):
    assert mean_accuracy(name, digits) > mean_accuracy("random", digits)
