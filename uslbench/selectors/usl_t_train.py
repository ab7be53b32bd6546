"""USL-T training (heads on frozen features, or heads + the encoder's network on images): the
clustering heads, the global + local loss, and the batches that the one training loop
(`uslbench.training.loop.TrainLoop`) runs.

Device: training runs where the selection runs (`--device`, through `toolkit.active_compute()`:
its torch device, the CPU when torch has no GPU). Features go to the GPU whole when they fit
(`training.device.place_pool`), else each step's rows are gathered on the host and sent; the
images of backbone mode are an `ImagePool` (uint8, converted to float on the device; file-backed
splits decoded by DataLoader workers, one loader per epoch). On CUDA, backbone mode's encoder runs
under autocast (bf16, or fp16 with loss scaling) in channels-last format; the heads and the losses
stay float32.

Kept apart from usl_t.py so that importing the selector registry does not import torch.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..training.augment import contrastive_augment, feature_augment
from ..training.device import free_device_bytes, place_pool, resolve_precision, to_device
from ..training.images import ImagePool
from ..training.loop import Seeding, TrainLoop, as_floats, cpu_threads
from ..utils import seed_from
from .toolkit import active_compute


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
    size B. The parts ({"global", "local"}) are 0-d tensors summed over the heads (no host sync)."""
    n_clusters = plain.shape[2]
    total = plain.new_zeros(())
    global_sum = local_sum = plain.new_zeros(())  # 0-d tensors: read only when shown (no host sync)
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
        global_sum = global_sum + global_loss.detach()
        local_sum = local_sum + local_loss.detach()
    return total, {"global": global_sum, "local": local_sum}


def training_device() -> torch.device:
    """Where USL-T trains: the torch device of the active selection device (`--device`), else the CPU."""
    return torch.device(active_compute().torch_device or "cpu")


