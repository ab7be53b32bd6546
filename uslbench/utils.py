"""Small shared helpers: canonical hashing, atomic writes, digests, timing."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import numbers
import os
import sys
import tempfile
import threading
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


def record_file_digest(path: str | os.PathLike) -> None:
    """Write ``<path>.sha256`` with the file's sha256 (after the file itself is complete): derived
    caches next to the features (k-NN graphs, densities) are then checked like the caches."""
    path = Path(path)
    atomic_write_bytes(path.with_name(path.name + ".sha256"), (file_sha256(path) + "\n").encode())


def file_digest_ok(path: str | os.PathLike) -> bool:
    """True when ``<path>`` exists and matches the sha256 recorded by `record_file_digest`; a missing
    or different digest means the derived cache is recomputed (a flipped byte is never used)."""
    path = Path(path)
    sidecar = path.with_name(path.name + ".sha256")
    try:
        return path.is_file() and sidecar.read_text().strip() == file_sha256(path)
    except OSError:
        return False


def array_digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(str(array.dtype).encode() + str(array.shape).encode())
    h.update(memoryview(array).cast("B"))
    return h.hexdigest()


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask. Linux shows it in /proc/self/status; elsewhere os.umask() is the only way
    to read it, and it sets it while doing so (hence the lock)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _atomic(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename it into place. mkstemp makes
    the temporary file owner-only (0600); it gets the mode a plain open() would give (0666 minus the
    umask) so that colleagues sharing a results root can read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
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
    """Progress bars only on a terminal: none when stderr is not one (job logs, pipes, files; they
    get plain lines where a phase writes any), under CI=true or under USLBENCH_QUIET=1 (issue 12
    item 15). Read at each call, so a redirected stderr counts."""
    if os.environ.get("CI", "").lower() in ("1", "true") or os.environ.get("USLBENCH_QUIET") == "1":
        return True
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stderr, or a closed or replaced one
        return True


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
