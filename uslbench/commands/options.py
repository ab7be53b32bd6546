"""Options shared by the commands: config overrides (one syntax everywhere), the budget, the
results root and the device. Light: imports no library beyond click."""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterable

import click

from .. import DATA_ROOT, DATA_ROOT_ENV
from .. import RESULTS_ROOT  # noqa: F401  (the default results root of every command, declared once)
from ..errors import UserError
from ..registry import OVERRIDE_EXAMPLES, OVERRIDE_SYNTAX, parse_scoped_overrides
from ..utils import check_budget


def config_overrides(*kinds: str) -> Callable:
    """`--selector-config`, `--learner-config`, `--encoder-config` (those in `kinds`), each
    repeatable, each NAME.KEY=VALUE: the one override syntax of `run`, `select` and `sweep`."""
    def decorate(function: Callable) -> Callable:
        for kind in reversed(kinds):
            function = click.option(
                f"--{kind}-config", f"{kind}_config", multiple=True, metavar=OVERRIDE_SYNTAX,
                help=f"{kind} config override, e.g. {OVERRIDE_EXAMPLES[kind]} (repeatable; `describe NAME` lists "
                     "the keys)")(function)
        return function
    return decorate


def overrides_for(kind: str, name: str | None, pairs: Iterable[str]) -> dict[str, str]:
    """The KEY -> VALUE overrides of the one entry a command uses (`run`, `select`): every
    NAME.KEY=VALUE must name it. Raises UserError otherwise, saying what to write."""
    pairs = tuple(pairs)
    if not pairs:
        return {}
    if name is None:
        raise UserError(f"--{kind}-config needs --{kind} NAME: the {kind} whose config it sets "
                        f"(`python cli.py list {kind}s` shows them).")
    base = name.split(":", 1)[0]
    scoped = parse_scoped_overrides(pairs, kind, name_hint=base)
    for scope in scoped:
        if scope not in (base, name):
            raise UserError(f"--{kind}-config names {kind} {scope!r}, but this command's {kind} is {name!r}; "
                            f"write {base}.KEY=VALUE.")
    return {key: value for values in scoped.values() for key, value in values.items()}


class BudgetType(click.ParamType):
    """The budget m (images to label): a positive integer, parsed once, at the command line."""

    name = "M"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        return check_budget(value, sys.maxsize)  # a UserError: printed as one paragraph by cli.Group


BUDGET = BudgetType()


#: The one default of `--data-root` (run, select, sweep, pretrain), as `datasets.files.resolve_data_root` applies it.
DATA_ROOT_DEFAULT = f"${DATA_ROOT_ENV} when set, else ./{DATA_ROOT} in the working folder"


def data_root_option(before: str = "", default_first: str = "") -> Callable:
    """`--data-root` with the shared help text; `before`: when the option applies, `default_first`:
    a default the command checks before the shared one (a sweep file's data_root)."""
    return click.option("--data-root", default=None,
                        help=f"{before}folder holding the data sets' files (default: {default_first}{DATA_ROOT_DEFAULT})")


def results_root_option(help_text: str = "where caches and records go") -> Callable:
    return click.option("--results-root", default=RESULTS_ROOT, show_default=True, help=help_text)


def device_option(help_text: str = "cpu, cuda, cuda:N or auto") -> Callable:
    return click.option("--device", default="auto", show_default=True, help=help_text)