def train_heads(cfg: Any, features: np.ndarray, neighbours: np.ndarray, n_clusters: int,
                generator: torch.Generator, context: Any, device: Any = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Train the heads (and in backbone mode the encoder's network) on `device` (default
    `training_device()`). Returns, for every head, the argmax cluster and the max softmax of every
    pool sample ((heads, N) each) and a history (steps, first and last loss, device, precision).

    Random draws: the pool's order each epoch and the neighbour picks come from `generator` (a CPU
    generator) on every device; head mode's feature augmentation draws from `generator` on the
    CPU and from a generator on the GPU (seeded from `generator`'s seed) there; backbone mode's
    image augmentation draws from `generator`. Backbone mode draws an epoch's order and then all
    its neighbour picks at the epoch's start, so the epoch's images are known ahead and read by
    one DataLoader.

    Head mode runs torch on one CPU thread: its tensors are tiny, and torch's OpenMP workers spinning
    beside faiss's made each step 15-50x slower on a 2-core machine (measured)."""
    device = training_device() if device is None else torch.device(device)
    with cpu_threads(1 if cfg.mode == "head" else 0):
        if cfg.mode == "head":
            return _train_on_features(cfg, features, neighbours, n_clusters, generator, device)
        return _train_backbone(cfg, features, neighbours, n_clusters, generator, context, device)


def training_steps(cfg: Any, n: int) -> tuple[int, int, int]:
    """(batch size, steps per epoch (the last partial batch dropped), total steps) on a pool of n
    samples; a batch size above n becomes n (the selector records and warns about it)."""
    batch_size = min(cfg.batch_size, n)
    steps_per_epoch = max(1, n // batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    return batch_size, steps_per_epoch, total_steps


def _optimiser(cfg: Any, heads: nn.Module, module: nn.Module | None) -> torch.optim.Optimizer:
    params = list(heads.parameters()) + (list(module.parameters()) if module is not None else [])
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _init_indices(cfg: Any, n: int, n_clusters: int, generator: torch.Generator) -> torch.Tensor:
    """n_heads x C' random pool samples (repeated when the pool is smaller) to initialise the heads."""
    init_idx = torch.randperm(n, generator=generator)[: cfg.n_heads * n_clusters]
    return init_idx[torch.arange(cfg.n_heads * n_clusters) % len(init_idx)]


def _history(step: int, losses: list, device: torch.device, precision: str) -> dict:
    first_last = as_floats([losses[0], losses[-1]]) if losses else []
    return {"steps": step, "loss_first_last": first_last, "training_device": str(device),
            "precision": precision}


def _train_on_features(cfg: Any, features: np.ndarray, neighbours: np.ndarray, n_clusters: int,
                       generator: torch.Generator, device: torch.device) -> tuple[np.ndarray, np.ndarray, dict]:
    n = features.shape[0]
    host = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    nbrs = torch.from_numpy(np.ascontiguousarray(neighbours, dtype=np.int64))
    on_device = place_pool(host.nbytes, device, False, free_device_bytes(device)) == "device"
    feats = host.to(device) if on_device else host

    def rows(idx: torch.Tensor) -> torch.Tensor:  # idx: int64 on the CPU
        return feats[idx.to(device)] if on_device else to_device(feats[idx], device)

    # feature augmentation draws where the features are: on a GPU from a generator there
    augment_generator = generator
    if device.type != "cpu":
        augment_generator = torch.Generator(device=device).manual_seed(
            seed_from("usl_t", "feature_augment", generator.initial_seed()))

    init = rows(_init_indices(cfg, n, n_clusters, generator))
    heads = CosineHeads(F.normalize(init, dim=1).view(cfg.n_heads, n_clusters, -1), cfg.head_scale).to(device)
    optimiser = _optimiser(cfg, heads, None)
    pbar = torch.full((cfg.n_heads, n_clusters), 1.0 / n_clusters, device=device)
    batch_size, steps_per_epoch, total_steps = training_steps(cfg, n)
    losses: list[torch.Tensor] = []  # the first and the last step's loss
    order = torch.empty(0, dtype=torch.int64)

    def step_fn(step: int, _: Any) -> tuple[torch.Tensor, dict]:
        nonlocal order
        b = step % steps_per_epoch
        if b == 0:  # a new pass over the pool, reshuffled (drawn only when a step of it runs)
            order = torch.randperm(n, generator=generator)
        idx = order[b * batch_size:(b + 1) * batch_size]
        pick = torch.randint(nbrs.shape[1], (len(idx),), generator=generator)
        nbr = nbrs[idx, pick]
        x = rows(idx)
        plain = heads(x)
        strong = heads(feature_augment(x, cfg.feature_dropout, cfg.noise_std, augment_generator))
        with torch.no_grad():
            neighbour = heads(rows(nbr))
        loss, parts = usl_t_loss(plain, strong, neighbour, pbar, cfg)
        losses[min(len(losses), 1):] = [loss.detach()]  # the first and the latest
        return loss, parts

    generators = (generator,) if augment_generator is generator else (generator, augment_generator)
    loop = TrainLoop(name="usl_t/head", model=heads, optimizer=optimiser, steps=total_steps,
                     seeding=Seeding.carried(*generators), device=str(device),
                     slow_hint="Use fewer epochs, or a GPU (--device cuda).")
    step = loop.run(step_fn).steps

    # predictions on the un-augmented pool
    assign, maxprob = [], []
    with torch.no_grad():
        for start in range(0, n, 4096):
            stop = min(n, start + 4096)
            logits = heads(feats[start:stop].to(device) if not on_device else feats[start:stop])
            conf, arg = logits.softmax(dim=2).max(dim=2)
            assign.append(arg)
            maxprob.append(conf)
    return (torch.cat(assign, dim=1).cpu().numpy().astype(np.int64), torch.cat(maxprob, dim=1).cpu().numpy(),
            _history(step, losses, device, "fp32"))


def _train_backbone(cfg: Any, features: np.ndarray, neighbours: np.ndarray, n_clusters: int,
                    generator: torch.Generator, context: Any,
                    device: torch.device) -> tuple[np.ndarray, np.ndarray, dict]:
    n = features.shape[0]
    nbrs = torch.from_numpy(np.ascontiguousarray(neighbours, dtype=np.int64))
    precision = resolve_precision(device)
    module, _ = context.encoder.build_module()
    module = precision.model(module.to(device))
    dataset = context.dataset
    # the encoder's network expects its own input normalisation (and CLIP its input side), not
    # raw [0, 1] images; encoders without `input_transform` get the images as they are
    make_input = getattr(context.encoder, "input_transform", None)
    to_input = make_input(dataset).to(device) if callable(make_input) else nn.Identity()
    pool = ImagePool(dataset.train, dataset.image_size, dataset.channels, device, workers=cfg.num_workers)

    def embed(images: torch.Tensor, augment: bool) -> torch.Tensor:
        """uint8 images on the device -> float32 embeddings (the encoder under autocast on CUDA)."""
        x = images.float() / 255.0
        if augment:
            x = contrastive_augment(x, generator)
        with precision.autocast():
            return module(precision.images(to_input(x))).float()

    # heads initialised from the embeddings of n_heads x C' random pool samples
    init_idx = _init_indices(cfg, n, n_clusters, generator)
    module.eval()
    with torch.no_grad():
        init = torch.cat([embed(images, False) for images in
                          pool.batches(init_idx[s:s + 256] for s in range(0, len(init_idx), 256))])
    heads = CosineHeads(F.normalize(init, dim=1).view(cfg.n_heads, n_clusters, -1), cfg.head_scale).to(device)
    optimiser = _optimiser(cfg, heads, module)
    pbar = torch.full((cfg.n_heads, n_clusters), 1.0 / n_clusters, device=device)
    batch_size, steps_per_epoch, total_steps = training_steps(cfg, n)
    losses: list[torch.Tensor] = []
    epoch_images: Any = None

    def epoch_batches(epoch: int) -> Any:
        """The epoch's steps: each one's own images then its neighbours' images, in one batch."""
        order = torch.randperm(n, generator=generator)
        picks = torch.randint(nbrs.shape[1], (steps_per_epoch * batch_size,), generator=generator)
        steps = range(min(steps_per_epoch, total_steps - epoch * steps_per_epoch))
        lists = (torch.cat([order[b * batch_size:(b + 1) * batch_size],
                            nbrs[order[b * batch_size:(b + 1) * batch_size], picks[b * batch_size:(b + 1) * batch_size]]])
                 for b in steps)
        return pool.batches(lists)

    def step_fn(step: int, _: Any) -> tuple[torch.Tensor, dict]:
        nonlocal epoch_images
        epoch, b = divmod(step, steps_per_epoch)
        if b == 0:
            epoch_images = epoch_batches(epoch)
        images = next(epoch_images)
        own, neighbours_ = images[:batch_size], images[batch_size:]
        with torch.no_grad():
            plain = heads(embed(own, False))
            neighbour = heads(embed(neighbours_, False))
        strong = heads(embed(own, True))
        loss, parts = usl_t_loss(plain, strong, neighbour, pbar, cfg)
        losses[min(len(losses), 1):] = [loss.detach()]  # the first and the latest
        return loss, parts

    trained = nn.ModuleList([heads, module])
    loop = TrainLoop(name="usl_t/backbone", model=trained, optimizer=optimiser, steps=total_steps,
                     scaler=precision.scaler(), seeding=Seeding.carried(generator), device=str(device),
                     train_mode=module.train,
                     slow_hint="Use mode=head on frozen features, fewer epochs, or a GPU (--device cuda).")
    step = loop.run(step_fn).steps

    # predictions on the un-augmented pool
    module.eval()
    assign, maxprob = [], []
    with torch.no_grad():
        for images in pool.ordered(256):
            conf, arg = heads(embed(images, False)).softmax(dim=2).max(dim=2)
            assign.append(arg)
            maxprob.append(conf)
    return (torch.cat(assign, dim=1).cpu().numpy().astype(np.int64), torch.cat(maxprob, dim=1).cpu().numpy(),
            _history(step, losses, device, precision.name))
