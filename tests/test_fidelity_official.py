"""Selectors against golden fixtures from the official code (issue 11, section 1).

`shared/reference/official_selection/` (beside this checkout; another folder through
USLBENCH_OFFICIAL_SELECTION) holds 33 cases made by running, unmodified on CPU, the official USL
code (TonyLianLong/UnsupervisedSelectiveLabeling, commit ceaab3c) and the official TypiClust /
ProbCover code (avihu111/TypiClust, commit 4097a71). Each case holds its inputs (features, a
fixed cluster assignment, the official density) and the official outputs; MANIFEST.json states
the conventions. The tests feed those inputs to uslbench's selection steps (the functions the
selectors compose) and assert the official picks in order, regulariser values, coverage per pick
and typicality. Where the reference crashes or degenerates they assert uslbench's documented
behaviour instead:

* ProbCover after full coverage: the reference appends index 0 again and again; uslbench
  continues farthest-first from its picks (no duplicates).
* ProbCover with N mod 500 != 0: the reference gives the last N mod 500 rows no out-edges (they
  can never be chosen); uslbench's graph covers every row.
* USL ImageNet-CLIP path with an empty cluster id below the budget: the reference compares pick
  positions with cluster ids and stops on an assert; uslbench excludes the pick of the point's
  own cluster by cluster id.
* USL CIFAR path with more clusters than the budget: the reference raises in F.one_hot;
  uslbench picks in the first `budget` clusters by id, as the reference's ImageNet path does.
* Regulariser values: the reference turns an ignored distance into 1e10 (adding 1e10**-alpha,
  at most 1e-5, per ignored pick); uslbench adds nothing, so the official values are compared
  with uslbench's plus that offset, computed here from the picks.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest

from uslbench.catalog import SELECTORS
from uslbench.selectors import probcover as probcover_module
from uslbench.selectors import typiclust as typiclust_module
from uslbench.selectors import usl as usl_module
from uslbench.selectors.base import SelectionContext
from uslbench.selectors.probcover import greedy_max_coverage, probcover_picks
from uslbench.selectors.toolkit import KMeansResult, range_graph
from uslbench.selectors.typiclust import typiclust_picks
from uslbench.selectors.usl import (DATASET_PRESETS, PRESETS, cluster_picks, knn_density, regularised_selection,
                                    utility_from_mean_sq)


ROOT = Path(os.environ.get("USLBENCH_OFFICIAL_SELECTION")
            or Path(__file__).resolve().parents[2] / "shared" / "reference" / "official_selection")
pytestmark = pytest.mark.skipif(not (ROOT / "MANIFEST.json").is_file(),
                                reason="shared/reference/official_selection is not beside this checkout")


@functools.lru_cache(maxsize=1)
def manifest() -> dict:
    return json.loads((ROOT / "MANIFEST.json").read_text())


def family(name: str) -> list[str]:
    if not (ROOT / "MANIFEST.json").is_file():
        return []
    return [case for case, entry in manifest()["cases"].items() if entry["family"] == name]


@functools.lru_cache(maxsize=None)
def load(case: str) -> dict[str, np.ndarray]:
    with np.load(ROOT / manifest()["cases"][case]["file"]) as arrays:
        return {key: arrays[key] for key in arrays.files}


def utility_of(z: dict) -> np.ndarray:
    return utility_from_mean_sq(z["neighbors_dist"].astype(np.float64))


def sq_dists(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """float64 squared L2 in difference form (as the reference; no cancellation)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def ignored_offset(x: np.ndarray, labels: np.ndarray, picks: np.ndarray, alpha: float, *, cifar_path: bool,
                   nearest: int = 0, horizon: float = 0.0, count_own_cluster: bool = False) -> np.ndarray:
    """What the reference's 1e10 stand-ins add to Reg_i: (number of ignored picks) * 1e10**-alpha.
    CIFAR path: the own cluster's column, and the picks at squared distance >= horizon. ImageNet
    path: among the `nearest` nearest picks (fewer picks: KeOps pads with +inf, adding 0), the
    point itself (MoCo) or the pick at the position equal to the point's cluster id (CLIP; the
    picks are in cluster-id order with no empty cluster below the budget in these cases)."""
    d2 = sq_dists(x, x[picks])
    if cifar_path:
        ignored = labels[picks][None, :] == labels[:, None]
        if horizon > 0:
            ignored |= d2 >= horizon
        return ignored.sum(1) * 1e10 ** -alpha
    columns = np.argsort(d2, axis=1, kind="stable")[:, :nearest]
    if count_own_cluster:
        ignored = picks[columns] == np.arange(len(x))[:, None]
    else:
        ignored = columns == labels[:, None]
    return ignored.sum(1) * 1e10 ** -alpha


