"""`mixmatch` (Berthelot et al. 2019): sharpened label guesses over K = 2 weak views, MixUp of the
labeled and unlabeled batches, CE on the mixed labeled part and MSE on the mixed unlabeled part.

Optimiser: the shared SGD loop (as the USB re-implementation does) rather than the paper's Adam, so
every SSL learner here differs only in its loss. The unlabeled batch equals the labeled batch
(unlabeled_ratio 1) as in the paper; lambda_u (75 on CIFAR-10) is ramped up linearly over the first
`rampup_fraction` of training (16,384 of 2^20 steps in the paper's setting).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config_ranges import NON_NEGATIVE, POSITIVE, PROBABILITY, field_ranges
from ..registry import LEARNERS
from .presets import image_presets
from .train_loop import Batch, ImageLearner, LoopConfig, one_hot, soft_cross_entropy


@field_ranges(temperature=POSITIVE, alpha=POSITIVE, lambda_u=NON_NEGATIVE, rampup_fraction=PROBABILITY)
@dataclass
class MixMatchConfig(LoopConfig):
    unlabeled_ratio: int = 1
    temperature: float = 0.5
    alpha: float = 0.75
    lambda_u: float = 75.0
    rampup_fraction: float = 1 / 64


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """p_i^(1/T) / sum_j p_j^(1/T)."""
    powered = probs ** (1.0 / temperature)
    return powered / powered.sum(dim=1, keepdim=True)


def mixup_lambda(lam: float) -> float:
    """lambda' = max(lambda, 1 - lambda): the mixed example stays closer to its first input."""
    return max(lam, 1.0 - lam)


def mixup(x: torch.Tensor, y: torch.Tensor, permutation: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    return lam * x + (1.0 - lam) * x[permutation], lam * y + (1.0 - lam) * y[permutation]


def rampup(step: int, total_steps: int, fraction: float) -> float:
    """Linear ramp from 0 to 1 over the first `fraction` of training."""
    length = fraction * total_steps
    return 1.0 if length <= 0 else float(np.clip(step / length, 0.0, 1.0))


@LEARNERS.register("mixmatch", "MixMatch: sharpened K=2 label guesses, MixUp, MSE unlabeled loss",
                   config=MixMatchConfig, tags=("trains", "ssl", "gpu_recommended"),
                   presets=image_presets(cifar10={"unlabeled_ratio": 1}, cifar100={"unlabeled_ratio": 1,
                                                                                   "lambda_u": 150.0},
                                         small={"unlabeled_ratio": 2, "lambda_u": 30.0, "rampup_fraction": 0.25}))
class MixMatch(ImageLearner):
    """Reference: T = 0.5, K = 2, alpha 0.75, lambda_u 75 (CIFAR-10; 150 for CIFAR-100), EMA 0.999."""

    labeled_views = ("weak",)
    unlabeled_views = ("weak", "weak")

    def loss(self, model, batch: Batch, step: int, total_steps: int):
        config = self.config
        x, (u1, u2) = batch.labeled[0], batch.unlabeled
        with torch.no_grad():
            logits_1, logits_2 = Batch.forward(model, [u1, u2])
            guess = sharpen((torch.softmax(logits_1.float(), 1) + torch.softmax(logits_2.float(), 1)) / 2,
                            config.temperature)
        inputs = torch.cat([x, u1, u2])
        targets = torch.cat([one_hot(batch.targets, batch.num_classes), guess, guess])
        draw = int(torch.randint(0, 2**31 - 1, (1,), generator=batch.generator, device=batch.generator.device))
        lam = mixup_lambda(float(np.random.default_rng(draw).beta(config.alpha, config.alpha)))
        permutation = torch.randperm(len(inputs), generator=batch.generator, device=batch.generator.device)
        mixed_x, mixed_y = mixup(inputs, targets, permutation, lam)
        logits = model(mixed_x).float()
        n = len(x)
        loss_x = soft_cross_entropy(logits[:n], mixed_y[:n]).mean()
        loss_u = ((torch.softmax(logits[n:], 1) - mixed_y[n:]) ** 2).mean()
        weight = config.lambda_u * rampup(step, total_steps, config.rampup_fraction)
        return loss_x + weight * loss_u, {"loss_x": float(loss_x.detach()), "loss_u": float(loss_u.detach())}
