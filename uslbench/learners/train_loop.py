"""The one training loop shared by every image learner (supervised, fixmatch, mixmatch, comatch, simclrv2).

A learner subclasses `ImageLearner` and supplies only:

- `labeled_views` / `unlabeled_views`: which augmented views of each batch it needs, e.g.
  FixMatch ``("weak",)`` / ``("weak", "strong")``, MixMatch ``("weak",)`` / ``("weak", "weak")``;
  an empty `unlabeled_views` means the unlabeled pool is not read at all;
- `loss(model, batch, step, total_steps)` returning ``(loss, {name: float})``;
- optionally `build_model` (network + extra heads), `extra_state` / `load_extra_state` (CoMatch's
  memory bank), `parameter_groups` (frozen backbones).

The loop does the rest, once: batches drawn from reshuffled passes over the labeled set and the pool,
augmentation on the device, SGD with Nesterov momentum and no weight decay on BN / bias, the cosine
schedule lr * cos(7 pi k / (16 K)), an EMA copy of the weights that is the evaluated model,
evaluation every `eval_every` steps, atomic checkpoints in the run's workdir and resume from them,
a tqdm progress bar, and on a GPU optional bf16 autocast, channels-last and torch.compile.

Determinism and resume: every random draw of step k (batch indices, augmentations, MixUp) comes
from generators seeded by (seed, k), never from a stream carried across steps; so a run stopped
after a checkpoint and resumed gives the same weights as an uninterrupted run (bitwise on CPU).

Budget vs batch size: the labeled loader walks through reshuffled passes of the labeled set, so a
labeled set larger than a batch is simply seen over several steps, and one smaller than a batch
(40 labels, batch 64) fills the batch from consecutive passes (some images twice in a batch), which
is what the reference FixMatch loaders do by repeating the labeled set. Neither is an error.
"""
from __future__ import annotations

import contextlib
import copy
import io
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..config_ranges import MOMENTUM, NON_NEGATIVE, POSITIVE, POSITIVE_INT, field_ranges
from ..datasets.base import Dataset, ImageSplit
from ..errors import UserError
from ..utils import atomic_write_bytes, content_key, progress_disabled, seed_from
from .augment import AugmentPolicy, augment, policy_for
from .base import Learner, top1_metrics
from .nets import build_network, check_arch

CHECKPOINT_VERSION = 1


@field_ranges(steps=POSITIVE_INT, labeled_batch=POSITIVE_INT, unlabeled_ratio=NON_NEGATIVE, lr=POSITIVE,
              momentum=MOMENTUM, weight_decay=NON_NEGATIVE, ema=MOMENTUM, eval_every=POSITIVE_INT,
              checkpoint_every=POSITIVE_INT, eval_batch=POSITIVE_INT, threads=NON_NEGATIVE)
@dataclass
class LoopConfig:
    """Fields every image learner shares. Learner configs inherit these and add their own."""

    arch: str = field(default="auto", metadata={"help": "cnn, wrn28_2, wrn28_8, resnet18_cifar, resnet50, auto"})
    steps: int = field(default=1 << 20, metadata={"help": "optimisation steps K"})
    labeled_batch: int = 64
    unlabeled_ratio: int = field(default=7, metadata={"help": "mu: unlabeled batch = mu x labeled batch"})
    lr: float = 0.03
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    cosine: bool = field(default=True, metadata={"help": "lr * cos(7 pi k / (16 K)); off = constant lr"})
    ema: float = field(default=0.999, metadata={"help": "EMA decay of the evaluated weights (0 = no EMA)"})
    eval_every: int = 5000
    checkpoint_every: int = 1000
    augment: str = field(default="auto", metadata={"help": "augmentation policy: auto, cifar, digits, medical"})
    amp: bool = field(default=False, metadata={"help": "bf16 autocast (CUDA only)"})
    channels_last: bool = field(default=False, metadata={"help": "channels-last memory format (CUDA only)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the training forward pass"})
    eval_batch: int = 1024
    threads: int = field(default=0, metadata={"help": "CPU threads for torch during fit (0 = torch's default)"})


