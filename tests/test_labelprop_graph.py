"""labelprop on a precomputed, cached k-NN graph (issue 10): scikit-learn's LabelSpreading with
kernel="knn" rebuilds the pool's k-NN graph in every fit (minutes on 50,000 CIFAR-10 features);
the probe computes it once with faiss, stores it next to the cached features and hands it to
LabelSpreading through its callable-kernel hook. The spreading must stay scikit-learn's."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from uslbench.catalog import LEARNERS
from uslbench.learners.probes import PrecomputedKnnKernel, knn_graph


def two_per_class(labels: np.ndarray) -> np.ndarray:
    return np.concatenate([np.flatnonzero(labels == c)[:2] for c in range(10)])


@pytest.mark.parametrize("k", [10, 4])
def test_same_spreading_and_predictions_as_sklearn_knn_kernel(digits_dataset, digits_features, k):
    from sklearn.semi_supervised import LabelSpreading

    from uslbench.learners.probes import spread_targets

    features = digits_features
    labeled = two_per_class(digits_dataset.train.labels)
    targets = spread_targets(len(features.train), labeled, digits_dataset.train.labels)
    reference = LabelSpreading(kernel="knn", n_neighbors=k, alpha=0.2, max_iter=1000).fit(features.train, targets)
    pool_nn, test_nn, cached = knn_graph(features, k)
    assert not cached and pool_nn.shape == (len(features.train), k) and test_nn.shape == (len(features.test), k)
    ours = LabelSpreading(kernel=PrecomputedKnnKernel(features.train, pool_nn, test_nn), alpha=0.2,
                          max_iter=1000).fit(features.train, targets)
    assert ours.n_iter_ == reference.n_iter_
    np.testing.assert_allclose(ours.label_distributions_, reference.label_distributions_, atol=1e-12)
    with np.errstate(invalid="ignore", divide="ignore"):  # unreached rows are 0 / 0 in both
        np.testing.assert_allclose(ours.predict_proba(features.test), reference.predict_proba(features.test),
                                   atol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(ours.transduction_, reference.transduction_)


def test_probe_scores_what_sklearn_predicts(digits_dataset, digits_features):
    """The probe's top-1 is that of scikit-learn's own kernel="knn" predictions (no digits test
    point is unreached with 2 labels per class: test_labelprop_unreached)."""
    from sklearn.semi_supervised import LabelSpreading

    from uslbench.learners.probes import spread_targets

    labeled = two_per_class(digits_dataset.train.labels)
    targets = spread_targets(len(digits_features.train), labeled, digits_dataset.train.labels)
    reference = LabelSpreading(kernel="knn", n_neighbors=10, alpha=0.2).fit(digits_features.train, targets)
    expected = 100.0 * float(np.mean(reference.predict(digits_features.test) == digits_dataset.test.labels))
    metrics = LEARNERS.create("labelprop").fit(digits_dataset, labeled, seed=1, features=digits_features)
    assert metrics["top1"] == pytest.approx(expected, abs=1e-9)
    assert metrics["graph_cached"] is False  # no cache_stem: computed in memory


def test_graph_is_cached_next_to_the_features_and_reused(digits_dataset, digits_features, tmp_path):
    features = dataclasses.replace(digits_features, cache_stem=str(tmp_path / "pixels-abc123"))
    labeled = two_per_class(digits_dataset.train.labels)
    probe = LEARNERS.create("labelprop")
    first = probe.fit(digits_dataset, labeled, seed=1, features=features)
    path = tmp_path / "pixels-abc123.knn10.npz"
    assert path.is_file() and first["graph_cached"] is False
    with np.load(path) as stored:
        assert stored["pool"].shape == (len(features.train), 10) and stored["test"].shape == (len(features.test), 10)
    second = probe.fit(digits_dataset, labeled[::2], seed=2, features=features)
    third = probe.fit(digits_dataset, labeled, seed=1, features=features)
    assert second["graph_cached"] is True and third["graph_cached"] is True
    assert {k: v for k, v in third.items() if k != "graph_cached"} == \
        {k: v for k, v in first.items() if k != "graph_cached"}
    # another k is another file; an unreadable file is recomputed, not trusted
    assert LEARNERS.create("labelprop", k=5).fit(digits_dataset, labeled, features=features)["graph_cached"] is False
    assert (tmp_path / "pixels-abc123.knn5.npz").is_file()
    path.write_bytes(b"not an npz")
    again = probe.fit(digits_dataset, labeled, seed=1, features=features)
    assert again["graph_cached"] is False and again["top1"] == first["top1"]


def test_kernel_refuses_other_rows():
    train = np.zeros((5, 2))
    kernel = PrecomputedKnnKernel(train, np.zeros((5, 2), dtype=np.int64), np.zeros((3, 2), dtype=np.int64))
    assert kernel(train, train).shape == (5, 5)
    assert kernel(train, np.zeros((3, 2))).shape == (5, 3)
    with pytest.raises(ValueError, match="5 training rows, got 6"):
        kernel(np.zeros((6, 2)), np.zeros((6, 2)))
    with pytest.raises(ValueError, match="4 query rows"):
        kernel(train, np.zeros((4, 2)))


def test_usl_density_is_cached_next_to_the_features(digits_dataset, digits_features, tmp_path):
    """usl's k-NN density depends only on the features and k: computed once per feature set
    (100 s on 50,000 CIFAR-10 features), read by every later selection; same picks either way."""
    from uslbench.registry import SELECTORS
    from uslbench.selectors.base import SelectionContext

    stem = str(tmp_path / "pixels-abc123")

    def select(seed, budget=20, cache_stem=stem):
        context = SelectionContext(pool_size=len(digits_features.train), feature_cache_stem=cache_stem)
        return SELECTORS.create("usl").select(digits_features.train, budget, seed=seed, context=context)

    first = select(1)
    k = first.info["resolved_config"]["knn_k"]
    assert first.info["knn_density_cached"] is False and (tmp_path / f"pixels-abc123.usl_density_k{k}.npy").is_file()
    again = select(1)
    assert again.info["knn_density_cached"] is True
    np.testing.assert_array_equal(again.indices, first.indices)
    other = select(2, budget=30)  # another seed and budget (this k): same density file
    assert other.info["knn_density_cached"] is (other.info["resolved_config"]["knn_k"] == k)
    uncached = select(2, budget=30, cache_stem=None)
    assert uncached.info["knn_density_cached"] is False
    np.testing.assert_array_equal(uncached.indices, other.indices)


def test_knn_excluding_self_cache(digits_features, tmp_path):
    """usl_t's k-NN lists (the local loss's neighbours): cached like usl's density; identical."""
    from uslbench.selectors.toolkit import cached_knn_excluding_self, knn_excluding_self

    stem = str(tmp_path / "pixels-abc123")
    d2, idx, _ = knn_excluding_self(digits_features.train, 7)
    first = cached_knn_excluding_self(digits_features.train, 7, stem)
    second = cached_knn_excluding_self(digits_features.train, 7, stem)
    assert first[3] is False and second[3] is True and (tmp_path / "pixels-abc123.knn_others_k7.npz").is_file()
    for got in (first, second):
        np.testing.assert_array_equal(got[1], idx)
        np.testing.assert_allclose(got[0], d2)
    assert cached_knn_excluding_self(digits_features.train, 7, None)[3] is False