def usl_arguments(preset: str) -> dict:
    p = PRESETS[preset]
    return dict(passes=p["iters"], lam=p["lam"], m_reg=p["m_reg"], alpha=p["alpha"], nearest=p["reg_nearest"],
                horizon=p["horizon"], count_own_cluster=p["count_own_cluster"])


# ---------------------------------------------------------------- presets against the configs


def test_presets_equal_the_reference_configs():
    """cifar10/cifar100/imagenet_moco/imagenet_clip carry the reference configs' values (alpha on
    squared distances as there); ImageNet data sets take the MoCo row, clip_usl the CLIP row."""
    configs = manifest()["other_observations"]["configs_read"]
    for preset, config in [("cifar10", "cifar10"), ("cifar100", "cifar100"), ("imagenet_moco", "imagenet_moco"),
                           ("imagenet_clip", "imagenet_clip")]:
        ours, ref = PRESETS[preset], configs[config]
        reg = ref["REG"]
        assert (ours["knn_k"], ours["kmeans_iters"], ours["iters"]) == (ref["KNN_K"], ref["K_MEANS_NITERS"], reg["NITERS"])
        assert (ours["lam"], ours["m_reg"], ours["alpha"]) == (reg["W"], reg["MOMENTUM"], reg["ALPHA"])
        if preset.startswith("imagenet"):  # the ImageNet path: horizon_num, exclude_same_cluster, no horizon_dist
            assert ours["reg_nearest"] == reg["HORIZON_NUM"] and ours["horizon"] == 0.0
            assert ours["count_own_cluster"] is (not reg["EXCLUDE_SAME_CLUSTER"])
        else:  # the CIFAR path: all picks, own cluster excluded, horizon_dist (4 on unit vectors = none)
            assert ours["reg_nearest"] == 0 and ours["count_own_cluster"] is False
            assert ours["horizon"] == (0.0 if reg["HORIZON_DIST"] >= 4 else reg["HORIZON_DIST"])
    assert DATASET_PRESETS["imagenet"] == DATASET_PRESETS["imagenet100"] == "imagenet_moco"
    assert SELECTORS.create("usl", dataset="imagenet").config.preset == "imagenet_moco"
    assert SELECTORS.create("clip_usl").config.preset == "imagenet_clip"


# ---------------------------------------------------------------- USL density


@pytest.mark.parametrize("case", family("usl_density"))
def test_usl_density(case):
    """Mean of the K smallest SQUARED distances, the point itself counted (its 0)."""
    z = load(case)
    assert (z["d_knns"][:, 0] == 0).all()  # the official k-NN lists start with the point itself
    mean_sq, _ = knn_density(z["X"], int(z["K"]))
    np.testing.assert_allclose(mean_sq, z["neighbors_dist"], rtol=1e-5)
    np.testing.assert_allclose(mean_sq, z["neighbors_dist_float64_reference_NOT_OFFICIAL"], rtol=1e-5)


# ---------------------------------------------------------------- USL selection passes


