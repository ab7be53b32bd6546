"""Every registered learner: fit on digits with 20 labels returns the metrics it declares."""
from __future__ import annotations

import numpy as np
import pytest

from uslbench.datasets import load_dataset
from uslbench.encoders.pixels import PixelsConfig, PixelsEncoder
from uslbench.catalog import LEARNERS

TINY = {"steps": 4, "labeled_batch": 8, "unlabeled_ratio": 2, "eval_every": 2, "checkpoint_every": 2,
        "queue_size": 48, "pretrain_steps": 3, "pretrain_batch": 16, "distill_steps": 2, "threads": 1}


@pytest.fixture(scope="module")
def digits():
    dataset = load_dataset("digits")
    features = PixelsEncoder(PixelsConfig()).encode(dataset)
    return dataset, features


@pytest.mark.parametrize("name", LEARNERS.names())
def test_fit_returns_the_declared_metrics(name, digits, tmp_path):
    dataset, features = digits
    fields = {f.name for f in LEARNERS.get(name).config_fields()}
    learner = LEARNERS.create(name, dataset="digits", **{k: v for k, v in TINY.items() if k in fields})
    labeled = np.concatenate([np.flatnonzero(dataset.train.labels == c)[:2] for c in range(10)])  # 20 labels
    learner.check(dataset, labeled)
    metrics = learner.fit(dataset, labeled, seed=1, device="cpu", workdir=tmp_path, features=features,
                          encoder=PixelsEncoder(PixelsConfig()))
    assert set(learner.declared_metrics) <= set(metrics), set(learner.declared_metrics) - set(metrics)
    assert 0.0 <= metrics["top1"] <= 100.0
    assert metrics["n_test"] == len(dataset.test) == 450
    assert len(metrics["per_class_top1"]) == 10
    if "curve" in learner.declared_metrics:
        assert metrics["steps"] == metrics["curve"][-1]["step"]
        assert metrics["best_top1_over_training"] >= metrics["top1"] - 1e-9
        assert {"step", "top1", "loss"} <= set(metrics["curve"][0])
