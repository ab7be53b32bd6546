"""Training loop of USL-T (heads on frozen features, or heads + the encoder's network on images).

Kept apart from usl_t.py so that importing the selector registry does not import torch.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..utils import progress_disabled


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
    Updates pbar (heads, C') in place: EMA of the batch-mean softmax of the plain view."""
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
            global_loss = F.cross_entropy(strong[h][mask], pseudo[mask], weight=weight)
        else:
            global_loss = plain.new_zeros(())
        local_loss = F.kl_div(strong[h].log_softmax(dim=1), target, reduction="batchmean")
        total = total + global_loss + cfg.lambda_local * local_loss
        global_sum += float(global_loss.detach())
        local_sum += float(local_loss.detach())
    return total, {"global": global_sum, "local": local_sum}


def feature_augment(x: torch.Tensor, dropout: float, noise_std: float, generator: torch.Generator) -> torch.Tensor:
    """Head mode's stand-in for strong image augmentation: dropout + Gaussian noise on the row."""
    keep = (torch.rand(x.shape, generator=generator) >= dropout).to(x.dtype) / max(1.0 - dropout, 1e-6)
    noise = torch.randn(x.shape, generator=generator) * (noise_std / math.sqrt(x.shape[1]))
    return x * keep + noise


def strong_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Batched strong augmentation of float images (B, C, H, W) in [0, 1], all randomness from
    `generator`: random resized crop (area 0.2-1, ratio 3/4-4/3) with horizontal flip, colour
    jitter (brightness, contrast, saturation 0.4, p 0.8), grayscale (p 0.2, colour only),
    cutout (half-side square, p 0.5)."""
    b, c, h, w = images.shape
    device = images.device

    def uniform(low, high, *shape):
        return (low + (high - low) * torch.rand(shape or (b,), generator=generator)).to(device)

    area = uniform(0.2, 1.0)
    ratio = torch.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
    sx = torch.sqrt(area * ratio).clamp(max=1.0)
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (uniform(-1.0, 1.0) * (1 - sx))
    ty = (uniform(-1.0, 1.0) * (1 - sy))
    flip = torch.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0] = sx * flip
    theta[:, 0, 2] = tx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)
    jitter = (uniform(0.0, 1.0) < 0.8).float().view(b, 1, 1, 1)
    brightness = uniform(0.6, 1.4).view(b, 1, 1, 1)
    contrast = uniform(0.6, 1.4).view(b, 1, 1, 1)
    jittered = out * brightness
    mean = jittered.mean(dim=(1, 2, 3), keepdim=True)
    jittered = (jittered - mean) * contrast + mean
    if c == 3:
        grey = (0.299 * jittered[:, 0] + 0.587 * jittered[:, 1] + 0.114 * jittered[:, 2]).unsqueeze(1)
        saturation = uniform(0.6, 1.4).view(b, 1, 1, 1)
        jittered = (jittered - grey) * saturation + grey
    out = (jitter * jittered + (1 - jitter) * out).clamp(0.0, 1.0)
    if c == 3:
        to_grey = (uniform(0.0, 1.0) < 0.2).float().view(b, 1, 1, 1)
        grey = (0.299 * out[:, 0] + 0.587 * out[:, 1] + 0.114 * out[:, 2]).unsqueeze(1).expand_as(out)
        out = to_grey * grey + (1 - to_grey) * out
    cut = uniform(0.0, 1.0) < 0.5
    cy, cx = (uniform(0.0, 1.0) * h).long(), (uniform(0.0, 1.0) * w).long()
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    half_h, half_w = max(1, h // 4), max(1, w // 4)
    box = ((rows - cy.view(b, 1, 1)).abs() <= half_h) & ((cols - cx.view(b, 1, 1)).abs() <= half_w)
    box &= cut.view(b, 1, 1)
    return out.masked_fill(box.unsqueeze(1), 0.5)


class _Images:
    """The pool's images as float tensors (C, H, W) in [0, 1] at the data set's resolution."""

    def __init__(self, dataset: Any) -> None:
        self.split = dataset.train
        self.size = int(dataset.image_size)
        self.channels = int(dataset.channels)
        array = self.split.array
        self.tensor = None
        if array is not None:
            self.tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).contiguous()  # uint8

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.split.image(int(index)).convert("RGB" if self.channels == 3 else "L")
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size))
        pixels = np.asarray(image, dtype=np.uint8).reshape(self.size, self.size, self.channels)
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1)

    def batch(self, indices: np.ndarray, num_workers: int = 0) -> torch.Tensor:
        if self.tensor is not None:
            return self.tensor[torch.as_tensor(indices)].float() / 255.0
        loader = torch.utils.data.DataLoader(self, batch_sampler=[list(map(int, indices))], num_workers=num_workers)
        return next(iter(loader)).float() / 255.0


def train_heads(cfg: Any, features: np.ndarray, neighbours: np.ndarray, n_clusters: int,
                generator: torch.Generator, context: Any) -> tuple[np.ndarray, np.ndarray, dict]:
    """Train the heads (and in backbone mode the encoder's network). Returns, for every head,
    the argmax cluster and the max softmax of every pool sample ((heads, N) each) and a history.

    Head mode runs torch on one thread: its tensors are tiny, and torch's OpenMP workers spinning
    beside faiss's made each step 15-50x slower on a 2-core machine (measured)."""
    threads = torch.get_num_threads()
    if cfg.mode == "head":
        torch.set_num_threads(1)
    try:
        return _train_heads(cfg, features, neighbours, n_clusters, generator, context)
    finally:
        torch.set_num_threads(threads)


def _train_heads(cfg: Any, features: np.ndarray, neighbours: np.ndarray, n_clusters: int,
                 generator: torch.Generator, context: Any) -> tuple[np.ndarray, np.ndarray, dict]:
    from tqdm.auto import tqdm

    n = features.shape[0]
    device = torch.device(context.device if cfg.mode == "backbone" else "cpu")
    feats = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    nbrs = torch.from_numpy(np.ascontiguousarray(neighbours, dtype=np.int64))
    if cfg.mode == "backbone":
        module, _ = context.encoder.build_module()
        module = module.to(device)
        images = _Images(context.dataset)

        def embed(indices: np.ndarray, augment: bool) -> torch.Tensor:
            batch = images.batch(indices, cfg.num_workers).to(device)
            if augment:
                batch = strong_augment(batch, generator)
            return module(batch)
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
    progress = tqdm(total=total_steps, desc=f"USL-T {cfg.mode}", disable=progress_disabled() or total_steps < 50,
                    leave=False)
    step = 0
    if module is not None:
        module.train()
    while step < total_steps:
        order = torch.randperm(n, generator=generator)
        for b in range(steps_per_epoch):
            if step >= total_steps:
                break
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
            loss, _ = usl_t_loss(plain, strong, neighbour, pbar, cfg)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            step += 1
            progress.update(1)
    progress.close()

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