@pytest.mark.parametrize("case", family("usl_noreg"))
def test_usl_pass_without_regulariser(case):
    """Per cluster in id order (empty skipped), argmin density; the first `budget` clusters pick."""
    z, params = load(case), manifest()["cases"][case]["params"]
    picks = cluster_picks(utility_of(z), z["cluster_labels"], params["budget"])
    assert picks.tolist() == z["selected"].tolist()
    # with uslbench's own density (same K) too
    mean_sq, _ = knn_density(z["X"], params["knn_k"])
    assert cluster_picks(utility_from_mean_sq(mean_sq), z["cluster_labels"], params["budget"]).tolist() \
        == z["selected"].tolist()


@pytest.mark.parametrize("case", family("usl_cifar"))
def test_usl_cifar_path(case):
    """cifar10 / cifar100 presets: 10 passes (9 updates), own cluster's pick excluded, all picks,
    cifar100 only squared distances < 1. Every pass's picks and regulariser."""
    z = load(case)
    preset = "cifar100" if "cifar100" in case else "cifar10"
    args = usl_arguments(preset)
    assert sq_dists(z["X"], z["X"]).max() < 4  # horizon_dist 4 of cifar10 ignores nothing here
    trace: list = []
    result = regularised_selection(z["X"], z["cluster_labels"], utility_of(z), len(z["selected"]), trace=trace,
                                   **args)
    assert len(trace) == 10 == len(z["selected_by_iters"])
    for t, (picks, _) in enumerate(trace):
        assert picks.tolist() == z["selected_by_iters"][t].tolist(), f"pass {t}"
    assert result.selected.tolist() == z["selected"].tolist()
    offset = np.zeros(len(z["X"]))
    for t in range(1, 10):
        new = ignored_offset(z["X"], z["cluster_labels"], trace[t - 1][0], args["alpha"], cifar_path=True,
                             horizon=args["horizon"])
        offset = args["m_reg"] * offset + (1 - args["m_reg"]) * new
        np.testing.assert_allclose(trace[t][1] + offset, z["regularizer_used_by_iter"][t], rtol=1e-5, atol=1e-12,
                                   err_msg=f"regulariser of pass {t}")
    # end to end from the features: uslbench's K = 400 density gives the same picks
    mean_sq, _ = knn_density(z["X"], 400)
    again = regularised_selection(z["X"], z["cluster_labels"], utility_from_mean_sq(mean_sq), len(z["selected"]),
                                  **args)
    assert again.selected.tolist() == z["selected"].tolist()


IMAGENET_CASES = [c for c in family("usl_imagenet") if "expected_error" not in manifest()["cases"][c]] \
    if (ROOT / "MANIFEST.json").is_file() else []


@pytest.mark.parametrize("case", IMAGENET_CASES)
def test_usl_imagenet_path(case):
    """imagenet_moco: 2 passes (one update), the 128 nearest picks, own cluster's pick counted
    (only the point itself excluded); imagenet_clip: 32 nearest, own cluster's pick excluded.
    Over-clustering and an empty cluster id: clusters pick in id order up to the budget."""
    z, params = load(case), manifest()["cases"][case]["params"]
    preset = "imagenet_clip" if "clip" in case else "imagenet_moco"
    args = usl_arguments(preset)
    args["nearest"] = params["horizon_num"]  # h16: the MoCo row with a horizon that truncates
    budget = params["final_sample_num"]
    trace: list = []
    result = regularised_selection(z["X"], z["cluster_labels"], utility_of(z), budget, trace=trace, **args)
    assert len(trace) == params["iters"] == 2
    assert trace[0][0].tolist() == z["selected_iter0"].tolist()
    assert result.selected.tolist() == z["selected"].tolist()
    offset = ignored_offset(z["X"], z["cluster_labels"], trace[0][0], args["alpha"], cifar_path=False,
                            nearest=args["nearest"], count_own_cluster=args["count_own_cluster"])
    np.testing.assert_allclose(result.reg_bar + offset, z["regularizer_used_in_last_iter"], rtol=1e-5)
    labels = z["cluster_labels"]
    nonempty = np.unique(labels)
    assert labels[result.selected].tolist() == nonempty[:budget].tolist()  # clusters in id order


