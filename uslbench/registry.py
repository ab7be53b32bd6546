"""One Registry class for data sets, encoders, selectors and learners.

    @SELECTORS.register("usl", "training-free USL: density + K-Means + regularised picks",
                        config=USLConfig, presets={"cifar10": {"preset": "cifar10"}},
                        test_config={"kmeans_iters": 10})
    class USLSelector(Selector):
        traits = SelectorTraits(uses_features=True)

    SELECTORS.create("usl", dataset="cifar10", lam=1.0)   # defaults, preset, then overrides (None ignored)

A name of the form ``prefix:ARGUMENT`` (``folder:/data/x``, ``file:idx.npy``) resolves to the
entry registered as ``prefix`` with ``argument_field`` set; ARGUMENT goes into that config field.

An entry's traits (what the harness must know about it: reads labels, wants a GPU, ...) are a
frozen dataclass of ``uslbench.traits`` declared once, as the class attribute ``traits``; the
registry checks them at registration and hands them out as ``Entry.traits``.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Union

from .errors import UserError, close_matches, unknown_name_message
from .traits import DatasetTraits, EncoderTraits, LearnerTraits, SelectorTraits, as_dict, trait_names

#: Config overrides that make an entry small and fast enough for the contract tests: a dict, or a
#: callable ``(workdir: Path, *, factory, **context) -> dict`` for entries that need a file written
#: first (file:PATH, encoders with weights, data sets on disk); ``factory`` is the registered class,
#: ``context`` holds ``pool_size`` and ``budget`` where the test knows them.
TestConfig = Union[dict, Callable[..., dict], None]


@dataclass
class Entry:
    """One registered entry.

    Attributes
    ----------
    name : str
        The CLI word (snake_case).
    description : str
        One line for ``list``.
    factory : callable
        The class (or function) that ``create`` calls with the resolved config.
    config_cls : type or None
        Dataclass of the entry's settings; None for entries without settings.
    traits : SelectorTraits | LearnerTraits | EncoderTraits | DatasetTraits
        The entry's traits, read from ``factory.traits`` at registration.
    presets : dict of str to dict
        Per data set name (or ``"default"``), the config fields to set; a preset names only the
        fields it changes, every other field keeps its dataclass default.
    argument_field : str or None
        Set for ``prefix:ARGUMENT`` entries: the config field that receives ARGUMENT.
    test_config : dict, callable or None
        Settings the contract tests use (see ``TestConfig``).
    """

    name: str
    description: str
    factory: Callable[..., Any]
    config_cls: type | None
    traits: Any
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    argument_field: str | None = None  # set for "prefix:ARGUMENT" entries
    test_config: TestConfig = None

    @property
    def doc(self) -> str:
        return (getattr(self.factory, "__doc__", None) or "").strip()

    def config_fields(self) -> list[dataclasses.Field]:
        return list(dataclasses.fields(self.config_cls)) if self.config_cls else []

    def test_overrides(self, workdir: str | Path, **context: Any) -> dict[str, Any]:
        """The contract tests' config overrides for this entry (files it needs go under `workdir`)."""
        if callable(self.test_config):
            return dict(self.test_config(Path(workdir), factory=self.factory, **context))
        return dict(self.test_config or {})


