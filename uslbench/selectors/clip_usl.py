"""CLIP-USL (paper Sec. 4.3-4.4): USL on CLIP image embeddings with the ImageNet-CLIP preset."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..registry import SELECTORS
from ..traits import SelectorTraits
from .usl import USLConfig, USLSelector


@dataclass
class CLIPUSLConfig(USLConfig):
    preset: str = field(default="imagenet_clip", metadata={"help": "the ImageNet-CLIP row (any usl preset may be named)"})


@SELECTORS.register("clip_usl", "USL on CLIP ViT-B/16 embeddings (encoder fixed to clip, ImageNet-CLIP preset)",
                    config=CLIPUSLConfig)
class CLIPUSLSelector(USLSelector):
    """`usl` with the encoder fixed to `clip` and the ImageNet-CLIP preset (k = 20, 100 K-Means
    iterations, T = 2 passes (one regulariser update), lambda = 0.05, no EMA, regulariser over the
    32 nearest picks with the own cluster's pick excluded (it still takes one of the 32 slots, as
    in the reference's `exclude_same_cluster=True`), alpha = 1 on squared distances; reference:
    configs/ImageNet_usl_clip_0.2.yaml, nn_utils_imagenet.py). The pipeline computes the selection features
    with the `clip` encoder whatever --encoder says (the learner keeps the run's encoder);
    `select --features` assumes the matrix already holds CLIP embeddings."""

    # CLIP weights are not part of the CPU quick preset
    traits = SelectorTraits(fixed_encoder="clip", in_quick_preset=False, uses_initial_labeled=True)
