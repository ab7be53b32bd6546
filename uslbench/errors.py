"""User-facing errors: raised on bad input, printed by the CLI as one paragraph (no traceback)."""
from __future__ import annotations

import difflib
from typing import Iterable


class UserError(Exception):
    """A mistake in the user's input: the message says what was wrong and what to do."""


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    candidates = list(candidates)
    matches = difflib.get_close_matches(word, candidates, n=n, cutoff=0.5)
    if not matches:  # substring fallback: "usl" -> "usl_t", "clip_usl"
        matches = [c for c in candidates if word and (word in c or c in word)][:n]
    return matches


def unknown_name_message(kind: str, word: str, known: Iterable[str]) -> str:
    known = sorted(known)
    matches = close_matches(word, known)
    hint = f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
    return f"Unknown {kind} {word!r}.{hint} Known {kind}s: {', '.join(known)}."
