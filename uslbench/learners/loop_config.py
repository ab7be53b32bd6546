"""`LoopConfig`: the config fields every image learner shares (a plain dataclass, importable
without torch, so the presets table and the registry read it without loading the training code)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config_ranges import MOMENTUM, NON_NEGATIVE, POSITIVE, POSITIVE_INT, field_ranges


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
    optimizer: str = field(default="sgd", metadata={
        "help": "sgd (momentum, Nesterov) | adamw (Adam with decoupled weight decay lr x weight_decay)"})
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    cosine: bool = field(default=True, metadata={"help": "lr * cos(7 pi k / (16 K)); off = constant lr"})
    ema: float = field(default=0.999, metadata={"help": "EMA decay of the evaluated weights (0 = no EMA)"})
    eval_every: int = field(default=1024, metadata={
        "help": "evaluate every this many steps (the curve; best and median of the last 20)"})
    checkpoint_every: int = 1000
    augment: str = field(default="auto", metadata={"help": "augmentation policy: auto, cifar, digits, medical"})
    randaugment: str = field(default="fork", metadata={
        "help": "strong view: fork (USL FixMatch fork: 2 ops at p 0.5, levels 1-9, fixed Cutout) | usb"})
    amp: bool | None = field(default=None, metadata={
        "help": "autocast: bf16, or fp16 + loss scaling on GPUs without bf16 (CUDA only; none = on with CUDA)"})
    channels_last: bool | None = field(default=None, metadata={
        "help": "channels-last memory format (CUDA only; none = on with CUDA)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the training forward pass"})
    eval_batch: int = 1024
    threads: int = field(default=0, metadata={"help": "CPU threads for torch during fit (0 = torch's default)"})
