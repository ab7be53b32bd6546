"""SimCLR pretraining (Chen et al. 2020): two augmented views per image, NT-Xent loss, run by the
one training loop (`uslbench.training.loop.TrainLoop`).

Writes `<results-root>/weights/<dataset>/simclr.pt` (where `run` looks by default) at the end, and
a resumable checkpoint `simclr.resume.pt` next to it after every epoch, at the last step and on
SIGINT / SIGTERM (mid-epoch: the resumed run continues with the same batches). Defaults follow the SimCLR
CIFAR recipe of SCAN (the SimCLR models USL-T starts from): batch 512, SGD momentum 0.9 (Nesterov),
lr 0.4 per 512 images with cosine decay, weight decay 1e-4, temperature 0.1, 500 epochs,
crop scale (0.2, 1), colour jitter 0.4/0.4/0.4/0.1 (p 0.8), greyscale p 0.2, horizontal flip;
Gaussian blur only for images of 64 px and more.
"""
from __future__ import annotations

import io
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import DEFAULT_SEED
from ..datasets.base import Dataset
from ..errors import UserError
from ..training.augment import simclr_transform
from ..training.checkpoint import Checkpoint
from ..training.device import resolve_precision, to_device
from ..training.images import SplitImages
from ..training.loop import Seeding, TrainLoop, half_cosine_factor, seed_torch
from ..training.losses import nt_xent
from ..utils import atomic_write_bytes, content_key, seed_from
from ..nets.contrastive import ContrastiveNet

Echo = Callable[[str], None]


@dataclass
class PretrainOptions:
    epochs: int = 500
    batch_size: int = 512
    lr: float = 0.4                 # for 512 images per batch; scaled linearly with the batch size
    weight_decay: float = 1e-4
    temperature: float = 0.1
    amp: bool = True                # on a GPU: bf16 autocast (fp16 + loss scaling without bf16); ignored on the CPU
    seed: int = DEFAULT_SEED
    num_workers: int = -1           # -1: min(4, cores - 1)
    max_steps: int | None = None    # stop early after this many steps in total (smoke tests)
    crop_scale: tuple[float, float] = field(default=(0.2, 1.0))

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise UserError(f"pretrain needs --epochs >= 1 and --batch-size >= 2 (got {self.epochs}, {self.batch_size}).")
        if self.lr <= 0 or self.temperature <= 0:
            raise UserError(f"pretrain needs a positive --lr and --temperature (got {self.lr}, {self.temperature}).")


@dataclass
class PretrainResult:
    weights_path: Path
    epochs_done: int
    losses: list[float]              # mean loss per epoch (this invocation and the resumed ones)
    seconds: float
    resumed_from: int = 0            # epochs completed before this invocation


class TwoViews:
    """PIL image -> (view, view): the SimCLR transform applied twice (picklable for workers)."""

    def __init__(self, transform: Callable) -> None:
        self.transform = transform

    def __call__(self, image) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(image), self.transform(image)


