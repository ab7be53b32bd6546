"""The contract every registered learner meets: fit on digits with 20 labels returns the metrics it
declares, reads only the inputs its traits say (frozen features or the images), and repeats exactly
with the same seed. Each entry's small schedule comes from its registration (`test_config`)."""
from __future__ import annotations

import numpy as np
import pytest

from uslbench.datasets import load_dataset
from uslbench.encoders.pixels import PixelsConfig, PixelsEncoder
from uslbench.catalog import LEARNERS



@pytest.fixture(scope="module")
def digits():
    dataset = load_dataset("digits")
    features = PixelsEncoder(PixelsConfig()).encode(dataset)
    labeled = np.concatenate([np.flatnonzero(dataset.train.labels == c)[:2] for c in range(10)])  # 20 labels
    return dataset, features, labeled


def fit(name, digits, workdir, seed=1):
    """Fit with only the input the learner's traits name: features for feature learners, the
    encoder (and images) for the others; a learner that reads the other input fails here."""
    dataset, features, labeled = digits
    learner = LEARNERS.create(name, dataset="digits", **LEARNERS.get(name).test_overrides(workdir))
    learner.check(dataset, labeled)
    if LEARNERS.traits(name).uses_features:
        inputs = dict(features=features, encoder=None)
    else:
        inputs = dict(features=None, encoder=PixelsEncoder(PixelsConfig()))
    return learner, learner.fit(dataset, labeled, seed=seed, device="cpu", workdir=workdir, **inputs)


@pytest.mark.parametrize("name", LEARNERS.names())
def test_fit_returns_the_declared_metrics(name, digits, tmp_path):
    dataset = digits[0]
    learner, metrics = fit(name, digits, tmp_path / "a")
    assert set(learner.declared_metrics) <= set(metrics), set(learner.declared_metrics) - set(metrics)
    assert 0.0 <= metrics["top1"] <= 100.0
    assert metrics["n_test"] == len(dataset.test) == 450
    assert len(metrics["per_class_top1"]) == 10
    correct = sum(round(acc * count / 100) for acc, count in
                  zip(metrics["per_class_top1"], np.bincount(dataset.test.labels, minlength=10)))
    assert correct == round(metrics["top1"] * 450 / 100)  # top1 and the per-class figures agree
    if "curve" in learner.declared_metrics:
        assert metrics["steps"] == metrics["curve"][-1]["step"]
        assert metrics["best_top1_over_training"] >= metrics["top1"] - 1e-9
        assert {"step", "top1", "loss"} <= set(metrics["curve"][0])
    _, again = fit(name, digits, tmp_path / "b")   # a fresh workdir: no checkpoint to resume from
    assert again["top1"] == metrics["top1"], "same seed, same data: the same accuracy"
