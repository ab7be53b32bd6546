"""The base class of every image learner (supervised, fixmatch, mixmatch, comatch, simclrv2): the
learner side of the one training loop (`uslbench.training.loop.TrainLoop`).

A learner subclasses `ImageLearner` and supplies only:

- `labeled_views` / `unlabeled_views`: which augmented views of each batch it needs, e.g.
  FixMatch ``("weak",)`` / ``("weak", "strong")``, MixMatch ``("weak",)`` / ``("weak", "weak")``;
  an empty `unlabeled_views` means the unlabeled pool is not read at all;
- `loss(model, batch, step, total_steps)` returning ``(loss, {name: float})``;
- optionally `build_model` (network + extra heads), `extra_state` / `load_extra_state` (CoMatch's
  memory bank), `parameter_groups` (frozen backbones).

This class does what is specific to SSL on images: the data as uint8 (`TrainData`: the labeled
images on the device; the pool and the test split as `training.images.ImagePool`s, on the GPU only
when they fit in a share of its free memory, else gathered on the host and sent per batch, and
file-backed splits decoded by DataLoader workers ahead of the step), batches drawn from reshuffled
passes over the labeled set and the pool (`training.loop.IndexStream`), augmentation on the device
(`training.augment`), SGD with Nesterov momentum (or AdamW: MixMatch's recipe) and no weight decay
on BN / bias, the cosine schedule lr * cos(7 pi k / (16 K)) (or a constant rate), evaluation of the
EMA weights every `eval_every` steps under the training's autocast (the record keeps the final
top-1, the best one and the median of the last 20 evaluations, the three statistics the references
report), and the precision of `training.device.resolve_precision`: on a GPU by default bf16
autocast (fp16 with a GradScaler where bf16 is missing) and channels-last, float32 on the CPU;
optional torch.compile. The loop does the rest (EMA, seeding per step, checkpoints in the run's
workdir and resume, interrupts, duration estimate, progress). Nothing is read back from the GPU per
step: losses and logs stay tensors until an evaluation or a checkpoint.

Determinism and resume: every random draw of step k (batch indices, augmentations, MixUp) comes
from generators seeded by (seed, k), never from a stream carried across steps; so a run stopped
after a checkpoint and resumed gives the same weights as an uninterrupted run (bitwise on CPU).

Imports: this module imports no torch, so that registering and describing the image learners
(`list`, `describe`) stays light; its methods import the training package and `image_training`
(the torch side: `TrainData`, `StepImages`, `Batch`, evaluation, the optimiser) when they run.

Budget vs batch size: the labeled loader walks through reshuffled passes of the labeled set, so a
labeled set larger than a batch is simply seen over several steps, and one smaller than a batch
(40 labels, batch 64) fills the batch from consecutive passes (some images twice in a batch), which
is what the reference FixMatch loaders do by repeating the labeled set. Neither is an error.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .. import DEFAULT_SEED
from ..datasets.base import Dataset
from ..errors import UserError
from ..utils import content_key
from .base import Learner, pool_predictions, top1_metrics, unevaluated_metrics
from .loop_config import LoopConfig  # noqa: F401  (learners import it from here too)

if TYPE_CHECKING:  # torch and the training package are imported when a learner trains, not when it registers
    import torch
    from torch import nn

    from ..training.device import Precision
    from ..training.loop import IndexStream
    from .image_training import Batch, StepImages, TrainData

CHECKPOINT_VERSION = 1
OPTIMIZERS = ("sgd", "adamw")


def curve_metrics(curve: list[dict], final_top1: float) -> dict[str, float]:
    """The evaluation statistics the references report, from the curve of periodic evaluations:
    `best_top1_over_training` (the USL FixMatch fork and USB log the best) and `median20_top1` (the
    median of the last 20 evaluations: FixMatch and MixMatch papers, google-research/fixmatch
    scripts/extract_accuracy.py). Without a curve both are the final top-1."""
    values = [c["top1"] for c in curve]
    if not values:
        return {"best_top1_over_training": final_top1, "median20_top1": final_top1}
    return {"best_top1_over_training": max(values), "median20_top1": float(np.median(values[-20:]))}


def slow_hint(learner: str = "fixmatch", config_cls: type | None = None) -> str:
    """Said when a run would take absurdly long on the device (see training.loop.estimate_duration):
    the learner's own small recipe, its digits preset as `presets.image_presets` builds it (the
    shared row, the learner's row and its own defaults: the values `describe LEARNER --dataset
    digits` shows), or a GPU. `config_cls`: the learner's config class (default: the registered
    one)."""
    from ..registry import LEARNERS
    from .presets import image_presets  # lazy: presets imports this module (LoopConfig)

    config_cls = config_cls or LEARNERS.get(learner).config_cls
    small = replace(config_cls(), **image_presets(learner, config_cls, ["digits"])["digits"])
    return ("For a CPU-sized run use the small recipe, e.g. "
            + " ".join(f"--learner-config {learner}.{k}={getattr(small, k)}"
                       for k in ("arch", "steps", "labeled_batch", "unlabeled_ratio", "ema"))
            + ", or run on a GPU (--device cuda).")


def _mismatch(path: Path, differences: str) -> str:
    return (f"The checkpoint {path} belongs to another run (different {differences}: config, seed or labeled "
            "set); delete it or use another results root.")


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
        self._fitted: tuple[nn.Module, TrainData, LoopConfig, Precision, Path | None] | None = None

    # --- the pool's predictions (run --labels) ------------------------------------------------
    def predict_pool(self, dataset: Dataset, features: Any = None, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
        """The evaluated model of the last classifier phase (the EMA weights where there is an EMA),
        in eval mode without augmentation, on every pool image: (class ids, softmax probability)."""
        if self._fitted is None:
            raise RuntimeError(f"learner {self.name!r}: predict_pool before fit")
        from ..training.loop import cpu_threads
        from .image_training import class_probabilities

        model, data, config, precision, _ = self._fitted
        with cpu_threads(config.threads):
            proba = class_probabilities(model, data, config.eval_batch, precision)
        return pool_predictions(proba)

    def save_model(self, workdir: str | Path) -> Path | None:
        """The final checkpoint of the last classifier phase (``<phase>.ckpt.pt``, written by the loop)."""
        if self._fitted is None or self._fitted[4] is None:
            return None
        return self._fitted[4]

    # --- hooks a method may override -------------------------------------------------------
    def build_model(self, dataset: Dataset, device: str, encoder: Any = None) -> nn.Module:
        from ..nets import build_network

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
        from ..nets import check_arch

        check_arch(self.config.arch, dataset.channels, dataset.image_size)
        self.check_options(self.config, None)

    def check_device(self, device: str) -> None:
        self.check_options(self.config, device)

    @staticmethod
    def check_options(config: LoopConfig, device: str | None) -> None:
        from ..training.augment import RANDAUGMENT_VARIANTS
        from ..training.device import resolve_precision

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
        if device is not None:
            resolve_precision(device, config.amp, config.channels_last)  # amp=true on the CPU: UserError

    @staticmethod
    def resolved(config: LoopConfig, precision: Precision) -> LoopConfig:
        """`config` with amp and channels_last as they run on the device (None -> True / False):
        the checkpoint identity of a CPU run is then that of the float32 default."""
        return replace(config, amp=precision.dtype is not None, channels_last=precision.channels_last)

    def key_config(self) -> dict:
        """What of the config enters the run key: the config, with amp and channels_last left to
        the device (None) written as false. Like the device itself, which is not in the key, the
        precision the device picks is not either; and the keys of runs made when false was the
        default stay the same."""
        values = asdict(self.config)
        for option in ("amp", "channels_last"):
            if values.get(option) is None:
                values[option] = False
        return values

    def needs_pool(self) -> bool:
        """Whether the unlabeled pool is read (else it never goes to the device)."""
        return bool(self.unlabeled_views)

    def _check_shape(self, model: nn.Module, data: TrainData, precision: Precision) -> None:
        """One tiny forward pass before training, so a wrong image shape fails with a clear message."""
        import torch

        from ..training.augment import augment

        images = data.test if data.evaluated else data.unlabeled
        x = precision.images(data.normalise(augment(images.take([0, min(1, len(images) - 1)]), "none",
                                                    data.policy, None)))
        model.eval()
        try:
            with torch.no_grad(), precision.autocast():
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
        import torch

        from ..training.checkpoint import Checkpoint
        from ..training.device import resolve_precision
        from ..training.loop import IndexStream, Seeding, TrainLoop, cosine_factor, parameter_groups
        from .image_training import StepImages, make_optimizer, predict

        self.check_options(config, device)
        precision = resolve_precision(device, config.amp, config.channels_last)
        config = self.resolved(config, precision)
        model.to(device)
        precision.model(model)
        if evaluate:
            self._check_shape(model, data, precision)
        self.reset_state(data, model)
        total = config.steps
        groups = parameter_groups(model, config.weight_decay)
        if not any(g["params"] for g in groups):
            raise UserError(f"Learner {self.name!r} has no trainable parameters in phase {phase!r}.")
        optimizer = make_optimizer(groups, config)
        identity = {"version": CHECKPOINT_VERSION, "learner": self.name, "phase": phase,
                    "config": asdict(config), "seed": seed, "data": fingerprint}

        def on_period(done: int, losses: list[float]) -> dict:
            top1 = top1_metrics(predict(loop.evaluated, data, config.eval_batch, precision),
                                data.test_targets, data.num_classes)["top1"]
            return {"step": done, "top1": round(top1, 4), "loss": round(float(np.mean(losses)), 6)}

        loop = TrainLoop(
            name=f"{self.name}/{phase}", model=model, optimizer=optimizer, steps=total,
            lr_factor=(lambda k: cosine_factor(k, total)) if config.cosine else None, ema=config.ema,
            scaler=precision.scaler(), seeding=Seeding.per_step(seed, phase, device),
            checkpoint=Checkpoint(Path(workdir) / f"{phase}.ckpt.pt") if workdir is not None else None,
            identity=identity, mismatch=_mismatch, checkpoint_every=config.checkpoint_every,
            period=config.eval_every if evaluate and data.evaluated else None, on_period=on_period,
            extra_state=self.extra_state, load_extra_state=self.load_extra_state,
            train_mode=lambda: self.set_train_mode(model),
            callbacks=[lambda done, fn=fn: fn(phase, done) for fn in self.step_callbacks], device=device,
            resume_hint="Run the same command again (same --results-root, without --force) to resume from there.",
            slow_hint=slow_hint(self.name, type(self.config)))
        forward = torch.compile(model) if config.compile else model
        labeled_stream = IndexStream(len(data.labeled_targets), config.labeled_batch, seed, f"{phase}/labeled")
        unlabeled_batch = config.labeled_batch * config.unlabeled_ratio
        unlabeled = (StepImages(data.unlabeled, IndexStream(len(data.unlabeled), unlabeled_batch, seed,
                                                            f"{phase}/unlabeled"), loop.stop_at)
                     if self.unlabeled_views and unlabeled_batch > 0 else None)

        def step_fn(step: int, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
            batch = self._batch(data, labeled_stream, unlabeled, step, generator, precision)
            batch.host_generator = loop.seeding.host_generator(step, generator)
            with precision.autocast():
                return self.loss(forward, batch, step, total)

        done = loop.run(step_fn)
        evaluated = loop.evaluated
        if not evaluate:
            return {"steps": done.steps, "train_seconds": done.train_seconds, "model": evaluated}
        self._fitted = (evaluated, data, config, precision,
                        Path(workdir) / f"{phase}.ckpt.pt" if workdir is not None else None)
        if not data.evaluated:
            return {**unevaluated_metrics(), "best_top1_over_training": None, "median20_top1": None, "curve": [],
                    "steps": done.steps, "train_seconds": done.train_seconds, "precision": precision.name,
                    "data_placement": data.placement}
        metrics = top1_metrics(predict(evaluated, data, config.eval_batch, precision),
                               data.test_targets, data.num_classes)
        curve = done.history
        metrics.update(curve_metrics(curve, metrics["top1"]), curve=curve, steps=done.steps,
                       train_seconds=done.train_seconds, precision=precision.name, data_placement=data.placement)
        return metrics

    def _batch(self, data: TrainData, labeled_stream: IndexStream, unlabeled: StepImages | None,
               step: int, generator: torch.Generator, precision: Precision) -> Batch:
        from ..training.augment import augment
        from .image_training import Batch

        def views(images: torch.Tensor, names: tuple[str, ...]) -> list[torch.Tensor]:
            return [precision.images(data.normalise(augment(images, name, data.policy, generator))) for name in names]

        device = data.labeled_images.device
        labeled_idx = labeled_stream.indices(step).to(device, non_blocking=True)
        labeled = views(data.labeled_images[labeled_idx], self.labeled_views) if self.labeled_views else []
        unlabeled_views, unlabeled_idx = [], None
        if unlabeled is not None:
            images, unlabeled_idx = unlabeled(step)
            unlabeled_idx = unlabeled_idx.to(device, non_blocking=True)
            unlabeled_views = views(images, self.unlabeled_views)
        return Batch(labeled, data.labeled_targets[labeled_idx], unlabeled_views, unlabeled_idx, generator,
                     data.num_classes)

    # --- fit -----------------------------------------------------------------------------------
    def prepare(self, dataset: Dataset, labeled_indices: np.ndarray, seed: int, device: str
                ) -> tuple[TrainData, Any]:
        """Validate, then build the device data and the fingerprint that ties checkpoints to inputs."""
        from ..training.augment import policy_for
        from .image_training import TrainData

        self.check(dataset, labeled_indices)
        self.check_options(self.config, device)
        policy = policy_for(self.config.augment, dataset.image_size, self.config.randaugment)
        data = TrainData.build(dataset, labeled_indices, device, policy, needs_pool=self.needs_pool())
        fingerprint = {"dataset": dataset.identity, "name": dataset.name,
                       "labeled": content_key(np.asarray(labeled_indices, dtype=np.int64).tolist())}
        return data, fingerprint

    def fit(self, dataset: Dataset, labeled_indices: np.ndarray, seed: int = DEFAULT_SEED, device: str = "cpu",
            workdir: str | Path | None = None, features: Any = None, encoder: Any = None) -> dict[str, Any]:
        from ..training.loop import cpu_threads, seed_torch

        data, fingerprint = self.prepare(dataset, labeled_indices, seed, device)
        with cpu_threads(self.config.threads):
            seed_torch(seed, self.name, "init")
            model = self.build_model(dataset, device, encoder)
            return self.run_loop(model, data, self.config, seed, device, workdir, "train", fingerprint)
