"""User-facing errors: raised on bad input, printed by the CLI as one paragraph (no traceback)."""
from __future__ import annotations

import difflib
import warnings as _warnings
from typing import Iterable

_python_formatwarning = _warnings.formatwarning


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
    plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
    return f"Unknown {kind} {word!r}.{hint} Known {plural}: {', '.join(known)}."


class DataWarning(UserWarning):
    """Something in the user's data was repaired or left out (unreadable files, empty class
    folders, dropped alpha channels, remapped labels). The message is one line: what, how many,
    which files (the first few) and what was done."""


def warn_data(message: str) -> None:
    """Issue a DataWarning: printed as one clean line `warning: MESSAGE` (see `format_warning`);
    still a Python warning, so filters, pytest.warns and -W error work on it."""
    _warnings.warn(message, DataWarning, stacklevel=3)


class SettingWarning(UserWarning):
    """A setting was adapted to the pool where the method defines that adaptation (usl_t: a batch
    larger than the pool becomes the whole pool); the selection info records the value used. The
    message is one line: the setting, the value asked for, the value used and why."""


def warn_setting(message: str) -> None:
    """Issue a SettingWarning, printed as one line `warning: MESSAGE` like `warn_data`."""
    _warnings.warn(message, SettingWarning, stacklevel=3)


def format_warning(message, category, filename, lineno, line=None) -> str:
    """warnings.formatwarning that prints the package's own warnings as `warning: MESSAGE` (no
    category name, file name or source line: the message says what, how many, which files and
    what was done) and leaves every other warning to Python's standard format."""
    if isinstance(category, type) and issubclass(category, (DataWarning, SettingWarning)):
        return f"warning: {message}\n"
    return _python_formatwarning(message, category, filename, lineno, line)


def install_warning_format() -> None:
    """Route warnings.formatwarning through `format_warning` (once; importing uslbench does it)."""
    global _python_formatwarning
    if _warnings.formatwarning is not format_warning:
        _python_formatwarning = _warnings.formatwarning
        _warnings.formatwarning = format_warning


def name_some(items: Iterable[object], limit: int = 5) -> str:
    """'a, b, c' or 'a, b, c, d, e and 7 more': the first few names of a list in a message."""
    items = [str(i) for i in items]
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
