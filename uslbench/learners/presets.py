"""Data set presets of the image learners: one place, so every learner shares the same recipe.

CIFAR values are the FixMatch reference (ALGORITHMS.md): WRN-28-2 / WRN-28-8, SGD 0.03 Nesterov,
weight decay 5e-4 / 1e-3, K = 2^20 steps, batch 64 labeled + 7 x 64 unlabeled, EMA 0.999.
The small presets (digits, bloodmnist) are CPU-sized: the small CNN, a few hundred steps, a shorter
EMA (0.99: with 0.999 the average would still hold much of the random initialisation after a few
hundred steps), and evaluation / checkpoints every 100 steps.
"""
from __future__ import annotations

from typing import Any

CIFAR10: dict[str, Any] = {"arch": "wrn28_2", "steps": 1 << 20, "labeled_batch": 64, "unlabeled_ratio": 7,
                           "lr": 0.03, "weight_decay": 5e-4, "ema": 0.999, "eval_every": 5000,
                           "checkpoint_every": 1000, "augment": "cifar"}
CIFAR100: dict[str, Any] = {**CIFAR10, "arch": "wrn28_8", "weight_decay": 1e-3}
DIGITS: dict[str, Any] = {"arch": "cnn", "steps": 400, "labeled_batch": 32, "unlabeled_ratio": 2, "lr": 0.05,
                          "weight_decay": 5e-4, "ema": 0.99, "eval_every": 100, "checkpoint_every": 100,
                          "augment": "digits", "threads": 1}
BLOODMNIST: dict[str, Any] = {**DIGITS, "steps": 3000, "labeled_batch": 64, "unlabeled_ratio": 7,
                              "eval_every": 500, "checkpoint_every": 500, "augment": "medical",
                              "threads": 0}


def image_presets(cifar10: dict | None = None, cifar100: dict | None = None, small: dict | None = None,
                  digits: dict | None = None) -> dict[str, dict[str, Any]]:
    """Registry presets: the shared recipe per data set, updated with a learner's own values."""
    return {"cifar10": {**CIFAR10, **(cifar10 or {})},
            "cifar100": {**CIFAR100, **(cifar100 or {})},
            "digits": {**DIGITS, **(small or {}), **(digits or {})},
            "bloodmnist": {**BLOODMNIST, **(small or {})}}
