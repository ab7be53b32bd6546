"""Reading encoder weights: ours, and the official self-supervised checkpoints the USL authors use.

Layouts understood (key names as the published checkpoints store them):
  CLD CIFAR ResNet-18     {"model": {"module.conv1.weight", "module.layer1.0.shortcut.0.weight", ...,
                          "module.linear.weight" (512->128 projection), "module.groupDis.0.weight" (dropped)}}
                          ("module." optional; "pre_fc.0" + "linear" when trained with its mlp option)
  SimCLR ResNet-18 (SCAN) {"backbone.conv1.weight", "backbone.layer1.0.shortcut.0.weight", ...,
                          "contrastive_head.0.weight" (512->512), "contrastive_head.2.weight" (512->128)}
  MoCo v2 ResNet-50       {"state_dict": {"module.encoder_q.conv1.weight", ..., "module.encoder_q.fc.0.weight"
                          (2048->2048), "module.encoder_q.fc.2.weight" (2048->128)}, plus encoder_k / queue,
                          dropped}  (also the EMAN MoCo v2 checkpoint the USL paper uses)
  ours                    {"format": "uslbench-encoder", "arch", "head_dims", "head_relu", "state_dict":
                          {"backbone.<torchvision names>", "projection.<i>.weight"}}
Refused with an explanation (layout, matched / unmatched tensors, what to pass instead): a supervised
torchvision/timm classifier (single Linear `fc`, no projection head) and a whole pickled model.
Everything is mapped onto `ContrastiveNet`: a torchvision-named ResNet under "backbone." and the
projection MLP under "projection.". The CIFAR layouts call the residual projection "shortcut",
torchvision calls it "downsample".
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..nets.contrastive import FORMAT

_WRAPPERS = ("state_dict", "model", "net", "network", "encoder")
_DROPPED = ("groupDis.", "encoder_k.", "queue", "queue_ptr", "l2norm.", "momentum_encoder.", "predictor.")


@dataclass
class MappedWeights:
    """A state dict in ContrastiveNet naming plus the projection head it describes."""

    state_dict: dict[str, torch.Tensor]
    head_dims: list[int]          # e.g. [512, 512, 128]: Linear(512, 512), Linear(512, 128)
    head_relu: bool               # ReLU between the head's Linear layers
    source_layout: str            # "uslbench", "cld", "scan-simclr", "moco", "torchvision"


def load_file(path: str | Path) -> Any:
    """torch.load on CPU, tensors and plain containers only (argparse options in old checkpoints
    are allowed); a clear UserError when the file is not a PyTorch checkpoint or holds a whole
    pickled model (see `weights.load_checkpoint`)."""
    from .weights import load_checkpoint

    return load_checkpoint(path)


class NotSelfSupervised(UserError):
    """A supervised classifier file (a single Linear `fc` over the backbone, no projection head)."""

    def __init__(self, message: str, state: dict[str, torch.Tensor], head: str) -> None:
        super().__init__(message)
        self.state, self.head = state, head


def _tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap(checkpoint: Any) -> dict[str, torch.Tensor]:
    """Find the state dict inside a checkpoint ({"state_dict": ...}, {"model": ...}, or itself)."""
    current = checkpoint
    for _ in range(3):
        if _tensor_dict(current):
            return current
        if isinstance(current, dict):
            inner = next((current[k] for k in _WRAPPERS if isinstance(current.get(k), dict)), None)
            if inner is not None:
                current = inner
                continue
            tensors = {k: v for k, v in current.items() if isinstance(v, torch.Tensor)}
            if len(tensors) > 10:
                return tensors
        break
    keys = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise UserError(f"No state dict found in the weights file (top-level entries: {keys}).")


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def map_state_dict(checkpoint: Any) -> MappedWeights:
    """Rename any supported layout onto ContrastiveNet's keys; detect the projection head."""
    if isinstance(checkpoint, dict) and checkpoint.get("format") == FORMAT:
        return MappedWeights(dict(checkpoint["state_dict"]), list(checkpoint["head_dims"]),
                             bool(checkpoint["head_relu"]), "uslbench")
    state = unwrap(checkpoint)
    while any(k.startswith("module.") for k in state):
        state = _strip(state, "module.")
    if any(k.startswith("encoder_q.") for k in state):
        layout = "moco"
        state = {k[len("encoder_q."):]: v for k, v in state.items() if k.startswith("encoder_q.")}
    elif any(k.startswith("backbone.") for k in state):
        layout = "uslbench" if any(k.startswith("projection.") for k in state) else "scan-simclr"
    elif any(k.startswith("linear.") for k in state):
        layout = "cld"
    else:
        layout = "torchvision"
    state = {k: v for k, v in state.items() if not k.startswith(_DROPPED)}
    backbone, head = {}, {}
    for key, value in state.items():
        if key.startswith("projection."):
            head[key] = value
        elif key.startswith(("contrastive_head.", "fc.")):
            head["projection." + key.split(".", 1)[1]] = value
        elif key.startswith("pre_fc.0."):        # CLD's mlp option: Linear, then `linear`, no ReLU
            head["projection.0." + key.split(".", 2)[2]] = value
        elif key.startswith("linear."):
            index = 1 if any(k.startswith("pre_fc.") for k in state) else 0
            head[f"projection.{index}." + key.split(".", 1)[1]] = value
        else:
            name = key[len("backbone."):] if key.startswith("backbone.") else key
            backbone["backbone." + name.replace(".shortcut.", ".downsample.")] = value
    if not head:
        raise UserError("The weights file has no projection head (no fc.*, linear.*, contrastive_head.* or "
                        "projection.* keys); selection uses the projection output, so a full self-supervised "
                        "checkpoint (backbone + head) is needed. To use a backbone alone as a frozen feature "
                        "extractor, pass --encoder timm --encoder-config model=NAME --encoder-weights FILE.")
    if layout == "torchvision" and set(head) <= {"projection.weight", "projection.bias"} and "projection.weight" in head:
        weight = head["projection.weight"]
        what = f"fc {weight.shape[1]}->{weight.shape[0]}" if weight.ndim == 2 else "fc"
        raise NotSelfSupervised(
            f"The weights file is a supervised classifier (a single Linear {what} over the backbone, no "
            "self-supervised projection head). To use its backbone as a frozen feature extractor, pass "
            "--encoder timm --encoder-config model=NAME --encoder-weights FILE.", backbone, what)
    head, dims, relu = _normalise_head(head)
    return MappedWeights({**backbone, **head}, dims, relu, layout)


