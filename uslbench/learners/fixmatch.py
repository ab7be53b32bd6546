"""`fixmatch` (Sohn et al. 2020): confidence-thresholded pseudo-labels from a weak view train the
strong view. Loss = CE(labeled weak) + lambda_u * mean_b [max p_weak >= tau] CE(strong, argmax p_weak)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config_ranges import NON_NEGATIVE, PROBABILITY, field_ranges
from ..registry import LEARNERS
from ..traits import LearnerTraits
from .image_learner import ImageLearner, LoopConfig
from .presets import CONTRACT_TEST_LOOP, image_presets

if TYPE_CHECKING:  # torch is imported when the learner trains, not when it registers
    import torch

    from .image_training import Batch


@field_ranges(threshold=PROBABILITY, lambda_u=NON_NEGATIVE)
@dataclass
class FixMatchConfig(LoopConfig):
    threshold: float = 0.95
    lambda_u: float = 1.0


def fixmatch_unlabeled_loss(logits_weak: torch.Tensor, logits_strong: torch.Tensor,
                            threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over the WHOLE unlabeled batch of mask * CE(strong, hard pseudo-label); the mask keeps
    rows whose weak max-probability is >= threshold (ties at the threshold are kept)."""
    import torch
    import torch.nn.functional as F

    probs = torch.softmax(logits_weak.detach().float(), dim=1)
    confidence, pseudo = probs.max(dim=1)
    mask = (confidence >= threshold).float()
    loss = (F.cross_entropy(logits_strong.float(), pseudo, reduction="none") * mask).mean()
    return loss, mask


@LEARNERS.register("fixmatch", "FixMatch: thresholded weak-view pseudo-labels train the strong view",
                   config=FixMatchConfig,
                   presets=image_presets("fixmatch", FixMatchConfig),
                   test_config=CONTRACT_TEST_LOOP)
class FixMatch(ImageLearner):
    """Reference recipe (CIFAR-10): WRN-28-2, SGD 0.03 Nesterov, wd 5e-4, 2^20 steps, batch 64 + 7x64,
    EMA 0.999, threshold 0.95, lambda_u 1.

    Small preset (digits, bloodmnist): the fast CPU learner of the suite: a few hundred steps and a
    threshold of 0.8, because in so few steps a 0.95 threshold admits too few pseudo-labels. The
    values and the measurement behind them are in `learners/presets.py` (`LEARNER_ROWS`);
    ``describe fixmatch --dataset digits`` shows them."""

    traits = LearnerTraits(gpu_recommended=True)

    labeled_views = ("weak",)
    unlabeled_views = ("weak", "strong")

    def loss(self, model, batch: Batch, step: int, total_steps: int):
        import torch.nn.functional as F

        from .image_training import Batch

        logits_x, logits_w, logits_s = Batch.forward(model, [batch.labeled[0], *batch.unlabeled])
        loss_x = F.cross_entropy(logits_x.float(), batch.targets)
        loss_u, mask = fixmatch_unlabeled_loss(logits_w, logits_s, self.config.threshold)
        # logs stay 0-d tensors: the loop reads them only when it shows them (no host sync per step)
        return loss_x + self.config.lambda_u * loss_u, {"loss_x": loss_x.detach(), "mask": mask.mean()}
