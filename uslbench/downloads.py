"""Fetching the encoder checkpoints the USL authors publish: only when asked (`--download`),
never at import time, into a weights cache under the results root, resumable and verified.

The published checkpoints (official USL README, "Model Zoo" / "Download our CLD pretrained model",
TonyLianLong/UnsupervisedSelectiveLabeling):

=============  ========  ====================================================================
encoder        data set  file
=============  ========  ====================================================================
simclr (CLD)   cifar10   people.eecs.berkeley.edu/~longlian/files/cifar10_ckpt_epoch_200.pth
simclr (CLD)   cifar100  people.eecs.berkeley.edu/~longlian/files/cifar100_ckpt_epoch_200.pth
mocov2 (EMAN)  imagenet  eman-cvpr.s3.amazonaws.com/models/res50_moco_eman_800ep.pth.tar
=============  ========  ====================================================================

The authors publish no digests, so trust is established on first use (as `pip --require-hashes`
would with a pinned hash): the size and sha256 of the first complete download are recorded in
``<file>.json`` beside it, and every later use re-checks them; a mismatch is an error, never a
silent reload. A download goes to ``<file>.part`` and resumes from there with an HTTP Range
request; a server that ignores Range restarts it from byte 0. The standard library's urllib does
the HTTP: no extra dependency for three files.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import UserError

CHUNK = 1 << 20  # bytes read per step (1 MiB)


@dataclass(frozen=True)
class PublishedWeights:
    """One checkpoint the USL authors publish for an (encoder, data set) pair."""

    encoder: str
    datasets: tuple[str, ...]
    url: str
    filename: str
    description: str


PUBLISHED: tuple[PublishedWeights, ...] = (
    PublishedWeights("simclr", ("cifar10",), "https://people.eecs.berkeley.edu/~longlian/files/cifar10_ckpt_epoch_200.pth",
                     "cifar10_ckpt_epoch_200.pth", "CLD ResNet-18 trained on CIFAR-10 (USL paper, CIFAR-10 rows)"),
    PublishedWeights("simclr", ("cifar100",),
                     "https://people.eecs.berkeley.edu/~longlian/files/cifar100_ckpt_epoch_200.pth",
                     "cifar100_ckpt_epoch_200.pth", "CLD ResNet-18 trained on CIFAR-100 (USL paper, CIFAR-100 rows)"),
    PublishedWeights("mocov2", ("imagenet", "imagenet100"),
                     "https://eman-cvpr.s3.amazonaws.com/models/res50_moco_eman_800ep.pth.tar",
                     "res50_moco_eman_800ep.pth.tar", "MoCo v2 + EMAN ResNet-50, 800 epochs on ImageNet-1k "
                     "(USL paper, ImageNet rows)"),
)


def published_for(encoder: str, dataset: str) -> PublishedWeights | None:
    """The published checkpoint for this encoder on this data set, or None."""
    return next((p for p in PUBLISHED if p.encoder == encoder and dataset in p.datasets), None)


def weights_cache_dir(results_root: str | os.PathLike) -> Path:
    """``<results-root>/cache/weights``: downloaded checkpoints and their ``.json`` manifests."""
    return Path(results_root) / "cache" / "weights"


def _manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_or_record(path: Path, url: str) -> dict:
    """Check a cached checkpoint against its manifest, or write the manifest on first use.

    Returns
    -------
    dict
        The manifest: url, size (bytes), sha256.

    Raises
    ------
    UserError
        The file's size or sha256 differs from what was recorded: it changed or was corrupted
        after its first use. The message names the file and how to recover.
    """
    manifest_path = _manifest_path(path)
    size, digest = path.stat().st_size, _sha256(path)
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"Cannot read the manifest {manifest_path} of {path} ({exc}); delete both files and "
                            "download again with --download.") from None
        if manifest.get("size") != size or manifest.get("sha256") != digest:
            raise UserError(
                f"Weights file {path} does not match what was recorded when it was first used "
                f"(recorded {manifest.get('size')} bytes, sha256 {str(manifest.get('sha256'))[:16]}...; now {size} "
                f"bytes, sha256 {digest[:16]}...). It was modified or corrupted: delete {path} and "
                f"{manifest_path} and fetch it again (--download), or restore the original file.")
        return manifest
    manifest = {"url": url, "size": size, "sha256": digest}
    tmp = manifest_path.with_name(manifest_path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, manifest_path)
    return manifest


def _progress(total: int | None, initial: int, desc: str):
    """A tqdm bar on a terminal; plain log lines (every 10%) in job logs (the project's one rule,
    `utils.progress_disabled`)."""
    from .utils import progress_disabled

    if not progress_disabled():
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc)

    class _Lines:
        def __init__(self) -> None:
            self.done, self.next_mark = initial, 0.1

        def update(self, n: int) -> None:
            self.done += n
            if total and self.done / total >= self.next_mark:
                print(f"{desc}: {self.done / 2**20:.1f} / {total / 2**20:.1f} MiB", file=sys.stderr, flush=True)
                self.next_mark = min(1.0, self.done / total) + 0.1

        def close(self) -> None:
            pass

    return _Lines()


def download(url: str, path: str | os.PathLike, timeout: float = 60.0,
             opener: Callable[..., object] = urllib.request.urlopen) -> Path:
    """Download `url` to `path`, resuming ``<path>.part`` when one exists.

    The file appears at `path` only once complete (size equal to the server's Content-Length
    where it sent one); then its size and sha256 are recorded (`verify_or_record`).

    Raises
    ------
    UserError
        Network failure, an HTTP error, or a connection that closed before the announced length
        (the partial file is kept, and the next call resumes it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = opener(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:      # the .part is already complete (or longer than the file)
            part.unlink()
            return download(url, path, timeout, opener)
        raise UserError(f"Download of {url} failed: HTTP {exc.code} {exc.reason}.") from None
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"Download of {url} failed ({getattr(exc, 'reason', exc)}). Check the network, or fetch "
                        f"the file by hand and put it at {path}.") from None
    with response:
        status = getattr(response, "status", 200)
        resumed = have > 0 and status == 206
        if not resumed:
            have = 0                       # the server ignored Range (200): start again from byte 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        bar = _progress(total, have, f"download {path.name}")
        try:
            with open(part, "ab" if resumed else "wb") as out:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (OSError, ValueError) as exc:  # connection reset / IncompleteRead
                        raise UserError(f"Download of {url} was interrupted ({type(exc).__name__}); "
                                        f"{part.stat().st_size if part.exists() else 0} bytes kept in {part}; "
                                        "run the command again to resume.") from None
                    if not block:
                        break
                    out.write(block)
                    bar.update(len(block))
        finally:
            bar.close()
    got = part.stat().st_size
    if total is not None and got != total:
        raise UserError(f"Download of {url} is incomplete: {got} of {total} bytes received; kept in {part}; "
                        "run the command again to resume.")
    os.replace(part, path)
    verify_or_record(path, url)
    return path


def published_weights_path(encoder: str, dataset: str, results_root: str | os.PathLike,
                           allow_download: bool) -> Path | None:
    """The verified local file of the published checkpoint for (encoder, data set).

    Returns None when the authors publish none for the pair. When the file is absent it is
    downloaded if `allow_download`, else a UserError names ``--download``, the URL and the path
    where a file fetched by hand must go.
    """
    published = published_for(encoder, dataset)
    if published is None:
        return None
    path = weights_cache_dir(results_root) / published.filename
    if path.is_file():
        verify_or_record(path, published.url)
        return path
    if not allow_download:
        raise UserError(
            f"Encoder {encoder!r} on {dataset} uses the authors' published checkpoint ({published.description}), "
            f"which is not on this machine. Add --download to fetch it from {published.url} into {path}, or "
            f"download it by hand and put it at {path} (its size and sha256 are recorded on first use).")
    return download(published.url, path)
