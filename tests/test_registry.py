from dataclasses import dataclass

import pytest

from uslbench.errors import UserError
from uslbench.registry import Registry, coerce, parse_overrides
from uslbench.catalog import REGISTRIES
from uslbench.traits import SelectorTraits


@dataclass
class ToyConfig:
    k: int = 5
    lam: float = 0.5
    flag: bool = False
    path: str | None = None


def make_registry():
    registry = Registry("widget", SelectorTraits)

    @registry.register("toy", "a toy entry", config=ToyConfig,
                       presets={"cifar10": {"k": 400}, "default": {"k": 7}})
    class Toy:
        """Toy docstring."""

        traits = SelectorTraits(needs_labels=True)

        def __init__(self, config):
            self.config = config

    @registry.register("filey", "an entry with an argument", config=ToyConfig, argument_field="path")
    class Filey:
        def __init__(self, config):
            self.config = config

    return registry


def test_create_applies_default_then_dataset_preset_then_overrides():
    registry = make_registry()
    assert registry.create("toy").config.k == 7                     # "default" preset
    assert registry.create("toy", dataset="cifar10").config.k == 400
    assert registry.create("toy", dataset="cifar10", k=3).config.k == 3
    assert registry.create("toy", dataset="other").config.k == 7


def test_none_overrides_are_ignored():
    registry = make_registry()
    toy = registry.create("toy", k=None, lam=None)
    assert (toy.config.k, toy.config.lam) == (7, 0.5)


def test_cli_strings_are_coerced_to_field_types():
    registry = make_registry()
    config = registry.create("toy", k="12", lam="1.5", flag="true").config
    assert (config.k, config.lam, config.flag) == (12, 1.5, True)
    with pytest.raises(UserError, match="expects"):
        registry.create("toy", k="many")


def test_unknown_name_lists_close_matches():
    registry = make_registry()
    with pytest.raises(UserError) as info:
        registry.create("tpy")
    assert "'toy'" in str(info.value) and "Known widgets" in str(info.value)


def test_unknown_config_key_lists_close_matches():
    registry = make_registry()
    with pytest.raises(UserError) as info:
        registry.create("toy", lamb=1.0)
    message = str(info.value)
    assert "Unknown config key 'lamb'" in message and "'lam'" in message


def test_duplicate_registration_is_refused():
    registry = make_registry()
    with pytest.raises(ValueError):
        registry.register("toy", "again")(object)


def test_prefix_argument_goes_into_its_field():
    registry = make_registry()
    entry = registry.create("filey:/tmp/idx.npy")
    assert entry.config.path == "/tmp/idx.npy"
    assert "filey:/x" in registry
    with pytest.raises(UserError, match="needs an argument"):
        registry.create("filey:")


def test_describe_shows_fields_defaults_traits_presets_and_doc():
    text = make_registry().describe("toy")
    for needle in ("widget toy: a toy entry", "traits: needs_labels=True, uses_features=True", "k: int = 5",
                   "cifar10: {'k': 400}", "Toy docstring."):
        assert needle in text


def test_parse_overrides():
    assert parse_overrides(["lam=1.0", "k = 3"]) == {"lam": "1.0", "k": "3"}
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_overrides(["lam"])


def test_coerce_optional_none():
    assert coerce("none", int | None, "k", "x") is None


def test_real_registries_are_populated():
    assert {"random", "stratified", "usl"} <= set(REGISTRIES["selectors"].names())
    assert {"linear", "knn"} <= set(REGISTRIES["learners"].names())
    assert "digits" in REGISTRIES["datasets"].names()
    assert "pixels" in REGISTRIES["encoders"].names()
    assert REGISTRIES["selectors"].traits("stratified").needs_labels


def test_presets_overlay_only_fields_they_change():
    """No data-set preset restates a field's dataclass default (one default per field), and the
    image learners' table names only registered learners and data sets."""
    import dataclasses

    from uslbench.learners.presets import LEARNER_ROWS, SHARED

    for registry in REGISTRIES.values():
        for name in registry.names():
            entry = registry.get(name)
            defaults = {f.name: f.default for f in entry.config_fields()}
            for dataset, preset in entry.presets.items():
                restated = {k: v for k, v in preset.items() if defaults.get(k, dataclasses.MISSING) == v}
                assert not restated, f"{registry.kind} {name!r}, preset {dataset!r} restates defaults {restated}"
    for learner, datasets, _ in LEARNER_ROWS:
        assert learner in REGISTRIES["learners"], learner
        assert set(datasets) <= set(SHARED) and set(datasets) <= set(REGISTRIES["datasets"].names())
    simclrv2 = REGISTRIES["learners"].get("simclrv2").presets
    assert simclrv2["cifar100"] == {"arch": "resnet18_cifar", "augment": "cifar"}  # its own steps, lr, wd stay