# ---------------------------------------------------------------------------------------------
# data


def split_tensor(split: ImageSplit, image_size: int, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) of a split; lazy (file-backed) splits are read and resized once."""
    if split.array is not None:
        array = split.array
    else:
        mode = "L" if channels == 1 else "RGB"
        array = np.stack([np.asarray(split.image(i).convert(mode).resize((image_size, image_size)))
                          for i in range(len(split))])
        if array.ndim == 3:
            array = array[..., None]
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).contiguous()


@dataclass
class TrainData:
    """Everything a training phase reads, held on the device as uint8."""

    labeled_images: torch.Tensor
    labeled_targets: torch.Tensor
    unlabeled_images: torch.Tensor
    test_images: torch.Tensor
    test_targets: np.ndarray
    num_classes: int
    mean: torch.Tensor
    std: torch.Tensor
    policy: AugmentPolicy

    @classmethod
    def build(cls, dataset: Dataset, labeled_indices: np.ndarray, device: str, policy: AugmentPolicy) -> "TrainData":
        train = split_tensor(dataset.train, dataset.image_size, dataset.channels)
        test = split_tensor(dataset.test, dataset.image_size, dataset.channels)
        labeled_indices = torch.as_tensor(np.asarray(labeled_indices, dtype=np.int64))
        labels = torch.as_tensor(dataset.train.labels)
        channels = train.shape[1]
        mean = torch.tensor(dataset.mean, dtype=torch.float32).reshape(1, -1, 1, 1).expand(1, channels, 1, 1)
        std = torch.tensor(dataset.std, dtype=torch.float32).reshape(1, -1, 1, 1).expand(1, channels, 1, 1)
        return cls(train[labeled_indices].to(device), labels[labeled_indices].to(device), train.to(device),
                   test.to(device), np.asarray(dataset.test.labels), dataset.num_classes,
                   mean.to(device).contiguous(), std.to(device).contiguous(), policy)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class IndexStream:
    """Batch b of step k = positions [k b, (k + 1) b) of an endless concatenation of seeded
    permutations of range(n). A step's indices depend only on (seed, name, k): resumable, no state."""

    def __init__(self, n: int, batch: int, seed: int, name: str) -> None:
        self.n, self.batch, self.seed, self.name = n, batch, seed, name
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.pop(min(self._perms))
            g = torch.Generator().manual_seed(seed_from(self.seed, self.name, epoch))
            self._perms[epoch] = torch.randperm(self.n, generator=g)
        return self._perms[epoch]

    def indices(self, step: int) -> torch.Tensor:
        start = step * self.batch
        positions = torch.arange(start, start + self.batch)
        epochs = positions // self.n
        out = torch.empty(self.batch, dtype=torch.int64)
        for epoch in torch.unique(epochs).tolist():
            members = epochs == epoch
            out[members] = self._perm(int(epoch))[positions[members] % self.n]
        return out


@dataclass
class Batch:
    """One step's inputs: normalised views (in the declared order), labels, and the step's generator."""

    labeled: list[torch.Tensor]
    targets: torch.Tensor
    unlabeled: list[torch.Tensor]
    unlabeled_indices: torch.Tensor | None
    generator: torch.Generator
    num_classes: int

    @staticmethod
    def forward(model: nn.Module, tensors: list[torch.Tensor], **kwargs: Any) -> list[Any]:
        """One forward pass over the concatenation (BatchNorm sees labeled and unlabeled together,
        as in the reference FixMatch), split back per input. Tuple outputs are split element-wise."""
        sizes = [len(t) for t in tensors]
        out = model(torch.cat(tensors), **kwargs)
        if isinstance(out, tuple):
            parts = [o.split(sizes) for o in out]
            return [tuple(p[i] for p in parts) for i in range(len(tensors))]
        return list(out.split(sizes))


