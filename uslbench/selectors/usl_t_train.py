"""USL-T training (heads on frozen features, or heads + the encoder's network on images): the
clustering heads, the global + local loss, and the batches that the one training loop
(`uslbench.training.loop.TrainLoop`) runs.

Kept apart from usl_t.py so that importing the selector registry does not import torch.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..training.augment import contrastive_augment, feature_augment
from ..training.images import PoolImages
from ..training.loop import Seeding, TrainLoop, cpu_threads


class CosineHeads(nn.Module):
    """n_heads cosine classifiers with C' outputs each: scale * <z / |z|, w / |w|>, no bias."""

    def __init__(self, init: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(init.clone().float())  # (heads, C', dim)
        self.scale = scale

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, dim) -> (heads, B, C')
        return self.scale * torch.einsum("bd,hcd->hbc", F.normalize(z, dim=1), F.normalize(self.weight, dim=2))


def usl_t_loss(plain: torch.Tensor, strong: torch.Tensor, neighbour: torch.Tensor, pbar: torch.Tensor,
               cfg: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """Global + lambda_local * local loss summed over heads; logits are (heads, B, C').
    Updates pbar (heads, C') in place: EMA of the batch-mean softmax of the plain view.

    Global loss: cross-entropy of the strong view against the plain view's argmax over the samples
    whose confidence exceeds tau, weighted by n / count_c when `cfg.reweight`; the weighted mean
    over those samples, or (`cfg.mean_over_batch`, the reference's MEAN_OUTSIDE_MASK on CIFAR-100
    and ImageNet: shared/utils/uslt_utils.py OursLossGlobal) their weighted sum divided by the batch
    size B."""
    n_clusters = plain.shape[2]
    total = plain.new_zeros(())
    global_sum = local_sum = 0.0
    for h in range(plain.shape[0]):
        with torch.no_grad():
            probs = plain[h].softmax(dim=1)
            confidence, pseudo = probs.max(dim=1)
            mask = confidence > cfg.tau
            pbar[h].mul_(cfg.ema_mu).add_((1.0 - cfg.ema_mu) * probs.mean(dim=0))
            adjusted = neighbour[h] - cfg.beta * torch.log(pbar[h].clamp_min(1e-12))
            target = (adjusted / cfg.sharpen_t).softmax(dim=1)
        if mask.any():
            weight = None
            if cfg.reweight:  # n / count_c: every pseudo-class present weighs the same
                counts = torch.bincount(pseudo[mask], minlength=n_clusters).float()
                weight = mask.sum().float() / counts.clamp_min(1.0)
            if cfg.mean_over_batch:
                per_sample = F.cross_entropy(strong[h][mask], pseudo[mask], reduction="none")
                if weight is not None:
                    per_sample = per_sample * weight[pseudo[mask]]
                global_loss = per_sample.sum() / plain.shape[1]
            else:
                global_loss = F.cross_entropy(strong[h][mask], pseudo[mask], weight=weight)
        else:
            global_loss = plain.new_zeros(())
        local_loss = F.kl_div(strong[h].log_softmax(dim=1), target, reduction="batchmean")
        total = total + global_loss + cfg.lambda_local * local_loss
        global_sum += float(global_loss.detach())
        local_sum += float(local_loss.detach())
    return total, {"global": global_sum, "local": local_sum}


def train_heads(cfg: Any, features: np.ndarray, neighbours: np.ndarray, n_clusters: int,
                generator: torch.Generator, context: Any) -> tuple[np.ndarray, np.ndarray, dict]:
    """Train the heads (and in backbone mode the encoder's network). Returns, for every head,
    the argmax cluster and the max softmax of every pool sample ((heads, N) each) and a history.

    Head mode runs torch on one thread: its tensors are tiny, and torch's OpenMP workers spinning
    beside faiss's made each step 15-50x slower on a 2-core machine (measured)."""
    with cpu_threads(1 if cfg.mode == "head" else 0):
        return _train_heads(cfg, features, neighbours, n_clusters, generator, context)


def _train_heads(cfg: Any, features: np.ndarray, neighbours: np.ndarray, n_clusters: int,
                 generator: torch.Generator, context: Any) -> tuple[np.ndarray, np.ndarray, dict]:
    n = features.shape[0]
    device = torch.device(context.device if cfg.mode == "backbone" else "cpu")
    feats = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    nbrs = torch.from_numpy(np.ascontiguousarray(neighbours, dtype=np.int64))
    if cfg.mode == "backbone":
        module, _ = context.encoder.build_module()
        module = module.to(device)
        dataset = context.dataset
        # the encoder's network expects its own input normalisation (and CLIP its input side), not
        # raw [0, 1] images; encoders without `input_transform` get the images as they are
        make_input = getattr(context.encoder, "input_transform", None)
        to_input = make_input(dataset).to(device) if callable(make_input) else nn.Identity()
        images = PoolImages(dataset.train, dataset.image_size, dataset.channels)

        def embed(indices: np.ndarray, augment: bool) -> torch.Tensor:
            batch = images.batch(indices, cfg.num_workers).to(device)
            if augment:
                batch = contrastive_augment(batch, generator)
            return module(to_input(batch))
    else:
        module = None

    # heads initialised from the features of n_heads x C' random pool samples
    init_idx = torch.randperm(n, generator=generator)[: cfg.n_heads * n_clusters]
    init_idx = init_idx[torch.arange(cfg.n_heads * n_clusters) % len(init_idx)]
    if module is not None:
        module.eval()
        with torch.no_grad():
            init = torch.cat([embed(init_idx[s:s + 256].numpy(), False).float().cpu()
                              for s in range(0, len(init_idx), 256)])
    else:
        init = feats[init_idx]
    heads = CosineHeads(F.normalize(init, dim=1).view(cfg.n_heads, n_clusters, -1), cfg.head_scale).to(device)
    params = list(heads.parameters()) + (list(module.parameters()) if module is not None else [])
    optimiser = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    pbar = torch.full((cfg.n_heads, n_clusters), 1.0 / n_clusters, device=device)

    batch_size = min(cfg.batch_size, n)
    steps_per_epoch = max(1, n // batch_size)  # drop the last partial batch
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    losses: list[float] = []
    order = torch.empty(0, dtype=torch.int64)

    def step_fn(step: int, _: Any) -> tuple[torch.Tensor, dict]:
        nonlocal order
        b = step % steps_per_epoch
        if b == 0:  # a new pass over the pool, reshuffled (drawn only when a step of it runs)
            order = torch.randperm(n, generator=generator)
        idx = order[b * batch_size:(b + 1) * batch_size]
        pick = torch.randint(nbrs.shape[1], (len(idx),), generator=generator)
        nbr = nbrs[idx, pick]
        if module is None:
            x = feats[idx]
            plain = heads(x)
            strong = heads(feature_augment(x, cfg.feature_dropout, cfg.noise_std, generator))
            with torch.no_grad():
                neighbour = heads(feats[nbr])
        else:
            idx_np, nbr_np = idx.numpy(), nbr.numpy()
            with torch.no_grad():
                plain = heads(embed(idx_np, False))
                neighbour = heads(embed(nbr_np, False))
            strong = heads(embed(idx_np, True))
        loss, parts = usl_t_loss(plain, strong, neighbour, pbar, cfg)
        losses.append(float(loss.detach()))
        return loss, parts

    trained = nn.ModuleList([heads] + ([module] if module is not None else []))
    loop = TrainLoop(name=f"usl_t/{cfg.mode}", model=trained, optimizer=optimiser, steps=total_steps,
                     seeding=Seeding.carried(generator), device=str(device),
                     train_mode=(module.train if module is not None else None),
                     slow_hint="Use mode=head on frozen features, fewer epochs, or a GPU (--device cuda).")
    step = loop.run(step_fn).steps

    # predictions on the un-augmented pool
    assign = np.empty((cfg.n_heads, n), dtype=np.int64)
    maxprob = np.empty((cfg.n_heads, n), dtype=np.float32)
    if module is not None:
        module.eval()
    with torch.no_grad():
        for start in range(0, n, 4096):
            stop = min(n, start + 4096)
            if module is None:
                logits = heads(feats[start:stop])
            else:
                logits = torch.cat([heads(embed(np.arange(s, min(stop, s + 256)), False))
                                    for s in range(start, stop, 256)], dim=1)
            conf, arg = logits.softmax(dim=2).max(dim=2)
            assign[:, start:stop] = arg.cpu().numpy()
            maxprob[:, start:stop] = conf.cpu().numpy()
    history = {"steps": step, "loss_first_last": [losses[0], losses[-1]] if losses else []}
    return assign, maxprob, history
