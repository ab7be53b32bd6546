"""The catalogue: imports every package that registers entries, then re-exports the registries.

`uslbench.registry` is the bottom layer and imports none of its users (as timm's `_registry`);
code that needs the entries registered imports them from here:

    from uslbench.catalog import SELECTORS
"""
from __future__ import annotations

from . import datasets, encoders, learners, selectors  # noqa: F401  (importing registers the entries)
from .registry import DATASETS, ENCODERS, LEARNERS, REGISTRIES, SELECTORS

__all__ = ["DATASETS", "ENCODERS", "LEARNERS", "REGISTRIES", "SELECTORS"]
