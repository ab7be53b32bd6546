"""CoMatch's network (`comatch.CoMatch`): the classifier with a projection head for the graph
contrastive loss. Kept apart from comatch.py so that registering the learner imports no torch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nets import projection_mlp


class CoMatchNet(nn.Module):
    """Classifier + 2-layer projection head giving L2-normalised embeddings."""

    def __init__(self, classifier: nn.Module, embedding_dim: int) -> None:
        super().__init__()
        self.classifier = classifier
        dim = classifier.feature_dim
        self.projection = projection_mlp([dim, dim, embedding_dim])

    def forward(self, x: torch.Tensor, with_embedding: bool = False):
        logits, features = self.classifier(x, with_features=True)
        if not with_embedding:
            return logits
        return logits, F.normalize(self.projection(features), dim=1)
