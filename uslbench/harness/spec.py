"""Run specifications and their content keys.

Keys are sha256 of canonical JSON with a schema version. They never contain paths or machine
details: a data root or a weights file enters only through the content it names (dataset
identity, weights digest), so moving data does not invalidate the cache.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import DEFAULT_SEED, SCHEMA_VERSION
from ..utils import check_budget, content_key


@dataclass
class RunSpec:
    dataset: str
    selector: str
    learner: str | None                        # None: features and selection only (`select --dataset`)
    budget: int                                # m; checked here (a positive integer), against the pool in prepare
    seed: int = DEFAULT_SEED
    encoder: str | None = None                 # None: the data set's default encoder
    selector_config: dict[str, Any] = field(default_factory=dict)
    learner_config: dict[str, Any] = field(default_factory=dict)
    encoder_config: dict[str, Any] = field(default_factory=dict)
    dataset_config: dict[str, Any] = field(default_factory=dict)
    encoder_weights: str | None = None         # a path: never part of a key (its digest is)
    data_root: str | None = None               # a path: never part of a key
    # your own labels (a CSV path,label; never part of a key, its sha256 and positions are):
    labels: str | None = None                  # run --labels: the labeled set and its labels (selector "labels")
    labels_picks: str | None = None            # run --picks: the export the labels answer (warnings only)
    already_labeled: str | None = None         # select --already-labeled: a second round picks m new images

    def __post_init__(self) -> None:
        self.budget = check_budget(self.budget, sys.maxsize)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def short(self) -> str:
        selector = f"labels from {Path(self.labels).name}" if self.labels else self.selector
        return (f"{self.dataset} | {selector} | {self.learner} | m={self.budget} | seed={self.seed}"
                + (f" | encoder={self.encoder}" if self.encoder else ""))


def feature_key(dataset_identity: dict, encoder_identity: dict) -> str:
    return content_key({"schema": SCHEMA_VERSION, "stage": "features",
                        "dataset": dataset_identity, "encoder": encoder_identity})


def selection_key(source_key: str, selector: str, selector_config: dict, budget: int, seed: int) -> str:
    """source_key is the feature key (feature-based selectors) or the data set key (random...)."""
    return content_key({"schema": SCHEMA_VERSION, "stage": "selection", "source": source_key,
                        "selector": selector, "config": selector_config, "budget": budget, "seed": seed})


def dataset_key(dataset_identity: dict) -> str:
    return content_key({"schema": SCHEMA_VERSION, "stage": "dataset", "dataset": dataset_identity})


def run_key(selection_key_: str, learner: str, learner_config: dict, seed: int, eval_source: str) -> str:
    """eval_source: the feature key for feature probes, the data set key for image learners."""
    return content_key({"schema": SCHEMA_VERSION, "stage": "run", "selection": selection_key_,
                        "learner": learner, "config": learner_config, "seed": seed, "eval": eval_source})
