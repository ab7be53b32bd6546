"""The torch side of the `timm` encoder (`timm_encoder.TimmEncoder`): the feature module with its
input pipeline, the ONNX Runtime runner, the file-backed batches and the thread scope of a forward
pass. Kept apart from timm_encoder.py so that registering and describing the encoder imports no
torch; the encoder imports this module when it builds its network or encodes.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..datasets.base import ImageSplit


class TimmFeatures(nn.Module):
    """timm model + its input pipeline: (B, 3, H, W) float images in [0, 1], any H, W ->
    (B, num_features) pooled pre-classifier features. Images are resized to `image_size` (clamped
    to [0, 1] as an 8-bit resize would be) and normalised with mean/std inside the module, so the
    same module serves extraction and fine-tuning (`build_module`)."""

    def __init__(self, model: nn.Module, image_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 interpolation: str = "bicubic") -> None:
        super().__init__()
        self.model = model
        self.image_size = int(image_size)
        self.interpolation = interpolation  # one of timm_encoder.INTERPOLATIONS (data_config checks it)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def feature_dim(self) -> int:
        return int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == (self.image_size, self.image_size):
            return x
        down = min(x.shape[-2:]) > self.image_size
        align = None if self.interpolation == "nearest" else False
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode=self.interpolation,
                          align_corners=align, antialias=down and self.interpolation != "nearest")
        return x.clamp_(0.0, 1.0)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images of any size -> the network's normalised input."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (self.resize(x) - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(self.prepare(x)), pre_logits=True)


class PooledFeatures(nn.Module):
    """The network part alone: normalised input -> pooled pre-classifier features (what is exported
    to ONNX)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def onnx_runner(module: TimmFeatures, threads: int):
    """Export the network part to ONNX (torch.onnx, dynamic batch axis) and return a function
    normalised-input tensor -> feature tensor running it in ONNX Runtime on the CPU.

    Why: on the 2-core CPU this project runs on, ONNX Runtime's fused kernels encoded
    EfficientNet-Lite0 at 224 px about 2x faster than PyTorch eager (channels-last, best batch
    size) and torch.compile, with the same features to 1e-5 (scripts/bench_encode.py)."""
    import io
    import warnings

    import onnxruntime as ort

    size = module.image_size
    example = torch.zeros(2, 3, size, size)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(PooledFeatures(module.model).eval(), (example,), dynamo=True, verbose=False,
                                    input_names=["x"], output_names=["features"],
                                    dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1 << 16)}})
        data = program.model_proto.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads) if threads and threads > 0 else torch.get_num_threads()
    options.inter_op_num_threads = 1
    # no busy-waiting between kernels: on a shared machine spinning threads stall each other
    # (measured: 2 threads 26 -> 36 img/s on 2 busy cores; 1 thread 41 img/s)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"x": x.contiguous().numpy()})[0])

    return run


class TransformedSplit(torch.utils.data.Dataset):
    """A file-backed split read through a timm eval transform (decoded in DataLoader workers)."""

    def __init__(self, split: ImageSplit, transform) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.split.image(index).convert("RGB"))


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's CPU threads set to `n` inside the block (0 or negative: left as they are)."""
    if not n or n < 1:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(saved)
