"""Traits: what the harness needs to know about an entry, declared once, on its class.

Each registry kind has one frozen dataclass with a closed set of fields (scikit-learn's
``__sklearn_tags__`` / ``Tags`` dataclasses are the model). An entry declares its traits as a
class attribute; fields it does not name keep the defaults below::

    @SELECTORS.register("stratified", "ORACLE: m/C random images per class (reads labels)", ...)
    class StratifiedSelector(Selector):
        traits = SelectorTraits(needs_labels=True, uses_features=False)

The registry reads ``factory.traits`` at registration, the pipeline, the launcher (GPU
allocation), the sweep (quick-preset membership), ``list`` / ``describe``, the records and the
contract tests read ``entry.traits``. A misspelt or unknown trait is a ``TypeError`` when the
module is imported (the dataclasses accept no other keyword), and a class that states a trait
as a plain class attribute as well (``needs_labels = True``) is refused at registration, so each
trait has exactly one declaration.

This module imports nothing of the package: the registry (the bottom layer) depends on it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SelectorTraits:
    """Traits of a selector.

    Attributes
    ----------
    needs_labels : bool, default False
        Reads the pool's labels through ``SelectionContext.labels`` (an oracle: tables mark its
        row with a dagger). Every other selector gets a context whose ``labels`` raises
        ``LabelAccessError``.
    uses_features : bool, default True
        Selects from the encoder's (N, d) feature matrix. False: it needs only the pool size
        (random, stratified, file:PATH), and the pipeline computes no features for it.
    fixed_encoder : str or None, default None
        The encoder whose features this selector must see, whatever the run's ``--encoder``
        (clip_usl: ``"clip"``); the learner keeps the run's encoder.
    seed_dependent : bool, default True
        False when the seed cannot change the selection (file:PATH); the contract tests then do
        not expect different seeds to give different sets.
    gpu_recommended : bool, default False
        Trains a network (usl_t): a sweep with ``--gpus N`` gives its selection jobs the GPUs.
        It still runs on a CPU.
    in_quick_preset : bool, default True
        Part of ``sweep --preset quick`` (every CPU selector on digits). False for selectors that
        need a file or weights that the quick preset does not have.
    uses_initial_labeled : bool, default False
        Takes an already-labeled set (``SelectionContext.initial_labeled``, ``select
        --already-labeled``) the way its paper describes one and picks m new images outside it
        (a second round). Every other selector refuses an already-labeled set before any work.
    """

    needs_labels: bool = False
    uses_features: bool = True
    fixed_encoder: str | None = None
    seed_dependent: bool = True
    gpu_recommended: bool = False
    in_quick_preset: bool = True
    uses_initial_labeled: bool = False


@dataclass(frozen=True)
class LearnerTraits:
    """Traits of a learner.

    Attributes
    ----------
    uses_features : bool, default False
        Trains on the cached frozen features of the run's encoder (a probe: linear, knn,
        labelprop; tables name such columns "probes"). False: trains on the data set's images.
    gpu_recommended : bool, default False
        Trains a network: a sweep with ``--gpus N`` gives its run jobs the GPUs.
    """

    uses_features: bool = False
    gpu_recommended: bool = False


@dataclass(frozen=True)
class EncoderTraits:
    """Traits of an encoder.

    Attributes
    ----------
    needs_weights : bool, default False
        Reads a weights file (``--encoder-weights``, the default location written by
        ``pretrain``, or a library cache); False for encoders computed from the pixels alone.
    gpu_recommended : bool, default False
        Runs a network: a sweep with ``--gpus N`` gives its feature jobs the GPUs.
    reads_images : bool, default True
        Computes features from a data set's images. False: returns the embeddings a data set of
        precomputed features brings (``precomputed`` for ``features:PATH``); it refuses data
        sets of images, and it is the only kind of encoder such a data set takes.
    """

    needs_weights: bool = False
    gpu_recommended: bool = False
    reads_images: bool = True


@dataclass(frozen=True)
class DatasetTraits:
    """Traits of a data set.

    Attributes
    ----------
    needs_files : bool, default True
        Reads files under ``--data-root`` (or the path of a ``folder:`` / ``npz:`` entry).
        False only for data shipped inside an installed package (digits).
    pool_size : int or None, default None
        Number of train (pool) images with the default config, for data sets whose size is
        fixed; ``describe SELECTOR --dataset NAME`` uses it to show the settings that a selector
        picks from the pool size. None when it depends on the user's files.
    images : bool, default True
        Holds images. False: precomputed embeddings only (``features:PATH``): the label-free
        selectors and the probes run on it, learners that train on images and encoders that
        read images refuse it before any work.
    """

    needs_files: bool = True
    pool_size: int | None = None
    images: bool = True


TRAIT_CLASSES = (SelectorTraits, LearnerTraits, EncoderTraits, DatasetTraits)


def trait_names(traits_cls: type) -> tuple[str, ...]:
    """The closed set of trait names of one kind, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(traits_cls))


def as_dict(traits: Any) -> dict[str, Any]:
    """All traits of an entry as a plain dict (for records and ``describe``)."""
    return dataclasses.asdict(traits)


def non_default(traits: Any) -> dict[str, Any]:
    """The traits that differ from their kind's defaults (for ``list``)."""
    default = type(traits)()
    return {name: getattr(traits, name) for name in trait_names(type(traits))
            if getattr(traits, name) != getattr(default, name)}
