"""`simclrv2` (Chen et al. 2020, "Big self-supervised models are strong semi-supervised learners"):
fine-tune the self-supervised encoder on the labeled set, then optionally distil it into a student
on the unlabeled pool.

Phases, each one run of the shared loop with its own checkpoint in the run's workdir:

1. ``pretrain`` (only for encoders without a network, e.g. ``pixels`` on digits): a short SimCLR
   pretraining of the small CNN on the pool: two strong views per image, a 2-layer projection head,
   the NT-Xent loss at temperature `pretrain_temperature`. Its checkpoint doubles as the cache, so a
   resumed or repeated run in the same workdir does not pretrain again. Encoders that have a network
   expose `encoder.build_module(device) -> (module, feature_dim)` and skip this phase.
2. ``finetune``: a new linear head on the encoder features. ``finetune=linear`` trains only that head
   with the backbone's weights frozen: the USL paper's CIFAR setting (SimCLRv2-CLD,
   TonyLianLong/UnsupervisedSelectiveLabeling semisup-simclrv2-cld/fine_tune.py): SGD lr 0.01
   Nesterov, wd 1e-4, a constant rate, 5 epochs of the labeled set repeated 100x in batches of 128
   (drop_last), the network in train mode (the frozen backbone's BatchNorm statistics adapt;
   `freeze_bn=true` keeps them), CLD's training augmentation (`finetune_view=cld`), the encoder's
   own input normalisation (CLD's statistics for the CLD checkpoints) and L2-normalised logits
   (`normalise_logits`, the CLD model's `l2norm` after its linear layer). ``finetune=full`` trains
   the whole network.
3. ``distill`` (when `distill_steps` > 0): a student network (`arch`) trained on weak views of the
   pool to match the fine-tuned teacher's softened predictions (temperature `distill_temperature`);
   the student is then the evaluated model (unlabeled batch = labeled_batch x unlabeled_ratio).

With ``steps = 0`` the fine-tuning length is epochs x floor(repeat x m / labeled_batch) (the
reference's epochs of a drop_last loader); a positive value overrides it. Differences from the
reference: docs/fidelity.md#simclrv2.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .. import DEFAULT_SEED
from ..config_ranges import NON_NEGATIVE, POSITIVE, POSITIVE_INT, Range, field_ranges
from ..errors import UserError
from ..registry import LEARNERS
from ..traits import LearnerTraits
from ..utils import seed_from
from .image_learner import ImageLearner, LoopConfig
from .presets import CONTRACT_TEST_LOOP, image_presets

if TYPE_CHECKING:  # torch is imported when the learner trains, not when it registers
    from torch import nn

    from .image_training import Batch


@field_ranges(steps=NON_NEGATIVE, finetune=Range(choices=("linear", "full")), epochs=POSITIVE, repeat=POSITIVE_INT,
              distill_steps=NON_NEGATIVE, distill_temperature=POSITIVE, pretrain_steps=POSITIVE_INT,
              pretrain_batch=Range(ge=2), pretrain_lr=POSITIVE, pretrain_temperature=POSITIVE)
@dataclass
class SimCLRv2Config(LoopConfig):
    steps: int = 0
    labeled_batch: int = 128
    lr: float = 0.01
    weight_decay: float = 1e-4
    cosine: bool = field(default=False, metadata={"help": "the reference fine-tunes at a constant rate"})
    ema: float = 0.0
    eval_every: int = 100
    checkpoint_every: int = 100
    finetune: str = "linear"
    finetune_view: str = field(default="cld", metadata={"help": "cld (CLD's training augmentation) | weak"})
    freeze_bn: bool = field(default=False, metadata={
        "help": "linear fine-tuning: keep the backbone's BatchNorm statistics (false: they adapt, as the reference)"})
    normalise_logits: bool = field(default=True, metadata={"help": "L2-normalised logits (the CLD model's head)"})
    epochs: float = 5.0
    repeat: int = 100
    distill_steps: int = 0
    distill_temperature: float = 1.0
    pretrain_steps: int = 400
    pretrain_batch: int = 256
    pretrain_lr: float = 0.3
    pretrain_temperature: float = 0.5


@LEARNERS.register("simclrv2", "SimCLRv2: fine-tune the self-supervised encoder (linear or full), optional distillation",
                   config=SimCLRv2Config,
                   presets=image_presets("simclrv2", SimCLRv2Config),
                   test_config={**CONTRACT_TEST_LOOP, "pretrain_steps": 3, "pretrain_batch": 16, "distill_steps": 2})
class SimCLRv2(ImageLearner):
    """Encoder fine-tuning: pretrain (fallback) -> finetune -> distil (optional)."""

    traits = LearnerTraits(gpu_recommended=True)

    def check(self, dataset, labeled_indices) -> None:
        super().check(dataset, labeled_indices)
        if self.config.finetune not in ("linear", "full"):
            raise UserError(f"Config finetune must be 'linear' or 'full', got {self.config.finetune!r}.")
        if self.config.finetune_view not in ("cld", "weak"):
            raise UserError(f"Config finetune_view must be 'cld' or 'weak', got {self.config.finetune_view!r}.")
        if self.config.steps < 0 or self.config.distill_steps < 0 or self.config.pretrain_steps < 1:
            raise UserError("Config steps and distill_steps must be >= 0 and pretrain_steps >= 1.")

    @staticmethod
    def check_options(config, device) -> None:
        if config.steps == 0:  # resolved from epochs x repeat later
            config = replace(config, steps=1)
        ImageLearner.check_options(config, device)

    def needs_pool(self) -> bool:
        """Pretraining (an encoder without a network) and distillation read the pool."""
        return True

    def finetune_steps(self, budget: int) -> int:
        """`steps` when positive, else epochs x floor(repeat x m / labeled_batch): the reference's
        DataLoader over the repeated labeled set drops the last partial batch (155 steps at m = 40)."""
        if self.config.steps > 0:
            return self.config.steps
        per_epoch = (self.config.repeat * budget) // self.config.labeled_batch
        return max(1, round(self.config.epochs * per_epoch))

    # --- phases ----------------------------------------------------------------------------------
    _phase = "finetune"
    _teacher: nn.Module | None = None

    def set_train_mode(self, model: nn.Module) -> None:
        model.train()  # the reference: model.train(), so a frozen backbone's BN statistics adapt
        if self._phase == "finetune" and self.config.finetune == "linear" and self.config.freeze_bn:
            model.backbone.eval()

    def loss(self, model, batch: Batch, step: int, total_steps: int):
        import torch
        import torch.nn.functional as F

        from ..training.losses import nt_xent, soft_cross_entropy
        from .image_training import Batch

        if self._phase == "pretrain":
            z_a, z_b = Batch.forward(model, batch.unlabeled)
            loss = nt_xent(z_a, z_b, self.config.pretrain_temperature)
        elif self._phase == "distill":
            x = batch.unlabeled[0]
            t = self.config.distill_temperature
            with torch.no_grad():
                teacher = torch.softmax(self._teacher(x).float() / t, dim=1)
            loss = soft_cross_entropy(model(x).float() / t, teacher).mean()
        else:
            loss = F.cross_entropy(model(batch.labeled[0]).float(), batch.targets)
        return loss, {}

    def _use_views(self, phase: str, labeled: tuple[str, ...], unlabeled: tuple[str, ...]) -> None:
        self._phase, self.labeled_views, self.unlabeled_views = phase, labeled, unlabeled

    def _backbone(self, dataset, data, encoder: Any, seed: int, device: str, workdir) -> tuple[nn.Module, int, float | None]:
        """The encoder's own network, or (fallback) the small network pretrained here with SimCLR;
        the third value is the pretraining time in seconds (None when the encoder brought a network)."""
        from torch import nn

        from ..nets import build_network
        from .simclrv2_nets import EncoderInput, ProjectionNet

        if encoder is not None and hasattr(encoder, "build_module"):
            module, feature_dim = encoder.build_module(device)
            if callable(getattr(encoder, "input_transform", None)):
                # the encoder's network was trained on its own normalisation (CLD's on CIFAR)
                module = nn.Sequential(EncoderInput(data.mean, data.std, encoder.input_transform(dataset)), module)
            return module.to(device), int(feature_dim), None
        config = self.config
        backbone = build_network(config.arch, dataset.num_classes, dataset.channels, dataset.image_size).backbone
        net = ProjectionNet(backbone, backbone.feature_dim)
        self._use_views("pretrain", (), ("strong", "strong"))
        pretrain = replace(config, steps=config.pretrain_steps, labeled_batch=1, unlabeled_ratio=config.pretrain_batch,
                           lr=config.pretrain_lr, ema=0.0, eval_every=config.pretrain_steps,
                           checkpoint_every=min(config.checkpoint_every, config.pretrain_steps))
        done = self.run_loop(net, data, pretrain, seed, device, workdir, "pretrain", {"dataset": dataset.identity},
                             evaluate=False)
        return net.backbone, backbone.feature_dim, done["train_seconds"]

    def fit(self, dataset, labeled_indices, seed=DEFAULT_SEED, device="cpu", workdir=None, features=None, encoder=None):
        from ..nets import Classifier, build_network
        from ..training.loop import cpu_threads, seed_torch
        from .simclrv2_nets import NormalisedClassifier

        data, fingerprint = self.prepare(dataset, labeled_indices, seed, device)
        config = self.config
        with cpu_threads(config.threads):
            seed_torch(seed, self.name, "init")
            backbone, feature_dim, pretrain_seconds = self._backbone(dataset, data, encoder, seed, device, workdir)
            pretrained_here = pretrain_seconds is not None
            seed_torch(seed, self.name, "head")
            head = NormalisedClassifier if config.normalise_logits else Classifier
            model = head(backbone, feature_dim, dataset.num_classes).to(device)
            if config.finetune == "linear":
                for parameter in model.backbone.parameters():
                    parameter.requires_grad_(False)
            self._use_views("finetune", (config.finetune_view,), ())
            finetune = replace(config, steps=self.finetune_steps(len(labeled_indices)))
            metrics = self.run_loop(model, data, finetune, seed, device, workdir, "finetune", fingerprint)
            metrics.update(encoder_pretrained_here=pretrained_here, pretrain_seconds=pretrain_seconds)
            if config.distill_steps > 0:
                model.eval()
                for parameter in model.parameters():
                    parameter.requires_grad_(False)
                self._teacher = model
                seed_torch(seed, self.name, "student")
                student = build_network(config.arch, dataset.num_classes, dataset.channels, dataset.image_size)
                self._use_views("distill", (), ("weak",))
                distilled = self.run_loop(student, data, replace(config, steps=config.distill_steps), seed, device,
                                          workdir, "distill", fingerprint)
                distilled.update(teacher_top1=metrics["top1"], encoder_pretrained_here=pretrained_here,
                                 pretrain_seconds=pretrain_seconds, finetune_steps=metrics["steps"])
                self._teacher = None
                return distilled
            return metrics
