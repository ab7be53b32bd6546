"""One Registry class for data sets, encoders, selectors and learners.

    @SELECTORS.register("usl", "training-free USL: density + K-Means + regularised picks",
                        config=USLConfig, tags=("uses_features",),
                        presets={"cifar10": {"preset": "cifar10"}})
    class USL(Selector): ...

    SELECTORS.create("usl", dataset="cifar10", lam=1.0)   # preset, then overrides (None ignored)

A name of the form ``prefix:ARGUMENT`` (``folder:/data/x``, ``file:idx.npy``) resolves to the
entry registered as ``prefix`` with ``argument_field`` set; ARGUMENT goes into that config field.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .errors import UserError, close_matches, unknown_name_message


@dataclass
class Entry:
    name: str
    description: str
    factory: Callable[..., Any]
    config_cls: type | None
    tags: tuple[str, ...] = ()
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    argument_field: str | None = None  # set for "prefix:ARGUMENT" entries

    @property
    def doc(self) -> str:
        return (getattr(self.factory, "__doc__", None) or "").strip()

    def config_fields(self) -> list[dataclasses.Field]:
        return list(dataclasses.fields(self.config_cls)) if self.config_cls else []


class Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    # registration -------------------------------------------------------------------------
    def register(self, name: str, description: str, *, config: type | None = None,
                 tags: Iterable[str] = (), presets: dict[str, dict[str, Any]] | None = None,
                 argument_field: str | None = None) -> Callable:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if name != name.lower() or " " in name or "-" in name:
            raise ValueError(f"{self.kind} names are snake_case: {name!r}")
        if config is not None and not dataclasses.is_dataclass(config):
            raise TypeError(f"config of {name!r} must be a dataclass")

        def wrap(factory: Callable) -> Callable:
            self._entries[name] = Entry(name, description, factory, config, tuple(tags),
                                        dict(presets or {}), argument_field)
            factory.registry_name = name  # type: ignore[attr-defined]
            return factory

        return wrap

    def unregister(self, name: str) -> None:
        """Remove an entry (tests register stand-ins and clean them up)."""
        self._entries.pop(name, None)

    # lookup -------------------------------------------------------------------------------
    def names(self, pattern: str | None = None) -> list[str]:
        import fnmatch

        names = sorted(self._entries)
        return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except UserError:
            return False
        return True

    def split_name(self, name: str) -> tuple[str, str | None]:
        if ":" in name:
            prefix, argument = name.split(":", 1)
            entry = self._entries.get(prefix)
            if entry is not None and entry.argument_field:
                if not argument:
                    raise UserError(f"{self.kind} {name!r} needs an argument after ':' "
                                    f"(for example {prefix}:PATH).")
                return prefix, argument
        return name, None

    def get(self, name: str) -> Entry:
        base, _ = self.split_name(name)
        try:
            return self._entries[base]
        except KeyError:
            raise UserError(unknown_name_message(self.kind, name, self._entries)) from None

    def has_tag(self, name: str, tag: str) -> bool:
        return tag in self.get(name).tags

    # construction -------------------------------------------------------------------------
    def resolve_config(self, name: str, dataset: str | None = None, **overrides: Any) -> Any:
        """Config instance: defaults, then the dataset preset, then non-None overrides."""
        entry = self.get(name)
        _, argument = self.split_name(name)
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if entry.config_cls is None:
            if overrides:
                raise UserError(f"{self.kind} {name!r} takes no config, got {sorted(overrides)}.")
            return None
        valid = {f.name: f for f in entry.config_fields()}
        for key in overrides:
            if key not in valid:
                matches = close_matches(key, valid)
                hint = f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
                raise UserError(f"Unknown config key {key!r} for {self.kind} {entry.name!r}.{hint} "
                                f"Valid keys: {', '.join(sorted(valid)) or '(none)'}.")
        values: dict[str, Any] = {}
        if dataset is not None:
            preset_key = dataset.split(":", 1)[0]
            values.update(entry.presets.get(preset_key, entry.presets.get("default", {})))
        elif "default" in entry.presets:
            values.update(entry.presets["default"])
        if entry.argument_field and argument is not None:
            values[entry.argument_field] = argument
        hints = typing.get_type_hints(entry.config_cls)
        where = f"{self.kind} {entry.name!r}"
        for key, value in overrides.items():
            values[key] = coerce(value, hints.get(key), key, where)
        config = entry.config_cls(**values)
        check_config(config, where)
        return config

    def create(self, name: str, dataset: str | None = None, **overrides: Any) -> Any:
        entry = self.get(name)
        config = self.resolve_config(name, dataset, **overrides)
        return entry.factory(config) if entry.config_cls is not None else entry.factory()

    def describe(self, name: str) -> str:
        entry = self.get(name)
        lines = [f"{self.kind} {entry.name}: {entry.description}"]
        if entry.argument_field:
            lines.append(f"usage: {entry.name}:<{entry.argument_field.upper()}>")
        lines.append(f"tags: {', '.join(entry.tags) or '(none)'}")
        if entry.config_cls is not None:
            from .config_ranges import field_range, numeric_kind

            lines.append("config (field: type = default   # help [valid values]):")
            hints = typing.get_type_hints(entry.config_cls)
            for f in entry.config_fields():
                default = f.default if f.default is not dataclasses.MISSING else (
                    f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
                type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
                help_text = f.metadata.get("help", "")
                valid = field_range(entry.config_cls, f.name)
                if valid is not None and not valid.unconstrained:
                    text = valid.describe(numeric_kind(hints.get(f.name)) == "int")
                    help_text = f"{help_text} [{text}]".strip()
                lines.append(f"  {f.name}: {type_name} = {default!r}" + (f"   # {help_text}" if help_text else ""))
        if entry.presets:
            lines.append("dataset presets (applied before your overrides):")
            for key, preset in sorted(entry.presets.items()):
                lines.append(f"  {key}: {preset}")
        if entry.doc:
            lines.append("")
            lines.append(entry.doc)
        return "\n".join(lines)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(value: Any, annotation: Any, key: str, where: str) -> Any:
    """Convert CLI strings ("0.5", "true", "none") to the field's declared type."""
    if not isinstance(value, str) or annotation is None:
        return value
    args = typing.get_args(annotation)
    optional = type(None) in args
    if optional and value.lower() in ("none", "null"):
        return None
    candidates = [a for a in args if a is not type(None)] or [annotation]
    for target in candidates:
        try:
            if target is bool:
                if value.lower() in _TRUE:
                    return True
                if value.lower() in _FALSE:
                    return False
                raise ValueError
            if target in (int, float):
                return target(value)
            if target is str:
                return value
        except ValueError:
            continue
    raise UserError(f"Config key {key!r} of {where} expects {annotation}, got {value!r}.")


def check_config(config: Any, where: str) -> None:
    """Every field's value against its declared type and range (uslbench.config_ranges): a
    UserError naming the field, the value and the valid range, before any work is done."""
    from .config_ranges import check_value

    for f in dataclasses.fields(config):
        problem = check_value(type(config), f.name, getattr(config, f.name), where)
        if problem:
            raise UserError(problem)


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """["lam=1.0", "k=20"] -> {"lam": "1.0", "k": "20"}."""
    result = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"Config override {pair!r} is not of the form KEY=VALUE (for example lam=1.0).")
        key, value = pair.split("=", 1)
        result[key.strip()] = value.strip()
    return result


DATASETS = Registry("dataset")
ENCODERS = Registry("encoder")
SELECTORS = Registry("selector")
LEARNERS = Registry("learner")
REGISTRIES = {"datasets": DATASETS, "encoders": ENCODERS, "selectors": SELECTORS, "learners": LEARNERS}


def load_all() -> None:
    """Import every module that registers entries (the subpackages' __init__ do the imports)."""
    from . import datasets, encoders, learners, selectors  # noqa: F401
