"""Networks: parameter counts of the reference WRNs, output shapes, the ResNets when available."""
from __future__ import annotations

import pytest
import torch

from uslbench.errors import UserError
from uslbench.nets import build_network


def test_wrn_parameter_counts_match_the_fixmatch_reference():
    # WRN-28-2 for CIFAR-10 has 1,467,610 parameters (1.5 M in the FixMatch paper); WRN-28-8 23.4 M
    assert sum(p.numel() for p in build_network("wrn28_2", 10, 3, 32).parameters()) == 1_467_610
    assert sum(p.numel() for p in build_network("wrn28_8", 100, 3, 32).parameters()) == 23_401_012


@pytest.mark.parametrize("arch,channels,size", [("wrn28_2", 3, 32), ("cnn", 1, 8), ("cnn", 3, 28), ("cnn16", 1, 8)])
def test_logits_and_features_shapes(arch, channels, size):
    net = build_network(arch, 7, channels, size).eval()
    logits, features = net(torch.zeros(2, channels, size, size), with_features=True)
    assert logits.shape == (2, 7) and features.shape == (2, net.feature_dim)


def test_unknown_or_misfit_arch_is_a_user_error():
    with pytest.raises(UserError, match="Unknown network"):
        build_network("vgg", 10, 3, 32)
    with pytest.raises(UserError, match="expects images of 4 to 64 px"):
        build_network("cnn", 10, 3, 224)


@pytest.mark.parametrize("arch", ["resnet18_cifar", "resnet50"])
def test_resnets_from_the_resnet_module(arch):
    pytest.importorskip("uslbench.nets.resnet")
    net = build_network(arch, 10, 3, 32).eval()
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert net.feature_dim == (512 if arch == "resnet18_cifar" else 2048)


def test_wrn_shortcut_reads_raw_input():
    """Projection shortcuts as in every WRN reference (google-research/fixmatch libml/models.py
    `residual`, CoMatch WideResNet.py, the USL FixMatch fork): the first block of group 1 projects the
    ACTIVATED input (activate_before_residual), the first blocks of groups 2 and 3 the RAW input."""
    from uslbench.nets.wrn import WideResNet

    torch.manual_seed(0)
    net = WideResNet(3, 28, 2).eval()
    blocks = [b for b in net.blocks if b.shortcut is not None]
    assert [blocks.index(b) for b in blocks] == [0, 1, 2] and len(blocks) == 3
    seen = {}
    hooks = [b.register_forward_pre_hook(lambda m, args, i=i: seen.setdefault(("in", i), args[0].clone()))
             for i, b in enumerate(blocks)]
    hooks += [b.shortcut.register_forward_pre_hook(lambda m, args, i=i: seen.setdefault(("sc", i), args[0].clone()))
              for i, b in enumerate(blocks)]
    # non-trivial BN statistics so that activated != raw
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    net(torch.randn(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    for i, block in enumerate(blocks):
        raw = seen[("in", i)]
        activated = block.act(block.bn1(raw))
        expected = activated if i == 0 else raw
        other = raw if i == 0 else activated
        assert torch.equal(seen[("sc", i)], expected), f"shortcut input of block {i}"
        assert not torch.allclose(seen[("sc", i)], other)