class EpochBatches:
    """Step k's two views: batch k mod S of epoch k // S (S steps per epoch, the last partial batch
    dropped), each epoch a reshuffle seeded by (seed, epoch). The batch order is the one
    ``DataLoader(shuffle=True, drop_last=True, generator=seeded)`` draws, so a loader can start at any
    batch of an epoch (a resume mid-epoch); the views come from torch's global generator in the
    main process (saved in checkpoints), or per worker from the epoch's seeded base seed. With
    workers, a resume inside an epoch keeps the batches but not the views of that epoch's remaining
    steps (the workers' streams restart); with num_workers=0 it is exact, bit for bit."""

    def __init__(self, views: SplitImages, batch_size: int, seed: int, workers: int, pin_memory: bool) -> None:
        self.views, self.batch_size, self.seed = views, batch_size, seed
        self.workers, self.pin_memory = workers, pin_memory
        self.steps_per_epoch = len(views) // batch_size
        self._iterator: Any = None
        self._position = (-1, -1)

    def _generator(self, epoch: int) -> torch.Generator:
        generator = torch.Generator().manual_seed(seed_from("simclr-epoch", self.seed, epoch))
        skip_dropped_iterator(generator, len(self.views), self.batch_size, self.workers)
        return generator

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, b = divmod(step, self.steps_per_epoch)
        if b == 0 or self._position != (epoch, b):  # a new epoch, or a resume inside one
            order = list(torch.utils.data.DataLoader(range(len(self.views)), batch_size=self.batch_size, shuffle=True,
                                                     drop_last=True, generator=self._generator(epoch)))
            loader = torch.utils.data.DataLoader(self.views, batch_sampler=[batch.tolist() for batch in order[b:]],
                                                 num_workers=self.workers, generator=self._generator(epoch),
                                                 pin_memory=self.pin_memory, persistent_workers=False)
            self._iterator = iter(loader)
        self._position = (epoch, b + 1) if b + 1 < self.steps_per_epoch else (epoch + 1, 0)
        return next(self._iterator)


def skip_dropped_iterator(generator: torch.Generator, n: int, batch_size: int, workers: int) -> None:
    """Advance an epoch's generator past the draws of the DataLoader iterator that pretraining
    used to open and drop before the one it walked (tqdm.auto opens one when it wraps a loader), so
    the epoch orders and worker seeds stay those of every weights file pretrained so far.

    That iterator drew its base seed (one int64) and, with workers, prefetched 2 batches per worker
    from the shuffling sampler: one permutation of range(n), and a second one when the prefetch ran
    past the epoch's last full batch (the sampler draws its next permutation before it stops).
    tests/test_data_pretrain.py compares this with a real DataLoader under tqdm.auto.
    """
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    if workers > 0:
        torch.randperm(n, generator=generator)
        if 2 * workers > n // batch_size:
            torch.randperm(n, generator=generator)


