"""The main job leaves every tracked file alone (issue 12, item 13): the committed reference
leaderboard lives in reference/, runs write under the git-ignored results root."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-c", "user.name=uslbench-test", "-c", "user.email=test@localhost", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60)


needs_git = pytest.mark.skipif(shutil.which("git") is None or _git("rev-parse").returncode != 0,
                               reason="needs a git checkout of the project")


@needs_git
def test_committed_references_are_outside_the_results_root():
    # the only tracked files under results/ are the CIFAR-10 leaderboard, which only its own sweep
    # file writes (the main job runs on digits and writes results/digits/, ignored)
    tracked = _git("ls-files", "results").stdout.splitlines()
    assert all(path.startswith("results/cifar10/") for path in tracked), tracked
    assert "reference/digits/LEADERBOARD.md" in _git("ls-files", "reference").stdout.splitlines()
    assert _git("check-ignore", "-q", "results/digits/LEADERBOARD.md").returncode == 0
    assert _git("check-ignore", "-q", "results/perf/selectors.md").returncode == 0


@needs_git
@pytest.mark.slow
def test_main_job_leaves_git_status_clean(tmp_path):
    """The README's main command (on a subset of its grid, so that it takes seconds) in a copy of
    this checkout: afterwards `git status` shows nothing and the reference is unchanged."""
    files = _git("ls-files", "--cached", "--others", "--exclude-standard").stdout.splitlines()
    copy = tmp_path / "checkout"
    for name in files:
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    assert _git("init", "-q", cwd=copy).returncode == 0
    assert _git("add", "-A", cwd=copy).returncode == 0
    assert _git("commit", "-q", "-m", "copy", cwd=copy).returncode == 0
    reference = (copy / "reference/digits/LEADERBOARD.md").read_bytes()
    env = dict(os.environ, PYTHONPATH=str(copy), USLBENCH_QUIET="1")
    out = subprocess.run([sys.executable, "cli.py", "sweep", "--preset", "quick", "--selector", "random",
                          "--learner", "linear", "--budget", "10", "--seeds", "1", "--max-parallel", "1"],
                         cwd=copy, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (copy / "results/digits/LEADERBOARD.md").is_file()
    assert _git("status", "--porcelain", "--untracked-files=all", cwd=copy).stdout == ""
    assert (copy / "reference/digits/LEADERBOARD.md").read_bytes() == reference
