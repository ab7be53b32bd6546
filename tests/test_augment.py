"""The strong view follows the USL FixMatch fork's RandAugment; the CLD view (issue 11)."""
from __future__ import annotations

import pytest
import torch

from uslbench.training.augment import (FORK_OPS, POLICIES, RandAugmentPlan, augment, cld_view, cutout_fixed,
                                       draw_randaugment_plan, policy_for, randaugment_fork)


def test_fork_randaugment_op_counts():
    """RandAugmentMC(n=2, m=10): 2 ops per image drawn uniformly with replacement from 14, each
    applied with probability 0.5 at a level uniform in 1..9 (np.random.randint(1, 10))."""
    plan = draw_randaugment_plan(20_000, torch.Generator().manual_seed(0))
    assert plan.ops.shape == plan.levels.shape == plan.applied.shape == (20_000, 2)
    assert sorted(torch.unique(plan.levels).tolist()) == list(range(1, 10))
    level_freq = torch.bincount(plan.levels.flatten(), minlength=10)[1:].float() / plan.levels.numel()
    assert torch.allclose(level_freq, torch.full((9,), 1 / 9), atol=0.01)
    op_freq = torch.bincount(plan.ops.flatten(), minlength=14).float() / plan.ops.numel()
    assert len(FORK_OPS) == 14 and torch.allclose(op_freq, torch.full((14,), 1 / 14), atol=0.01)
    applied_per_image = plan.applied.sum(1)
    # 0, 1 or 2 ops applied with probabilities 1/4, 1/2, 1/4 (the old view always applied 2-3)
    freq = torch.bincount(applied_per_image, minlength=3).float() / 20_000
    assert torch.allclose(freq, torch.tensor([0.25, 0.5, 0.25]), atol=0.015)
    same = draw_randaugment_plan(20_000, torch.Generator().manual_seed(0))
    assert torch.equal(plan.ops, same.ops) and torch.equal(plan.applied, same.applied)


def _plan(op: str, level: int, applied: bool = True, sign: float = 1.0) -> RandAugmentPlan:
    return RandAugmentPlan(torch.tensor([[FORK_OPS.index(op), FORK_OPS.index("identity")]]),
                           torch.tensor([[level, 1]]), torch.tensor([[applied, False]]), torch.tensor([[sign, 1.0]]))


def test_fork_magnitudes_by_hand():
    policy = POLICIES["cifar"]
    x = torch.full((1, 3, 32, 32), 0.8)
    x[..., :16] = 0.2
    g = torch.Generator().manual_seed(0)
    # brightness at level 5: factor 0.05 + 0.09 x 5 = 0.5
    out = randaugment_fork(x.clone(), policy, g, _plan("brightness", 5))
    assert torch.allclose(out, x * 0.5)
    # not applied: unchanged
    assert torch.equal(randaugment_fork(x.clone(), policy, g, _plan("brightness", 5, applied=False)), x)
    # posterize level 9: 4 + int(3.6) = 7 bits (204 -> 204 & 0xFE = 204; 51 -> 50)
    out = randaugment_fork(x.clone(), policy, g, _plan("posterize", 9))
    assert out[0, 0, 0, 0].item() * 255 == pytest.approx(50.0) and out[0, 0, 0, 20].item() * 255 == pytest.approx(204.0)
    # solarize level 5: threshold 256 - 128 = 128 -> 0.8 (204) inverted, 0.2 (51) kept
    out = randaugment_fork(x.clone(), policy, g, _plan("solarize", 5))
    assert out[0, 0, 0, 20].item() == pytest.approx(0.2) and out[0, 0, 0, 0].item() == pytest.approx(0.2)
    # translate_x level 5: int(0.15 x 32) = 4 px, black fill on one side
    out = randaugment_fork(x.clone(), policy, g, _plan("translate_x", 5, sign=1.0))
    black_columns = int((out[0, 0] == 0).all(0).sum())
    assert black_columns == 4


def test_fixed_cutout_is_16_px_grey():
    """CutoutAbs(img, 16): corner int(max(0, c - 8)), PIL's inclusive rectangle, grey 127."""
    policy = POLICIES["cifar"]
    x = torch.zeros(500, 3, 32, 32)
    out = cutout_fixed(x, policy, torch.Generator().manual_seed(1))
    grey = (out == 127 / 255).all(1)
    rows, cols = grey.any(2).sum(1), grey.any(1).sum(1)
    assert rows.max() == 17 and cols.max() == 17 and rows.min() >= 9 and cols.min() >= 9
    unclipped = (rows == 17) & (cols == 17)
    assert unclipped.float().mean() > 0.4 and (grey.sum((1, 2)) == rows * cols).all()


def test_strong_view_variants():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    fork = augment(images, "strong", policy_for("cifar", 32), torch.Generator().manual_seed(0))
    usb = augment(images, "strong", policy_for("cifar", 32, "usb"), torch.Generator().manual_seed(0))
    assert fork.shape == usb.shape == (64, 3, 32, 32) and not torch.equal(fork, usb)
    assert policy_for("cifar", 32).randaugment == "fork"
    again = augment(images, "strong", policy_for("cifar", 32), torch.Generator().manual_seed(0))
    assert torch.equal(fork, again)


def test_cld_view():
    """CLD-cifar10 training transform: random resized crop (0.2-1), jitter 0.4/0.4/0.4/0.1 (p 0.8),
    grey (p 0.2), blur sigma 0.1-2 (p 0.5), flip; all draws from the generator."""
    images = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8)
    a = augment(images, "cld", POLICIES["cifar"], torch.Generator().manual_seed(3))
    b = augment(images, "cld", POLICIES["cifar"], torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == images.shape and a.min() >= 0 and a.max() <= 1
    grey = (a[:, 0] == a[:, 1]).all(-1).all(-1) & (a[:, 1] == a[:, 2]).all(-1).all(-1)
    assert 0.1 < grey.float().mean() < 0.3                      # greyscale with probability 0.2
    # a constant image stays constant up to the colour jitter (crop, blur and flip keep it flat)
    flat = torch.full((8, 3, 32, 32), 0.5)
    out = cld_view(flat, POLICIES["cifar"], torch.Generator().manual_seed(0))
    assert float(out.std(dim=(2, 3)).max()) < 1e-5
