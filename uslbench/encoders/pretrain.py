"""SimCLR pretraining (Chen et al. 2020): two augmented views per image, NT-Xent loss.

Writes `<results-root>/weights/<dataset>/simclr.pt` (where `run` looks by default) at the end, and
a resumable checkpoint `simclr.resume.pt` next to it after every epoch. Defaults follow the SimCLR
CIFAR recipe of SCAN (the SimCLR models USL-T starts from): batch 512, SGD momentum 0.9 (Nesterov),
lr 0.4 per 512 images with cosine decay, weight decay 1e-4, temperature 0.1, 500 epochs,
crop scale (0.2, 1), colour jitter 0.4/0.4/0.4/0.1 (p 0.8), greyscale p 0.2, horizontal flip;
Gaussian blur only for images of 64 px and more.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .. import DEFAULT_SEED
from ..datasets.base import Dataset, ImageSplit
from ..errors import UserError
from ..learners.train_loop import nt_xent
from ..utils import atomic_write_bytes, progress_disabled, seed_from
from ..nets.contrastive import ContrastiveNet

Echo = Callable[[str], None]


@dataclass
class PretrainOptions:
    epochs: int = 500
    batch_size: int = 512
    lr: float = 0.4                 # for 512 images per batch; scaled linearly with the batch size
    weight_decay: float = 1e-4
    temperature: float = 0.1
    amp: bool = True                # float16 autocast + gradient scaling on GPU
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
    resumed_from: int = 0


def simclr_augment(size: int, mean: tuple[float, ...], std: tuple[float, ...],
                   crop_scale: tuple[float, float] = (0.2, 1.0)):
    from torchvision import transforms as T

    steps = [T.RandomResizedCrop(size, scale=crop_scale), T.RandomHorizontalFlip(),
             T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2)]
    if size >= 64:
        kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
        steps.append(T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5))
    mean3 = tuple(mean) * 3 if len(mean) == 1 else tuple(mean)
    std3 = tuple(std) * 3 if len(std) == 1 else tuple(std)
    steps += [T.ToTensor(), T.Normalize(mean3, std3)]
    return T.Compose(steps)


class TwoViews(torch.utils.data.Dataset):
    def __init__(self, split: ImageSplit, transform) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.split.image(index).convert("RGB")
        return self.transform(image), self.transform(image)


def _lr_at(step: int, total: int, base: float) -> float:
    return 0.5 * base * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def pretrain_simclr(dataset: Dataset, weights_path: str | Path, mean: tuple[float, ...], std: tuple[float, ...],
                    options: PretrainOptions | None = None, device: str = "cpu", resume: bool = False,
                    echo: Echo = print, extra: dict | None = None) -> PretrainResult:
    """Train ResNet-18 (CIFAR stem) + 512-512-128 projection on the data set's train split (labels
    are never read) and write the weights (ours format) to `weights_path`."""
    from tqdm.auto import tqdm

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

    torch.manual_seed(seed_from("simclr-pretrain", options.seed))
    net = ContrastiveNet("resnet18_cifar", [512, 512, 128], True).to(device)
    if cuda:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=base_lr, momentum=0.9, nesterov=True,
                                weight_decay=options.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and options.amp)
    start_epoch, losses, resumed_from = 0, [], 0
    run_identity = {"dataset": dataset.identity, "batch_size": batch_size, "epochs": options.epochs,
                    "lr": options.lr, "temperature": options.temperature, "seed": options.seed,
                    "mean": list(mean), "std": list(std)}
    if resume and resume_path.is_file():
        state = torch.load(resume_path, map_location="cpu", weights_only=False)
        if state.get("run") != run_identity:
            raise UserError(f"Cannot resume from {resume_path}: it was written for other data or options "
                            f"({_diff(state.get('run', {}), run_identity)}). Drop --resume (and use --force) "
                            "to start again.")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, losses = int(state["epoch"]), list(state["losses"])
        torch.set_rng_state(state["torch_rng"])
        resumed_from = start_epoch
        echo(f"resuming from epoch {start_epoch} of {options.epochs} ({resume_path})")
    elif resume:
        echo(f"no checkpoint at {resume_path}; starting from scratch")

    size = dataset.image_size
    views = TwoViews(dataset.train, simclr_augment(size, mean, std, options.crop_scale))
    workers = options.num_workers if options.num_workers >= 0 else max(0, min(4, (_cpus() or 1) - 1))
    start = time.perf_counter()
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, options.epochs):
        generator = torch.Generator().manual_seed(seed_from("simclr-epoch", options.seed, epoch))
        loader = torch.utils.data.DataLoader(views, batch_size=batch_size, shuffle=True, drop_last=True,
                                             num_workers=workers, generator=generator, pin_memory=cuda,
                                             persistent_workers=False)
        net.train()
        epoch_losses = []
        bar = tqdm(loader, desc=f"simclr epoch {epoch + 1}/{options.epochs}", leave=False,
                   disable=progress_disabled())
        for v1, v2 in bar:
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, total_steps, base_lr)
            v1, v2 = v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)
            if cuda:
                v1 = v1.contiguous(memory_format=torch.channels_last)
                v2 = v2.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=cuda and options.amp):
                loss = nt_xent(net(v1), net(v2), options.temperature)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            epoch_losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{epoch_losses[-1]:.3f}")
            step += 1
            if options.max_steps is not None and step >= options.max_steps:
                break
        losses.append(float(np.mean(epoch_losses)) if epoch_losses else float("nan"))
        _save_resume(resume_path, net, optimizer, scaler, epoch + 1, losses, run_identity)
        echo(f"epoch {epoch + 1}/{options.epochs}: loss {losses[-1]:.4f}")
        if options.max_steps is not None and step >= options.max_steps:
            break
    done = len(losses)
    export = net.export(encoder="simclr", epochs=done, losses=losses, options=asdict(options),
                        dataset_identity=dataset.identity, mean=list(mean), std=list(std), **(extra or {}))
    _atomic_torch_save(weights_path, export)
    return PretrainResult(weights_path, done, losses, time.perf_counter() - start, resumed_from)


def _cpus() -> int | None:
    import os

    return os.cpu_count()


def _diff(old: dict, new: dict) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(keys) or "unknown difference"


def _save_resume(path: Path, net: nn.Module, optimizer, scaler, epoch: int, losses: list[float], run: dict) -> None:
    _atomic_torch_save(path, {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                              "scaler": scaler.state_dict(), "epoch": epoch, "losses": losses, "run": run,
                              "torch_rng": torch.get_rng_state()})


def _atomic_torch_save(path: Path, obj: dict) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())