class Registry:
    """Named entries of one kind, each with a typed config, presets per data set and traits.

    Parameters
    ----------
    kind : str
        What the entries are, in words ("selector"); used in messages.
    traits_cls : type
        The frozen traits dataclass of this kind (``uslbench.traits``); an entry's ``traits``
        must be an instance of it.
    """

    def __init__(self, kind: str, traits_cls: type) -> None:
        self.kind = kind
        self.traits_cls = traits_cls
        self._entries: dict[str, Entry] = {}

    # registration -------------------------------------------------------------------------
    def register(self, name: str, description: str, *, config: type | None = None,
                 presets: dict[str, dict[str, Any]] | None = None, argument_field: str | None = None,
                 test_config: TestConfig = None) -> Callable:
        """Class decorator that adds an entry.

        Parameters
        ----------
        name : str
            The CLI word: snake_case, unique within this registry.
        description : str
            One line, shown by ``list``.
        config : dataclass type, optional
            The entry's settings; ``create`` passes an instance to the factory. Every field needs a
            default (the CLI overrides fields by name).
        presets : dict of str to dict, optional
            Per data set name (``"default"``: any other data set), the config fields to set for it.
            A preset names only the fields it changes.
        argument_field : str, optional
            Makes the entry a ``name:ARGUMENT`` entry; ARGUMENT goes into this config field.
        test_config : dict or callable, optional
            Settings of the contract tests (see ``TestConfig``); keys must be config fields.

        Returns
        -------
        callable
            The decorator; it returns the factory unchanged (with ``registry_name`` set).

        Raises
        ------
        ValueError
            The name is taken or not snake_case, or a preset / test_config key is not a config field.
        TypeError
            ``config`` is not a dataclass, the factory's ``traits`` is not an instance of this
            kind's traits class, or the factory states a trait as a plain class attribute as well.
        """
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if name != name.lower() or " " in name or "-" in name:
            raise ValueError(f"{self.kind} names are snake_case: {name!r}")
        if config is not None and not dataclasses.is_dataclass(config):
            raise TypeError(f"config of {name!r} must be a dataclass")
        field_names = {f.name for f in dataclasses.fields(config)} if config is not None else set()
        for where, keys in [(f"preset {key!r}", values) for key, values in (presets or {}).items()] + \
                [("test_config", test_config if isinstance(test_config, dict) else {})]:
            unknown = sorted(set(keys) - field_names)
            if unknown:
                raise ValueError(f"{self.kind} {name!r}: {where} sets {unknown}, which are not fields of "
                                 f"{getattr(config, '__name__', 'its config')}")

        def wrap(factory: Callable) -> Callable:
            traits = self._check_traits(name, factory)
            self._entries[name] = Entry(name, description, factory, config, traits, dict(presets or {}),
                                        argument_field, test_config)
            factory.registry_name = name  # type: ignore[attr-defined]
            return factory

        return wrap

    def _check_traits(self, name: str, factory: Callable) -> Any:
        traits = getattr(factory, "traits", None)
        traits = self.traits_cls() if traits is None else traits
        if type(traits) is not self.traits_cls:
            raise TypeError(f"{self.kind} {name!r}: `traits` must be a {self.traits_cls.__name__}(...), "
                            f"got {traits!r}")
        if inspect.isclass(factory):
            for klass in inspect.getmro(factory):
                doubled = sorted(set(vars(klass)) & set(trait_names(self.traits_cls)))
                if doubled:
                    raise TypeError(f"{self.kind} {name!r}: {klass.__name__} sets {doubled} as class attributes; "
                                    f"declare them once, in traits = {self.traits_cls.__name__}(...)")
        return traits

    def unregister(self, name: str) -> None:
        """Remove an entry if present (tests register stand-ins and clean them up)."""
        self._entries.pop(name, None)

    # lookup -------------------------------------------------------------------------------
    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted entry names, optionally only those matching a shell pattern (``usl*``)."""
        names = sorted(self._entries)
        return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names

    def __contains__(self, name: str) -> bool:
        """Whether `name` (or ``prefix:ARGUMENT``) resolves to an entry."""
        try:
            self.get(name)
        except UserError:
            return False
        return True

    def split_name(self, name: str) -> tuple[str, str | None]:
        """``"file:x.npy"`` -> ``("file", "x.npy")`` for argument entries; else ``(name, None)``.

        Raises
        ------
        UserError
            An argument entry is named without its argument (``"file:"``).
        """
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
        """The entry of a name (``prefix:ARGUMENT`` names resolve to ``prefix``).

        Raises
        ------
        UserError
            The name is unknown; the message lists the close matches and the known names.
        """
        base, _ = self.split_name(name)
        try:
            return self._entries[base]
        except KeyError:
            raise UserError(unknown_name_message(self.kind, name, self._entries)) from None

    def traits(self, name: str) -> Any:
        """The traits of a name (shorthand for ``get(name).traits``)."""
        return self.get(name).traits

    # construction -------------------------------------------------------------------------
    def resolve_config(self, name: str, dataset: str | None = None, **overrides: Any) -> Any:
        """The config an entry gets: dataclass defaults, then the data set's preset, then overrides.

        Parameters
        ----------
        name : str
            Entry name (``prefix:ARGUMENT`` puts ARGUMENT into the entry's argument field).
        dataset : str, optional
            Data set name whose preset applies (the part before ``:``); None: the ``"default"``
            preset if there is one.
        **overrides
            Config fields to set; None values are ignored (an unset CLI option never overrides),
            strings from the CLI are converted to the field's type (see ``coerce``).

        Returns
        -------
        dataclass instance or None
            None for entries without a config.

        Raises
        ------
        UserError
            Unknown name, unknown config key (with close matches), or a value of the wrong type.
        """
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
        values: dict[str, Any] = dict(self.preset_for(name, dataset))
        if entry.argument_field and argument is not None:
            values[entry.argument_field] = argument
        hints = typing.get_type_hints(entry.config_cls)
        where = f"{self.kind} {entry.name!r}"
        for key, value in overrides.items():
            values[key] = coerce(value, hints.get(key), key, where)
        config = entry.config_cls(**values)
        check_config(config, where)
        return config

    def preset_for(self, name: str, dataset: str | None) -> dict[str, Any]:
        """The preset fields an entry gets for a data set (``{}`` when it has none)."""
        presets = self.get(name).presets
        if dataset is not None:
            return dict(presets.get(dataset.split(":", 1)[0], presets.get("default", {})))
        return dict(presets.get("default", {}))

    def create(self, name: str, dataset: str | None = None, **overrides: Any) -> Any:
        """Build an entry: ``factory(resolve_config(name, dataset, **overrides))``.

        Constructors only store their config; no heavy work happens here.

        Raises
        ------
        UserError
            As ``resolve_config``.
        """
        entry = self.get(name)
        config = self.resolve_config(name, dataset, **overrides)
        return entry.factory(config) if entry.config_cls is not None else entry.factory()

    def describe(self, name: str, dataset: str | None = None, **context: Any) -> str:
        """What ``describe NAME [--dataset D]`` prints: description, traits, config, presets, doc.

        Parameters
        ----------
        name : str
            Entry name.
        dataset : str, optional
            Show the config as resolved for this data set (its preset applied, and the numbers an
            entry fills in from its own tables when it has a ``resolved_config`` method).
        **context
            Passed to ``resolved_config`` (``pool_size``, ``budget``) when known.
        """
        entry = self.get(name)
        lines = [f"{self.kind} {entry.name}: {entry.description}"]
        if entry.argument_field:
            lines.append(f"usage: {entry.name}:<{entry.argument_field.upper()}>")
        lines.append("traits: " + ", ".join(f"{k}={v}" for k, v in as_dict(entry.traits).items()))
        if entry.config_cls is not None:
            from .config_ranges import field_range, numeric_kind

            config, notes = self._described_config(name, dataset, context)
            lines.append("config (field: type = default   # help [valid values]):" if dataset is None else
                         f"config for data set {dataset} (field: type = value   # help [valid values]):")
            hints = typing.get_type_hints(entry.config_cls)
            for f in entry.config_fields():
                value = getattr(config, f.name)
                type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
                help_text = f.metadata.get("help", "")
                valid = field_range(entry.config_cls, f.name)
                if valid is not None and not valid.unconstrained:
                    text = valid.describe(numeric_kind(hints.get(f.name)) == "int")
                    help_text = f"{help_text} [{text}]".strip()
                lines.append(f"  {f.name}: {type_name} = {value!r}" + (f"   # {help_text}" if help_text else ""))
            lines.extend(notes)
        if entry.presets and dataset is None:
            lines.append("data set presets (fields set before your overrides; "
                         f"see them resolved with: describe {entry.name} --dataset NAME):")
            for key, preset in sorted(entry.presets.items()):
                lines.append(f"  {key}: {preset}")
        if entry.doc:
            lines.append("")
            lines.append(entry.doc)
        return "\n".join(lines)

    def _described_config(self, name: str, dataset: str | None, context: dict) -> tuple[Any, list[str]]:
        entry = self.get(name)
        if dataset is None:
            return _Defaults(entry), []
        config = self.resolve_config(name, dataset)
        resolve = getattr(entry.factory, "resolved_config", None)
        notes: list[str] = []
        if callable(resolve):
            config, notes = resolve(config, **context)
        return config, [f"  note: {note}" for note in notes]


class _Defaults:
    """The field defaults of a config class, as attributes."""

    def __init__(self, entry: Entry) -> None:
        for f in entry.config_fields():
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
            setattr(self, f.name, default)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(value: Any, annotation: Any, key: str, where: str) -> Any:
    """Convert a CLI string ("0.5", "true", "none") to a config field's declared type.

    Parameters
    ----------
    value : Any
        The override; non-strings pass through unchanged.
    annotation : type or None
        The field's type hint (``int``, ``float | None``, ``bool``, ``str``).
    key, where : str
        Field and entry, for the message.

    Returns
    -------
    Any
        The converted value ("none" / "null" -> None for optional fields).

    Raises
    ------
    UserError
        The string does not parse as the field's type.
    """
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
    """``["lam=1.0", "k=20"]`` -> ``{"lam": "1.0", "k": "20"}`` (values stay strings; `coerce`
    converts them once the entry is known).

    Raises
    ------
    UserError
        A pair without ``=``.
    """
    result = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"Config override {pair!r} is not of the form KEY=VALUE (for example lam=1.0).")
        key, value = pair.split("=", 1)
        result[key.strip()] = value.strip()
    return result


OVERRIDE_SYNTAX = "NAME.KEY=VALUE"
OVERRIDE_EXAMPLES = {"selector": "usl.lam=1.0", "learner": "fixmatch.steps=100", "encoder": "clip.batch_size=64"}


def parse_scoped_overrides(pairs: Iterable[str], kind: str, name_hint: str | None = None) -> dict[str, dict[str, str]]:
    """Config overrides in the one syntax of every command, NAME.KEY=VALUE:
    ["usl.lam=1.0", "usl.knn_k=20"] -> {"usl": {"lam": "1.0", "knn_k": "20"}}.

    NAME is the entry's registry name (for ``prefix:ARGUMENT`` entries the prefix, e.g. ``file``);
    `name_hint` (the command's entry, when it has one) makes the error show the exact fix.

    Raises
    ------
    UserError
        For a pair without ``=`` or without ``NAME.`` before the key, naming the right form.
    """
    scoped: dict[str, dict[str, str]] = {}
    for pair in pairs:
        name_key, has_value, value = pair.partition("=")
        name, dot, key = name_key.strip().partition(".")
        if not (has_value and dot and name and key):
            if has_value and not dot:
                fix = f"{name_hint or 'NAME'}.{pair.strip()}"
            else:
                fix = OVERRIDE_EXAMPLES.get(kind, "name.key=value")
            raise UserError(f"--{kind}-config {pair!r} is not {OVERRIDE_SYNTAX} (the {kind}'s name, a dot, a config "
                            f"key, '=', the value); write for example {fix}. `python cli.py describe NAME` lists "
                            "the keys.")
        scoped.setdefault(name.strip(), {})[key.strip()] = value.strip()
    return scoped


DATASETS = Registry("dataset", DatasetTraits)
ENCODERS = Registry("encoder", EncoderTraits)
SELECTORS = Registry("selector", SelectorTraits)
LEARNERS = Registry("learner", LearnerTraits)
REGISTRIES = {"datasets": DATASETS, "encoders": ENCODERS, "selectors": SELECTORS, "learners": LEARNERS}

