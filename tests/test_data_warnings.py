"""Warnings a person can read (issue 12, item 6): each data warning is one line on stderr, `warning:
MESSAGE` (what, how many, which files, what was done), without Python's category and source
line; an image with an alpha channel says that the channel was dropped."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def messy_folder(root: Path) -> Path:
    """c0: 2 RGB 10x10 + a broken file; c1: 2 RGBA 10x10; c2: 1 greyscale 14x14."""
    for name, mode, side, count in (("c0", "RGB", 10, 2), ("c1", "RGBA", 10, 2), ("c2", "L", 14, 1)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            colour = 120 if mode == "L" else (200, 30, 30, 128)[:len(mode)]
            Image.new(mode, (side, side), color=colour).save(root / name / f"{i}.png")
    (root / "c0" / "broken.png").write_bytes(b"\x89PNG but truncated")
    return root


def test_data_warnings_print_one_clean_line_each(tmp_path):
    root = messy_folder(tmp_path / "messy")
    code = f"from uslbench.datasets import load_dataset; load_dataset({f'folder:{root}'!r})"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    where = f"folder:{root} (train)"
    assert result.stderr.splitlines() == [
        f"warning: {where}: skipped 1 unreadable image file(s), left out of the data set: c0/broken.png",
        f"warning: {where}: images have mixed modes (L 1, RGB 2, RGBA 2); 3 converted to RGB: c1/0.png, c1/1.png, "
        "c2/0.png",
        f"warning: {where}: 2 image(s) have an alpha channel (RGBA); alpha dropped, colours kept as RGB: c1/0.png, "
        "c1/1.png",
        f"warning: {where}: images have mixed sizes (2 distinct); 1 resized to 10x10: c2/0.png",
    ]


def test_alpha_alone_is_reported_and_colours_are_kept(tmp_path):
    """All images RGBA (one mode, one size): before, nothing was said about the alpha channel."""
    from uslbench.datasets import load_dataset

    for i in range(3):
        (tmp_path / "a").mkdir(exist_ok=True)
        Image.new("RGBA", (6, 6), color=(10, 20, 30, 0)).save(tmp_path / "a" / f"{i}.png")
    with pytest.warns(UserWarning) as caught:
        ds = load_dataset(f"folder:{tmp_path}")
    assert [str(w.message) for w in caught] == [
        f"folder:{tmp_path} (train): 3 image(s) have an alpha channel (RGBA); alpha dropped, colours kept as RGB: "
        "a/0.png, a/1.png, a/2.png"]
    assert ds.train.array.shape == (3, 6, 6, 3) and (ds.train.array == [10, 20, 30]).all()


def test_lazy_loader_reports_alpha_once(tmp_path):
    from uslbench.datasets.files import FileLoader

    paths = []
    for i in range(2):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGBA", (5, 5), color=(1, 2, 3, 4)).save(paths[-1])
    loader = FileLoader(paths)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = [loader(0), loader(1), loader(0)]
    assert [str(w.message) for w in caught] == [
        f"{paths[0]}: image has an alpha channel; alpha dropped, colours kept as RGB (further images of this "
        "folder with alpha are not listed)"]
    assert all(image.mode == "RGB" and np.asarray(image)[0, 0].tolist() == [1, 2, 3] for image in images)


def test_other_warnings_keep_pythons_format():
    from uslbench.errors import DataWarning, format_warning

    assert format_warning("x", DataWarning, "f.py", 3) == "warning: x\n"
    assert format_warning("x", UserWarning, "f.py", 3).startswith("f.py:3: UserWarning: x")