def brute_regularised_selection(x, labels, utility, budget, passes, lam, m_reg, alpha, nearest, horizon,
                                count_own_cluster):
    """float64 transcription of the documented rules, independent of uslbench's code."""
    ids = np.unique(labels)[:budget]

    def picks_for(score):
        return np.array([np.flatnonzero(labels == c)[np.argmax(score[labels == c])] for c in ids])

    picks, reg_bar = picks_for(utility), np.zeros(len(x))
    for _ in range(passes - 1):
        d2 = sq_dists(x, x[picks])
        counted = (picks[None, :] != np.arange(len(x))[:, None]) if count_own_cluster \
            else (labels[picks][None, :] != labels[:, None])
        if horizon > 0:
            counted &= d2 < horizon
        if nearest and nearest < len(picks):
            rank = np.argsort(np.argsort(d2, axis=1, kind="stable"), axis=1)
            counted &= rank < nearest
        reg = np.where(counted, np.maximum(d2, 1e-8) ** -alpha, 0).sum(1)
        reg_bar = m_reg * reg_bar + (1 - m_reg) * reg
        picks = picks_for(utility - lam * reg_bar)
    return picks, reg_bar


def test_usl_imagenet_clip_with_an_empty_cluster_id():
    """The reference stops on `assert not torch.any(new_selection_regularizer == 0)`: with id 5
    empty, pick position j no longer equals cluster id j, so the own-cluster mask misses. Here the
    own cluster's pick is found by cluster id: 40 picks in the 40 lowest non-empty ids, equal to a
    float64 transcription of the rules."""
    case = "usl_imagenet_clip_emptycluster5_b40"
    entry = manifest()["cases"][case]
    assert entry["expected_error"].startswith("AssertionError")
    z, params = load(case), entry["params"]
    args = usl_arguments("imagenet_clip")
    trace: list = []
    result = regularised_selection(z["X"], z["cluster_labels"], utility_of(z), params["final_sample_num"],
                                   trace=trace, **args)
    # pass 0 is the MoCo case's (same labels and density), which the reference does complete
    moco = load("usl_imagenet_moco_emptycluster5_b40")
    assert np.array_equal(moco["cluster_labels"], z["cluster_labels"])
    assert trace[0][0].tolist() == moco["selected_iter0"].tolist()
    picks, reg_bar = brute_regularised_selection(z["X"], z["cluster_labels"], utility_of(z), 40, **args)
    assert result.selected.tolist() == picks.tolist()
    np.testing.assert_allclose(result.reg_bar, reg_bar, rtol=1e-5)
    assert 5 not in z["cluster_labels"][result.selected] and len(set(result.selected.tolist())) == 40


def test_usl_cifar_path_over_clustered():
    """The reference's CIFAR path raises in F.one_hot when a cluster id reaches the budget (48
    clusters, 40 picks). uslbench picks in the 40 lowest cluster ids, as the reference's ImageNet
    path, and excludes each point's own cluster's pick (none for clusters 40..47)."""
    z = load("usl_noreg_over48_b40_k20")
    assert z["cluster_labels"].max() == 47
    args = usl_arguments("cifar10")
    trace: list = []
    result = regularised_selection(z["X"], z["cluster_labels"], utility_of(z), 40, trace=trace, **args)
    assert trace[0][0].tolist() == z["selected"].tolist()  # pass 0: the official unregularised picks
    picks, reg_bar = brute_regularised_selection(z["X"], z["cluster_labels"], utility_of(z), 40, **args)
    assert result.selected.tolist() == picks.tolist()
    np.testing.assert_allclose(result.reg_bar, reg_bar, rtol=1e-5)


# ---------------------------------------------------------------- ProbCover


def brute_graph(x: np.ndarray, delta: float) -> np.ndarray:
    return np.sqrt(sq_dists(x, x)) < delta


