"""The torch side of `image_learner.ImageLearner`: the training data on the device (`TrainData`,
`StepImages`), one step's inputs (`Batch`), evaluation of a model on the test split or the pool,
and the optimiser. Kept apart from image_learner.py so that registering and describing the image
learners imports no torch; `ImageLearner` imports this module when it trains or predicts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..datasets.base import Dataset
from ..training.augment import AugmentPolicy, augment
from ..training.device import Precision
from ..training.images import ImagePool
from ..training.loop import IndexStream
from .loop_config import LoopConfig


def make_optimizer(groups: list[dict], config: LoopConfig) -> torch.optim.Optimizer:
    """SGD with momentum (Nesterov by default: FixMatch, CoMatch, USB), or AdamW: Adam with the
    decoupled weight decay of MixMatch's code (google-research/mixmatch mixmatch.py: after each
    Adam step every conv / dense kernel is multiplied by 1 - weight_decay x lr; AdamW applies the
    same factor before the step). The groups carry their own weight decay (none on BN / biases)."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class TrainData:
    """Everything a training phase reads: the labeled images (uint8, on the device), the pool and
    the test split as `ImagePool`s (on the device when they fit, else sent batch by batch)."""

    labeled_images: torch.Tensor
    labeled_targets: torch.Tensor
    unlabeled: ImagePool
    test: ImagePool
    test_targets: np.ndarray
    num_classes: int
    mean: torch.Tensor
    std: torch.Tensor
    policy: AugmentPolicy

    @classmethod
    def build(cls, dataset: Dataset, labeled_indices: np.ndarray, device: str, policy: AugmentPolicy,
              needs_pool: bool = True) -> "TrainData":
        """`needs_pool` False (a learner that never reads the unlabeled pool): the pool stays in
        host memory (or its files) and only the labeled images go to the device. Without a labelled
        test split (`run --labels` on your own folder) `test` is None and nothing is evaluated."""
        host = "files" if dataset.train.array is None else "host"
        pool = ImagePool(dataset.train, dataset.image_size, dataset.channels, device,
                         placement=None if needs_pool else host)
        test = ImagePool(dataset.test, dataset.image_size, dataset.channels, device) if dataset.evaluated else None
        test_targets = dataset.test.labels if dataset.evaluated else np.zeros(0, dtype=np.int64)
        labeled_indices = torch.as_tensor(np.asarray(labeled_indices, dtype=np.int64))
        labels = torch.as_tensor(dataset.train.labels)
        channels = dataset.channels
        mean = torch.tensor(dataset.mean, dtype=torch.float32).reshape(1, -1, 1, 1).expand(1, channels, 1, 1)
        std = torch.tensor(dataset.std, dtype=torch.float32).reshape(1, -1, 1, 1).expand(1, channels, 1, 1)
        return cls(pool.take(labeled_indices), labels[labeled_indices].to(device), pool, test,
                   np.asarray(test_targets), dataset.num_classes,
                   mean.to(device).contiguous(), std.to(device).contiguous(), policy)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    @property
    def evaluated(self) -> bool:
        """Whether there is a test split to evaluate on."""
        return self.test is not None

    @property
    def placement(self) -> dict[str, str]:
        """Where the pool and the test split are kept (see `training.images.ImagePool`)."""
        return {"pool": self.unlabeled.placement, "test": self.test.placement if self.test is not None else "none"}


class StepImages:
    """Step k's pool images, ``pool.take(stream.indices(k))``, for steps in increasing order. A
    file-backed pool is read through one DataLoader for the steps from the first asked up to
    `stop` (workers decode ahead); asking for another step than the next starts a new one."""

    def __init__(self, pool: ImagePool, stream: IndexStream, stop: int) -> None:
        self.pool, self.stream, self.stop = pool, stream, stop
        self._iterator = None
        self._next = -1

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images on the device, int64 indices on the CPU) of step `step`."""
        indices = self.stream.indices(step)
        if self.pool.placement != "files":
            return self.pool.take(indices), indices
        if step != self._next:
            self._iterator = self.pool.batches(self.stream.indices(k) for k in range(step, self.stop))
        self._next = step + 1
        return next(self._iterator), indices


@dataclass
class Batch:
    """One step's inputs: normalised views (in the declared order), labels, and the step's generator."""

    labeled: list[torch.Tensor]
    targets: torch.Tensor
    unlabeled: list[torch.Tensor]
    unlabeled_indices: torch.Tensor | None
    generator: torch.Generator
    num_classes: int
    # a CPU generator of the same step for draws the host needs (MixUp's lambda): the step's
    # generator itself on the CPU, a separately seeded one when that lives on a GPU (no host sync)
    host_generator: torch.Generator | None = None

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
def eval_outputs(model: nn.Module, data: TrainData, images: ImagePool, batch_size: int, precision: Precision | None,
                 reduce: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`reduce(logits)` of `model` (eval mode, no augmentation) on every image of `images` in
    order, under the training's autocast and memory format (`precision`; default float32); the
    outputs stay on the device until the last batch (one copy to the host)."""
    precision = precision or Precision(str(data.mean.device))
    was_training = model.training
    model.eval()
    out = []
    for batch in images.ordered(batch_size):
        x = precision.images(data.normalise(augment(batch, "none", data.policy, None)))
        with precision.autocast():
            out.append(reduce(model(x)))
    model.train(was_training)
    return torch.cat(out).cpu()


def predict(model: nn.Module, data: TrainData, batch_size: int, precision: Precision | None = None) -> np.ndarray:
    """Arg-max predictions of `model` (eval mode) on the test split, int64 (n_test,)."""
    return eval_outputs(model, data, data.test, batch_size, precision, lambda z: z.argmax(1)).numpy()


def class_probabilities(model: nn.Module, data: TrainData, batch_size: int,
                        precision: Precision | None = None) -> np.ndarray:
    """Softmax of `model` (eval mode, no augmentation) on every pool image: float32 (N, classes)."""
    return eval_outputs(model, data, data.unlabeled, batch_size, precision, lambda z: z.float().softmax(1)).numpy()
