"""`comatch` (Li, Xiong, Hoi 2021): FixMatch with memory-smoothed soft pseudo-labels and a graph
contrastive loss on a 64-d projection.

Per step, on the weak unlabeled view: probabilities -> distribution alignment (divide by the mean
prediction of the last `da_length` batches, renormalise) -> memory smoothing
q = alpha p + (1 - alpha) softmax-weights(emb . bank_emb / T) @ bank_probs (once the bank is full)
-> pseudo-label mask q_max >= threshold. The bank (`queue_size` entries, FIFO) stores the weak
embeddings of unlabeled and labeled images with the unsmoothed aligned probabilities / one-hot labels.
Graph target W = q q^T with the diagonal set to 1, entries below `contrast_threshold` zeroed,
rows normalised; the contrastive loss is the cross-entropy between W and the softmax of the
similarities between the two strong views' embeddings (temperature T).
Loss = CE(labeled) + lambda_u * mean(mask * CE(strong_0, q)) + lambda_c * contrastive.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config_ranges import NON_NEGATIVE, POSITIVE, POSITIVE_INT, PROBABILITY, field_ranges
from ..registry import LEARNERS
from ..traits import LearnerTraits
from .image_learner import ImageLearner, LoopConfig
from .presets import CONTRACT_TEST_LOOP, image_presets

if TYPE_CHECKING:  # torch is imported when the learner trains, not when it registers
    import torch
    from torch import nn

    from .image_training import Batch, TrainData


@field_ranges(threshold=PROBABILITY, contrast_threshold=PROBABILITY, smoothing_alpha=PROBABILITY,
              temperature=POSITIVE, lambda_u=NON_NEGATIVE, lambda_c=NON_NEGATIVE, queue_size=POSITIVE_INT,
              embedding_dim=POSITIVE_INT, da_length=POSITIVE_INT)
@dataclass
class CoMatchConfig(LoopConfig):
    threshold: float = 0.95
    contrast_threshold: float = 0.8
    smoothing_alpha: float = 0.9
    temperature: float = 0.2
    lambda_u: float = 1.0
    lambda_c: float = 1.0
    queue_size: int = 2560
    embedding_dim: int = 64
    da_length: int = 32


def distribution_alignment(probs: torch.Tensor, history_mean: torch.Tensor) -> torch.Tensor:
    aligned = probs / history_mean
    return aligned / aligned.sum(dim=1, keepdim=True)


def memory_smoothed_probs(probs: torch.Tensor, embeddings: torch.Tensor, bank_embeddings: torch.Tensor,
                          bank_probs: torch.Tensor, alpha: float, temperature: float) -> torch.Tensor:
    """alpha p + (1 - alpha) A q_bank with A_ij = softmax_j(e_i . b_j / T)."""
    import torch

    weights = torch.softmax(embeddings @ bank_embeddings.T / temperature, dim=1)
    return alpha * probs + (1.0 - alpha) * weights @ bank_probs


def graph_target(probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """Pseudo-label graph: W = p p^T, diagonal 1, entries < threshold set to 0, rows sum to 1."""
    w = probs @ probs.T
    w.fill_diagonal_(1.0)
    w = w * (w >= threshold).float()
    return w / w.sum(dim=1, keepdim=True)


def graph_contrastive_loss(embeddings_a: torch.Tensor, embeddings_b: torch.Tensor, target: torch.Tensor,
                           temperature: float) -> torch.Tensor:
    """Cross-entropy between the graph target rows and softmax_j(a_i . b_j / T)."""
    import torch

    log_probs = torch.log_softmax(embeddings_a @ embeddings_b.T / temperature, dim=1)
    return -(target * log_probs).sum(dim=1).mean()


@LEARNERS.register("comatch", "CoMatch: FixMatch + memory-smoothed pseudo-labels + graph contrastive loss",
                   config=CoMatchConfig,
                   presets=image_presets("comatch", CoMatchConfig),
                   test_config={**CONTRACT_TEST_LOOP, "queue_size": 48})
class CoMatch(ImageLearner):
    """Reference (CIFAR): threshold 0.95, contrast threshold 0.8, alpha 0.9, T 0.2, queue 2,560 at batch 64
    and mu 7, 64-d embeddings, lambda_u = lambda_c = 1, distribution alignment over 32 batches."""

    traits = LearnerTraits(gpu_recommended=True)

    labeled_views = ("weak",)
    unlabeled_views = ("weak", "strong", "strong")

    def build_model(self, dataset, device, encoder=None) -> nn.Module:
        from .comatch_net import CoMatchNet

        return CoMatchNet(super().build_model(dataset, device, encoder), self.config.embedding_dim)

    def reset_state(self, data: TrainData, model: nn.Module) -> None:
        import torch

        device = data.labeled_images.device
        c = data.num_classes
        self.bank_embeddings = torch.zeros(self.config.queue_size, self.config.embedding_dim, device=device)
        self.bank_probs = torch.zeros(self.config.queue_size, c, device=device)
        self.bank_pointer = 0
        self.bank_full = False
        self.history = torch.full((self.config.da_length, c), 1.0 / c, device=device)
        self.history_count = 0

    def extra_state(self) -> dict:
        return {"bank_embeddings": self.bank_embeddings, "bank_probs": self.bank_probs,
                "bank_pointer": self.bank_pointer, "bank_full": self.bank_full, "history": self.history,
                "history_count": self.history_count}

    def load_extra_state(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    def _push(self, embeddings: torch.Tensor, probs: torch.Tensor) -> None:
        import torch

        size = self.config.queue_size
        embeddings, probs = embeddings[-size:], probs[-size:]
        slots = (self.bank_pointer + torch.arange(len(embeddings), device=embeddings.device)) % size
        self.bank_embeddings[slots] = embeddings
        self.bank_probs[slots] = probs
        self.bank_full = self.bank_full or self.bank_pointer + len(embeddings) >= size
        self.bank_pointer = int((self.bank_pointer + len(embeddings)) % size)

    def loss(self, model, batch: Batch, step: int, total_steps: int):
        import torch
        import torch.nn.functional as F

        from ..training.losses import one_hot, soft_cross_entropy
        from .image_training import Batch

        config = self.config
        (logits_x, emb_x), (logits_w, emb_w), (logits_s0, emb_s0), (_, emb_s1) = Batch.forward(
            model, [batch.labeled[0], *batch.unlabeled], with_embedding=True)
        loss_x = F.cross_entropy(logits_x.float(), batch.targets)
        with torch.no_grad():
            probs = torch.softmax(logits_w.float(), dim=1)
            self.history[self.history_count % config.da_length] = probs.mean(0)
            self.history_count += 1
            filled = self.history[:min(self.history_count, config.da_length)]
            probs = distribution_alignment(probs, filled.mean(0))
            aligned = probs
            emb_w, emb_x = emb_w.detach().float(), emb_x.detach().float()
            if self.bank_full:
                probs = memory_smoothed_probs(probs, emb_w, self.bank_embeddings, self.bank_probs,
                                              config.smoothing_alpha, config.temperature)
            mask = (probs.max(dim=1).values >= config.threshold).float()
            self._push(torch.cat([emb_w, emb_x]), torch.cat([aligned, one_hot(batch.targets, batch.num_classes)]))
            target = graph_target(probs, config.contrast_threshold)
        loss_u = (soft_cross_entropy(logits_s0.float(), probs) * mask).mean()
        loss_c = graph_contrastive_loss(emb_s0.float(), emb_s1.float(), target, config.temperature)
        loss = loss_x + config.lambda_u * loss_u + config.lambda_c * loss_c
        return loss, {"loss_x": loss_x.detach(), "loss_c": loss_c.detach(), "mask": mask.mean()}
