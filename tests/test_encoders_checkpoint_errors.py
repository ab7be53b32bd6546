"""Issue 12 item 8: wrong checkpoints given to the contrastive encoders. The message names the detected
layout, what matched and what did not, and what to pass; and what it says to pass works."""
from __future__ import annotations


import numpy as np
import pytest
import torch
import torchvision

from uslbench.errors import UserError
from uslbench.catalog import ENCODERS

pytestmark = pytest.mark.usefixtures("one_torch_thread")




def _error(encoder: str, path, cifar) -> str:
    with pytest.raises(UserError) as err:
        ENCODERS.create(encoder, weights=str(path)).check(cifar)
    return str(err.value)


def test_torchvision_classifier_into_simclr_says_what_it_is_and_what_to_pass(cifar, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    message = _error("simclr", path, cifar)
    assert "projection.weight" not in message                     # the old, unhelpful message
    assert ("Detected layout: a supervised torchvision/timm ResNet classifier (ResNet-18 (basic blocks, ImageNet "
            "stem (7x7 conv1)), fc 512->1000 classifier instead of a projection head)") in message
    assert "99 of 100 of the backbone's tensors matched by name and shape" in message
    assert "Shape mismatches (1): conv1.weight (64, 3, 7, 7) in the file vs (64, 3, 3, 3)" in message
    assert "Unmatched in the file (2: fc.weight, fc.bias)" in message
    advice = f"--encoder timm --encoder-config model=resnet18 --encoder-weights {path}"
    assert advice in message
    # the advice works: the same file through the timm route
    encoder = ENCODERS.create("timm", model="resnet18", weights=str(path), image_size=32)
    encoder.check(cifar)
    assert encoder.report.ok and encoder.encode(cifar).train.shape == (20, 512)


def test_torchvision_resnet50_classifier_into_mocov2(cifar, tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    message = _error("mocov2", path, cifar)
    assert "ResNet-50 (bottleneck blocks, ImageNet stem (7x7 conv1)), fc 2048->1000 classifier" in message
    assert "265 of 265 of the backbone's tensors matched" in message and "model=resnet50" in message


def test_a_pickled_whole_model_gets_a_complete_message_with_the_fix(cifar, tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(torchvision.models.resnet18(), path)
    message = _error("simclr", path, cifar)
    assert message.startswith(f"Cannot read encoder weights {path}: the file holds a whole pickled model "
                              "(torchvision.models.resnet.ResNet), not a state dict of tensors.")
    assert message.endswith("and pass --encoder-weights weights.pt.")
    assert "Weights only load failed" not in message and "\n" not in message
    # the conversion it prints, run on a trusted file, gives a state dict that the timm route loads
    command = message.split('python -c "', 1)[1].split('"', 1)[0]
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(command, {})
    finally:
        os.chdir(cwd)
    encoder = ENCODERS.create("timm", model="resnet18", weights=str(tmp_path / "weights.pt"), image_size=32)
    encoder.check(cifar)
    assert np.isfinite(encoder.encode(cifar).train).all()


def test_other_unreadable_files_are_not_cut_mid_sentence(cifar, tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip")
    message = _error("simclr", tmp_path / "junk.pt", cifar)
    assert message.startswith(f"Cannot read encoder weights {tmp_path / 'junk.pt'}: not a PyTorch checkpoint")
    assert message.endswith("(a state dict) or a .safetensors file.")
