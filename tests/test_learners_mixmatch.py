"""MixMatch's recipes: the paper's (google-research/mixmatch) by default, USB's by name (issue 11)."""
from __future__ import annotations

import pytest
import torch

from uslbench.catalog import LEARNERS
from uslbench.errors import UserError
from uslbench.learners.image_training import make_optimizer
from uslbench.learners.mixmatch import mixup, rampup, rampup_length
from uslbench.training.loop import parameter_groups


def test_default_is_paper_recipe():
    # mixmatch.py + README command: Adam lr 0.002, wd 0.02 (x lr, kernels only), beta 0.75, w_match 75,
    # warmup_kimg 1024 (= 16,384 steps of 64), train_kimg 1 << 16 (= 2^20 steps), ema 0.999
    for dataset in (None, "cifar10"):
        cfg = LEARNERS.create("mixmatch", dataset=dataset).config
        assert (cfg.recipe, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.cosine) == ("paper", "adamw", 0.002, 0.02, False)
        assert (cfg.alpha, cfg.lambda_u, cfg.rampup_steps, cfg.rampup_fraction) == (0.75, 75.0, 16_384, None)
        assert cfg.mixup_per_example and cfg.unlabeled_ratio == 1 and cfg.ema == 0.999 and cfg.steps == 1 << 20
        assert rampup_length(cfg, cfg.steps) == 16_384
    assert LEARNERS.create("mixmatch", dataset="cifar100").config.lambda_u == 150.0
    usb = LEARNERS.create("mixmatch", dataset="cifar10", recipe="usb").config
    assert (usb.optimizer, usb.lr, usb.weight_decay, usb.cosine, usb.alpha, usb.lambda_u) == ("sgd", 0.03, 5e-4, True,
                                                                                             0.5, 100.0)
    assert not usb.mixup_per_example and rampup_length(usb, 1 << 20) == pytest.approx(0.4 * (1 << 20))
    # an explicit value wins over the recipe
    assert LEARNERS.create("mixmatch", dataset="cifar10", recipe="usb", lr=0.01).config.lr == 0.01
    with pytest.raises(UserError, match="Unknown mixmatch recipe"):
        LEARNERS.create("mixmatch", recipe="tf")


def test_paper_optimizer_is_adam_with_decoupled_decay_on_kernels():
    cfg = LEARNERS.create("mixmatch", dataset="cifar10").config
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                              torch.nn.Linear(4, 2))
    optimizer = make_optimizer(parameter_groups(net, cfg.weight_decay), cfg)
    assert isinstance(optimizer, torch.optim.AdamW)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.02 and no_decay["weight_decay"] == 0.0 and decay["lr"] == 0.002
    # with zero gradients Adam's step is 0, so one step is the decoupled decay alone: w (1 - 0.02 x 0.002)
    before = net[0].weight.detach().clone()
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert torch.allclose(net[0].weight, before * (1 - 0.02 * 0.002))


def test_mixup_per_example_lambdas():
    x = torch.tensor([[0.0], [10.0], [20.0]])
    y = torch.eye(3)
    lam = torch.tensor([1.0, 0.5, 0.75])
    mixed_x, mixed_y = mixup(x, y, torch.tensor([2, 0, 1]), lam)
    assert mixed_x.flatten().tolist() == pytest.approx([0.0, 5.0, 17.5])
    assert mixed_y[2].tolist() == pytest.approx([0.0, 0.25, 0.75])
    assert rampup(8_192, 16_384.0) == 0.5
