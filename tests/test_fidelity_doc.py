"""docs/fidelity.md has a section for every selector and learner, and `describe` links to it."""
from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from uslbench.catalog import LEARNERS, SELECTORS
from uslbench.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "fidelity.md"


def _anchors(text: str) -> set[str]:
    """GitHub-style anchors of the markdown headings (lower case, spaces to '-', punctuation dropped)."""
    heads = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_every_selector_and_learner_has_a_section():
    anchors = _anchors(DOC.read_text())
    missing = [n for n in [*SELECTORS.names(), *LEARNERS.names()] if n not in anchors]
    assert not missing, f"docs/fidelity.md has no section for {missing}"


def test_describe_points_to_the_fidelity_rows():
    runner = CliRunner()
    for name in ("usl_t", "fixmatch", "file"):
        result = runner.invoke(main, ["describe", name])
        assert result.exit_code == 0, result.output
        assert f"fidelity: docs/fidelity.md#{name}" in result.output
    encoder = runner.invoke(main, ["describe", "pixels"])
    assert encoder.exit_code == 0 and "fidelity:" not in encoder.output
