"""Small shared helpers: canonical hashing, atomic writes, digests, timing."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import numbers
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import UserError


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def canonical_json(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))


def content_key(obj: Any, length: int = 16) -> str:
    """sha256 of canonical JSON (sorted keys); the cache and run keys are made of these."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def seed_from(*parts: Any) -> int:
    """A 31-bit seed derived from arguments by hashing (never Python's salted hash())."""
    return int(hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def check_budget(budget: Any, pool_size: int) -> int:
    """The budget m as an int: a positive integer (or its decimal string) of at most `pool_size`.

    Raises
    ------
    UserError
        For anything else, saying what a budget is.
    """
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        if isinstance(budget, str) and budget.strip().lstrip("+").isdigit():
            budget = int(budget)
        else:
            raise UserError(f"Budget must be a positive integer (number of images to label), got {budget!r}.")
    budget = int(budget)
    if budget < 1:
        raise UserError(f"Budget must be a positive integer (number of images to label), got {budget}.")
    if budget > pool_size:
        raise UserError(f"Budget {budget} exceeds the unlabeled pool of {pool_size} images; "
                        f"choose a budget of at most {pool_size}.")
    return budget


def l2_normalise(features: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit Euclidean length, as float32 (N, d); rows of norm below `eps` are
    divided by `eps` (a zero row stays zero)."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, eps)).astype(np.float32)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def array_digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(str(array.dtype).encode() + str(array.shape).encode())
    h.update(memoryview(array).cast("B"))
    return h.hexdigest()


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    _atomic(Path(path), lambda f: f.write(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(path, text.encode())


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    _atomic(Path(path), lambda f: np.save(f, array, allow_pickle=False))


class Timer:
    """Collects named phase durations: `with timer("kmeans"): ...`; `timer.seconds` is a dict."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def progress_disabled() -> bool:
    """Progress bars are quiet under CI=true or USLBENCH_QUIET=1."""
    return os.environ.get("CI", "").lower() in ("1", "true") or os.environ.get("USLBENCH_QUIET") == "1"


def writable_root(path: str | os.PathLike) -> Path:
    """Return the path if it is (or can be created) writable; raise UserError otherwise."""
    from .errors import UserError

    path = Path(path).expanduser().absolute()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UserError(f"Results root {path} is not usable: {probe} exists and is not a folder. "
                        "Pass --results-root with a writable folder.")
    try:  # os.access says yes to root even on read-only mounts: really try
        fd, tmp = tempfile.mkstemp(prefix=".uslbench-probe-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UserError(f"Results root {path} is not writable ({exc.strerror} in {probe}). "
                        "Pass --results-root with a folder you can write to.") from None
    return path
