"""Files the harness writes respect the process umask (issue 12, item 14): atomic writes go
through a temporary file, which `tempfile.mkstemp` creates owner-only (0600); colleagues sharing a
results root on a cluster must be able to read records, caches and tables."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from uslbench.utils import atomic_save_npy, atomic_write_bytes, atomic_write_json


@pytest.fixture
def umask():
    """Set a umask for the test and restore the previous one afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o027, 0o640)],
                         ids=["022", "002", "077", "027"])
def test_atomic_writes_get_the_umask_mode(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_write_bytes(tmp_path / "b.bin", b"123")
    atomic_save_npy(tmp_path / "c.npy", np.arange(3))
    for name in ("a.json", "b.bin", "c.npy"):
        assert oct(_mode(tmp_path / name)) == oct(expected), name
    # replacing an existing file gives the same mode, and no temporary file is left behind
    atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert _mode(tmp_path / "a.json") == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin", "c.npy"]


def test_a_run_writes_group_readable_files(tmp_path, umask):
    """Every file of a real run (record, feature and selection caches) is readable by the group
    and others under umask 022, as a plain `open(..., "w")` would make it."""
    from uslbench.harness.pipeline import run_spec
    from uslbench.harness.spec import RunSpec

    umask(0o022)
    root = tmp_path / "results"
    run_spec(RunSpec(dataset="digits", selector="random", learner="linear", budget=10, seed=1), root,
             echo=lambda m: None)
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "record.json" for p in files)
    assert {p.relative_to(root).as_posix(): oct(_mode(p)) for p in files if _mode(p) != 0o644} == {}
