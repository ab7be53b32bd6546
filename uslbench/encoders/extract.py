"""Batched, deterministic feature extraction: in-memory arrays are converted whole batches at a
time; file-backed splits go through a DataLoader with workers. GPU: AMP (float16 autocast) and
channels-last. The output is float32 whatever the compute precision."""
from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..datasets.base import ImageSplit
from ..training.images import SplitImages, default_workers
from ..utils import progress_disabled


class Preprocess:
    """Eval-time preprocessing: optional resize (shorter side) + centre crop, then scale to [0, 1]
    and normalise with mean/std. Greyscale images are repeated to 3 channels. A custom PIL
    transform (CLIP's own) replaces all of it when given."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], resize: int | None = None,
                 crop: int | None = None, pil_transform: Callable[[Image.Image], torch.Tensor] | None = None) -> None:
        self.mean = tuple(float(m) for m in (mean if len(mean) == 3 else tuple(mean) * 3))
        self.std = tuple(float(s) for s in (std if len(std) == 3 else tuple(std) * 3))
        self.resize, self.crop, self.pil_transform = resize, crop, pil_transform

    def describe(self) -> dict:
        return {"mean": self.mean, "std": self.std, "resize": self.resize, "crop": self.crop,
                "custom": self.pil_transform is not None}

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self.pil_transform is not None:
            return self.pil_transform(image)
        from torchvision.transforms import functional as TF

        image = image.convert("RGB")
        if self.resize:
            image = TF.resize(image, self.resize, interpolation=TF.InterpolationMode.BILINEAR)
        if self.crop:
            image = TF.center_crop(image, [self.crop, self.crop])
        return self.normalise(TF.pil_to_tensor(image)[None])[0]

    def normalise(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) uint8 -> float32 normalised, C repeated to 3 when it is 1."""
        x = batch_uint8.float().div_(255.0)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def array_batch(self, pixels: np.ndarray) -> torch.Tensor | None:
        """Fast path for in-memory uint8 (B, H, W, C) when no resizing is asked for; None otherwise."""
        if self.pil_transform is not None or self.resize or self.crop:
            return None
        return self.normalise(torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2))




def batches(split: ImageSplit, preprocess: Preprocess, batch_size: int, num_workers: int | None = None):
    """Yield normalised (B, 3, H, W) float tensors over the split, in index order."""
    if split.array is not None and preprocess.array_batch(split.array[:1]) is not None:
        for start in range(0, len(split), batch_size):
            yield preprocess.array_batch(split.array[start:start + batch_size])
        return
    workers = default_workers(split) if num_workers is None or num_workers < 0 else num_workers
    loader = torch.utils.data.DataLoader(SplitImages(split, preprocess), batch_size=batch_size, shuffle=False,
                                         num_workers=workers, pin_memory=torch.cuda.is_available())
    yield from loader


@torch.inference_mode()
def extract_features(module: torch.nn.Module, split: ImageSplit, preprocess: Preprocess, device: str = "cpu",
                     batch_size: int = 256, amp: bool = True, num_workers: int | None = None,
                     desc: str = "features") -> np.ndarray:
    """Run `module` over every image of `split`; returns float32 (N, d) in index order."""
    from tqdm.auto import tqdm

    cuda = str(device).startswith("cuda")
    module = module.eval().to(device)
    if cuda:
        module = module.to(memory_format=torch.channels_last)
    outputs: list[np.ndarray] = []
    # cuDNN autotuning may pick different kernels run to run; fixed kernels keep features identical
    with _deterministic_cudnn(cuda), tqdm(total=len(split), desc=desc, unit="img", disable=progress_disabled(), leave=False) as bar:
        for batch in batches(split, preprocess, batch_size, num_workers):
            batch = batch.to(device, non_blocking=True)
            if cuda:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=cuda and amp):
                features = module(batch)
            outputs.append(features.float().cpu().numpy())
            bar.update(len(batch))
    return np.concatenate(outputs).astype(np.float32, copy=False)


@contextlib.contextmanager
def _deterministic_cudnn(enabled: bool):
    if not enabled:
        yield
        return
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved
