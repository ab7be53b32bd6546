"""What the torch encoders share: weights resolution (explicit path or the default location that
`pretrain` writes), the contrastive network (ResNet backbone + projection MLP), batched extraction,
and `build_module` for selectors/learners that fine-tune the encoder.

Default weights location: `<results-root>/weights/<dataset>/<encoder>.pt`, where <dataset> is the
registered name (cifar10) or, for your own data (folder:, npz:), the source plus a digest of its
content identity (folder-3f2a...). The pipeline tells the encoder its results root through
`Encoder.use_results_root`; outside the pipeline $USLBENCH_RESULTS or ./results is used.
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config_ranges import POSITIVE_INT, Range, field_ranges
from ..datasets.base import Dataset
from ..errors import UserError
from ..learners.nets import projection_mlp
from ..learners.nets.resnet import BACKBONES
from ..utils import content_key, file_sha256
from .base import Encoder, FeatureSet, l2_normalise
from .checkpoints import FORMAT, MappedWeights, load_file, load_into, map_state_dict
from .extract import Preprocess, extract_features

NORMALISATIONS = {
    # CLD and the SCAN SimCLR models were trained with these CIFAR statistics (std 0.2023...)
    "cld": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
_DIGESTS: dict[tuple[str, int, int], str] = {}


def cached_file_digest(path: Path) -> str:
    """sha256 of a weights file, memoised on (path, size, mtime) so repeated keys cost nothing."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(path)
    return _DIGESTS[key]


def dataset_slug(dataset: Dataset) -> str:
    """Folder name for per-data-set files: the registered name, or source + content digest."""
    if ":" not in dataset.name:
        return dataset.name
    return f"{dataset.name.split(':', 1)[0]}-{content_key(dataset.identity, 12)}"


def default_results_root() -> Path:
    return Path(os.environ.get("USLBENCH_RESULTS", "results"))


def default_weights_path(results_root: str | os.PathLike, dataset: Dataset, encoder: str) -> Path:
    return Path(results_root) / "weights" / dataset_slug(dataset) / f"{encoder}.pt"