def pretrain_simclr(dataset: Dataset, weights_path: str | Path, mean: tuple[float, ...], std: tuple[float, ...],
                    options: PretrainOptions | None = None, device: str = "cpu", resume: bool = False,
                    echo: Echo = print, extra: dict | None = None) -> PretrainResult:
    """Train ResNet-18 (CIFAR stem) + 512-512-128 projection on the data set's train split (labels
    are never read) and write the weights (ours format) to `weights_path`.

    Raises
    ------
    UserError
        Bad options, fewer than 2 images, or (with `resume`) a checkpoint written for other data or
        options.
    training.loop.TrainingInterrupted
        SIGINT / SIGTERM: the resume checkpoint was written and the message says how to resume.
    """
    options = options or PretrainOptions()
    options.check()
    weights_path = Path(weights_path)
    resume_path = weights_path.with_name(weights_path.stem + ".resume.pt")
    cuda = str(device).startswith("cuda")
    n = len(dataset.train)
    batch_size = min(options.batch_size, n)
    if batch_size < 2:
        raise UserError(f"pretrain needs at least 2 images; {dataset.name} has {n}.")
    steps_per_epoch = n // batch_size
    total_steps = steps_per_epoch * options.epochs
    base_lr = options.lr * batch_size / 512

    # on a GPU: autocast (bf16, or fp16 with loss scaling) and channels-last; float32 on the CPU
    precision = resolve_precision(device, amp=options.amp if cuda else None)
    seed_torch("simclr-pretrain", options.seed)
    net = precision.model(ContrastiveNet("resnet18_cifar", [512, 512, 128], True).to(device))
    optimizer = torch.optim.SGD(net.parameters(), lr=base_lr, momentum=0.9, nesterov=True,
                                weight_decay=options.weight_decay)
    scaler = precision.scaler()
    run_identity = {"dataset": dataset.identity, "batch_size": batch_size, "epochs": options.epochs,
                    "lr": options.lr, "temperature": options.temperature, "seed": options.seed,
                    "mean": list(mean), "std": list(std)}
    if not resume:  # a fresh start: an earlier run's state must not be picked up
        for stale in Checkpoint(resume_path).files():
            stale.unlink()

    def on_epoch(done: int, losses: list[float]) -> float:
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        echo(f"epoch {done // steps_per_epoch}/{options.epochs}: loss {mean_loss:.4f}")
        return mean_loss

    loop = TrainLoop(
        name="simclr/pretrain", model=net, optimizer=optimizer, steps=total_steps, stop_at=options.max_steps,
        lr_factor=lambda k: half_cosine_factor(k, total_steps), scaler=scaler, seeding=Seeding.carried(),
        checkpoint=Checkpoint(resume_path), identity=run_identity, upgrade=_upgrade(steps_per_epoch),
        mismatch=lambda path, diff: (f"Cannot resume from {path}: it was written for other data or options "
                                     f"({diff}). Drop --resume (and use --force) to start again."),
        checkpoint_every=steps_per_epoch, period=steps_per_epoch, on_period=on_epoch,
        train_mode=net.train, device=str(device), echo=echo,
        resume_hint="Add --resume to the same pretrain command to continue from there.",
        slow_hint="Lower --epochs, or pretrain on a GPU (--device cuda).")
    resumed_from = 0
    if resume:
        step = loop.restore()
        if step:
            resumed_from, inside = divmod(step, steps_per_epoch)
            where = f"epoch {resumed_from}" if not inside else f"step {inside} of epoch {resumed_from + 1}"
            echo(f"resuming from {where} of {options.epochs} ({loop.checkpoint.loaded_from})")
        else:
            echo(f"no checkpoint at {resume_path}; starting from scratch")

    workers = options.num_workers if options.num_workers >= 0 else max(0, min(4, (os.cpu_count() or 1) - 1))
    views = SplitImages(dataset.train, TwoViews(simclr_transform(dataset.image_size, mean, std, options.crop_scale)),
                        mode="RGB")
    batches = EpochBatches(views, batch_size, options.seed, workers, pin_memory=cuda)

    def step_fn(step: int, _: Any) -> tuple[torch.Tensor, dict]:
        v1, v2 = batches(step)
        v1, v2 = precision.images(to_device(v1, device)), precision.images(to_device(v2, device))
        with precision.autocast():
            return nt_xent(net(v1), net(v2), options.temperature), {}

    start = time.perf_counter()
    done = loop.run(step_fn)
    losses = list(done.history)
    if done.pending_losses:  # stopped early (max_steps) inside an epoch
        losses.append(float(np.mean(done.pending_losses)))
    export = net.export(encoder="simclr", epochs=len(losses), losses=losses, options=asdict(options),
                        dataset_identity=dataset.identity, mean=list(mean), std=list(std), **(extra or {}))
    buffer = io.BytesIO()
    torch.save(export, buffer)
    atomic_write_bytes(weights_path, buffer.getvalue())
    return PretrainResult(weights_path, len(losses), losses, time.perf_counter() - start, resumed_from)


def _upgrade(steps_per_epoch: int) -> Callable[[dict], dict]:
    """Read a resume checkpoint of the epoch-based format (before the shared loop) as a loop state."""

    def upgrade(saved: dict) -> dict:
        if "state" in saved or "epoch" not in saved:
            return saved
        return {"key": content_key(saved.get("run")), "identity": saved.get("run"), "model": saved["model"],
                "optimizer": saved["optimizer"], "scaler": saved.get("scaler"), "ema": None, "extra": {},
                "rng": {"torch": saved["torch_rng"], "generators": []},
                "state": {"step": int(saved["epoch"]) * steps_per_epoch, "history": list(saved["losses"]),
                          "train_seconds": 0.0, "pending_losses": []}}

    return upgrade