def _normalise_head(head: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[int], bool]:
    """Head Linear layers in order; renumber them 0, 2, 4 (with ReLU) or 0, 1, 2 (without)."""
    indices = sorted({int(m.group(1)) for k in head if (m := re.match(r"projection\.(\d+)\.weight$", k))})
    if not indices:
        raise UserError(f"Cannot read the projection head from keys {sorted(head)[:6]}.")
    relu = len(indices) > 1 and all(b - a == 2 for a, b in zip(indices, indices[1:]))
    step = 2 if relu else 1
    out, dims = {}, []
    for position, index in enumerate(indices):
        weight = head[f"projection.{index}.weight"]
        if weight.ndim != 2:
            raise UserError(f"Projection layer {index} is not a Linear weight (shape {tuple(weight.shape)}).")
        if not dims:
            dims.append(int(weight.shape[1]))
        elif dims[-1] != weight.shape[1]:
            raise UserError(f"Projection head layers do not chain: {dims[-1]} outputs feed a layer expecting "
                            f"{weight.shape[1]} inputs.")
        dims.append(int(weight.shape[0]))
        out[f"projection.{position * step}.weight"] = weight
        if f"projection.{index}.bias" in head:
            out[f"projection.{position * step}.bias"] = head[f"projection.{index}.bias"]
    return out, dims, relu


def describe_backbone(state: dict[str, torch.Tensor]) -> str:
    """A guess at the architecture a state dict belongs to, for error messages."""
    conv1 = state.get("backbone.conv1.weight")
    stem = "?"
    if conv1 is not None and conv1.ndim == 4:
        stem = "CIFAR stem (3x3 conv1)" if conv1.shape[-1] == 3 else f"ImageNet stem ({conv1.shape[-1]}x{conv1.shape[-1]} conv1)"
    bottleneck = any(".conv3." in k for k in state)
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"backbone\.layer3\.(\d+)\.", k))}
    depth = {2: 18 if not bottleneck else 26, 6: 34 if not bottleneck else 50, 23: 101, 36: 152}.get(len(blocks))
    return f"ResNet-{depth or '?'} ({'bottleneck' if bottleneck else 'basic'} blocks, {stem})"


def _advice_for(state: dict[str, torch.Tensor], path: Path | str) -> str:
    """What to pass instead: the matching contrastive encoder, pretraining, or the timm route."""
    from .weights import guess_architecture

    plain = {k[len("backbone."):] if k.startswith("backbone.") else k: v for k, v in state.items()}
    guess = guess_architecture(plain) or ""
    model = re.search(r"model=(\w+)", guess)
    timm_route = (f"--encoder timm --encoder-config model={model.group(1)} --encoder-weights {path}" if model
                  else "--encoder timm --encoder-config model=NAME --encoder-weights FILE")
    return ("Use the encoder that matches the checkpoint (simclr: ResNet-18 with CIFAR stem + projection head; "
            "mocov2: ResNet-50 + 2048-2048-128 head), pretrain one with `python cli.py pretrain`, or load the "
            f"backbone alone as a frozen feature extractor: {timm_route} (timm's ResNets use torchvision's names).")


def classifier_message(error: NotSelfSupervised, model: torch.nn.Module, path: Path | str, encoder: str,
                       arch: str) -> str:
    """Issue 12 item 8: a supervised classifier file given to a contrastive encoder. Says which layout
    was detected, how much of the backbone matched and what did not, and what to pass instead."""
    from .weights import KeyReport

    own = model.state_dict()
    required = [k for k in own if k.startswith("backbone.") and not k.endswith("num_batches_tracked")]
    state = error.state
    report = KeyReport(layout=f"a supervised torchvision/timm ResNet classifier ({describe_backbone(state)}, "
                              f"{error.head} classifier instead of a projection head)",
                       state_dict={}, n_required=len(required))
    for key in required:
        if key not in state:
            report.missing.append(key[len("backbone."):])
        elif tuple(state[key].shape) != tuple(own[key].shape):
            report.shapes.append(f"{key[len('backbone.'):]} {tuple(state[key].shape)} in the file vs "
                                 f"{tuple(own[key].shape)}")
    report.unused = [k[len("backbone."):] for k in state if k not in own and not k.endswith("num_batches_tracked")]
    report.unused += ["fc.weight", "fc.bias"] if error.head.startswith("fc") else []
    target = (f"encoder {encoder!r}, which needs a self-supervised {arch} backbone with a projection head "
              "(selection reads the projection)")
    return report.message(path, target, _advice_for(state, path), scope="the backbone's")


def load_into(model: torch.nn.Module, mapped: MappedWeights, what: str, path: Path | str) -> None:
    """Load strictly (BatchNorm counters excepted) and explain a mismatch in one paragraph: the
    detected layout, how many tensors matched, what did not, and what to pass instead."""
    from .weights import KeyReport

    own = model.state_dict()
    missing = [k for k in own if k not in mapped.state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in mapped.state_dict if k not in own]
    shapes = [f"{k} {tuple(v.shape)} in the file vs {tuple(own[k].shape)}" for k, v in mapped.state_dict.items()
              if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        report = KeyReport(layout=f"{mapped.source_layout} ({describe_backbone(mapped.state_dict)})", state_dict={},
                           n_required=len(missing) + sum(1 for k in own if k in mapped.state_dict
                                                         and not k.endswith("num_batches_tracked")),
                           missing=missing, unused=unexpected, shapes=shapes)
        raise UserError(report.message(path, what, _advice_for(mapped.state_dict, path)))
    merged = {k: mapped.state_dict.get(k, v) for k, v in own.items()}
    model.load_state_dict(merged, strict=True)