def brute_greedy(adjacency: np.ndarray, budget: int) -> list[int]:
    """The reference's greedy on a dense graph: max out-degree into uncovered points, lowest index."""
    covered = np.zeros(len(adjacency), dtype=bool)
    picks = []
    for _ in range(budget):
        degrees = (adjacency & ~covered).sum(1)
        if degrees.max() == 0:
            break
        picks.append(int(np.argmax(degrees)))
        covered |= adjacency[picks[-1]]
    return picks


def brute_farthest_first(x: np.ndarray, chosen: list[int], count: int) -> list[int]:
    min_d2 = sq_dists(x, x[chosen]).min(1)
    min_d2[chosen] = -1
    out = []
    for _ in range(count):
        nxt = int(np.argmax(min_d2))
        out.append(nxt)
        min_d2 = np.minimum(min_d2, sq_dists(x, x[[nxt]])[:, 0])
        min_d2[chosen + out] = -1
    return out


PROBCOVER_CASES = [c for c in family("probcover") if "partialbatch" not in c]


@pytest.mark.parametrize("case", PROBCOVER_CASES)
def test_probcover(case):
    """Graph L2 < delta (strict, self-loops), greedy max coverage with the lowest index on ties:
    the official picks in order, the points each pick covers and the coverage before each pick.
    After full coverage (X1/0.8/100 from pick 40, X2/0.8/100 from pick 55) the reference appends
    index 0 again and again; uslbench continues farthest-first from its picks instead."""
    z, entry = load(case), manifest()["cases"][case]
    x, delta, budget, n = z["X"], float(z["delta"]), int(z["budget"]), len(z["X"])
    offsets, _, _ = range_graph(x, delta ** 2)
    assert np.diff(offsets).tolist() == z["graph_out_degree"].tolist()
    result = probcover_picks(x, delta, budget)
    real = entry["first_saturated_iteration"] or budget
    assert result.picks_by_coverage == real
    assert result.picks[:real].tolist() == z["selected"][:real].tolist()
    assert result.gains == z["iter_max_degree"][:real].tolist()
    covered_before = np.concatenate([[0], np.cumsum(result.gains)[:-1]]) / n
    np.testing.assert_allclose(covered_before, z["iter_coverage_printed"][:real], atol=5e-4 + 1e-12)
    assert result.coverage == pytest.approx(entry["coverage_final"], abs=1e-12)
    if real < budget:  # saturated: the documented better behaviour
        assert (z["selected"][real:] == 0).all() and (z["iter_max_degree"][real:] == 0).all()
        assert result.coverage == 1.0 and len(set(result.picks.tolist())) == budget
        assert result.picks[real:].tolist() == brute_farthest_first(x, result.picks[:real].tolist(), budget - real)
    else:
        assert len(set(z["selected"].tolist())) == budget


def test_probcover_graph_includes_the_last_partial_batch():
    """The reference builds rows in batches of 500 over range(N // 500): with N = 1,800 rows
    1,500..1,799 get no out-edges and can never be chosen. uslbench's graph has every row; the
    greedy on the reference's truncated graph reproduces its picks exactly, and on the full graph
    it equals a brute-force greedy."""
    case = "probcover_X1first1800_delta0.5_b20_partialbatch"
    z = load(case)
    x, delta, budget = z["X"], float(z["delta"]), int(z["budget"])
    offsets, targets, _ = range_graph(x, delta ** 2)
    degree = np.diff(offsets)
    official = z["graph_out_degree"]
    assert (official[1500:] == 0).all() and degree[:1500].tolist() == official[:1500].tolist()
    adjacency = brute_graph(x, delta)
    assert degree.tolist() == adjacency.sum(1).tolist() and (degree[1500:] > 0).all()
    truncated = offsets.copy()
    truncated[1501:] = offsets[1500]  # the reference's graph: rows >= 1500 without out-edges
    picks, _, gains = greedy_max_coverage(truncated, targets[:offsets[1500]], budget)
    assert picks == z["selected"].tolist() and gains == z["iter_max_degree"].tolist()
    result = probcover_picks(x, delta, budget)
    assert result.picks.tolist() == brute_greedy(adjacency, budget)
    assert result.coverage > manifest()["cases"][case]["coverage_final"]


