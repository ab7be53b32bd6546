"""Training checkpoints verified by a digest, written atomically, with the previous one kept.

A checkpoint `<name>` (e.g. ``train.ckpt.pt``) is written as a whole to a temporary file that is
then renamed into place (a kill never leaves half a file under the real name), and its sha256 is
recorded beside it in `<name>.sha256` (``sha256sum -c`` reads that file). Before a new checkpoint
replaces it, the current one becomes `<name>.prev` (with its digest), and the finished run removes it.

Reading: a checkpoint whose bytes do not match the recorded digest, or that torch cannot read
(truncated by a disk fault, or written by a killed older version without a digest), is reported
with its path and the reason, renamed to `<name>.bad` (`<name>.bad.1`, ... if taken) and the
previous checkpoint is tried; when none is good, training starts from scratch. A file without a
digest (written before digests existed) is accepted if torch reads it.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from ..utils import atomic_write_bytes

Warn = Callable[[str], None]


def stderr_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


class Checkpoint:
    """One resumable training state file plus its digest and its predecessor.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file, e.g. ``<run folder>/train.ckpt.pt``.
    warn : callable, optional
        Receives one line for each damaged file set aside (default: printed to stderr).
    """

    def __init__(self, path: str | os.PathLike, warn: Warn = stderr_warning) -> None:
        self.path = Path(path)
        self.previous = self.path.with_name(self.path.name + ".prev")
        self.warn = warn
        self.loaded_from: Path | None = None

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r})"

    def files(self) -> list[Path]:
        """Every file this checkpoint may have left (current, previous, digests, set-aside copies)."""
        return sorted(p for p in self.path.parent.glob(self.path.name + "*") if p.is_file())

    # writing ----------------------------------------------------------------------------------
    def save(self, state: dict[str, Any]) -> None:
        """Write `state` (torch.save) atomically with its digest; the current file becomes `.prev`."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        if self.path.exists():
            os.replace(self.path, self.previous)
            if _sidecar(self.path).exists():
                os.replace(_sidecar(self.path), _sidecar(self.previous))
            else:
                with contextlib.suppress(FileNotFoundError):
                    _sidecar(self.previous).unlink()
        atomic_write_bytes(self.path, data)
        atomic_write_bytes(_sidecar(self.path), f"{hashlib.sha256(data).hexdigest()}  {self.path.name}\n".encode())

    def discard_previous(self) -> None:
        """Remove `.prev` (and its digest): called once the run's final checkpoint is written."""
        for path in (self.previous, _sidecar(self.previous)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # reading ----------------------------------------------------------------------------------
    def load(self, map_location: Any = "cpu") -> dict[str, Any] | None:
        """The newest good state (current, else previous), or None when there is none.

        Damaged files are reported through `warn` (path and reason) and renamed to `.bad`.
        `loaded_from` tells which file was read.
        """
        self.loaded_from = None
        candidates = [self.path, self.previous]
        for position, candidate in enumerate(candidates):
            if not candidate.exists():
                continue
            try:
                state = self._read(candidate, map_location)
            except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is set aside, never trusted
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                moved = self._set_aside(candidate)
                later = [c for c in candidates[position + 1:] if c.exists()]
                then = (f"trying the previous checkpoint {later[0]}" if later
                        else "training starts again from the beginning")
                self.warn(f"training checkpoint {candidate} is damaged ({reason}); moved it to {moved}, {then}.")
                continue
            self.loaded_from = candidate
            return state
        return None

    @staticmethod
    def _read(path: Path, map_location: Any) -> dict[str, Any]:
        data = path.read_bytes()
        sidecar = _sidecar(path)
        if sidecar.exists():
            recorded = (sidecar.read_text().split() or [""])[0]
            actual = hashlib.sha256(data).hexdigest()
            if actual != recorded:
                raise ValueError(f"its sha256 {actual[:12]} differs from the recorded {recorded[:12]}; "
                                 f"{len(data)} bytes")
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)
        if not isinstance(state, dict):
            raise ValueError(f"it holds a {type(state).__name__}, not a training state")
        return state

    def _set_aside(self, path: Path) -> Path:
        target = path.with_name(path.name + ".bad")
        n = 0
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}.bad.{n}")
        os.replace(path, target)
        if _sidecar(path).exists():
            os.replace(_sidecar(path), _sidecar(target))
        return target
