"""Each learner's loss pieces on hand-made tensors, against values worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from uslbench.learners.comatch import (distribution_alignment, graph_contrastive_loss, graph_target,
                                       memory_smoothed_probs)
from uslbench.learners.fixmatch import fixmatch_unlabeled_loss
from uslbench.learners.mixmatch import mixup, mixup_lambda, rampup, sharpen
from uslbench.training.loop import cosine_factor, parameter_groups
from uslbench.training.losses import nt_xent


def test_fixmatch_mask_keeps_rows_at_the_threshold_and_averages_over_the_whole_batch():
    # row 0: softmax([ln 3, 0]) = (0.75, 0.25): max exactly 0.75 = threshold -> kept
    # row 1: (0.5, 0.5) -> dropped; row 2: softmax([0, ln 9]) = (0.1, 0.9) -> kept, pseudo-label 1
    logits_weak = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0], [0.0, math.log(9.0)]])
    logits_strong = torch.tensor([[0.0, 0.0], [5.0, -5.0], [math.log(4.0), 0.0]])
    loss, mask = fixmatch_unlabeled_loss(logits_weak, logits_strong, threshold=0.75)
    assert mask.tolist() == [1.0, 0.0, 1.0]
    # CE row 0 (target 0, uniform strong) = ln 2; row 2 target 1 with strong probs (0.8, 0.2): -ln 0.2 = ln 5
    expected = (math.log(2.0) + math.log(5.0)) / 3.0
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_fixmatch_mask_just_below_threshold_drops_the_row():
    logits_weak = torch.tensor([[math.log(3.0), 0.0]])
    loss, mask = fixmatch_unlabeled_loss(logits_weak, torch.zeros(1, 2), threshold=0.7500001)
    assert mask.item() == 0.0 and loss.item() == 0.0


def test_sharpen_with_temperature_half_squares_and_renormalises():
    probs = torch.tensor([[0.6, 0.4], [0.5, 0.5]])
    out = sharpen(probs, 0.5)
    # 0.36 / (0.36 + 0.16) = 0.6923..., 0.16 / 0.52 = 0.3077...
    assert out[0].tolist() == pytest.approx([0.36 / 0.52, 0.16 / 0.52])
    assert out[1].tolist() == pytest.approx([0.5, 0.5])


def test_mixup_lambda_prime_is_the_larger_of_lambda_and_one_minus_lambda():
    assert mixup_lambda(0.2) == pytest.approx(0.8)
    assert mixup_lambda(0.8) == pytest.approx(0.8)
    assert mixup_lambda(0.5) == 0.5
    x = torch.tensor([[1.0], [3.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mixed_x, mixed_y = mixup(x, y, torch.tensor([1, 0]), 0.75)
    assert mixed_x.flatten().tolist() == pytest.approx([1.5, 2.5])
    assert mixed_y.tolist() == [pytest.approx([0.75, 0.25]), pytest.approx([0.25, 0.75])]


def test_rampup_is_linear_then_flat():
    assert rampup(0, 100.0) == 0.0
    assert rampup(50, 100.0) == pytest.approx(0.5)
    assert rampup(500, 100.0) == 1.0
    assert rampup(0, 0.0) == 1.0


def test_memory_smoothing_by_hand():
    # one query embedding; two bank entries with similarities 1 and 0; T = 1:
    # weights = softmax([1, 0]) = (e / (e + 1), 1 / (e + 1))
    probs = torch.tensor([[1.0, 0.0]])
    emb = torch.tensor([[1.0, 0.0]])
    bank_emb = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    bank_probs = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    out = memory_smoothed_probs(probs, emb, bank_emb, bank_probs, alpha=0.9, temperature=1.0)
    w1 = math.e / (math.e + 1.0)
    expected = [0.9 * 1.0 + 0.1 * (1.0 - w1), 0.1 * w1]
    assert out[0].tolist() == pytest.approx(expected, rel=1e-6)
    assert out.sum().item() == pytest.approx(1.0)


def test_distribution_alignment_divides_by_the_running_mean():
    probs = torch.tensor([[0.5, 0.5]])
    out = distribution_alignment(probs, torch.tensor([0.8, 0.2]))
    # (0.625, 2.5) / 3.125 = (0.2, 0.8)
    assert out[0].tolist() == pytest.approx([0.2, 0.8])


def test_graph_target_thresholds_and_normalises_rows():
    probs = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    target = graph_target(probs, threshold=0.8)
    # p p^T: (0,1) = 0.9 kept, (0,2) = 0 dropped, (1,2) = 0.1 dropped; diagonal set to 1
    expected = torch.tensor([[1.0 / 1.9, 0.9 / 1.9, 0.0], [0.9 / 1.9, 1.0 / 1.9, 0.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(target, expected)


def test_graph_contrastive_loss_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    target = torch.eye(2)
    loss = graph_contrastive_loss(a, a, target, temperature=1.0)
    # each row: -log(e / (e + 1))
    assert loss.item() == pytest.approx(-math.log(math.e / (math.e + 1.0)), rel=1e-6)


def test_nt_xent_by_hand():
    z_a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z_b = z_a.clone()
    # each anchor: positive similarity 1, negatives 0 and 0 (the other pair): -log(e / (e + 2))
    assert nt_xent(z_a, z_b, 1.0).item() == pytest.approx(-math.log(math.e / (math.e + 2.0)), rel=1e-6)


def test_cosine_schedule_endpoints():
    assert cosine_factor(0, 100) == 1.0
    assert cosine_factor(100, 100) == pytest.approx(math.cos(7 * math.pi / 16))
    assert cosine_factor(50, 100) == pytest.approx(math.cos(7 * math.pi / 32))


def test_no_weight_decay_on_batchnorm_and_bias():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Linear(2, 3))
    decay, no_decay = parameter_groups(net, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert sorted(p.numel() for p in decay["params"]) == [6, 18]        # conv and linear weights
    assert sorted(p.numel() for p in no_decay["params"]) == [2, 2, 2, 3]  # conv bias, BN w/b, linear bias


def test_label_spreading_probe_spreads_within_clusters():
    from types import SimpleNamespace

    from uslbench.encoders.base import FeatureSet
    from uslbench.learners.probes import LabelPropConfig, LabelPropProbe, spread_targets

    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    train_labels = np.repeat(np.arange(3), 20)
    train = centres[train_labels] + rng.normal(0, 0.3, (60, 2))
    test_labels = np.repeat(np.arange(3), 5)
    test = centres[test_labels] + rng.normal(0, 0.3, (15, 2))
    labeled = np.array([0, 20, 40])
    assert spread_targets(6, np.array([1, 4]), np.arange(6)).tolist() == [-1, 1, -1, -1, 4, -1]
    dataset = SimpleNamespace(train=SimpleNamespace(labels=train_labels), test=SimpleNamespace(labels=test_labels),
                              evaluated=True,
                              num_classes=3)
    probe = LabelPropProbe(LabelPropConfig(k=5))
    metrics = probe.fit(dataset, labeled, features=FeatureSet(train.astype(np.float32), test.astype(np.float32)))
    assert metrics["top1"] == 100.0 and metrics["n_test"] == 15
