"""`supervised`: the SSL learners' network trained on the labeled set alone (the reference row).

Same network, augmentation (weak views), optimiser, schedule, EMA and step count as the SSL learner
of the same preset, so "SSL minus supervised" measures what the unlabeled pool adds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..registry import LEARNERS
from ..traits import LearnerTraits
from .image_learner import ImageLearner, LoopConfig
from .presets import CONTRACT_TEST_LOOP, image_presets

if TYPE_CHECKING:  # torch is imported when the learner trains, not when it registers
    from .image_training import Batch


@dataclass
class SupervisedConfig(LoopConfig):
    pass


@LEARNERS.register("supervised", "the SSL network trained on the labeled images only (reference)",
                   config=SupervisedConfig,
                   presets=image_presets("supervised", SupervisedConfig),
                   test_config=CONTRACT_TEST_LOOP)
class Supervised(ImageLearner):
    """Cross-entropy on weakly augmented labeled batches; the unlabeled pool is never read."""

    traits = LearnerTraits(gpu_recommended=True)

    labeled_views = ("weak",)
    unlabeled_views = ()

    def loss(self, model, batch: Batch, step: int, total_steps: int):
        import torch

        loss = torch.nn.functional.cross_entropy(model(batch.labeled[0]), batch.targets)
        return loss, {"loss_x": loss.detach()}
