"""SimCLR encoder: ResNet-18 with the CIFAR stem (512-d backbone) and a 128-d projection.

Selection uses the L2-normalised projection output, as the USL reference does with its CLD model.
Weights: `--encoder-weights PATH` (ours from `pretrain`, CLD or SCAN-SimCLR checkpoints; see
`uslbench.encoders.checkpoints`) or, by default, `<results-root>/weights/<dataset>/simclr.pt`
written by `python cli.py pretrain --encoder simclr --dataset <dataset>`.
"""
from __future__ import annotations

from ..registry import ENCODERS
from ..traits import EncoderTraits
from .torch_base import ContrastiveConfig, TorchEncoder, contract_test_weights

CIFAR_PRESET = {"normalisation": "cld"}


@ENCODERS.register("simclr", "SimCLR ResNet-18 (CIFAR stem), 128-d normalised projection; weights from "
                   "`pretrain` or --encoder-weights (CLD / SimCLR checkpoints)", config=ContrastiveConfig,
                   presets={"cifar10": CIFAR_PRESET, "cifar100": CIFAR_PRESET}, test_config=contract_test_weights)
class SimCLREncoder(TorchEncoder):
    """ResNet-18 with a 3x3 stride-1 stem and no max-pool (for 32x32-scale images), projection MLP
    512-512-128 (a CLD checkpoint brings its single 512->128 linear projection instead). On CIFAR
    the inputs are normalised with the CLD statistics the official checkpoints were trained with;
    elsewhere with the data set's own statistics."""

    traits = EncoderTraits(needs_weights=True, gpu_recommended=True)

    arch = "resnet18_cifar"
    head_dims = [512, 512, 128]
