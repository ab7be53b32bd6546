"""USL-T, the training-based variant (Wang, Lian, Yu, ECCV 2022, Sec. 2.3).

A clustering head with C' = budget outputs (3 heads, head 0 selects) is trained with
* a global loss (Eq. 10): cross-entropy of a strongly augmented view against the argmax of the
  un-augmented view, counting only samples whose confidence exceeds tau, optionally reweighted
  by n / count_c so big clusters do not dominate; averaged over the confident samples (CIFAR-10)
  or summed over them and divided by the batch size (`mean_over_batch`: CIFAR-100, ImageNet);
* a local loss (Eq. 11-14): a random one of the k = 20 nearest neighbours (initial feature space,
  computed once) gives the target: its logits adjusted by -beta * log(pbar) (pbar: EMA, momentum
  mu, of the batch-mean softmax; against one-cluster collapse) and sharpened with temperature t
  (against uniform collapse); loss = KL(target || softmax(sample logits)).
Total = global + lambda_local * local, summed over the heads. Then in each cluster of head 0 the
member with the highest confidence is selected: the max softmax averaged over the heads
(`confidence=mean`, the reference default, CIFAR-10 and small data) or head 0's alone
(`confidence=head0`, the reference's CIFAR-100 and ImageNet configs). Every difference from the
reference code is listed in docs/fidelity.md#usl_t.

Two modes:
* `head` (default, CPU, minutes at N = 50,000): cosine heads (scale 40, no bias, initialised from
  the features of random training images, the reference ImageNet setting) on the FROZEN features.
  Image augmentation is impossible on frozen features, so the strong view is feature-space
  augmentation instead: dropout (p = feature_dropout) plus Gaussian noise (std noise_std per
  unit-norm row), then re-normalisation.
* `backbone` (the reference CIFAR setting, GPU recommended): the encoder's torch module
  (`context.encoder.build_module()` -> (module, feature_dim)) is fine-tuned with the heads on
  the data set's images under strong augmentation (random resized crop, flip, colour jitter,
  grayscale, cutout; see `uslbench.training.augment.contrastive_augment`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from ..config_ranges import MOMENTUM, NON_NEGATIVE, POSITIVE, POSITIVE_INT, PROBABILITY, Range, field_ranges
from ..errors import UserError, warn_setting
from ..registry import SELECTORS
from ..traits import SelectorTraits
from .base import Selector
from .toolkit import KnnParams, cached_knn_excluding_self, per_group_argmax

# Reference values (TonyLianLong/UnsupervisedSelectiveLabeling: usl-t_pretraining/configs/*_usl-t_pretrain.yaml
# and config.py for training, selective_labeling/configs/*_usl-t*.yaml and config.py for the pick).
# mean_over_batch: the global loss is the (weighted) sum over the confident samples divided by the
# batch size (MEAN_OUTSIDE_MASK, CIFAR-100 and ImageNet) instead of their (weighted) mean (CIFAR-10).
# confidence: "mean" = max softmax averaged over the heads (USE_MEAN_PROB, the default, CIFAR-10),
# "head0" = head 0 alone (the CIFAR-100 and ImageNet configs).
# The ImageNet row keeps 100 epochs of batch 1024 (the reference script stops each epoch after one
# step, see docs/fidelity.md#usl_t).
_CIFAR10 = dict(beta=5.0, sharpen_t=0.25, lambda_local=5.0, tau=0.95, reweight=True, mean_over_batch=False,
                confidence="mean", lr=1e-4, epochs=200, batch_size=1024)
PRESETS: dict[str, dict] = {
    "cifar10":  _CIFAR10,
    "cifar100": {**_CIFAR10, "mean_over_batch": True, "confidence": "head0"},
    "cifar":    _CIFAR10,  # the name before the CIFAR-10 / CIFAR-100 split
    "imagenet": dict(beta=2.5, sharpen_t=0.5, lambda_local=0.5, tau=0.0, reweight=False, mean_over_batch=True,
                     confidence="head0", lr=1e-4, epochs=100, batch_size=1024),
    # small embedded data sets (digits): few steps per epoch, so a larger learning rate
    "small":    {**_CIFAR10, "lr": 1e-3, "batch_size": 256},
}
# The one map from data set to preset row (registry presets set config.preset when the selector is
# created for a data set); any other data set keeps preset="auto": a row by pool size at select time.
DATASET_PRESETS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet": "imagenet", "imagenet100": "imagenet"}
SMALL_POOL, LARGE_POOL = 20_000, 500_000


def auto_preset(pool_size: int, budget: int | None = None) -> str:
    """The row "auto" stands for: small below 20,000 points, imagenet from 500,000, else cifar10
    (cifar100 for a budget above 100, the CIFAR-100 scale)."""
    if pool_size < SMALL_POOL:
        return "small"
    if pool_size >= LARGE_POOL:
        return "imagenet"
    return "cifar100" if budget is not None and budget > 100 else "cifar10"


@field_ranges(mode=Range(choices=("head", "backbone")), preset=Range(choices=("auto", *PRESETS)),
              n_heads=POSITIVE_INT, n_clusters=POSITIVE_INT, knn_k=POSITIVE_INT, beta=NON_NEGATIVE, sharpen_t=POSITIVE,
              lambda_local=NON_NEGATIVE, tau=PROBABILITY, ema_mu=MOMENTUM, lr=POSITIVE, weight_decay=NON_NEGATIVE,
              epochs=POSITIVE_INT, batch_size=POSITIVE_INT, max_steps=POSITIVE_INT, head_scale=POSITIVE,
              confidence=Range(choices=("head0", "mean")), feature_dropout=Range(ge=0, lt=1),
              noise_std=NON_NEGATIVE, num_workers=NON_NEGATIVE)
@dataclass
class USLTConfig:
    mode: str = field(default="head", metadata={"help": "head (frozen features, CPU) | backbone (fine-tune the encoder on images)"})
    preset: str = field(default="auto", metadata={"help": "auto|" + "|".join(PRESETS)})
    n_heads: int = 3
    n_clusters: int | None = field(default=None, metadata={"help": "head outputs C', at least the budget (default = budget)"})
    knn_k: int = field(default=20, metadata={"help": "neighbours for the local loss (initial features; at most N - 1, warned)"})
    beta: float | None = field(default=None, metadata={"help": "logit adjustment strength"})
    sharpen_t: float | None = field(default=None, metadata={"help": "sharpening temperature t"})
    lambda_local: float | None = None
    tau: float | None = field(default=None, metadata={"help": "confidence threshold of the global loss"})
    reweight: bool | None = field(default=None, metadata={"help": "global loss weights n / count_c"})
    mean_over_batch: bool | None = field(default=None, metadata={
        "help": "global loss: weighted sum over confident samples / batch size (true) or their weighted mean"})
    ema_mu: float = 0.5
    lr: float | None = None
    weight_decay: float = 1e-4
    epochs: int | None = None
    batch_size: int | None = field(default=None, metadata={"help": "at most N: a larger batch becomes the whole pool (warned)"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many steps (tests, smoke runs)"})
    head_scale: float = field(default=40.0, metadata={"help": "cosine head scale"})
    confidence: str | None = field(default=None, metadata={"help": "head0 | mean (max softmax averaged over heads)"})
    feature_dropout: float = field(default=0.3, metadata={"help": "head mode: dropout of the strong view"})
    noise_std: float = field(default=0.05, metadata={"help": "head mode: Gaussian noise of the strong view"})
    num_workers: int = field(default=0, metadata={"help": "backbone mode: DataLoader workers decoding a file-backed pool"})


def resolve_preset(config: USLTConfig, pool_size: int, budget: int | None = None) -> USLTConfig:
    """A copy with `preset` naming the row (``auto``: by pool size) and every None field from it.

    Raises
    ------
    UserError
        `preset` names no row.
    """
    name = auto_preset(pool_size, budget) if config.preset == "auto" else config.preset
    if name not in PRESETS:
        raise UserError(f"Unknown usl_t preset {name!r}; choose one of auto, {', '.join(PRESETS)}.")
    values = {k: v for k, v in PRESETS[name].items() if getattr(config, k) is None}
    return replace(config, preset=name, **values)


def pick_per_cluster(clusters: np.ndarray, confidence: np.ndarray, budget: int) -> tuple[np.ndarray, int]:
    """The most confident member of each non-empty cluster (ties: lowest index). More clusters
    than the budget: keep the picks of the largest clusters. Fewer (empty clusters): fill with
    the most confident unselected samples globally. Returns (picks, number filled)."""
    _, picks = per_group_argmax(confidence, clusters)
    if len(picks) > budget:
        sizes = np.bincount(clusters)[clusters[picks]]
        picks = picks[np.lexsort((picks, -sizes))[:budget]]
    filled = budget - len(picks)
    if filled > 0:
        mask = np.ones(len(confidence), dtype=bool)
        mask[picks] = False
        rest = np.flatnonzero(mask)
        picks = np.concatenate([picks, rest[np.lexsort((rest, -confidence[rest]))[:filled]]])
    return picks, max(filled, 0)


@SELECTORS.register("usl_t", "training-based USL-T: clustering heads with global + local losses, confident picks",
                    config=USLTConfig, test_config={"epochs": 30},
                    presets={name: {"preset": preset} for name, preset in DATASET_PRESETS.items()})
class USLTSelector(Selector):
    """USL-T (paper Sec. 2.3): see the module documentation for the losses and the two modes.
    `mode=backbone` needs an encoder exposing build_module() -> (torch.nn.Module, feature_dim);
    the module takes float images (B, C, H, W) in [0, 1] at the data set's resolution and does
    its own resizing and normalisation."""

    traits = SelectorTraits(gpu_recommended=True)

    @staticmethod
    def resolved_config(config: USLTConfig, pool_size: int | None = None,
                        budget: int | None = None) -> tuple[USLTConfig, list[str]]:
        """The config as `select` will resolve it, for ``describe usl_t --dataset D``."""
        if config.preset == "auto" and pool_size is None:
            return config, [f"preset auto picks its row at select time: small below {SMALL_POOL:,} points, "
                            f"imagenet from {LARGE_POOL:,}, else cifar10 (cifar100 above a budget of 100)"]
        return resolve_preset(config, pool_size if pool_size is not None else LARGE_POOL, budget), []

    def validate(self, pool_size, budget, context):
        cfg = self.config
        if cfg.mode not in ("head", "backbone"):
            raise UserError(f"usl_t mode must be 'head' or 'backbone', got {cfg.mode!r}.")
        if cfg.confidence not in (None, "head0", "mean"):
            raise UserError(f"usl_t confidence must be 'head0' or 'mean', got {cfg.confidence!r}.")
        if cfg.n_heads < 1:
            raise UserError(f"usl_t needs at least one head, got n_heads={cfg.n_heads}.")
        if cfg.n_clusters is not None and cfg.n_clusters < budget:
            raise UserError(f"usl_t n_clusters={cfg.n_clusters} is below the budget {budget}: each cluster of head 0 "
                            "gives one pick. Give n_clusters >= budget or leave it unset (= budget).")
        if cfg.mode == "backbone":
            encoder = context.encoder
            if encoder is None or not callable(getattr(encoder, "build_module", None)):
                name = getattr(encoder, "registry_name", None)
                raise UserError(f"usl_t mode=backbone fine-tunes the encoder, but encoder {name!r} exposes no "
                                "build_module(); use an encoder with a network (simclr, mocov2, clip) or "
                                "mode=head on frozen features.")
            if context.dataset is None:
                raise UserError("usl_t mode=backbone trains on the data set's images; select through a data set "
                                "(--dataset), not a bare feature matrix, or use mode=head.")

    def _select(self, features, budget, seed, context, timer):
        # lazy: torch; the selectors register (and `select --features` with the others runs) without it
        import torch

        from .usl_t_train import train_heads, training_steps

        cfg = resolve_preset(self.config, features.shape[0], budget)
        n_clusters = cfg.n_clusters or budget
        batch_size_used = training_steps(cfg, features.shape[0])[0]
        if batch_size_used != cfg.batch_size:
            warn_setting(f"usl_t batch_size={cfg.batch_size} exceeds the pool of {features.shape[0]} points; "
                         f"training on batches of the whole pool ({batch_size_used}).")
        with timer("knn_neighbours"):
            nn_d2, neighbours, index_kind, neighbours_cached = cached_knn_excluding_self(
                features, cfg.knn_k, getattr(context, "feature_cache_stem", None), KnnParams(), seed=seed,
                desc="USL-T neighbours")
            mean_nn_sq = nn_d2.mean(axis=1)
            del nn_d2
        knn_k_used = neighbours.shape[1]  # at most the N - 1 other points
        if knn_k_used != cfg.knn_k:
            warn_setting(f"usl_t knn_k={cfg.knn_k} exceeds the {knn_k_used} other points of the pool; the local loss "
                         f"draws among all of them (knn_k {knn_k_used}).")
        with timer("training"):
            generator = torch.Generator().manual_seed(int(seed))
            assign, maxprob, history = train_heads(cfg, features, neighbours, n_clusters, generator, context)
        with timer("confident_picks"):
            clusters = assign[0]
            confidence = maxprob[0] if cfg.confidence == "head0" else maxprob.mean(axis=0)
            picks, filled = pick_per_cluster(clusters, confidence.astype(np.float64), budget)
        info = {
            "resolved_config": {f.name: getattr(cfg, f.name) for f in fields(cfg)},
            "knn_index": index_kind,
            "knn_neighbours_cached": bool(neighbours_cached),
            "clusters_requested": int(n_clusters),
            "clusters_nonempty": int(len(np.unique(clusters))),
            "filled_from_empty_clusters": int(filled),
            "mean_confidence_picks": float(confidence[picks].mean()),
            "mean_knn_sq_dist_picks": float(mean_nn_sq[picks].mean()),
            "mean_knn_sq_dist_pool": float(mean_nn_sq.mean()),
            "knn_k_used": int(knn_k_used),
            "batch_size_used": int(batch_size_used),
            "steps": history["steps"],
            "loss_first_last": history["loss_first_last"],
            "training_device": history["training_device"],
            "precision": history["precision"],
        }
        return np.sort(picks), info
