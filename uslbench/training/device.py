"""Where a trainer's tensors live and in which precision its steps run: the decisions, kept apart
from the CUDA calls so that every decision is tested on the CPU.

- `resolve_precision`: mixed precision and channels-last. On CUDA both default on: bf16 autocast
  where the GPU supports it (Ampere and later), otherwise fp16 autocast with a
  `torch.amp.GradScaler` (loss scaling; its state goes into the loop's checkpoints). On the CPU
  both stay off (the CPU results stay bit for bit those of float32 training); asking for them
  there is a `UserError`.
- `place_pool`: whether a split's uint8 images are copied to the GPU whole (``"device"``: when
  they take at most `DEVICE_SHARE` of the GPU's free memory), kept in host memory and sent batch
  by batch (``"host"``: each step's images are gathered on the host, pinned and sent with
  ``non_blocking=True``), or decoded from their files batch by batch by DataLoader workers
  (``"files"``: every file-backed split, which may not even fit in host memory).
- `to_device`: one host batch to the device (pinned first on CUDA, so the copy is asynchronous).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ContextManager

import torch

from ..errors import UserError

# A split goes to the GPU whole only when it takes at most this share of the GPU's free memory
# (the rest is for the network's activations, the optimiser and the augmentation's temporaries).
DEVICE_SHARE = 0.25
PLACEMENTS = ("device", "host", "files")


def is_cuda(device: Any) -> bool:
    """True for "cuda", "cuda:N" and torch.device("cuda", N) (False for any other word, "auto" too)."""
    try:
        return torch.device(device).type == "cuda"
    except (RuntimeError, TypeError):
        return False


# ---------------------------------------------------------------------------------------------
# precision


@dataclass(frozen=True)
class Precision:
    """How a trainer's forward passes run on its device.

    Attributes
    ----------
    device : str
        The torch device.
    dtype : torch.dtype or None
        The autocast dtype (torch.bfloat16 or torch.float16), None for float32 (no autocast).
    channels_last : bool
        Models and image batches in channels-last memory format.
    """

    device: str
    dtype: torch.dtype | None = None
    channels_last: bool = False

    @property
    def name(self) -> str:
        """"bf16", "fp16" or "fp32" (for records and logs)."""
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, "fp32")

    @property
    def needs_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has float32's exponent range."""
        return self.dtype == torch.float16

    def autocast(self) -> ContextManager:
        """The autocast context of a training step or an evaluation (nothing for float32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.device).type, dtype=self.dtype)

    def scaler(self) -> "torch.amp.GradScaler | None":
        """A fresh `torch.amp.GradScaler` for fp16, None otherwise (the loop then steps plainly)."""
        return torch.amp.GradScaler(torch.device(self.device).type) if self.needs_scaler else None

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """An image batch (B, C, H, W) in the model's memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def model(self, module: torch.nn.Module) -> torch.nn.Module:
        """Put `module`'s 4-D weights in channels-last format when asked (in place; returns it)."""
        return module.to(memory_format=torch.channels_last) if self.channels_last else module


def bf16_supported(device: Any) -> bool:
    """Whether the CUDA device computes in bf16 natively (compute capability 8.0 and later)."""
    return bool(torch.cuda.is_bf16_supported(including_emulation=False)) if is_cuda(device) else False


def resolve_precision(device: Any, amp: bool | None = None, channels_last: bool | None = None,
                      bf16: bool | None = None) -> Precision:
    """The precision of a trainer on `device`.

    Parameters
    ----------
    device : str or torch.device
        The training device.
    amp, channels_last : bool or None
        True / False force the option; None (the default) means on with CUDA, off on the CPU.
    bf16 : bool, optional
        Whether the GPU supports bf16 (default: asks torch); tests pass it to check the fp16 path.

    Returns
    -------
    Precision
        bf16 autocast where supported, else fp16 (with loss scaling, see `Precision.needs_scaler`),
        or float32; channels-last or not.

    Raises
    ------
    UserError
        amp or channels_last set to True for a device that is not a CUDA GPU.
    """
    device = str(device)
    cuda = is_cuda(device)
    if not cuda:
        for option, value in (("amp", amp), ("channels_last", channels_last)):
            if value:
                raise UserError(f"Config {option}=true needs a CUDA GPU, but this run's device is {device!r}. "
                                f"Drop {option}=true or run with --device cuda on a GPU machine.")
        return Precision(device)
    use_amp = True if amp is None else bool(amp)
    dtype = None
    if use_amp:
        dtype = torch.bfloat16 if (bf16_supported(device) if bf16 is None else bf16) else torch.float16
    return Precision(device, dtype, True if channels_last is None else bool(channels_last))


# ---------------------------------------------------------------------------------------------
# placement


def free_device_bytes(device: Any) -> int | None:
    """Free memory of a CUDA device in bytes (None for any other device)."""
    if not is_cuda(device):
        return None
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


def place_pool(nbytes: int, device: Any, file_backed: bool, free_bytes: int | None = None,
               share: float = DEVICE_SHARE) -> str:
    """Where a split's images are kept while a trainer reads them.

    Parameters
    ----------
    nbytes : int
        Size of the split's decoded uint8 images.
    device : str or torch.device
        The training device.
    file_backed : bool
        The split is read from image files (no array in memory).
    free_bytes : int, optional
        The device's free memory; needed for a CUDA device (see `free_device_bytes`).
    share : float
        Largest share of the free memory the split may take on the device.

    Returns
    -------
    str
        ``"files"`` for a file-backed split (decoded per batch by DataLoader workers); on a
        non-CUDA device ``"device"`` (host memory is the device's memory); on CUDA ``"device"``
        when ``nbytes <= share * free_bytes``, else ``"host"`` (gathered per batch on the host and
        sent asynchronously).
    """
    if file_backed:
        return "files"
    if not is_cuda(device):
        return "device"
    if free_bytes is not None and nbytes <= share * free_bytes:
        return "device"
    return "host"


def to_device(batch: torch.Tensor, device: Any) -> torch.Tensor:
    """A host tensor to `device`: on CUDA pinned first (unless already) and copied with
    ``non_blocking=True``, so the copy overlaps the GPU's work; elsewhere a plain ``.to``."""
    if batch.device == torch.device(device):
        return batch
    if is_cuda(device) and batch.device.type == "cpu":
        if not batch.is_pinned():
            batch = batch.pin_memory()
        return batch.to(device, non_blocking=True)
    return batch.to(device)
