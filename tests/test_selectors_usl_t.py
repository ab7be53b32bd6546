"""USL-T: both training modes on CPU (backbone mode: a few steps of a tiny stand-in network)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from uslbench.datasets import load_dataset
from uslbench.encoders import l2_normalise
from uslbench.errors import SettingWarning
from uslbench.registry import SELECTORS
from uslbench.selectors.base import SelectionContext
from uslbench.selectors.usl_t_train import usl_t_loss
from uslbench.training.augment import contrastive_augment


class TinyEncoder:
    """Stand-in for an encoder with a network: build_module() -> (module, feature_dim)."""

    registry_name = "tiny"

    def __init__(self):
        self.built = 0

    def build_module(self):
        self.built += 1
        torch.manual_seed(0)
        module = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                     torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 8))
        return module, 8


@pytest.fixture(scope="module")
def digits():
    dataset = load_dataset("digits")
    features = l2_normalise(dataset.train.array.reshape(len(dataset.train), -1).astype(np.float32) + 1.0)
    return dataset, features


def test_backbone_mode_trains_the_encoder_module(digits):
    dataset, features = digits
    encoder = TinyEncoder()
    ctx = SelectionContext(dataset=dataset, encoder=encoder, dataset_name="digits")
    selector = SELECTORS.create("usl_t", mode="backbone", max_steps=3, batch_size=32)
    first = selector.select(features, 12, seed=1, context=ctx)
    assert encoder.built == 1 and first.info["steps"] == 3
    assert len(set(first.indices.tolist())) == 12
    again = SELECTORS.create("usl_t", mode="backbone", max_steps=3, batch_size=32).select(features, 12, seed=1,
                                                                                         context=ctx)
    assert np.array_equal(first.indices, again.indices)


def test_head_mode_is_deterministic_and_reports(digits):
    _, features = digits
    a = SELECTORS.create("usl_t", epochs=5).select(features, 10, seed=3)
    b = SELECTORS.create("usl_t", epochs=5).select(features, 10, seed=3)
    assert np.array_equal(a.indices, b.indices)
    assert a.info["resolved_config"]["preset"] == "small" and a.info["steps"] == 5 * (len(features) // 256)
    assert {"knn_neighbours", "training", "confident_picks"} <= set(a.seconds)


def test_more_clusters_than_samples_can_fill_never_crashes():
    features = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
    selection = SELECTORS.create("usl_t", epochs=2, n_clusters=30).select(features, 25, seed=1)
    assert len(set(selection.indices.tolist())) == 25


def test_settings_above_the_pool_are_recorded_and_warned():
    """The small preset's batch of 256 and the default knn_k of 20 on a pool of 15: trained on
    whole-pool batches with all 14 other points as neighbours, never silently."""
    features = np.random.default_rng(0).standard_normal((15, 6)).astype(np.float32)
    with pytest.warns(SettingWarning) as caught:
        selection = SELECTORS.create("usl_t", epochs=2).select(features, 5, seed=1)
    assert sorted(str(w.message) for w in caught) == [
        "usl_t batch_size=256 exceeds the pool of 15 points; training on batches of the whole pool (15).",
        "usl_t knn_k=20 exceeds the 14 other points of the pool; the local loss draws among all of them (knn_k 14)."]
    assert (selection.info["batch_size_used"], selection.info["knn_k_used"], selection.info["steps"]) == (15, 14, 2)
    fitting = SELECTORS.create("usl_t", epochs=1, batch_size=8, knn_k=5).select(features, 5, seed=1)
    assert (fitting.info["batch_size_used"], fitting.info["knn_k_used"]) == (8, 5)


def test_contrastive_augment_keeps_shape_and_range_and_is_seeded():
    images = torch.rand(6, 3, 16, 16)
    a = contrastive_augment(images, torch.Generator().manual_seed(1))
    b = contrastive_augment(images, torch.Generator().manual_seed(1))
    assert a.shape == images.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and not torch.equal(a, images)


def test_loss_logit_adjustment_and_sharpening():
    from types import SimpleNamespace

    cfg = SimpleNamespace(tau=0.0, ema_mu=0.5, beta=5.0, sharpen_t=0.25, reweight=False, lambda_local=1.0,
                          mean_over_batch=False)
    plain = torch.tensor([[[4.0, 0.0], [4.0, 0.0]]])  # one head, both samples in cluster 0
    pbar = torch.full((1, 2), 0.5)
    strong = plain.clone().requires_grad_(True)
    neighbour = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    loss, parts = usl_t_loss(plain, strong, neighbour, pbar, cfg)
    loss.backward()
    p0 = torch.softmax(torch.tensor([4.0, 0.0]), 0)
    assert torch.allclose(pbar[0], 0.5 * 0.5 + 0.5 * p0)
    # cluster 0 is over-used, so the adjusted neighbour target favours cluster 1
    adjusted = torch.tensor([1.0, 0.0]) - 5.0 * torch.log(pbar[0])
    target = torch.softmax(adjusted / 0.25, 0)
    assert target[1] > target[0]
    assert strong.grad is not None and parts["local"] > 0


def test_confidence_follows_preset():
    """Reference pick rule (selective_labeling/config.py USE_MEAN_PROB = True; the CIFAR-100 and
    ImageNet configs set it False): the head-averaged confidence on CIFAR-10, head 0 elsewhere;
    and the global loss is divided by the batch size on CIFAR-100 and ImageNet (MEAN_OUTSIDE_MASK)."""
    from uslbench.selectors.usl_t import USLTConfig, resolve_preset

    resolved = [resolve_preset(SELECTORS.resolve_config("usl_t", dataset=name), 50_000, budget)
                for name, budget in (("cifar10", 40), ("cifar100", 400), ("imagenet", 2911))]
    assert [(r.preset, r.confidence, r.mean_over_batch) for r in resolved] == [
        ("cifar10", "mean", False), ("cifar100", "head0", True), ("imagenet", "head0", True)]
    assert resolve_preset(USLTConfig(), 1_000).confidence == "mean"          # small data: the CIFAR-10 rule
    # an explicit value wins over the preset
    assert resolve_preset(USLTConfig(preset="cifar10", confidence="head0"), 50_000).confidence == "head0"
    # by scale when the data set is unknown: a CIFAR-100-like budget gets the CIFAR-100 row
    assert resolve_preset(USLTConfig(), 50_000, 400).preset == "cifar100"
    assert resolve_preset(USLTConfig(), 50_000, 40).preset == "cifar10"


def test_global_loss_mean_over_batch():
    """MEAN_OUTSIDE_MASK (reference CIFAR-100 / ImageNet): sum of the (weighted) cross-entropies of
    the confident samples / batch size; CIFAR-10: their (weighted) mean."""
    from types import SimpleNamespace

    plain = torch.tensor([[[9.0, 0.0, 0.0], [0.0, 9.0, 0.0], [9.0, 0.0, 0.0], [0.0, 0.0, 0.1]]])  # last: unconfident
    strong = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    neighbour = plain.clone()
    ce = torch.nn.functional.cross_entropy(strong[0, :3], torch.tensor([0, 1, 0]), reduction="none")
    for reweight in (False, True):
        # n / count_c over the 3 confident samples: class 0 twice (weight 1.5), class 1 once (weight 3)
        w = torch.tensor([1.5, 3.0, 1.5]) if reweight else torch.ones(3)
        expected = {False: float((w * ce).sum() / w.sum()), True: float((w * ce).sum() / 4)}
        for mean_over_batch in (False, True):
            cfg = SimpleNamespace(tau=0.9, ema_mu=0.5, beta=0.0, sharpen_t=1.0, reweight=reweight, lambda_local=0.0,
                                  mean_over_batch=mean_over_batch)
            _, parts = usl_t_loss(plain, strong, neighbour, torch.full((1, 3), 1 / 3), cfg)
            assert parts["global"] == pytest.approx(expected[mean_over_batch], rel=1e-5)


def test_backbone_mode_normalises_input(digits):
    """mode=backbone feeds the encoder's network its own input normalisation, not raw [0, 1] images."""
    dataset, features = digits
    seen = []

    class NormalisingEncoder(TinyEncoder):
        def input_transform(self, dataset):
            class Shift(torch.nn.Module):
                def forward(self, x):
                    seen.append((float(x.min()), float(x.max())))
                    return (x - 0.5) / 0.25
            return Shift()

    encoder = NormalisingEncoder()
    inputs = []
    ctx = SelectionContext(dataset=dataset, encoder=encoder, dataset_name="digits")
    original = encoder.build_module

    def build_module():
        module, dim = original()
        module.register_forward_pre_hook(lambda m, args: inputs.append(float(args[0].min())))
        return module, dim

    encoder.build_module = build_module
    SELECTORS.create("usl_t", mode="backbone", max_steps=2, batch_size=32).select(features, 12, seed=1, context=ctx)
    assert seen and all(lo >= 0.0 and hi <= 1.0 for lo, hi in seen)
    # the network saw normalised inputs: (0 - 0.5) / 0.25 = -2 for black pixels
    assert min(inputs) == pytest.approx(-2.0)
