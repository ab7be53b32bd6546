"""The package's import structure: layers that only look down, no circles (import-linter contracts
in pyproject.toml)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))


def test_import_contracts_hold():
    pytest.importorskip("importlinter", reason="import-linter is a dev dependency (pip install -e '.[dev]')")
    code = ("from importlinter.cli import lint_imports; "
            "raise SystemExit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


# The commands a user runs to look around; they must start without a deep-learning package.
HEAVY = ("torch", "torchvision", "sklearn", "open_clip")
_RUNNER = """
import json, sys
from uslbench.cli import main
try:
    main(sys.argv[1:], prog_name="cli.py")
    code = 0
except SystemExit as exc:
    code = exc.code or 0
print(json.dumps({"code": code, "heavy": sorted(m for m in %s if m in sys.modules)}))
"""


def _run_light(tmp: Path, name: str, argv: list[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """Run `cli.py ARGV` in a fresh interpreter; return the packages of `heavy` it imported."""
    done = subprocess.run([sys.executable, "-c", _RUNNER % (heavy,), *argv], cwd=tmp, env=_env(),
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"code"')]
    assert lines, f"{name}: no result line\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    result = json.loads(lines[-1])
    assert result["code"] == 0, f"{name} exited {result['code']}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return result["heavy"]


@pytest.mark.slow
def test_light_commands_import_no_deep_learning_package(tmp_path):
    """`--help`, `status`, `leaderboard` and `select --features` import none of torch, torchvision,
    scikit-learn or open_clip (a fresh interpreter for each)."""
    import numpy as np

    np.save(tmp_path / "features.npy", np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32))
    golden = str(REPO / "tests" / "golden" / "records")
    commands = {
        "help": ["--help"],
        "sweep --help": ["sweep", "--help"],
        "run --help": ["run", "--help"],
        "status": ["status", golden],
        "leaderboard": ["leaderboard", golden, "--output", str(tmp_path / "board"), "--no-plots"],
        "select --features": ["select", "--features", str(tmp_path / "features.npy"), "--selector", "usl",
                              "--budget", "5", "--selector-config", "usl.knn_k=5"],
    }
    heavy = {name: _run_light(tmp_path, name, argv) for name, argv in commands.items()}
    assert heavy == {name: [] for name in commands}


# `list` and `describe` register every entry (the catalogue) and print from the registries alone;
# torch, timm and faiss load only when an entry trains, encodes or selects.
CATALOGUE_HEAVY = HEAVY + ("timm", "faiss")


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["list"], ["describe", "fixmatch"], ["describe", "usl_t"], ["describe", "timm"],
                                  ["describe", "cifar10"]], ids=lambda argv: " ".join(argv))
def test_catalogue_commands_import_no_deep_learning_package(tmp_path, argv):
    """`list` and `describe NAME` (an image learner, a training selector, the timm encoder, a data
    set) import none of torch, torchvision, timm, faiss, scikit-learn or open_clip."""
    assert _run_light(tmp_path, " ".join(argv), argv, CATALOGUE_HEAVY) == []
