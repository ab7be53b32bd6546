"""A contact sheet of the picks: thumbnails in a grid with their rank and cluster size, written
beside the export so the user can look at the images before paying for their labels."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Callable

from PIL import Image, ImageDraw, ImageFont

from ..utils import atomic_write_bytes
from .picks import Pick

THUMB = 96       # thumbnail side (pixels)
CAPTION = 28     # caption height under each thumbnail (pixels)
PAD = 6


def contact_sheet(picks: list[Pick], image: Callable[[int], Image.Image], path: str | Path,
                  cluster_sizes: dict[int, int] | None = None, columns: int = 10) -> Path:
    """Write `contact_sheet_png` to `path` (atomic) and return `path`."""
    path = Path(path)
    atomic_write_bytes(path, contact_sheet_png(picks, image, cluster_sizes, columns))
    return path


def contact_sheet_png(picks: list[Pick], image: Callable[[int], Image.Image],
                      cluster_sizes: dict[int, int] | None = None, columns: int = 10) -> bytes:
    """A PNG grid of the picked images, as bytes.

    Parameters
    ----------
    picks : list of Pick
        In selection order; each tile is captioned ``#rank`` and, when the pick has a cluster,
        ``c<cluster> (n=<size>)`` with the cluster's size in the pool.
    image : callable
        ``image(pool_index) -> PIL.Image`` (the data set's loader; any mode, any size).
    cluster_sizes : dict, optional
        Cluster id -> number of pool images in it.
    columns : int
        Tiles per row.

    Returns
    -------
    bytes
        The PNG file.
    """
    columns = max(1, min(columns, len(picks)))
    rows = math.ceil(len(picks) / columns) if picks else 1
    tile_w, tile_h = THUMB + PAD, THUMB + CAPTION + PAD
    sheet = Image.new("RGB", (columns * tile_w + PAD, rows * tile_h + PAD), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for slot, pick in enumerate(picks):
        x = PAD + (slot % columns) * tile_w
        y = PAD + (slot // columns) * tile_h
        thumb = image(pick.pool_index).convert("RGB")
        thumb.thumbnail((THUMB, THUMB), Image.BICUBIC if max(thumb.size) > THUMB else Image.NEAREST)
        if max(thumb.size) < THUMB:  # small images (CIFAR, 32 px) are enlarged to be seen
            scale = THUMB / max(thumb.size)
            thumb = thumb.resize((max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale))),
                                 Image.NEAREST)
        sheet.paste(thumb, (x + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
        lines = [f"#{pick.rank}"]
        if pick.cluster is not None:
            size = (cluster_sizes or {}).get(pick.cluster)
            lines.append(f"c{pick.cluster}" + (f" (n={size})" if size is not None else ""))
        draw.text((x, y + THUMB + 1), "  ".join(lines[:1]), fill="black", font=font)
        if len(lines) > 1:
            draw.text((x, y + THUMB + 13), lines[1], fill="dimgray", font=font)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()
