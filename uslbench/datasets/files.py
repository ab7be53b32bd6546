"""Shared pieces for data sets read from disk: data roots, missing-file messages, image decoding,
statistics and content identities (never paths)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from .. import DATA_ROOT, DATA_ROOT_ENV
from ..errors import UserError, name_some, warn_data

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    """The --data-root folder, else $USLBENCH_DATA, else ./data (relative to the working folder)."""
    chosen = data_root if data_root is not None else os.environ.get(DATA_ROOT_ENV) or DATA_ROOT
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


def read_npz(path: Path, source: str) -> dict:
    """Every array of an .npz file (no pickled objects), for the `npz:` and `features:` sources.

    Raises
    ------
    UserError
        The file cannot be read as an .npz of plain arrays (the message names `source`).
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as exc:
        raise UserError(f"{source} is not a readable .npz file without pickled objects ({exc}).") from None


def list_images(folder: Path) -> list[Path]:
    """Image files of `folder` (by extension, hidden files skipped), sorted by name."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not is_hidden(p) and p.suffix.lower() in IMAGE_EXTENSIONS)


def open_rgb(path: str | os.PathLike, warn_alpha: bool = True) -> Image.Image:
    """Decode one image file as RGB; a clear error names the file when it cannot be read. An
    alpha channel is dropped (the returned image then has `alpha_dropped = True`), with a warning
    when `warn_alpha` (lazy loaders warn for their first such image only)."""
    try:
        with Image.open(path) as image:
            alpha = has_alpha(image)
            rgb = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"Cannot read image {path}: {exc}. Remove or replace the file.") from exc
    if alpha:
        rgb.alpha_dropped = True  # type: ignore[attr-defined]
        if warn_alpha:
            warn_data(f"{path}: image has an alpha channel; alpha dropped, colours kept as RGB "
                      "(further images of this folder with alpha are not listed)")
    return rgb


def has_alpha(image: Image.Image) -> bool:
    """True for images with an alpha channel or a transparent palette entry."""
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def decode_images(paths: Sequence[Path], size: int | None, what: str,
                  root: Path | None = None) -> tuple[np.ndarray, list[int], dict]:
    """Read images into one uint8 array. Unreadable files are SKIPPED (returned positions say which
    files were kept). Mixed modes become RGB (greyscale stays one channel only when every image
    is greyscale); an alpha channel is dropped (colours kept, transparency lost); mixed sizes
    are resized to `size` or, when it is None, to the most common size. Each of these is one
    warning line: what, how many, which files (the first few, relative to `root`), what was done."""
    images, kept, unreadable, modes, sizes = [], [], [], {}, {}
    image_modes, image_sizes, alpha = [], [], []
    for position, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image.load()
                modes[image.mode] = modes.get(image.mode, 0) + 1
                sizes[image.size] = sizes.get(image.size, 0) + 1
                image_modes.append(image.mode)
                image_sizes.append(image.size)
                if has_alpha(image):
                    alpha.append(len(images))
                images.append(image.copy())
                kept.append(position)
        except (OSError, ValueError, Image.DecompressionBombError):
            unreadable.append(str(path))

    def names(positions: Sequence[int]) -> str:
        files = [Path(paths[kept[i]]) for i in positions]
        return name_some(f.relative_to(root).as_posix() if root is not None and f.is_relative_to(root) else str(f)
                         for f in files)

    if unreadable:
        shown = name_some(Path(p).relative_to(root).as_posix() if root is not None and Path(p).is_relative_to(root)
                          else p for p in unreadable)
        warn_data(f"{what}: skipped {len(unreadable)} unreadable image file(s), left out of the data set: {shown}")
    if not images:
        raise UserError(f"{what}: no readable images.")
    grey = set(modes) <= {"L", "1"}
    mode = "L" if grey else "RGB"
    if len(modes) > 1:
        converted = [i for i, m in enumerate(image_modes) if m != mode]
        counts = ", ".join(f"{m} {n}" for m, n in sorted(modes.items()))
        warn_data(f"{what}: images have mixed modes ({counts}); {len(converted)} converted to "
                  f"{'greyscale' if grey else 'RGB'}: {names(converted)}")
    if alpha:
        alpha_modes = ", ".join(sorted({image_modes[i] for i in alpha}))
        warn_data(f"{what}: {len(alpha)} image(s) have an alpha channel ({alpha_modes}); alpha dropped, colours "
                  f"kept as {'greyscale' if grey else 'RGB'}: {names(alpha)}")
    target = (size, size) if size else max(sizes.items(), key=lambda kv: (kv[1], kv[0]))[0]
    if len(sizes) > 1 or (size and target not in sizes):
        resized = [i for i, s in enumerate(image_sizes) if s != target]
        warn_data(f"{what}: images have mixed sizes ({len(sizes)} distinct); {len(resized)} resized to "
                  f"{target[0]}x{target[1]}: {names(resized)}")
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
        image = open_rgb(self.files[index], warn_alpha=not getattr(self, "_alpha_reported", False))
        if getattr(image, "alpha_dropped", False):
            self._alpha_reported = True
        return image.resize((self.size, self.size), Image.BILINEAR) if self.size else image
