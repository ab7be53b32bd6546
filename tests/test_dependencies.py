"""Dependency floors (issue 12, item 17): every requirement in pyproject.toml has a lower bound, the
installed versions meet them, and every third-party module the package imports is declared."""
from __future__ import annotations

import ast
import importlib.metadata as md
import sys
from pathlib import Path

import pytest

packaging = pytest.importorskip("packaging")  # in the dev extra
from packaging.requirements import Requirement  # noqa: E402

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def requirements() -> dict[str, list[Requirement]]:
    groups = {"dependencies": [Requirement(r) for r in project()["dependencies"]]}
    for extra, entries in project().get("optional-dependencies", {}).items():
        groups[f"[{extra}]"] = [Requirement(r) for r in entries]
    return groups


def test_every_requirement_has_a_floor():
    missing = [f"{group}: {req}" for group, reqs in requirements().items() for req in reqs
               if not any(spec.operator in (">=", "==", "~=", "===") for spec in req.specifier)]
    assert missing == [], "requirements without a lower bound: " + "; ".join(missing)


def test_installed_versions_meet_the_floors():
    below, checked = [], 0
    for group, reqs in requirements().items():
        for req in reqs:
            try:
                installed = md.version(req.name)
            except md.PackageNotFoundError:
                if group == "dependencies":
                    below.append(f"{req.name} is not installed")
                continue
            checked += 1
            if not req.specifier.contains(installed, prereleases=True):
                below.append(f"{req.name} {installed} does not satisfy {req.specifier}")
    assert below == [] and checked >= len(project()["dependencies"])


def imported_top_level_modules() -> set[str]:
    names = set()
    for path in (REPO / "uslbench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"uslbench"}


def test_every_imported_module_is_declared():
    declared = {req.name.lower().replace("_", "-") for reqs in requirements().values() for req in reqs}
    distributions = md.packages_distributions()
    undeclared = []
    for module in sorted(imported_top_level_modules()):
        owners = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not owners & declared:
            undeclared.append(f"{module} (from {', '.join(sorted(owners))})")
    assert undeclared == [], "imported but not in pyproject.toml: " + "; ".join(undeclared)
