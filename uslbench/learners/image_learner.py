"""The base class of every image learner (supervised, fixmatch, mixmatch, comatch, simclrv2): the
learner side of the one training loop (`uslbench.training.loop.TrainLoop`).

A learner subclasses `ImageLearner` and supplies only:

- `labeled_views` / `unlabeled_views`: which augmented views of each batch it needs, e.g.
  FixMatch ``("weak",)`` / ``("weak", "strong")``, MixMatch ``("weak",)`` / ``("weak", "weak")``;
  an empty `unlabeled_views` means the unlabeled pool is not read at all;
- `loss(model, batch, step, total_steps)` returning ``(loss, {name: float})``;
- optionally `build_model` (network + extra heads), `extra_state` / `load_extra_state` (CoMatch's
  memory bank), `parameter_groups` (frozen backbones).

This module does what is specific to SSL on images: the data held on the device as uint8
(`TrainData`), batches drawn from reshuffled passes over the labeled set and the pool
(`training.loop.IndexStream`), augmentation on the device (`training.augment`), SGD with Nesterov
momentum (or AdamW: MixMatch's recipe) and no weight decay on BN / bias, the cosine schedule
lr * cos(7 pi k / (16 K)) (or a constant rate), evaluation of the EMA weights every `eval_every`
steps (the record keeps the final top-1, the best one and the median of the last 20 evaluations,
the three statistics the references report), and on a GPU optional bf16 autocast,
channels-last and torch.compile. The loop does the rest (EMA, seeding per step, checkpoints in the
run's workdir and resume, interrupts, duration estimate, progress).

Determinism and resume: every random draw of step k (batch indices, augmentations, MixUp) comes
from generators seeded by (seed, k), never from a stream carried across steps; so a run stopped
after a checkpoint and resumed gives the same weights as an uninterrupted run (bitwise on CPU).

Budget vs batch size: the labeled loader walks through reshuffled passes of the labeled set, so a
labeled set larger than a batch is simply seen over several steps, and one smaller than a batch
(40 labels, batch 64) fills the batch from consecutive passes (some images twice in a batch), which
is what the reference FixMatch loaders do by repeating the labeled set. Neither is an error.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .. import DEFAULT_SEED
from ..datasets.base import Dataset
from ..errors import UserError
from ..training.augment import RANDAUGMENT_VARIANTS, AugmentPolicy, augment, policy_for
from ..training.checkpoint import Checkpoint
from ..training.images import split_tensor
from ..training.loop import (IndexStream, Seeding, TrainLoop, cosine_factor, cpu_threads, parameter_groups,
                             seed_torch)
from ..utils import content_key
from .base import Learner, pool_predictions, top1_metrics, unevaluated_metrics
from .loop_config import LoopConfig  # noqa: F401  (learners import it from here too)
from ..nets import build_network, check_arch

CHECKPOINT_VERSION = 1
OPTIMIZERS = ("sgd", "adamw")


def make_optimizer(groups: list[dict], config: LoopConfig) -> torch.optim.Optimizer:
    """SGD with momentum (Nesterov by default: FixMatch, CoMatch, USB), or AdamW: Adam with the
    decoupled weight decay of MixMatch's code (google-research/mixmatch mixmatch.py: after each
    Adam step every conv / dense kernel is multiplied by 1 - weight_decay x lr; AdamW applies the
    same factor before the step). The groups carry their own weight decay (none on BN / biases)."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def curve_metrics(curve: list[dict], final_top1: float) -> dict[str, float]:
    """The evaluation statistics the references report, from the curve of periodic evaluations:
    `best_top1_over_training` (the USL FixMatch fork and USB log the best) and `median20_top1` (the
    median of the last 20 evaluations: FixMatch and MixMatch papers, google-research/fixmatch
    scripts/extract_accuracy.py). Without a curve both are the final top-1."""
    values = [c["top1"] for c in curve]
    if not values:
        return {"best_top1_over_training": final_top1, "median20_top1": final_top1}
    return {"best_top1_over_training": max(values), "median20_top1": float(np.median(values[-20:]))}


def slow_hint(learner: str = "fixmatch") -> str:
    """Said when a run would take absurdly long on the device (see training.loop.estimate_duration):
    the small recipe of the shared presets (digits row), or a GPU."""
    from .presets import SHARED  # lazy: presets imports this module (LoopConfig)

    small = SHARED["digits"]
    return ("For a CPU-sized run use the small recipe, e.g. "
            + " ".join(f"--learner-config {learner}.{k}={small[k]}"
                       for k in ("arch", "steps", "labeled_batch", "unlabeled_ratio", "ema"))
            + ", or run on a GPU (--device cuda).")


def _mismatch(path: Path, differences: str) -> str:
    return (f"The checkpoint {path} belongs to another run (different {differences}: config, seed or labeled "
            "set); delete it or use another results root.")


