"""`mixmatch` (Berthelot et al. 2019): sharpened label guesses over K = 2 weak views, MixUp of the
labeled and unlabeled batches, CE on the mixed labeled part and MSE on the mixed unlabeled part.

Two recipes (`recipe`), each filling the fields left unset:

- ``paper`` (default): the MixMatch authors' code (google-research/mixmatch, mixmatch.py with the
  README's CIFAR-10 command): Adam at a constant lr 0.002 with decoupled weight decay 0.02 x lr on
  the kernels (AdamW), MixUp alpha 0.75 with one lambda per example (libml/layers.py MixMode),
  lambda_u 75 ramped up linearly over 1024 kimg = 16,384 steps at batch 64 (warmup_kimg);
- ``usb``: USB's re-implementation (microsoft/Semi-supervised-learning, config/classic_cv/mixmatch,
  semilearn/algorithms/mixmatch): SGD 0.03 Nesterov with weight decay 5e-4 (1e-3 for CIFAR-100: set
  weight_decay) and the cosine schedule, alpha 0.5 with one lambda per batch, lambda_u 100 (150
  on CIFAR-100) ramped up over 40% of training.

Both: K = 2 weak views, sharpening T = 0.5, the unlabeled batch equals the labeled batch
(unlabeled_ratio 1), EMA 0.999. Differences from the references: docs/fidelity.md#mixmatch.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from typing import TYPE_CHECKING

import numpy as np

from ..config_ranges import NON_NEGATIVE, POSITIVE, PROBABILITY, field_ranges
from ..errors import UserError
from ..registry import LEARNERS
from ..traits import LearnerTraits
from .image_learner import ImageLearner, LoopConfig
from .presets import CONTRACT_TEST_LOOP, image_presets

if TYPE_CHECKING:  # torch is imported when the learner trains, not when it registers
    import torch

    from .image_training import Batch


# The fields each recipe sets when the config leaves them unset (None).
RECIPES: dict[str, dict] = {
    "paper": dict(optimizer="adamw", lr=0.002, weight_decay=0.02, cosine=False, alpha=0.75, lambda_u=75.0,
                  rampup_steps=16_384, mixup_per_example=True),
    "usb": dict(optimizer="sgd", lr=0.03, weight_decay=5e-4, cosine=True, alpha=0.5, lambda_u=100.0,
                rampup_fraction=0.4, mixup_per_example=False),
}


@field_ranges(temperature=POSITIVE, alpha=POSITIVE, lambda_u=NON_NEGATIVE, rampup_fraction=PROBABILITY,
              rampup_steps=NON_NEGATIVE)
@dataclass
class MixMatchConfig(LoopConfig):
    recipe: str = field(default="paper", metadata={
        "help": "paper (Adam 0.002, wd 0.02 x lr, alpha 0.75, lambda_u 75, 16,384-step ramp) | usb (SGD cosine)"})
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    cosine: bool | None = None
    unlabeled_ratio: int = 1
    temperature: float = 0.5
    alpha: float | None = field(default=None, metadata={"help": "MixUp Beta(alpha, alpha)"})
    lambda_u: float | None = None
    rampup_steps: int | None = field(default=None, metadata={"help": "steps of the linear lambda_u ramp"})
    rampup_fraction: float | None = field(default=None, metadata={
        "help": "when set: the ramp covers this fraction of the steps instead of rampup_steps"})
    mixup_per_example: bool | None = field(default=None, metadata={
        "help": "one MixUp lambda per example (paper's code) or one per batch (USB)"})


def resolve_recipe(config: MixMatchConfig) -> MixMatchConfig:
    """A copy with every unset (None) field filled from `RECIPES[config.recipe]`.

    Raises
    ------
    UserError
        Unknown recipe.
    """
    if config.recipe not in RECIPES:
        raise UserError(f"Unknown mixmatch recipe {config.recipe!r}; choose one of {', '.join(RECIPES)}.")
    values = {k: v for k, v in RECIPES[config.recipe].items() if getattr(config, k) is None}
    resolved = replace(config, **values)
    if resolved.rampup_steps is None:
        resolved.rampup_steps = 0
    return resolved


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """p_i^(1/T) / sum_j p_j^(1/T)."""
    powered = probs ** (1.0 / temperature)
    return powered / powered.sum(dim=1, keepdim=True)


def mixup_lambda(lam: float) -> float:
    """lambda' = max(lambda, 1 - lambda): the mixed example stays closer to its first input."""
    return max(lam, 1.0 - lam)


