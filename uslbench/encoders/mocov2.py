"""MoCo v2 encoder: ResNet-50 with the 2048-2048-128 MLP head, ImageNet preprocessing.

Weights from `--encoder-weights PATH`: the official MoCo v2 / EMAN checkpoints
(`module.encoder_q.*`, see `uslbench.encoders.checkpoints`), or ours.
"""
from __future__ import annotations

from ..registry import ENCODERS
from ..traits import EncoderTraits
from .torch_base import ContrastiveConfig, TorchEncoder, contract_test_weights


@ENCODERS.register("mocov2", "MoCo v2 ResNet-50, 128-d normalised projection (2048-2048-128 MLP); weights from "
                   "--encoder-weights", config=ContrastiveConfig,
                   presets={"default": {"normalisation": "imagenet"}}, test_config=contract_test_weights)
class MoCoV2Encoder(TorchEncoder):
    """ImageNet preprocessing: resize the shorter side to 256, centre crop 224, ImageNet mean/std.
    Selection uses the normalised 128-d projection, as the USL reference on ImageNet."""

    traits = EncoderTraits(needs_weights=True, gpu_recommended=True)

    arch = "resnet50"
    head_dims = [2048, 2048, 128]
    input_resize = 256
    input_crop = 224
    weights_hint = "MoCo v2 / EMAN ResNet-50 checkpoint with module.encoder_q.* keys, or ours"
