"""Traits: a closed, typed set per kind, declared once on the class, read by the registry, the
launcher (GPU allocation) and the sweep (quick preset)."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import uslbench
from uslbench.harness.plan import plan_stages, plan_sweep
from uslbench.harness.resources import Resources
from uslbench.harness.spec import RunSpec
from uslbench.registry import Registry
from uslbench.catalog import REGISTRIES
from uslbench.traits import TRAIT_CLASSES, LearnerTraits, SelectorTraits, trait_names



@dataclass
class _Config:
    k: int = 5


def test_an_unknown_trait_is_an_error_and_traits_are_frozen():
    with pytest.raises(TypeError, match="gpu_only"):
        SelectorTraits(gpu_only=True)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        SelectorTraits().needs_labels = True  # type: ignore[misc]


def test_registration_refuses_a_second_declaration_and_the_wrong_kind():
    registry = Registry("widget", SelectorTraits)
    with pytest.raises(TypeError, match=r"\['needs_labels'\].*traits = SelectorTraits"):
        registry.register("doubled", "states a trait twice")(type("D", (), {"needs_labels": True}))
    with pytest.raises(TypeError, match="must be a SelectorTraits"):
        registry.register("wrong", "learner traits on a selector")(type("W", (), {"traits": LearnerTraits()}))
    with pytest.raises(ValueError, match=r"preset 'cifar10' sets \['kk'\]"):
        registry.register("typo", "a preset key that is no field", config=_Config, presets={"cifar10": {"kk": 1}})
    with pytest.raises(ValueError, match=r"test_config sets \['steps'\]"):
        registry.register("typo2", "a test setting that is no field", config=_Config, test_config={"steps": 1})
    assert registry.names() == []
    plain = registry.register("plain", "no traits declared")(type("P", (), {}))
    assert registry.traits("plain") == SelectorTraits() and plain.registry_name == "plain"


def test_every_entry_has_the_traits_of_its_kind():
    for registry in REGISTRIES.values():
        assert registry.traits_cls in TRAIT_CLASSES
        for name in registry.names():
            assert type(registry.traits(name)) is registry.traits_cls, name


def test_every_trait_the_code_reads_exists():
    """Attribute reads such as `.traits(name).gpu_recommended` or `traits.needs_labels` anywhere in
    the package name a field of a traits class (a misspelt trait read on a rare path is caught here,
    not by a user)."""
    known = {name for cls in TRAIT_CLASSES for name in trait_names(cls)}
    pattern = re.compile(r"traits(?:\([^()]*\))?\.([a-z_]+)\b(?!\()")  # reads, not method calls
    read = set()
    for path in Path(uslbench.__file__).parent.rglob("*.py"):
        read |= set(pattern.findall(path.read_text()))
    assert {"needs_labels", "uses_features", "gpu_recommended", "in_quick_preset", "fixed_encoder"} <= read
    assert read <= known, sorted(read - known)


def test_gpus_go_only_to_entries_whose_traits_recommend_one(tmp_path):
    """usl_t (selection) and fixmatch (run) get the GPU; pixels features, random and linear do not."""
    specs = [RunSpec(dataset="digits", selector="usl_t", learner="fixmatch", budget=10, seed=1),
             RunSpec(dataset="digits", selector="random", learner="linear", budget=10, seed=1)]
    plan = plan_sweep(specs, tmp_path)
    work = plan_stages(plan, Resources(executor="slurm", gpus=2))
    shape = {(item.stage, item.gpus): sorted(spec.selector + "/" + spec.learner for spec in item.specs) for item in work}
    assert shape == {("features", 0): ["usl_t/fixmatch"],
                     ("selection", 0): ["random/linear"], ("selection", 2): ["usl_t/fixmatch"],
                     ("run", 0): ["random/linear"], ("run", 2): ["usl_t/fixmatch"]}
    without = plan_stages(plan, Resources(executor="slurm", gpus=0))
    assert all(item.gpus == 0 for item in without)