class ContrastiveNet(nn.Module):
    """ResNet backbone + projection MLP. `forward` returns the L2-normalised projection (what the
    USL reference selects on); `backbone` alone gives the pooled features."""

    def __init__(self, arch: str, head_dims: list[int], head_relu: bool = True) -> None:
        super().__init__()
        self.arch = arch
        self.backbone = BACKBONES[arch](num_classes=0)
        self.projection = projection_mlp(head_dims, head_relu)
        self.head_dims, self.head_relu = list(head_dims), head_relu

    @property
    def feature_dim(self) -> int:
        return self.backbone.feature_dim

    @property
    def projection_dim(self) -> int:
        return self.head_dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.projection(self.backbone(x)), dim=1)

    def export(self, **extra: Any) -> dict:
        """Our weights-file format (read back by checkpoints.map_state_dict)."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        return {"format": FORMAT, "arch": self.arch, "head_dims": self.head_dims, "head_relu": self.head_relu,
                "state_dict": state, **extra}


@field_ranges(batch_size=POSITIVE_INT, num_workers=Range(ge=-1),
              output=Range(choices=("projection", "backbone")),
              normalisation=Range(choices=("dataset", "cld", "imagenet")))
@dataclasses.dataclass
class ContrastiveConfig:
    weights: str | None = field(default=None, metadata={"help": "weights file (--encoder-weights); default: what `pretrain` wrote"})
    output: str = field(default="projection", metadata={"help": "'projection': normalised projection (reference); 'backbone': pooled"})
    normalisation: str = field(default="dataset", metadata={"help": "'dataset' statistics, 'cld' (CIFAR stats of CLD/SCAN), or 'imagenet'"})
    batch_size: int = 256
    amp: bool = field(default=True, metadata={"help": "float16 autocast on GPU"})
    num_workers: int = field(default=-1, metadata={"help": "DataLoader workers for file-backed data sets (-1: automatic)"})


# fields that change speed, never the features: kept out of the cache key
_RUNTIME_FIELDS = ("batch_size", "num_workers")


class TorchEncoder(Encoder):
    """Base of simclr / mocov2 (ContrastiveNet) and clip. Subclasses set `arch`, `head_dims` and
    `input_resize`/`input_crop`, or override `_build_net` / `preprocess`."""

    arch: str = "resnet18_cifar"
    head_dims: list[int] = [512, 512, 128]
    input_resize: int | None = None       # eval resize (shorter side) for file-backed / large images
    input_crop: int | None = None

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.results_root: Path | None = None
        self._weights_file: Path | None = None
        self._net: nn.Module | None = None

    @property
    def name(self) -> str:
        return getattr(type(self), "registry_name", type(self).__name__.lower())

    # weights ------------------------------------------------------------------------------
    def use_results_root(self, root: str | os.PathLike) -> None:
        self.results_root = Path(root)

    def resolve_weights(self, dataset: Dataset) -> Path:
        """The weights file to use: --encoder-weights, else the default location; UserError if absent."""
        if self.config.weights:
            path = Path(self.config.weights).expanduser()
            if not path.is_file():
                raise UserError(f"Encoder weights {path} (given with --encoder-weights) do not exist.")
            return path
        path = default_weights_path(self.results_root or default_results_root(), dataset, self.name)
        if not path.is_file():
            raise UserError(
                f"Encoder {self.name!r} has no weights for data set {dataset.name!r}: nothing at {path} and no "
                f"--encoder-weights given. Train them with `python cli.py pretrain --encoder {self.name} --dataset "
                f"{dataset.name}` (same --results-root), or pass --encoder-weights PATH with a checkpoint "
                f"({self.weights_hint}).")
        return path

    weights_hint = "ours, CLD or SCAN-SimCLR ResNet-18 for CIFAR"

    def weights_digest(self) -> str | None:
        path = self._weights_file or (Path(self.config.weights).expanduser() if self.config.weights else None)
        return cached_file_digest(path) if path is not None and path.is_file() else None

    def identity(self) -> dict:
        identity = super().identity()
        identity["config"] = {k: v for k, v in identity["config"].items() if k not in _RUNTIME_FIELDS}
        return identity

    def check(self, dataset: Dataset) -> None:
        """Find and load the weights now (a mismatch is reported before any extraction)."""
        if self.config.output not in ("projection", "backbone"):
            raise UserError(f"Encoder {self.name!r}: output must be 'projection' or 'backbone', "
                            f"got {self.config.output!r}.")
        self.preprocess(dataset)  # validates the normalisation name
        path = self.resolve_weights(dataset)
        if self._net is None or path != self._weights_file:
            self._net = self._build_net(path)
            self._weights_file = path

    def _build_net(self, path: Path) -> nn.Module:
        mapped: MappedWeights = map_state_dict(load_file(path))
        net = ContrastiveNet(self.arch, mapped.head_dims, mapped.head_relu)
        load_into(net, mapped, f"{self.name}'s {self.arch} backbone", path)
        return net

    def net(self, dataset: Dataset | None = None) -> nn.Module:
        if self._net is None:
            if dataset is None and not self.config.weights:
                raise UserError(f"Encoder {self.name!r} needs weights: call check(dataset) first or set weights.")
            if dataset is not None:
                self.check(dataset)
            else:
                self._weights_file = Path(self.config.weights).expanduser()
                self._net = self._build_net(self._weights_file)
        return self._net

    # modules ------------------------------------------------------------------------------
    def build_module(self, device: str = "cpu", output: str | None = None) -> tuple[nn.Module, int]:
        """(module, feature_dim): a fresh trainable copy mapping normalised image tensors (the
        output of `preprocess(dataset)`) to features. output "backbone" (default for fine-tuning)
        gives the pooled ResNet features; "projection" the normalised projection."""
        import copy

        net = self.net()
        output = output or "backbone"
        if output == "backbone":
            module, dim = copy.deepcopy(net.backbone), net.feature_dim
        elif output == "projection":
            module, dim = copy.deepcopy(net), net.projection_dim
        else:
            raise UserError(f"build_module output must be 'backbone' or 'projection', got {output!r}.")
        return module.to(device), dim

    def preprocess(self, dataset: Dataset) -> Preprocess:
        """The eval transform: the data set's (or the configured) normalisation; resize + centre crop
        for file-backed splits (whose images differ in size) or when the encoder fixes its input."""
        name = self.config.normalisation
        if name == "dataset":
            mean, std = dataset.mean, dataset.std
        elif name in NORMALISATIONS:
            mean, std = NORMALISATIONS[name]
        else:
            raise UserError(f"Encoder {self.name!r}: normalisation must be 'dataset', "
                            f"{', '.join(repr(n) for n in NORMALISATIONS)}; got {name!r}.")
        lazy = dataset.train.array is None
        crop = self.input_crop or (dataset.image_size if lazy else None)
        resize = self.input_resize or (dataset.image_size if lazy else None)
        return Preprocess(mean, std, resize=resize, crop=crop)

    def feature_module(self, dataset: Dataset) -> nn.Module:
        net = self.net(dataset)
        return net if self.config.output == "projection" else net.backbone

    def encode(self, dataset: Dataset, device: str = "cpu") -> FeatureSet:
        module = self.feature_module(dataset)
        preprocess = self.preprocess(dataset)
        run = dict(device=device, batch_size=self.config.batch_size, amp=self.config.amp,
                   num_workers=self.config.num_workers)
        train = extract_features(module, dataset.train, preprocess, desc=f"{self.name} train", **run)
        test = (extract_features(module, dataset.test, preprocess, desc=f"{self.name} test", **run)
                if dataset.test is not None else None)
        if not np.isfinite(train).all():
            raise RuntimeError(f"{self.name} produced non-finite features (broken weights or AMP overflow).")
        return FeatureSet(train=l2_normalise(train), test=l2_normalise(test) if test is not None else None)
