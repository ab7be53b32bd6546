"""Device resolution: `auto`, `cpu`, `cuda` or `cuda:N` to a device string torch accepts."""
from __future__ import annotations

import shutil
from pathlib import Path

from .errors import UserError


def resolve_device(device: str) -> str:
    """`auto` -> "cuda" when torch sees a GPU, else "cpu"; "cuda[:N]" is checked to be visible.

    Raises
    ------
    UserError
        For an unknown device word, or a CUDA device asked for where none is visible.
    """
    if device == "auto":
        try:
            import torch  # lazy: a CPU-only command never pays the torch import

            return "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            return "cpu"
    if device.startswith("cuda"):
        import torch  # lazy: as above

        if not torch.cuda.is_available():
            raise UserError(f"--device {device} was asked for, but no CUDA GPU is visible here; use --device cpu.")
    elif device != "cpu":
        raise UserError(f"Unknown device {device!r}; use cpu, cuda, cuda:N or auto.")
    return device


def resolve_job_device(device: str) -> str:
    """`auto` without a visible NVIDIA device is `cpu` without importing torch (seconds per job)."""
    if device == "auto" and shutil.which("nvidia-smi") is None and not Path("/dev/nvidia0").exists():
        return "cpu"
    return resolve_device(device)
