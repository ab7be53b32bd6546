"""The one image loader: a data set split's images as uint8 tensors, whole or by index.

Every path that turns a split's images into tensors goes through here: the image learners and
USL-T's backbone mode (`ImagePool`: batches by index or in order, on the training device), SimCLR
pretraining (two views per image through a DataLoader) and the encoders' feature extraction
(`SplitImages` with their eval transform). In-memory splits (`split.array`, uint8 (N, H, W, C)) are
used as they are; file-backed splits are decoded with PIL, converted to the data set's channel
count ("L" for 1, "RGB" otherwise) and resized to the data set's `image_size` when they differ.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from ..datasets.base import ImageSplit
from .device import free_device_bytes, is_cuda, place_pool, to_device


def pil_mode(channels: int) -> str:
    """PIL mode of a data set with `channels` channels: "L" for 1, "RGB" otherwise."""
    return "L" if channels == 1 else "RGB"


def image_array(image: Image.Image, image_size: int, channels: int) -> np.ndarray:
    """One PIL image -> uint8 (image_size, image_size, channels), converted and resized if needed."""
    image = image.convert(pil_mode(channels))
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size))
    return np.asarray(image, dtype=np.uint8).reshape(image_size, image_size, channels)


class ToTensor:
    """PIL image -> uint8 (H, W, C) tensor at the data set's size and channel count (picklable, so
    DataLoader workers can use it). A batch of them, stacked and permuted to (B, C, H, W), has the
    memory layout of `split_tensor`'s (channels last in memory), so the network computes the same
    bits on a file-backed split as on the same images held in memory."""

    def __init__(self, image_size: int, channels: int) -> None:
        self.image_size, self.channels = int(image_size), int(channels)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(image_array(image, self.image_size, self.channels).copy())


def _nchw(batch_hwc: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, C) -> (B, C, H, W) view, as `split_tensor` lays it out."""
    return batch_hwc.permute(0, 3, 1, 2)


def split_tensor(split: ImageSplit, image_size: int, channels: int) -> torch.Tensor:
    """All images of a split as one uint8 (N, C, H, W) tensor (file-backed splits are read once).

    Parameters
    ----------
    split : ImageSplit
        In-memory (`array`, uint8 (N, H, W, C) or (N, H, W)) or file-backed.
    image_size, channels : int
        The data set's side in pixels and channel count (used for file-backed splits).

    Returns
    -------
    torch.Tensor
        uint8 (N, C, H, W), contiguous, on the CPU.
    """
    if split.array is not None:
        array = split.array
    else:
        array = np.stack([image_array(split.image(i), image_size, channels) for i in range(len(split))])
    if array.ndim == 3:
        array = array[..., None]
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).contiguous()


class SplitImages(torch.utils.data.Dataset):
    """A split's images by index for a DataLoader: ``transform(split.image(i).convert(mode))``.

    `mode` None keeps the image as decoded (the transform converts it itself).
    """

    def __init__(self, split: ImageSplit, transform: Callable[[Image.Image], Any], mode: str | None = None) -> None:
        self.split, self.transform, self.mode = split, transform, mode

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> Any:
        image = self.split.image(int(index))
        if self.mode is not None:
            image = image.convert(self.mode)
        return self.transform(image)


def default_workers(split: ImageSplit) -> int:
    """DataLoader workers for a split: decoding files is the bottleneck of file-backed splits
    (up to 8 workers, one core left to the main process); arrays need none."""
    if split.array is not None:
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))


TAKE_CHUNK = 64  # images per worker task when `ImagePool.take` decodes many files at once


class ImagePool:
    """A split's images as uint8 (B, C, H, W) batches on the training device, by index or in order.

    Where the images are kept follows `device.place_pool`: the whole split on the device
    (``"device"``; always on the CPU), in host memory with each batch gathered there and sent
    asynchronously (``"host"``: a split larger than `device.DEVICE_SHARE` of the GPU's free memory),
    or in its files, decoded batch by batch by DataLoader workers (``"files"``). No placement ever
    copies a file-backed split, or one that does not fit, to the GPU at once.

    Parameters
    ----------
    split : ImageSplit
        In-memory or file-backed.
    image_size, channels : int
        The data set's side in pixels and channel count.
    device : str or torch.device
        Where batches are delivered.
    placement : str, optional
        Force ``"device"``, ``"host"`` or ``"files"`` (tests; ``"files"`` only for file-backed splits);
        default: `device.place_pool` with the device's free memory.
    workers : int, optional
        DataLoader workers for ``"files"`` (default `default_workers`).
    """

    def __init__(self, split: ImageSplit, image_size: int, channels: int, device: Any = "cpu",
                 placement: str | None = None, workers: int | None = None) -> None:
        self.split, self.device = split, torch.device(device)
        self.image_size, self.channels = int(image_size), int(channels)
        self.workers = default_workers(split) if workers is None or workers < 0 else int(workers)
        file_backed = split.array is None
        if placement is None:
            nbytes = len(split) * self.channels * self.image_size ** 2
            placement = place_pool(nbytes, self.device, file_backed, free_device_bytes(self.device))
        if placement == "files" and not file_backed:
            raise ValueError("placement 'files' needs a file-backed split")
        self.placement = placement
        self.tensor: torch.Tensor | None = None
        if placement != "files":
            tensor = split_tensor(split, image_size, channels)
            self.tensor = tensor.to(self.device) if placement == "device" else tensor

    def __len__(self) -> int:
        return len(self.split)

    def take(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """The images at `indices` (any order, repeats allowed), uint8 (B, C, H, W) on the device."""
        if self.tensor is not None:
            if self.placement == "device":
                return self.tensor[torch.as_tensor(indices, dtype=torch.int64).to(self.device, non_blocking=True)]
            return to_device(self.tensor[torch.as_tensor(indices, dtype=torch.int64).cpu()], self.device)
        indices = _as_list(indices)
        if self.workers > 0 and len(indices) > 2 * TAKE_CHUNK:  # decoded in parallel, a chunk per worker
            return torch.cat(list(self.batches(indices[s:s + TAKE_CHUNK] for s in range(0, len(indices), TAKE_CHUNK))))
        images = SplitImages(self.split, ToTensor(self.image_size, self.channels))
        return to_device(_nchw(torch.stack([images[i] for i in indices])), self.device)

    def batches(self, index_lists: Iterable[Sequence[int]]) -> Iterator[torch.Tensor]:
        """`take` of each list in turn; file-backed splits decode ahead in the DataLoader workers
        (the lists are read lazily, a few batches ahead of the one being used)."""
        if self.tensor is not None:
            for indices in index_lists:
                yield self.take(indices)
            return
        loader = torch.utils.data.DataLoader(
            SplitImages(self.split, ToTensor(self.image_size, self.channels)),
            batch_sampler=(_as_list(indices) for indices in index_lists), num_workers=self.workers,
            pin_memory=is_cuda(self.device))
        for batch in loader:
            yield to_device(_nchw(batch), self.device)

    def ordered(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The whole split in index order, `batch_size` images at a time (evaluation)."""
        n = len(self)
        if self.tensor is not None:
            for start in range(0, n, batch_size):
                part = self.tensor[start:start + batch_size]
                yield part if self.placement == "device" else to_device(part, self.device)
            return
        yield from self.batches(list(range(start, min(n, start + batch_size))) for start in range(0, n, batch_size))


def _as_list(indices: Sequence[int] | np.ndarray | torch.Tensor) -> list[int]:
    if isinstance(indices, torch.Tensor):
        return indices.tolist()
    return [int(i) for i in indices]
