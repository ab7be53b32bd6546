"""CLIP encoder: open_clip's ViT-B-16 image tower with its own preprocessing, 512-d, L2-normalised
(the USL-CLIP setting of the paper, which used OpenAI's ViT-B/16).

Weights: `--encoder-weights PATH` (an open_clip ViT-B-16 checkpoint file), else the file open_clip
keeps in its cache for the `pretrained` tag (Hugging Face hub cache or ~/.cache/clip). Nothing is
downloaded here: without either file the run stops with a message that says how to get one.
`pretrained=none` builds a randomly initialised model (for tests; its features are meaningless).
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..config_ranges import POSITIVE_INT, Range, field_ranges
from ..datasets.base import Dataset
from ..errors import UserError
from ..registry import ENCODERS
from ..traits import EncoderTraits
from .torch_base import TorchEncoder, cached_file_digest, no_weights_routes

if TYPE_CHECKING:  # torch and open_clip are imported when the network is built (see _build_net)
    from torch import nn

    from .extract import Preprocess


@field_ranges(batch_size=POSITIVE_INT, num_workers=Range(ge=-1))
@dataclass
class ClipConfig:
    weights: str | None = field(default=None, metadata={"help": "a local open_clip checkpoint of `model`"})
    pretrained: str = field(default="openai", metadata={"help": "open_clip tag looked up in its cache; 'none' = random init (tests)"})
    model: str = "ViT-B-16"
    batch_size: int = 128
    amp: bool = True
    num_workers: int = -1


def cached_pretrained_file(model: str, tag: str) -> Path | None:
    """The file open_clip would load for (model, tag) if it is already on disk, without downloading."""
    import open_clip  # lazy: open_clip imports torch; the encoders register without it
    from open_clip import pretrained as oc_pretrained

    cfg = oc_pretrained.get_pretrained_cfg(model, tag)
    if not cfg:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise UserError(f"open_clip has no pretrained tag {tag!r} for {model} (known: {known}).")
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub comes with open_clip
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            repo, filename = os.path.split(hub)
            names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            for name in names:
                found = try_to_load_from_cache(repo_id=repo.rstrip("/"), filename=name)
                if isinstance(found, str) and os.path.isfile(found):
                    return Path(found)
    url = cfg.get("url", "")
    if url:
        legacy = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if legacy.is_file():
            return legacy
    return None


@ENCODERS.register("clip", "OpenAI CLIP ViT-B/16 image tower via open_clip, 512-d; weights from a local file "
                   "or open_clip's cache", config=ClipConfig,
                   test_config={"pretrained": "none"})  # random initialisation: the tests need no weights
class ClipEncoder(TorchEncoder):
    """open_clip `ViT-B-16`, image tower only, with open_clip's eval preprocessing (resize 224,
    centre crop, CLIP mean/std). Features are L2-normalised 512-d image embeddings."""

    traits = EncoderTraits(needs_weights=True, gpu_recommended=True)

    weights_hint = "an open_clip ViT-B-16 checkpoint"

    def __init__(self, config: ClipConfig) -> None:
        super().__init__(config)
        self._preprocess = None

    def resolve_weights(self, dataset: Dataset | None = None) -> Path | None:
        if self.config.weights:
            path = Path(self.config.weights).expanduser()
            if not path.is_file():
                raise UserError(f"CLIP weights {path} (given with --encoder-weights) do not exist.")
            return path
        if self.config.pretrained.lower() == "none":
            return None
        found = cached_pretrained_file(self.config.model, self.config.pretrained)
        if found is None:
            raise UserError(
                f"CLIP {self.config.model} weights ({self.config.pretrained!r}) are not on this machine: pass "
                f"--encoder-weights PATH with an open_clip {self.config.model} checkpoint, or fill open_clip's "
                f"cache on a machine with internet access: python -c \"import open_clip; "
                f"open_clip.create_model_and_transforms('{self.config.model}', "
                f"pretrained='{self.config.pretrained}')\" (then copy ~/.cache/huggingface or ~/.cache/clip). "
                f"{no_weights_routes()}")
        return found

    def check(self, dataset: Dataset) -> None:
        path = self.resolve_weights(dataset)
        if self._net is None or path != self._weights_file:
            self._net = self._build_net(path)
            self._weights_file = path

    def net(self, dataset: Dataset | None = None) -> nn.Module:
        if self._net is None:
            self.check(dataset)  # type: ignore[arg-type] - CLIP's weights do not depend on the data set
        return self._net

    def _build_net(self, path: Path | None) -> nn.Module:
        # lazy: open_clip and torch; `list` / `describe` import this module without them
        import open_clip
        import torch

        torch.manual_seed(0)  # random init (pretrained=none) is then reproducible
        quick_gelu = self.config.pretrained == "openai" and not self.config.weights
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.config.model, pretrained=str(path) if path is not None else None,
                force_quick_gelu=quick_gelu)
        except UserError:
            raise
        except Exception as exc:  # open_clip raises RuntimeError / KeyError / ValueError on bad files
            raise UserError(f"Cannot load CLIP {self.config.model} weights from {path}: "
                            f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        self._preprocess = preprocess
        return model.visual.eval()

    def weights_digest(self) -> str | None:
        try:
            path = self._weights_file or self.resolve_weights()
        except UserError:
            return None
        return cached_file_digest(path) if path is not None else None

    def build_module(self, device: str = "cpu", output: str | None = None) -> tuple[nn.Module, int]:
        """(image tower, 512): maps CLIP-preprocessed images to (unnormalised) embeddings."""
        net = self.net()
        return copy.deepcopy(net).to(device), int(getattr(net, "output_dim", 512))

    def input_transform(self, dataset: Dataset) -> nn.Module:
        """CLIP's eval preprocessing on float [0, 1] tensors: resize to its input side (bicubic)
        and its mean/std, read from open_clip's transform (a square image's resize + centre crop is
        one resize)."""
        from torchvision import transforms as T

        from .input_transform import InputTransform

        self.net(dataset)
        steps = list(getattr(self._preprocess, "transforms", []))
        normalise = next((t for t in steps if isinstance(t, T.Normalize)), None)
        crop = next((t for t in steps if isinstance(t, T.CenterCrop)), None)
        if normalise is None:
            raise UserError("open_clip's preprocessing has no Normalize step; cannot fine-tune this CLIP model.")
        size = int(crop.size[0]) if crop is not None else None
        return InputTransform(tuple(normalise.mean), tuple(normalise.std), size=size, interpolation="bicubic")

    def preprocess(self, dataset: Dataset) -> Preprocess:
        from .extract import Preprocess  # lazy: torch (see _build_net)

        self.net(dataset)
        return Preprocess((0.0,) * 3, (1.0,) * 3, pil_transform=lambda image: self._preprocess(image.convert("RGB")))

    def feature_module(self, dataset: Dataset) -> nn.Module:
        return self.net(dataset)
