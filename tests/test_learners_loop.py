"""The shared training loop: resume, batches, augmentation, loss going down, bad input."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from uslbench.errors import UserError
from uslbench.training.augment import POLICIES, augment
from uslbench.training.loop import IndexStream
from uslbench.catalog import LEARNERS

IMAGE_LEARNERS = ["supervised", "fixmatch", "mixmatch", "comatch", "simclrv2"]
TINY = {"steps": 6, "labeled_batch": 8, "unlabeled_ratio": 2, "eval_every": 3, "checkpoint_every": 3,
        "eval_batch": 256}


def tiny_overrides(name: str, **extra) -> dict:
    fields = {f.name for f in LEARNERS.get(name).config_fields()}
    values = {**TINY, "queue_size": 48, "pretrain_steps": 4, "pretrain_batch": 16, "distill_steps": 3, **extra}
    return {k: v for k, v in values.items() if k in fields}




def labeled_set(dataset, per_class: int = 2) -> np.ndarray:
    labels = dataset.train.labels
    return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(dataset.num_classes)])


class Interrupt(Exception):
    pass


@pytest.mark.slow
def test_resume_after_interruption_matches_an_uninterrupted_run(small_digits, tmp_path):
    """comatch carries a memory bank and a DA history across steps: the strictest resume case."""
    labeled = labeled_set(small_digits)
    overrides = tiny_overrides("comatch", threads=1)
    full = LEARNERS.create("comatch", dataset="digits", **overrides)
    full_metrics = full.fit(small_digits, labeled, seed=3, workdir=tmp_path / "full")

    first = LEARNERS.create("comatch", dataset="digits", **overrides)

    def stop(phase, step):
        if step == 3:
            raise Interrupt

    first.step_callbacks.append(stop)
    with pytest.raises(Interrupt):
        first.fit(small_digits, labeled, seed=3, workdir=tmp_path / "resumed")
    assert torch.load(tmp_path / "resumed" / "train.ckpt.pt", weights_only=False)["state"]["step"] == 3
    second = LEARNERS.create("comatch", dataset="digits", **overrides)
    resumed_metrics = second.fit(small_digits, labeled, seed=3, workdir=tmp_path / "resumed")

    assert resumed_metrics["steps"] == full_metrics["steps"] == 6
    assert resumed_metrics["curve"] == full_metrics["curve"]
    assert resumed_metrics["top1"] == full_metrics["top1"]
    a = torch.load(tmp_path / "full" / "train.ckpt.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "train.ckpt.pt", weights_only=False)
    for key in ("model", "ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    assert torch.equal(a["extra"]["bank_embeddings"], b["extra"]["bank_embeddings"])


def test_finished_run_is_not_trained_again(small_digits, tmp_path):
    overrides = tiny_overrides("supervised", threads=1)
    first = LEARNERS.create("supervised", dataset="digits", **overrides).fit(
        small_digits, labeled_set(small_digits), seed=1, workdir=tmp_path)
    again = LEARNERS.create("supervised", dataset="digits", **overrides)
    calls = []
    again.step_callbacks.append(lambda phase, step: calls.append(step))
    second = again.fit(small_digits, labeled_set(small_digits), seed=1, workdir=tmp_path)
    assert calls == [] and second["top1"] == first["top1"] and second["curve"] == first["curve"]


def test_checkpoint_of_another_config_is_refused(small_digits, tmp_path):
    LEARNERS.create("supervised", dataset="digits", **tiny_overrides("supervised", threads=1)).fit(
        small_digits, labeled_set(small_digits), seed=1, workdir=tmp_path)
    other = LEARNERS.create("supervised", dataset="digits", **tiny_overrides("supervised", threads=1, lr=0.1))
    with pytest.raises(UserError, match="belongs to another run"):
        other.fit(small_digits, labeled_set(small_digits), seed=1, workdir=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGE_LEARNERS)
def test_a_few_steps_lower_the_training_loss(name, small_digits):
    # a fixed unlabeled weight: a ramp-up (MixMatch) or a rising confidence mask (threshold > 0) would
    # make the total loss grow while the model improves
    # (FixMatch: with threshold 0 every hard pseudo-label counts; under the fork's strong view, whose
    # draws often leave an image nearly weak, lambda_u 1 keeps that term flat for 40 steps: 0.5)
    lambda_u = {"mixmatch": 10.0, "fixmatch": 0.5}.get(name, 1.0)
    overrides = tiny_overrides(name, steps=40, eval_every=10, checkpoint_every=40, threads=1, lr=0.05,
                               rampup_fraction=0.0, lambda_u=lambda_u, threshold=0.0)
    if name == "simclrv2":
        overrides.update(steps=40, finetune="full", distill_steps=0)
    learner = LEARNERS.create(name, dataset="digits", **overrides)
    metrics = learner.fit(small_digits, labeled_set(small_digits, 4), seed=0, workdir=None)
    losses = [point["loss"] for point in metrics["curve"]]
    assert len(losses) == 4
    assert losses[-1] < 0.8 * losses[0], losses


def test_index_stream_covers_the_labeled_set_once_per_pass():
    # a budget larger than a batch: 10 labeled images, batch 4 -> steps 0-1 and half of step 2 are pass 0
    stream = IndexStream(10, 4, seed=0, name="x")
    first_pass = torch.cat([stream.indices(0), stream.indices(1), stream.indices(2)[:2]])
    assert sorted(first_pass.tolist()) == list(range(10))
    # a budget smaller than a batch: 3 images, batch 8 -> consecutive passes fill the batch
    small = IndexStream(3, 8, seed=0, name="y").indices(0)
    assert sorted(small[:3].tolist()) == [0, 1, 2] and sorted(small[3:6].tolist()) == [0, 1, 2]
    # a step's indices depend only on (seed, name, step): a fresh stream agrees
    assert torch.equal(IndexStream(10, 4, 0, "x").indices(7), stream.indices(7))


def test_augmentations_are_seeded_and_stay_in_range():
    images = torch.randint(0, 256, (16, 3, 12, 12), dtype=torch.uint8)
    for view in ("weak", "strong"):
        a = augment(images, view, POLICIES["cifar"], torch.Generator().manual_seed(5))
        b = augment(images, view, POLICIES["cifar"], torch.Generator().manual_seed(5))
        assert a.shape == (16, 3, 12, 12) and torch.equal(a, b)
        assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # the weak view (flip + reflect-padded crop) only moves pixels: every value comes from the image
    weak = augment(images, "weak", POLICIES["cifar"], torch.Generator().manual_seed(1))
    for i in range(16):
        assert set((weak[i] * 255).round().to(torch.uint8).flatten().tolist()) <= set(images[i].flatten().tolist())
    # digits policy never flips: with no translation (pad 0) the weak view is the image itself
    digits = dataclasses.replace(POLICIES["digits"], pad_fraction=0.0)
    assert torch.equal(augment(images, "weak", digits, torch.Generator().manual_seed(2)), images.float() / 255)


def test_bad_input_gives_clear_messages(small_digits):
    learner = LEARNERS.create("fixmatch", dataset="digits", **tiny_overrides("fixmatch"))
    with pytest.raises(UserError, match="out of range"):
        learner.fit(small_digits, np.array([0, 1, 240]))
    wide = LEARNERS.create("fixmatch", dataset="digits", **tiny_overrides("fixmatch", arch="wrn28_2"))
    with pytest.raises(UserError, match="expects images of 16 to 512 px"):
        wide.fit(small_digits, labeled_set(small_digits))
    gpu_only = LEARNERS.create("fixmatch", dataset="digits", **tiny_overrides("fixmatch", amp=True))
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        gpu_only.fit(small_digits, labeled_set(small_digits), device="cpu")


def test_encoder_network_of_the_wrong_shape_is_refused(small_digits):
    class RGBEncoder:
        def build_module(self, device):
            return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()), 4 * 6 * 6

    learner = LEARNERS.create("simclrv2", dataset="digits", **tiny_overrides("simclrv2"))
    with pytest.raises(UserError, match=r"Images of shape \(1, 8, 8\)"):
        learner.fit(small_digits, labeled_set(small_digits), encoder=RGBEncoder())


def test_simclrv2_uses_the_encoder_network_when_there_is_one(small_digits):
    built = []

    class TinyEncoder:
        def build_module(self, device):
            built.append(device)
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16)), 16

    learner = LEARNERS.create("simclrv2", dataset="digits", **tiny_overrides("simclrv2", distill_steps=0))
    metrics = learner.fit(small_digits, labeled_set(small_digits), encoder=TinyEncoder())
    assert built == ["cpu"] and metrics["encoder_pretrained_here"] is False and metrics["steps"] == 6


def test_record_metrics(small_digits):
    """The three statistics the references report: the final (EMA) top-1, the best evaluation
    (USL FixMatch fork, USB) and the median of the last 20 evaluations (FixMatch / MixMatch papers)."""
    learner = LEARNERS.create("supervised", dataset="digits", **tiny_overrides("supervised", steps=24, eval_every=1,
                                                                                 threads=1))
    metrics = learner.fit(small_digits, labeled_set(small_digits), seed=2)
    curve = [c["top1"] for c in metrics["curve"]]
    assert len(curve) == 24 and curve[-1] == pytest.approx(metrics["top1"], abs=1e-4)
    assert metrics["best_top1_over_training"] == max(curve)
    assert metrics["median20_top1"] == pytest.approx(float(np.median(curve[-20:])))
    assert {"top1", "best_top1_over_training", "median20_top1"} <= set(type(learner).declared_metrics)
