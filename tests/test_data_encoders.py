"""Encoders: official checkpoint layouts mapped onto ours, weights resolution and messages,
deterministic batched extraction, build_module, CLIP without pretrained weights."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from uslbench.datasets import load_dataset
from uslbench.encoders.checkpoints import map_state_dict
from uslbench.encoders.torch_base import default_weights_path
from uslbench.nets.contrastive import ContrastiveNet
from uslbench.errors import UserError
from uslbench.catalog import ENCODERS



pytestmark = pytest.mark.usefixtures("one_torch_thread")




def _net(arch="resnet18_cifar", head=(512, 512, 128), relu=True, seed=0) -> ContrastiveNet:
    torch.manual_seed(seed)
    net = ContrastiveNet(arch, list(head), relu).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a mis-mapped buffer shows up
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net


def _cifar_names(net: ContrastiveNet) -> dict[str, torch.Tensor]:
    """Backbone keys as the CIFAR codebases (CLD, SCAN) name them."""
    return {k[len("backbone."):].replace(".downsample.", ".shortcut."): v
            for k, v in net.state_dict().items() if k.startswith("backbone.")}


def _reference_features(net: ContrastiveNet, dataset, encoder) -> np.ndarray:
    batch = encoder.preprocess(dataset).array_batch(dataset.train.array)
    with torch.no_grad():
        return net(batch).numpy()


def test_cld_checkpoint_round_trip(cifar, tmp_path):
    net = _net(head=(512, 128), relu=False)                     # CLD: one linear 512 -> 128 projection
    state = {f"module.{k}": v for k, v in _cifar_names(net).items()}
    state["module.linear.weight"], state["module.linear.bias"] = net.projection[0].weight, net.projection[0].bias
    state["module.groupDis.0.weight"] = torch.randn(128, 512)   # CLD's second branch: dropped
    state["module.groupDis.0.bias"] = torch.randn(128)
    torch.save({"model": state, "epoch": 200}, tmp_path / "cifar10_ckpt_epoch_200.pth")
    encoder = ENCODERS.create("simclr", dataset="cifar10", weights=str(tmp_path / "cifar10_ckpt_epoch_200.pth"))
    assert encoder.config.normalisation == "cld"
    features = encoder.encode(cifar).train
    np.testing.assert_allclose(features, _reference_features(net, cifar, encoder), atol=1e-5)
    assert features.shape == (20, 128)


def test_scan_simclr_checkpoint_round_trip(cifar, tmp_path):
    net = _net(seed=1)
    state = {f"backbone.{k}": v for k, v in _cifar_names(net).items()}
    state.update({"contrastive_head.0.weight": net.projection[0].weight, "contrastive_head.0.bias": net.projection[0].bias,
                  "contrastive_head.2.weight": net.projection[2].weight, "contrastive_head.2.bias": net.projection[2].bias})
    torch.save(state, tmp_path / "simclr_cifar-10.pth.tar")
    mapped = map_state_dict(torch.load(tmp_path / "simclr_cifar-10.pth.tar"))
    assert (mapped.source_layout, mapped.head_dims, mapped.head_relu) == ("scan-simclr", [512, 512, 128], True)
    for key, value in net.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(mapped.state_dict[key], value), key
    encoder = ENCODERS.create("simclr", dataset="cifar10", weights=str(tmp_path / "simclr_cifar-10.pth.tar"))
    np.testing.assert_allclose(encoder.encode(cifar).train, _reference_features(net, cifar, encoder), atol=1e-5)


def test_moco_checkpoint_maps_onto_mocov2_and_refuses_simclr(cifar, tmp_path):
    net = _net("resnet50", (2048, 2048, 128))
    state = {f"module.encoder_q.{k[len('backbone.'):]}": v for k, v in net.state_dict().items() if k.startswith("backbone.")}
    for i in (0, 2):
        state[f"module.encoder_q.fc.{i}.weight"] = net.projection[i].weight
        state[f"module.encoder_q.fc.{i}.bias"] = net.projection[i].bias
    state["module.encoder_k.conv1.weight"] = torch.zeros(1)     # the key encoder and queue are dropped
    state["module.queue"] = torch.zeros(128, 4)
    path = tmp_path / "res50_moco_eman_800ep.pth.tar"
    torch.save({"state_dict": state, "arch": "resnet50", "epoch": 800}, path)
    encoder = ENCODERS.create("mocov2", dataset="imagenet", weights=str(path))
    encoder.check(cifar)
    loaded = encoder.net()
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    module, dim = encoder.build_module("cpu")
    assert dim == 2048 and module(torch.randn(1, 3, 64, 64)).shape == (1, 2048)
    simclr = ENCODERS.create("simclr", dataset="cifar10", weights=str(path))
    with pytest.raises(UserError) as err:
        simclr.check(cifar)
    assert "do not fit" in str(err.value) and "ResNet-50" in str(err.value) and "mocov2" in str(err.value)


def test_bad_weight_files(cifar, tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(UserError, match="Cannot read encoder weights"):
        ENCODERS.create("simclr", weights=str(tmp_path / "junk.pt")).check(cifar)
    torch.save(_net().backbone.state_dict(), tmp_path / "headless.pt")
    with pytest.raises(UserError, match="no projection head"):
        ENCODERS.create("simclr", weights=str(tmp_path / "headless.pt")).check(cifar)
    with pytest.raises(UserError, match="do not exist"):
        ENCODERS.create("simclr", weights=str(tmp_path / "absent.pt")).check(cifar)


def test_missing_weights_message_names_pretrain_and_option(cifar, tmp_path):
    encoder = ENCODERS.create("simclr", dataset="cifar10")
    encoder.use_results_root(tmp_path)
    with pytest.raises(UserError) as err:
        encoder.check(cifar)
    message = str(err.value)
    assert "python cli.py pretrain --encoder simclr --dataset cifar10" in message
    assert "--encoder-weights PATH" in message and str(tmp_path / "weights" / "cifar10" / "simclr.pt") in message
    # and the routes that need no self-supervised checkpoint (issue 10)
    assert "--encoder pixels needs no weights" in message
    assert "--encoder timm --encoder-config model=NAME --encoder-weights FILE" in message


@pytest.mark.slow
def test_default_location_identity_and_determinism(cifar, tmp_path):
    path = default_weights_path(tmp_path, cifar, "simclr")
    path.parent.mkdir(parents=True)
    torch.save(_net(seed=3).export(), path)
    encoder = ENCODERS.create("simclr", dataset="cifar10")
    encoder.use_results_root(tmp_path)
    encoder.check(cifar)
    first = encoder.encode(cifar)
    again = ENCODERS.create("simclr", dataset="cifar10", batch_size=7)
    again.use_results_root(tmp_path)
    again.check(cifar)
    second = again.encode(cifar)
    assert first.train.dtype == np.float32 and first.test.shape == (10, 128)
    np.testing.assert_allclose(np.linalg.norm(first.train, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(first.train, second.train, atol=1e-5)            # batch size does not matter
    assert np.array_equal(first.train, encoder.encode(cifar).train)             # same run, same bytes
    # identity: the weights digest, never the path; batch size is not part of it
    shutil.copy(path, tmp_path / "elsewhere.pt")
    moved = ENCODERS.create("simclr", dataset="cifar10", weights=str(tmp_path / "elsewhere.pt"))
    assert moved.identity() == encoder.identity() == again.identity()
    assert str(tmp_path) not in repr(encoder.identity())
    torch.save(_net(seed=4).export(), tmp_path / "other.pt")
    assert ENCODERS.create("simclr", dataset="cifar10", weights=str(tmp_path / "other.pt")).identity() != encoder.identity()
    # build_module: a trainable copy of the backbone, 512-d, same features as the encoder's backbone
    module, dim = encoder.build_module("cpu")
    batch = encoder.preprocess(cifar).array_batch(cifar.train.array[:4])
    assert dim == 512 and any(p.requires_grad for p in module.parameters())
    with torch.no_grad():
        torch.testing.assert_close(module.eval()(batch), encoder.net().backbone(batch))
    backbone_encoder = ENCODERS.create("simclr", dataset="cifar10", output="backbone", weights=str(path))
    assert backbone_encoder.encode(cifar).train.shape == (20, 512)


@pytest.mark.slow
def test_clip_random_init_on_a_few_images(cifar):
    pytest.importorskip("open_clip")
    encoder = ENCODERS.create("clip", pretrained="none", batch_size=3)
    small = type(cifar)(**{**cifar.__dict__, "train": type(cifar.train)(labels=cifar.train.labels[:4],
                                                                        array=cifar.train.array[:4]), "test": None})
    features = encoder.encode(small)
    assert features.train.shape == (4, 512) and features.test is None
    np.testing.assert_allclose(np.linalg.norm(features.train, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(features.train, encoder.encode(small).train)
    module, dim = encoder.build_module("cpu")
    assert dim == 512


def test_clip_without_weights_says_how_to_get_them(cifar, monkeypatch, tmp_path):
    pytest.importorskip("open_clip")
    import huggingface_hub

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda **kwargs: None)
    with pytest.raises(UserError) as err:
        ENCODERS.create("clip").check(cifar)
    assert "--encoder-weights PATH" in str(err.value) and "open_clip" in str(err.value)
    with pytest.raises(UserError, match="do not exist"):
        ENCODERS.create("clip", weights=str(tmp_path / "none.bin")).check(cifar)


def test_file_backed_split_gives_the_same_features_as_in_memory(tmp_path):
    from uslbench.datasets.testing import write_image_folder

    root = write_image_folder(tmp_path / "imgs", per_class_train=3, per_class_test=1, num_classes=2, size=12)
    in_memory = load_dataset(f"folder:{root}")
    lazy = load_dataset(f"folder:{root}", image_size=12, max_in_memory=2)   # read from the files on demand
    assert lazy.train.array is None and len(lazy.train) == 6 and lazy.train.image(0).size == (12, 12)
    assert lazy.identity["train"]["files"] == 6 and str(tmp_path) not in repr(lazy.identity)
    torch.save(_net(seed=5).export(), tmp_path / "w.pt")
    features = [ENCODERS.create("simclr", weights=str(tmp_path / "w.pt"), num_workers=0, normalisation="imagenet")
                .encode(ds).train for ds in (in_memory, lazy)]
    np.testing.assert_allclose(features[0], features[1], atol=1e-5)
