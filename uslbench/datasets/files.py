"""Shared pieces for data sets read from disk: data roots, missing-file messages, image decoding,
statistics and content identities (never paths)."""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from ..errors import UserError

DATA_ROOT_ENV = "USLBENCH_DATA"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    """The --data-root folder, else $USLBENCH_DATA, else ./data (relative to the working folder)."""
    chosen = data_root if data_root is not None else os.environ.get(DATA_ROOT_ENV) or "data"
    return Path(chosen).expanduser()


def missing_files_error(dataset: str, root: Path, expected: Sequence[str], missing: Sequence[str],
                        download_hint: str | None) -> UserError:
    """One message naming what was looked for, where, what is absent and how to get it."""
    listing = ", ".join(expected)
    absent = ", ".join(missing[:8]) + (f" (and {len(missing) - 8} more)" if len(missing) > 8 else "")
    text = (f"Data set {dataset!r}: files missing under {root}. Expected {listing}; missing {absent}. "
            f"Pass --data-root with the folder that holds them")
    text += f", or {download_hint}." if download_hint else "."
    return UserError(text)


def digest_strings(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def file_list_identity(root: Path, files: Sequence[Path], sizes: Sequence[int] | None = None) -> dict:
    """Content identity of a big tree without reading it: relative names and byte sizes (pass the
    sizes when a directory scan already has them, to avoid a second stat per file)."""
    sizes = sizes if sizes is not None else [p.stat().st_size for p in files]
    entries = [f"{p.relative_to(root).as_posix()}:{size}" for p, size in zip(files, sizes)]
    return {"files": len(entries), "names_and_sizes_sha256": digest_strings(entries)}


def channel_stats(array: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units of a uint8 (N, H, W, C) array (float64 sums)."""
    channels = array.shape[-1]
    flat = array.reshape(-1, channels)
    mean = flat.mean(axis=0, dtype=np.float64) / 255.0
    std = np.sqrt(np.maximum((flat.astype(np.float64) ** 2).mean(axis=0) / 255.0 ** 2 - mean ** 2, 0.0))
    std = np.where(std < 1e-6, 1.0, std)
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


def to_uint8_images(array: np.ndarray, what: str) -> np.ndarray:
    """Accept (N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3}; uint8 or float in [0, 1]
    / [0, 255]; return uint8 (N, H, W, C)."""
    array = np.asarray(array)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise UserError(f"{what} must have shape (N, H, W), (N, H, W, C) or (N, C, H, W); got {array.shape}.")
    if array.shape[-1] not in (1, 3) and array.shape[1] in (1, 3):
        array = np.transpose(array, (0, 2, 3, 1))
    if array.shape[-1] not in (1, 3):
        raise UserError(f"{what} must have 1 or 3 channels; got shape {array.shape}.")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.number):
        raise UserError(f"{what} must hold numbers; got dtype {array.dtype}.")
    if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 255 or np.isnan(array).any()):
        raise UserError(f"{what} has values outside [0, 255] (or NaN); store uint8 pixels or floats in [0, 1].")
    scale = 255.0 if array.size and float(array.max()) <= 1.0 else 1.0
    return np.ascontiguousarray(np.clip(np.rint(array.astype(np.float64) * scale), 0, 255).astype(np.uint8))


def is_hidden(name: str | os.PathLike) -> bool:
    """Hidden entries (a name starting with '.': .ipynb_checkpoints, .DS_Store, macOS '._x.png'
    resource forks, .git) are never data: every reader of folders skips them, the same way."""
    return Path(name).name.startswith(".")


def visible_dirs(folder: Path) -> list[Path]:
    """Sub-folders of `folder` that are not hidden, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p))


def list_images(folder: Path) -> list[Path]:
    """Image files of `folder` (by extension, hidden files skipped), sorted by name."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not is_hidden(p) and p.suffix.lower() in IMAGE_EXTENSIONS)


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode one image file as RGB; a clear error names the file when it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"Cannot read image {path}: {exc}. Remove or replace the file.") from exc


def decode_images(paths: Sequence[Path], size: int | None, what: str) -> tuple[np.ndarray, list[int], dict]:
    """Read images into one uint8 array. Unreadable files are SKIPPED with a warning that lists them
    (returned positions say which files were kept). Mixed modes become RGB (greyscale stays one
    channel only when every image is greyscale); mixed sizes are resized to `size` or, when it is
    None, to the most common size, with a warning."""
    images, kept, unreadable, modes, sizes = [], [], [], {}, {}
    for position, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image.load()
                modes[image.mode] = modes.get(image.mode, 0) + 1
                sizes[image.size] = sizes.get(image.size, 0) + 1
                images.append(image.copy())
                kept.append(position)
        except (OSError, ValueError, Image.DecompressionBombError):
            unreadable.append(str(path))
    if unreadable:
        shown = ", ".join(unreadable[:10]) + (f" and {len(unreadable) - 10} more" if len(unreadable) > 10 else "")
        warnings.warn(f"{what}: skipped {len(unreadable)} unreadable image file(s): {shown}", stacklevel=2)
    if not images:
        raise UserError(f"{what}: no readable images.")
    grey = set(modes) <= {"L", "1"}
    if len(modes) > 1:
        warnings.warn(f"{what}: images have mixed modes {dict(sorted(modes.items()))}; all converted to "
                      f"{'greyscale' if grey else 'RGB'}.", stacklevel=2)
    target = (size, size) if size else max(sizes.items(), key=lambda kv: (kv[1], kv[0]))[0]
    if len(sizes) > 1 or (size and target not in sizes):
        resized = sum(n for s, n in sizes.items() if s != target)
        warnings.warn(f"{what}: images have mixed sizes ({len(sizes)} distinct); {resized} resized to "
                      f"{target[0]}x{target[1]}.", stacklevel=2)
    mode = "L" if grey else "RGB"
    array = np.stack([np.asarray(_fit(image.convert(mode), target), dtype=np.uint8) for image in images])
    if array.ndim == 3:
        array = array[..., None]
    info = {"unreadable": unreadable, "modes": modes, "size": list(target)}
    return array, kept, info


def _fit(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    return image if image.size == target else image.resize(target, Image.BILINEAR)


class FileLoader:
    """Per-index lazy loader of image files (picklable, so DataLoader workers can use it); `size`
    resizes every image to size x size."""

    def __init__(self, files: Sequence[Path], size: int | None = None) -> None:
        self.files = list(files)
        self.size = size

    def __call__(self, index: int) -> Image.Image:
        image = open_rgb(self.files[index])
        return image.resize((self.size, self.size), Image.BILINEAR) if self.size else image
