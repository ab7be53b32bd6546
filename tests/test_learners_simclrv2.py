"""SimCLRv2-CLD fine-tuning as the USL reference runs it (semisup-simclrv2-cld/fine_tune.py; issue 11)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from uslbench.catalog import ENCODERS, LEARNERS
from uslbench.learners.simclrv2_nets import NormalisedClassifier

from conftest import digits_subset

CLD_MEAN, CLD_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


@pytest.fixture(scope="module")
def small_digits():
    return digits_subset(200, 100)


def test_cifar_recipe_resolved():
    cfg = LEARNERS.create("simclrv2", dataset="cifar10").config
    assert (cfg.lr, cfg.weight_decay, cfg.nesterov, cfg.cosine, cfg.labeled_batch) == (0.01, 1e-4, True, False, 128)
    assert (cfg.finetune, cfg.finetune_view, cfg.freeze_bn, cfg.normalise_logits) == ("linear", "cld", False, True)
    # 5 epochs of the 100x repeated labeled set in batches of 128 with drop_last: 5 x floor(4000 / 128)
    assert LEARNERS.create("simclrv2", dataset="cifar10").finetune_steps(40) == 155
    assert LEARNERS.create("simclrv2", dataset="cifar100").finetune_steps(400) == 5 * (40_000 // 128)


def test_logits_normalised():
    torch.manual_seed(0)
    net = NormalisedClassifier(torch.nn.Flatten(), 12, 5)
    logits = net(torch.randn(7, 3, 2, 2))
    assert torch.allclose(logits.norm(dim=1), torch.ones(7), atol=1e-6)


def test_cld_normalisation_of_the_simclr_encoder():
    """The simclr encoder's CIFAR preset normalises with CLD's statistics; its input_transform
    applies them to [0, 1] tensors (the fine-tuned network sees what it was trained on)."""
    encoder = ENCODERS.create("simclr", dataset="cifar10")
    dataset = SimpleNamespace(mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), image_size=32,
                              train=SimpleNamespace(array=np.zeros((1, 32, 32, 3), np.uint8)))
    transform = encoder.input_transform(dataset)
    x = torch.rand(2, 3, 32, 32)
    expected = (x - torch.tensor(CLD_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLD_STD).view(1, 3, 1, 1)
    assert torch.allclose(transform(x), expected, atol=1e-6)


class BNEncoder:
    """Stand-in for an encoder with a network and an input normalisation of its own."""

    def __init__(self):
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                                       torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.seen = []

    def build_module(self, device):
        import copy

        return copy.deepcopy(self.net), 4

    def input_transform(self, dataset):
        seen = self.seen

        class Record(torch.nn.Module):
            def forward(self, x):
                seen.append(x.detach().clone())
                return (x - 0.25) / 0.5

        return Record()


def test_backbone_bn_adapts(small_digits):
    """model.train() during linear fine-tuning: the frozen backbone's BN running statistics move,
    its weights do not; freeze_bn=true keeps both (the previous behaviour)."""
    labeled = np.concatenate([np.flatnonzero(small_digits.train.labels == c)[:2] for c in range(10)])
    runs = {}
    for freeze in (False, True):
        encoder = BNEncoder()
        learner = LEARNERS.create("simclrv2", dataset="digits", steps=4, labeled_batch=8, eval_every=2,
                                  checkpoint_every=2, threads=1, freeze_bn=freeze, eval_batch=256)
        captured = {}
        original_run_loop = learner.run_loop

        def run_loop(model, *args, **kwargs):
            captured["model"] = model
            return original_run_loop(model, *args, **kwargs)

        learner.run_loop = run_loop
        learner.fit(small_digits, labeled, seed=1, encoder=encoder)
        trained = captured["model"].backbone[1]
        runs[freeze] = (trained, encoder)
    adapted, encoder = runs[False]
    bn_before = encoder.net[1]
    assert not torch.allclose(adapted[1].running_mean, bn_before.running_mean)
    assert torch.equal(adapted[0].weight, encoder.net[0].weight) and torch.equal(adapted[1].weight, bn_before.weight)
    frozen, encoder = runs[True]
    assert torch.equal(frozen[1].running_mean, encoder.net[1].running_mean)
    # the encoder's own normalisation received [0, 1] images (the data set's normalisation undone)
    assert encoder.seen and min(float(x.min()) for x in encoder.seen) >= -1e-6
    assert max(float(x.max()) for x in encoder.seen) <= 1 + 1e-6