# ---------------------------------------------------------------------------------------------
# data


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
        """The device tensors of a data set; without a labelled test split (`run --labels` on your
        own folder) the test tensors are empty and nothing is evaluated."""
        train = split_tensor(dataset.train, dataset.image_size, dataset.channels)
        if dataset.evaluated:
            test, test_targets = split_tensor(dataset.test, dataset.image_size, dataset.channels), dataset.test.labels
        else:
            test, test_targets = train[:0], np.zeros(0, dtype=np.int64)
        labeled_indices = torch.as_tensor(np.asarray(labeled_indices, dtype=np.int64))
        labels = torch.as_tensor(dataset.train.labels)
        channels = train.shape[1]
        mean = torch.tensor(dataset.mean, dtype=torch.float32).reshape(1, -1, 1, 1).expand(1, channels, 1, 1)
        std = torch.tensor(dataset.std, dtype=torch.float32).reshape(1, -1, 1, 1).expand(1, channels, 1, 1)
        return cls(train[labeled_indices].to(device), labels[labeled_indices].to(device), train.to(device),
                   test.to(device), np.asarray(test_targets), dataset.num_classes,
                   mean.to(device).contiguous(), std.to(device).contiguous(), policy)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    @property
    def evaluated(self) -> bool:
        """Whether there is a test split to evaluate on."""
        return len(self.test_targets) > 0


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
# evaluation


