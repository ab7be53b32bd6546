"""Valid ranges of config fields: declared beside each config dataclass, checked by the registry.

A type check alone lets nonsense through (`lam=nan` gave an "ok" run whose scores were all NaN;
`n_clusters=-3` was silently read as the default yet keyed as another run; `C=-1` failed only
inside scikit-learn). Every numeric field therefore declares its range, and
`Registry.resolve_config` checks every value (defaults, dataset preset, overrides) before any
work, with a message naming the field, the value and the valid range::

    @field_ranges(lam=Range(ge=0), m_reg=Range(ge=0, lt=1), n_clusters=Range(ge=1),
                  knn_approximate=Range(choices=("ivf", "hnsw")))
    @dataclass
    class USLConfig: ...

The range is stored in the field's metadata (``field.metadata["range"]``), so a subclass inherits it
for fields it does not redefine; a redefined field looks up its bases' range unless it declares its
own. Numbers must be finite unless a range says otherwise; ``None`` is accepted for Optional
fields (it means "the preset decides"); `UNCONSTRAINED` marks a numeric field with no range on
purpose. The test `tests/test_config_ranges.py` checks that every numeric field of every
registered entry has a declared range and that every default and preset value lies in it.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

METADATA_KEY = "range"


@dataclass(frozen=True)
class Range:
    """Bounds (``ge``, ``gt``, ``le``, ``lt``), or a set of allowed values (``choices``)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    finite: bool = True
    unconstrained: bool = False

    def describe(self, integer: bool = False) -> str:
        """'an integer >= 1', 'a finite number in [0, 1)', 'one of 'ivf', 'hnsw''."""
        if self.unconstrained:
            return "any value"
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        kind = "an integer" if integer else ("a finite number" if self.finite else "a number")
        low = (self.ge, "[") if self.ge is not None else (self.gt, "(") if self.gt is not None else None
        high = (self.le, "]") if self.le is not None else (self.lt, ")") if self.lt is not None else None
        if low and high:
            return f"{kind} in {low[1]}{_num(low[0])}, {_num(high[0])}{high[1]}"
        if low:
            return f"{kind} {'>=' if low[1] == '[' else '>'} {_num(low[0])}"
        if high:
            return f"{kind} {'<=' if high[1] == ']' else '<'} {_num(high[0])}"
        return kind

    def contains(self, value: Any) -> bool:
        if self.unconstrained:
            return True
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, float) and (math.isnan(value) or (self.finite and math.isinf(value))):
            return False
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))


UNCONSTRAINED = Range(unconstrained=True, finite=False)
# shorthands for the common cases
POSITIVE_INT = Range(ge=1)
NON_NEGATIVE = Range(ge=0)
POSITIVE = Range(gt=0)
PROBABILITY = Range(ge=0, le=1)
MOMENTUM = Range(ge=0, lt=1)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def field_ranges(**declared: Range) -> Callable[[type], type]:
    """Class decorator (above ``@dataclass``): store each Range in its field's metadata.
    A field inherited from a base dataclass is copied first, so the base keeps its own range."""

    def wrap(cls: type) -> type:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"@field_ranges goes above @dataclass (on {cls.__name__})")
        fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
        for name, rng in declared.items():
            if name not in fields:
                raise TypeError(f"{cls.__name__} has no config field {name!r} to declare a range for")
            if not isinstance(rng, Range):
                raise TypeError(f"the range of {cls.__name__}.{name} must be a Range, got {rng!r}")
            own = copy.copy(fields[name])
            own.metadata = types.MappingProxyType({**own.metadata, METADATA_KEY: rng})
            fields[name] = own
        return cls

    return wrap


def field_range(config_cls: type, name: str) -> Range | None:
    """The declared range of a field: its own metadata, else the same field's in a base dataclass."""
    for klass in config_cls.__mro__:
        field = getattr(klass, "__dataclass_fields__", {}).get(name)
        if field is not None and METADATA_KEY in field.metadata:
            return field.metadata[METADATA_KEY]
    return None


def numeric_kind(annotation: Any) -> str | None:
    """'int', 'float' or None (bool, str, anything else) for a field's type hint."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    if bool in args:
        return None
    if int in args:
        return "int"
    if float in args:
        return "float"
    return None


def check_value(config_cls: type, name: str, value: Any, where: str) -> str | None:
    """Why `value` is not valid for field `name` of `config_cls`, or None. `where` names the
    entry ("selector 'usl'") in the message."""
    hints = typing.get_type_hints(config_cls)
    annotation = hints.get(name)
    optional = type(None) in typing.get_args(annotation)
    if value is None:
        return None if optional or annotation is None else (
            f"Config key {name!r} of {where} needs a value; got None.")
    kind = numeric_kind(annotation)
    rng = field_range(config_cls, name)
    if kind is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"Config key {name!r} of {where} must be a number, got {value!r}."
        if kind == "int" and not float(value).is_integer():
            return f"Config key {name!r} of {where} must be an integer, got {value!r}."
    if rng is None or rng.contains(value):
        return None
    hint = next((f.metadata.get("help") for f in dataclasses.fields(config_cls)
                 if f.name == name and f.metadata.get("help")), None)
    return (f"Config key {name!r} of {where} must be {rng.describe(kind == 'int')}, got {value!r}."
            + (f" ({name}: {hint})" if hint else ""))