# ---------------------------------------------------------------- TypiClust


@pytest.mark.parametrize("case", family("typiclust"))
def test_typiclust(case):
    """Clusters of more than 5 by (size desc, id), wrapping around; per pick, typicality among the
    cluster's unpicked members with k = min(20, n // 2): picks, clusters, k, candidate sets and
    every typicality vector."""
    z = load(case)
    result = typiclust_picks(z["X"], z["cluster_labels"], int(z["budget"]), keep_scores=True)
    assert result.picks.tolist() == z["selected"].tolist()
    assert result.clusters == z["pick_cluster"].tolist()
    assert result.knn_k == z["pick_knn_k"].tolist()
    assert result.candidates == z["pick_n_candidates"].tolist()
    offsets = z["typicality_offsets"]
    for i, (candidates, scores) in enumerate(result.scores):
        span = slice(offsets[i], offsets[i + 1])
        assert candidates.tolist() == z["candidates_concat"][span].tolist()
        np.testing.assert_allclose(scores, z["typicality_concat"][span], rtol=1e-5)
    dropped = manifest()["cases"][case]["clusters_dropped_size_le_5"]
    assert not set(dropped) & set(result.kept)


# ---------------------------------------------------------------- the selectors compose these steps


def given_clustering(labels: np.ndarray):
    def fake_kmeans(features, n_clusters, **_):
        sizes = np.bincount(labels, minlength=n_clusters)
        return KMeansResult(np.zeros((len(sizes), features.shape[1]), np.float32), labels.copy(), sizes, 0.0)
    return fake_kmeans


@pytest.mark.parametrize("selector, overrides, case", [
    ("usl", {"preset": "cifar10", "knn_k": 400}, "usl_cifar_cifar10_b40"),
    ("usl", {"preset": "cifar100", "knn_k": 400}, "usl_cifar_cifar100_b40"),
    ("usl", {"preset": "imagenet_moco"}, "usl_imagenet_moco_b40"),
    ("usl", {"preset": "imagenet_moco", "n_clusters": 48}, "usl_imagenet_moco_over48_b40"),
    ("clip_usl", {}, "usl_imagenet_clip_b40"),
])
def test_usl_selectors_reproduce_the_official_picks(monkeypatch, selector, overrides, case):
    """The registered selectors, with K-Means replaced by the fixture's assignment, end to end
    from the features (their own k-NN density) to the official picks."""
    z = load(case)
    monkeypatch.setattr(usl_module, "kmeans", given_clustering(z["cluster_labels"]))
    overrides = {"knn_k": 20, **overrides}
    selection = SELECTORS.create(selector, **overrides).select(z["X"], len(z["selected"]), seed=0,
                                                               context=SelectionContext())
    assert selection.indices.tolist() == sorted(z["selected"].tolist())


def test_typiclust_and_probcover_selectors_reproduce_the_official_picks(monkeypatch):
    z = load("typiclust_b40_tinyclusters")
    monkeypatch.setattr(typiclust_module, "kmeans", given_clustering(z["cluster_labels"]))
    assert SELECTORS.create("typiclust").select(z["X"], 40, seed=0).indices.tolist() == z["selected"].tolist()
    z = load("probcover_X2_delta0.5_b100")
    assert probcover_module.ProbCoverSelector is type(SELECTORS.create("probcover"))
    assert SELECTORS.create("probcover", delta=0.5).select(z["X"], 100, seed=0).indices.tolist() \
        == z["selected"].tolist()


def test_usl_rejects_a_config_the_passes_cannot_use():
    from uslbench.errors import UserError

    features = load("usl_noreg_b10_k20")["X"]
    for bad in ({"iters": 0}, {"m_reg": 1.0}, {"reg_nearest": -1}):
        # the registry's declared ranges refuse these before the selector's own check would
        with pytest.raises(UserError, match="Invalid usl config|Config key '(iters|m_reg|reg_nearest)' of selector 'usl'"):
            SELECTORS.create("usl", **bad).select(features, 10, seed=0)