def mixup(x: torch.Tensor, y: torch.Tensor, permutation: torch.Tensor,
          lam: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """lam x + (1 - lam) x[permutation] (and the same for the targets); `lam` a float (one per
    batch) or a (B,) tensor (one per example)."""
    import torch

    if isinstance(lam, torch.Tensor):
        lam_x = lam.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        lam_y = lam.to(y.dtype).view(-1, *([1] * (y.dim() - 1)))
        return lam_x * x + (1.0 - lam_x) * x[permutation], lam_y * y + (1.0 - lam_y) * y[permutation]
    return lam * x + (1.0 - lam) * x[permutation], lam * y + (1.0 - lam) * y[permutation]


def rampup_length(config: MixMatchConfig, total_steps: int) -> float:
    """Steps of the linear lambda_u ramp: `rampup_fraction` x total when set, else `rampup_steps`."""
    if config.rampup_fraction is not None:
        return config.rampup_fraction * total_steps
    return float(config.rampup_steps or 0)


def rampup(step: int, length: float) -> float:
    """Linear ramp from 0 to 1 over the first `length` steps (google-research/mixmatch: w_match x
    clip(images seen / (warmup_kimg << 10), 0, 1))."""
    return 1.0 if length <= 0 else float(np.clip(step / length, 0.0, 1.0))


@LEARNERS.register("mixmatch", "MixMatch: sharpened K=2 label guesses, MixUp, MSE unlabeled loss",
                   config=MixMatchConfig,
                   presets=image_presets("mixmatch", MixMatchConfig),
                   test_config=CONTRACT_TEST_LOOP)
class MixMatch(ImageLearner):
    """Reference: T = 0.5, K = 2, alpha 0.75, lambda_u 75 (CIFAR-10; 150 for CIFAR-100), EMA 0.999;
    Adam 0.002 with decoupled weight decay 0.02 x lr (recipe=paper) or USB's SGD recipe (recipe=usb)."""

    def __init__(self, config: MixMatchConfig | None = None) -> None:
        super().__init__(resolve_recipe(config if config is not None else MixMatchConfig()))

    @staticmethod
    def resolved_config(config: MixMatchConfig, pool_size: int | None = None,
                        budget: int | None = None) -> tuple[MixMatchConfig, list[str]]:
        """The config with its recipe applied, for ``describe mixmatch --dataset D``."""
        return resolve_recipe(config), []

    traits = LearnerTraits(gpu_recommended=True)

    labeled_views = ("weak",)
    unlabeled_views = ("weak", "weak")

    def loss(self, model, batch: Batch, step: int, total_steps: int):
        import torch

        from ..training.losses import one_hot, soft_cross_entropy
        from .image_training import Batch

        config = self.config
        x, (u1, u2) = batch.labeled[0], batch.unlabeled
        with torch.no_grad():
            logits_1, logits_2 = Batch.forward(model, [u1, u2])
            guess = sharpen((torch.softmax(logits_1.float(), 1) + torch.softmax(logits_2.float(), 1)) / 2,
                            config.temperature)
        inputs = torch.cat([x, u1, u2])
        targets = torch.cat([one_hot(batch.targets, batch.num_classes), guess, guess])
        # the Beta draws need a host value: from the step's CPU generator (on the CPU the step's
        # generator itself, at the same place in its stream as ever), never int() of a GPU tensor
        host = batch.host_generator or batch.generator
        draw = int(torch.randint(0, 2**31 - 1, (1,), generator=host, device=host.device))
        rng = np.random.default_rng(draw)
        if config.mixup_per_example:
            lam = rng.beta(config.alpha, config.alpha, size=len(inputs))
            lam = torch.as_tensor(np.maximum(lam, 1.0 - lam), dtype=torch.float32, device=inputs.device)
        else:
            lam = mixup_lambda(float(rng.beta(config.alpha, config.alpha)))
        permutation = torch.randperm(len(inputs), generator=batch.generator, device=batch.generator.device)
        mixed_x, mixed_y = mixup(inputs, targets, permutation, lam)
        logits = model(mixed_x).float()
        n = len(x)
        loss_x = soft_cross_entropy(logits[:n], mixed_y[:n]).mean()
        loss_u = ((torch.softmax(logits[n:], 1) - mixed_y[n:]) ** 2).mean()
        weight = config.lambda_u * rampup(step, rampup_length(config, total_steps))
        return loss_x + weight * loss_u, {"loss_x": loss_x.detach(), "loss_u": loss_u.detach()}