@torch.no_grad()
def eval_outputs(model: nn.Module, data: TrainData, images: torch.Tensor, batch_size: int, channels_last: bool,
                 reduce: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`reduce(logits)` of `model` (eval mode, no augmentation) on uint8 images (N, C, H, W), batch
    by batch, concatenated on the CPU."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = data.normalise(augment(images[start:start + batch_size], "none", data.policy, None))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(reduce(model(x)).cpu())
    model.train(was_training)
    return torch.cat(out)


def predict(model: nn.Module, data: TrainData, batch_size: int, channels_last: bool = False) -> np.ndarray:
    """Arg-max predictions of `model` (eval mode) on the test split."""
    return eval_outputs(model, data, data.test_images, batch_size, channels_last, lambda z: z.argmax(1)).numpy()


def class_probabilities(model: nn.Module, data: TrainData, images: torch.Tensor, batch_size: int,
                        channels_last: bool = False) -> np.ndarray:
    """Softmax of `model` (eval mode, no augmentation) on uint8 images (N, C, H, W): float32 (N, classes)."""
    return eval_outputs(model, data, images, batch_size, channels_last, lambda z: z.float().softmax(1)).numpy()


# ---------------------------------------------------------------------------------------------
# the learner base class


class ImageLearner(Learner):
    """Base class of the learners that train a network on images with `run_loop`."""

    labeled_views: tuple[str, ...] = ("weak",)
    unlabeled_views: tuple[str, ...] = ()
    declared_metrics = ("top1", "per_class_top1", "n_test", "best_top1_over_training", "median20_top1", "curve",
                        "steps", "train_seconds")

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        # test hooks: called as fn(phase, step) after each step (and its checkpoint)
        self.step_callbacks: list[Callable[[str, int], None]] = []
        self._fitted: tuple[nn.Module, TrainData, LoopConfig, Path | None] | None = None

    # --- the pool's predictions (run --labels) ------------------------------------------------
    def predict_pool(self, dataset: Dataset, features: Any = None, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
        """The evaluated model of the last classifier phase (the EMA weights where there is an EMA),
        in eval mode without augmentation, on every pool image: (class ids, softmax probability)."""
        if self._fitted is None:
            raise RuntimeError(f"learner {self.name!r}: predict_pool before fit")
        model, data, config, _ = self._fitted
        with cpu_threads(config.threads):
            proba = class_probabilities(model, data, data.unlabeled_images, config.eval_batch, config.channels_last)
        return pool_predictions(proba)

    def save_model(self, workdir: str | Path) -> Path | None:
        """The final checkpoint of the last classifier phase (``<phase>.ckpt.pt``, written by the loop)."""
        if self._fitted is None or self._fitted[3] is None:
            return None
        return self._fitted[3]

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
        if config.optimizer not in OPTIMIZERS:
            raise UserError(f"Config optimizer must be one of {', '.join(OPTIMIZERS)}, got {config.optimizer!r}.")
        if config.randaugment not in RANDAUGMENT_VARIANTS:
            raise UserError(f"Config randaugment must be one of {', '.join(RANDAUGMENT_VARIANTS)}, "
                            f"got {config.randaugment!r}.")
        if device is not None and not str(device).startswith("cuda"):
            for option in ("amp", "channels_last"):
                if getattr(config, option):
                    raise UserError(f"Config {option}=true needs a CUDA GPU, but this run's device is {device!r}. "
                                    f"Drop {option}=true or run with --device cuda on a GPU machine.")

    def _check_shape(self, model: nn.Module, data: TrainData, device: str) -> None:
        """One tiny forward pass before training, so a wrong image shape fails with a clear message."""
        images = data.test_images if data.evaluated else data.unlabeled_images
        x = data.normalise(augment(images[:2], "none", data.policy, None))
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
        its EMA on the test split (`evaluate=False`: self-supervised phases without a classifier).
        The evaluated model of a classifier phase is kept for `predict_pool` (the last such phase
        is the one `fit` reports). Without a test split nothing is evaluated and the metrics are
        `unevaluated_metrics` plus the schedule's.

        Raises
        ------
        UserError
            Bad options, images that do not fit the network, no trainable parameters, or a checkpoint
            in `workdir` written for another config, seed or labeled set.
        training.loop.TrainingInterrupted
            SIGINT / SIGTERM: the checkpoint was written and the message says how to resume.
        """
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
        optimizer = make_optimizer(groups, config)
        identity = {"version": CHECKPOINT_VERSION, "learner": self.name, "phase": phase,
                    "config": asdict(config), "seed": seed, "data": fingerprint}

        def on_period(done: int, losses: list[float]) -> dict:
            top1 = top1_metrics(predict(loop.evaluated, data, config.eval_batch, config.channels_last),
                                data.test_targets, data.num_classes)["top1"]
            return {"step": done, "top1": round(top1, 4), "loss": round(float(np.mean(losses)), 6)}

        loop = TrainLoop(
            name=f"{self.name}/{phase}", model=model, optimizer=optimizer, steps=total,
            lr_factor=(lambda k: cosine_factor(k, total)) if config.cosine else None, ema=config.ema,
            seeding=Seeding.per_step(seed, phase, device),
            checkpoint=Checkpoint(Path(workdir) / f"{phase}.ckpt.pt") if workdir is not None else None,
            identity=identity, mismatch=_mismatch, checkpoint_every=config.checkpoint_every,
            period=config.eval_every if evaluate and data.evaluated else None, on_period=on_period,
            extra_state=self.extra_state, load_extra_state=self.load_extra_state,
            train_mode=lambda: self.set_train_mode(model),
            callbacks=[lambda done, fn=fn: fn(phase, done) for fn in self.step_callbacks], device=device,
            resume_hint="Run the same command again (same --results-root, without --force) to resume from there.",
            slow_hint=slow_hint(self.name))
        forward = torch.compile(model) if config.compile else model
        labeled_stream = IndexStream(len(data.labeled_targets), config.labeled_batch, seed, f"{phase}/labeled")
        unlabeled_batch = config.labeled_batch * config.unlabeled_ratio
        unlabeled_stream = (IndexStream(len(data.unlabeled_images), unlabeled_batch, seed, f"{phase}/unlabeled")
                            if self.unlabeled_views and unlabeled_batch > 0 else None)
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if config.amp
                    else torch.autocast("cpu", enabled=False))

        def step_fn(step: int, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
            batch = self._batch(data, labeled_stream, unlabeled_stream, step, generator, config)
            with autocast:
                return self.loss(forward, batch, step, total)

        done = loop.run(step_fn)
        evaluated = loop.evaluated
        if not evaluate:
            return {"steps": done.steps, "train_seconds": done.train_seconds, "model": evaluated}
        self._fitted = (evaluated, data, config, Path(workdir) / f"{phase}.ckpt.pt" if workdir is not None else None)
        if not data.evaluated:
            return {**unevaluated_metrics(), "best_top1_over_training": None, "median20_top1": None, "curve": [],
                    "steps": done.steps, "train_seconds": done.train_seconds}
        metrics = top1_metrics(predict(evaluated, data, config.eval_batch, config.channels_last),
                               data.test_targets, data.num_classes)
        curve = done.history
        metrics.update(curve_metrics(curve, metrics["top1"]), curve=curve, steps=done.steps,
                       train_seconds=done.train_seconds)
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
        policy = policy_for(self.config.augment, dataset.image_size, self.config.randaugment)
        data = TrainData.build(dataset, labeled_indices, device, policy)
        fingerprint = {"dataset": dataset.identity, "name": dataset.name,
                       "labeled": content_key(np.asarray(labeled_indices, dtype=np.int64).tolist())}
        return data, fingerprint

    def fit(self, dataset: Dataset, labeled_indices: np.ndarray, seed: int = DEFAULT_SEED, device: str = "cpu",
            workdir: str | Path | None = None, features: Any = None, encoder: Any = None) -> dict[str, Any]:
        data, fingerprint = self.prepare(dataset, labeled_indices, seed, device)
        with cpu_threads(self.config.threads):
            seed_torch(seed, self.name, "init")
            model = self.build_model(dataset, device, encoder)
            return self.run_loop(model, data, self.config, seed, device, workdir, "train", fingerprint)
