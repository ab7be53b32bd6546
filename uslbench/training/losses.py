"""Losses shared by several trainers (method-specific losses stay with their method)."""
from __future__ import annotations

import torch


def one_hot(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 (B,) class indices -> float32 (B, num_classes) one-hot rows."""
    return torch.nn.functional.one_hot(targets, num_classes).float()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy against probability targets: -sum_c t_c log softmax(z)_c, shape (B,)."""
    return -(targets * torch.log_softmax(logits, dim=1)).sum(1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (normalised temperature-scaled cross-entropy) over B positive pairs.

    Each of the 2B views must pick its partner among the other 2B - 1 views; the loss is the mean
    cross-entropy of the logits z_i . z_j / temperature (self-similarity excluded).

    Parameters
    ----------
    z1, z2 : torch.Tensor
        (B, d) embeddings of the two views, rows L2-normalised (any float dtype; computed in float32).
    temperature : float
        Positive temperature.

    Returns
    -------
    torch.Tensor
        Scalar float32 loss.

    Reference: Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
    Representations" (SimCLR), Eq. 1.
    """
    z = torch.cat([z1, z2]).float()
    n = z1.shape[0]
    logits = z @ z.t() / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n, device=z.device), torch.arange(0, n, device=z.device)])
    return torch.nn.functional.cross_entropy(logits, targets)