# ---------------------------------------------------------------------------------------------
# optimisation pieces


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on BatchNorm weights and biases (every parameter with ndim <= 1)."""
    decay, no_decay = [], []
    for parameter in module.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cosine_factor(step: int, total_steps: int) -> float:
    """FixMatch's schedule: cos(7 pi k / (16 K)), from 1 down to cos(7 pi / 16) ~ 0.195."""
    return math.cos(7.0 * math.pi * step / (16.0 * max(total_steps, 1)))


class EMA:
    """Exponential moving average of the parameters; buffers (BN statistics) are copied."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.mul_(self.decay).add_(p.detach(), alpha=1.0 - self.decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)


@torch.no_grad()
def predict(model: nn.Module, data: TrainData, batch_size: int, channels_last: bool = False) -> np.ndarray:
    """Arg-max predictions of `model` (eval mode) on the test split."""
    was_training = model.training
    model.eval()
    predictions = []
    for start in range(0, len(data.test_images), batch_size):
        x = data.normalise(augment(data.test_images[start:start + batch_size], "none", data.policy, None))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        predictions.append(model(x).argmax(1).cpu())
    model.train(was_training)
    return torch.cat(predictions).numpy()


# ---------------------------------------------------------------------------------------------
# the learner base class


class ImageLearner(Learner):
    """Base class of the learners that train a network on images with `run_loop`."""

    labeled_views: tuple[str, ...] = ("weak",)
    unlabeled_views: tuple[str, ...] = ()
    declared_metrics = ("top1", "per_class_top1", "n_test", "best_top1_over_training", "curve", "steps",
                        "train_seconds")

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        # test hooks: called as fn(phase, step) after each step (and its checkpoint)
        self.step_callbacks: list[Callable[[str, int], None]] = []

    # --- hooks a method may override -------------------------------------------------------
    def build_model(self, dataset: Dataset, device: str, encoder: Any = None) -> nn.Module:
        return build_network(self.config.arch, dataset.num_classes, dataset.channels, dataset.image_size)

    def loss(self, model: nn.Module, batch: Batch, step: int, total_steps: int) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def reset_state(self, data: TrainData, model: nn.Module) -> None:
        """Called before training starts (fresh or resumed): allocate method state such as memory banks."""

    def set_train_mode(self, model: nn.Module) -> None:
        model.train()

    # --- checks ------------------------------------------------------------------------------
    def check_dataset(self, dataset: Dataset) -> None:
        super().check_dataset(dataset)
        check_arch(self.config.arch, dataset.channels, dataset.image_size)
        self.check_options(self.config, None)

    def check_device(self, device: str) -> None:
        self.check_options(self.config, device)

    @staticmethod
    def check_options(config: LoopConfig, device: str | None) -> None:
        if config.threads < 0:
            raise UserError(f"Config threads must be >= 0 (0 = torch's default), got {config.threads}.")
        for name in ("steps", "labeled_batch", "eval_every", "checkpoint_every", "eval_batch"):
            if getattr(config, name) < 1:
                raise UserError(f"Config {name} must be at least 1, got {getattr(config, name)}.")
        if config.unlabeled_ratio < 0:
            raise UserError(f"Config unlabeled_ratio must be >= 0, got {config.unlabeled_ratio}.")
        if not 0.0 <= config.ema < 1.0:
            raise UserError(f"Config ema must be in [0, 1), got {config.ema}.")
        if device is not None and not str(device).startswith("cuda"):
            for option in ("amp", "channels_last"):
                if getattr(config, option):
                    raise UserError(f"Config {option}=true needs a CUDA GPU, but this run's device is {device!r}. "
                                    f"Drop {option}=true or run with --device cuda on a GPU machine.")

    def _check_shape(self, model: nn.Module, data: TrainData, device: str) -> None:
        """One tiny forward pass before training, so a wrong image shape fails with a clear message."""
        x = data.normalise(augment(data.test_images[:2], "none", data.policy, None))
        model.eval()
        try:
            with torch.no_grad():
                logits = model(x)
        except RuntimeError as exc:
            raise UserError(f"Images of shape {tuple(x.shape[1:])} (C, H, W) do not fit the network of "
                            f"learner {self.name!r}: {str(exc).splitlines()[0]}. Pick an arch that matches "
                            "the data set (arch=cnn for tiny grey images).") from None
        if logits.shape[-1] != data.num_classes:
            raise UserError(f"The network outputs {logits.shape[-1]} classes, the data set has {data.num_classes}.")

    # --- the loop ----------------------------------------------------------------------------
    def run_loop(self, model: nn.Module, data: TrainData, config: LoopConfig, seed: int, device: str,
                 workdir: str | Path | None, phase: str = "train", fingerprint: Any = None,
                 evaluate: bool = True) -> dict[str, Any]:
        """Train `model` for config.steps steps (resuming from workdir/<phase>.ckpt.pt) and evaluate
        its EMA on the test split (`evaluate=False`: self-supervised phases without a classifier)."""
        self.check_options(config, device)
        model.to(device)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        if evaluate:
            self._check_shape(model, data, device)
        self.reset_state(data, model)
        total = config.steps
        groups = parameter_groups(model, config.weight_decay)
        if not any(g["params"] for g in groups):
            raise UserError(f"Learner {self.name!r} has no trainable parameters in phase {phase!r}.")
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, (lambda k: cosine_factor(k, total)) if config.cosine else (lambda k: 1.0))
        ema = EMA(model, config.ema) if config.ema > 0 else None
        # pending_losses: the losses since the last evaluation, so a resumed curve matches too
        state = {"step": 0, "curve": [], "train_seconds": 0.0, "pending_losses": []}
        path = Path(workdir) / f"{phase}.ckpt.pt" if workdir is not None else None
        key = content_key({"version": CHECKPOINT_VERSION, "learner": self.name, "phase": phase,
                           "config": asdict(config), "seed": seed, "data": fingerprint})
        if path is not None and path.exists():
            checkpoint = torch.load(path, map_location=device, weights_only=False)
            if checkpoint.get("key") != key:
                raise UserError(f"The checkpoint {path} belongs to another run (different config, seed or "
                                "labeled set); delete it or use another results root.")
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            schedule.load_state_dict(checkpoint["schedule"])
            if ema is not None:
                ema.model.load_state_dict(checkpoint["ema"])
            self.load_extra_state(checkpoint["extra"])
            state = checkpoint["state"]

        def save() -> None:
            if path is None:
                return
            buffer = io.BytesIO()
            torch.save({"key": key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(), "ema": ema.model.state_dict() if ema else None,
                        "extra": self.extra_state(), "state": state}, buffer)
            atomic_write_bytes(path, buffer.getvalue())

        evaluated = ema.model if ema is not None else model
        forward = torch.compile(model) if config.compile else model
        labeled_stream = IndexStream(len(data.labeled_targets), config.labeled_batch, seed, f"{phase}/labeled")
        unlabeled_batch = config.labeled_batch * config.unlabeled_ratio
        unlabeled_stream = (IndexStream(len(data.unlabeled_images), unlabeled_batch, seed, f"{phase}/unlabeled")
                            if self.unlabeled_views and unlabeled_batch > 0 else None)
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if config.amp
                    else torch.autocast("cpu", enabled=False))
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=state["step"], desc=f"{self.name}/{phase}", disable=progress_disabled(),
                   dynamic_ncols=True)
        losses: list[float] = list(state["pending_losses"])
        started = time.perf_counter()
        self.set_train_mode(model)
        for step in range(state["step"], total):
            generator = torch.Generator(device=device).manual_seed(seed_from(seed, phase, "step", step))
            torch.manual_seed(seed_from(seed, phase, "global", step))  # dropout or any global draw
            batch = self._batch(data, labeled_stream, unlabeled_stream, step, generator, config)
            with autocast:
                loss, logs = self.loss(forward, batch, step, total)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if ema is not None:
                ema.update(model)
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix({"loss": f"{losses[-1]:.3f}", **{k: f"{v:.3f}" for k, v in logs.items()}},
                            refresh=False)
            done = step + 1
            if evaluate and (done % config.eval_every == 0 or done == total):
                top1 = top1_metrics(predict(evaluated, data, config.eval_batch, config.channels_last),
                                    data.test_targets, data.num_classes)["top1"]
                self.set_train_mode(model)
                state["curve"].append({"step": done, "top1": round(top1, 4),
                                       "loss": round(float(np.mean(losses)), 6)})
                losses = []
            if done % config.checkpoint_every == 0 or done == total:
                state["step"] = done
                state["pending_losses"] = list(losses)
                state["train_seconds"] += time.perf_counter() - started
                started = time.perf_counter()
                save()
            for callback in self.step_callbacks:
                callback(phase, done)
        bar.close()
        state["step"] = total
        if not evaluate:
            return {"steps": total, "train_seconds": round(state["train_seconds"], 3), "model": evaluated}
        metrics = top1_metrics(predict(evaluated, data, config.eval_batch, config.channels_last),
                               data.test_targets, data.num_classes)
        curve = state["curve"]
        metrics.update(best_top1_over_training=max((c["top1"] for c in curve), default=metrics["top1"]),
                       curve=curve, steps=total, train_seconds=round(state["train_seconds"], 3))
        return metrics

    def _batch(self, data: TrainData, labeled_stream: IndexStream, unlabeled_stream: IndexStream | None,
               step: int, generator: torch.Generator, config: LoopConfig) -> Batch:
        def views(images: torch.Tensor, names: tuple[str, ...]) -> list[torch.Tensor]:
            out = []
            for name in names:
                x = data.normalise(augment(images, name, data.policy, generator))
                if config.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                out.append(x)
            return out

        device = data.labeled_images.device
        labeled_idx = labeled_stream.indices(step).to(device)
        labeled = views(data.labeled_images[labeled_idx], self.labeled_views) if self.labeled_views else []
        unlabeled, unlabeled_idx = [], None
        if unlabeled_stream is not None:
            unlabeled_idx = unlabeled_stream.indices(step).to(device)
            unlabeled = views(data.unlabeled_images[unlabeled_idx], self.unlabeled_views)
        return Batch(labeled, data.labeled_targets[labeled_idx], unlabeled, unlabeled_idx, generator,
                     data.num_classes)

    # --- fit -----------------------------------------------------------------------------------
    def prepare(self, dataset: Dataset, labeled_indices: np.ndarray, seed: int, device: str
                ) -> tuple[TrainData, Any]:
        """Validate, then build the device data and the fingerprint that ties checkpoints to inputs."""
        self.check(dataset, labeled_indices)
        self.check_options(self.config, device)
        policy = policy_for(self.config.augment, dataset.image_size)
        data = TrainData.build(dataset, labeled_indices, device, policy)
        fingerprint = {"dataset": dataset.identity, "name": dataset.name,
                       "labeled": content_key(np.asarray(labeled_indices, dtype=np.int64).tolist())}
        return data, fingerprint

    def fit(self, dataset: Dataset, labeled_indices: np.ndarray, seed: int = 0, device: str = "cpu",
            workdir: str | Path | None = None, features: Any = None, encoder: Any = None) -> dict[str, Any]:
        data, fingerprint = self.prepare(dataset, labeled_indices, seed, device)
        with cpu_threads(self.config.threads):
            torch.manual_seed(seed_from(seed, self.name, "init"))
            model = self.build_model(dataset, device, encoder)
            return self.run_loop(model, data, self.config, seed, device, workdir, "train", fingerprint)


@contextlib.contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """Temporarily set torch's CPU thread count. Why: the small presets' tiny convolutions run
    several times faster on one thread than on two contended ones (measured: 9 ms vs 250 ms per
    step on a loaded 2-core machine), because OpenMP synchronisation dominates such small kernels."""
    previous = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def one_hot(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(targets, num_classes).float()


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over a batch of B positive pairs (rows L2-normalised): each of the 2B views must pick
    its partner among the other 2B - 1 views; mean cross-entropy."""
    z = torch.cat([z1, z2]).float()
    n = z1.shape[0]
    logits = z @ z.t() / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return torch.nn.functional.cross_entropy(logits, targets)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy against probability targets."""
    return -(targets * torch.log_softmax(logits, dim=1)).sum(1)
