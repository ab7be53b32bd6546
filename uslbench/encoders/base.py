"""Encoder interface: images -> float32, L2-normalised features for the train and test splits."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..datasets.base import Dataset
from ..utils import l2_normalise  # noqa: F401  (encoders import it from here)
from ..traits import EncoderTraits


@dataclass
class FeatureSet:
    """An encoder's output for one data set.

    Attributes
    ----------
    train : np.ndarray of float32, shape (N, d)
        One L2-normalised row per pool image, in the train split's order.
    test : np.ndarray of float32, shape (N_test, d), or None
        The test split's rows (None when the data set has no test split).
    cache_stem : str or None
        Where these features lie in the feature cache, without suffix
        (``ROOT/cache/features/DATASET/ENCODER-KEY``; None when they were not cached). Consumers
        store data derived from the features next to it, named by it (the label-propagation
        probe's k-NN graph: ``STEM.knn10.npz``), so the derived file shares the features' key.
    """

    train: np.ndarray
    test: np.ndarray | None
    cache_stem: str | None = None


class Encoder:
    """Base class of the encoders: images -> one feature row per image, for the selectors and
    the feature probes.

    The USL paper selects on self-supervised features: SimCLR (Chen et al., ICML 2020) on CIFAR,
    MoCo v2 (Chen et al., 2020) and CLIP (Radford et al., ICML 2021) on ImageNet. Subclasses are
    registered with ``@ENCODERS.register(...)``, declare their `traits` and implement `encode`;
    encoders with a torch network subclass ``encoders.torch_base.TorchEncoder``.

    Parameters
    ----------
    config : dataclass instance
        The resolved config.

    Attributes
    ----------
    traits : EncoderTraits
        Declared once on the class: needs a weights file, wants a GPU.
    """

    traits = EncoderTraits()

    def __init__(self, config) -> None:
        self.config = config

    def weights_digest(self) -> str | None:
        """sha256 (hex) of the weights file; None for encoders without weights."""
        return None

    def identity(self) -> dict:
        """What the feature cache key is made of: name, config without paths, weights digest.

        Returns
        -------
        dict
            JSON-serialisable; never a path, so moving the weights keeps the cache.
        """
        config = dataclasses.asdict(self.config) if self.config is not None else {}
        # paths never go into keys: the weights enter through their digest
        config = {k: v for k, v in config.items() if "path" not in k and k != "weights"}
        return {"encoder": self.registry_name, "config": config, "weights": self.weights_digest()}

    def use_results_root(self, root) -> None:
        """The pipeline passes its results root (encoders with default weights locations use it)."""
        self.results_root = root

    def check(self, dataset: Dataset) -> None:
        """Fail before any long computation when this encoder cannot run on `dataset`.

        Raises
        ------
        UserError
            No weights, weights that do not fit, or an option this data set cannot use.
        """

    def encode(self, dataset: Dataset, device: str = "cpu") -> FeatureSet:
        """Features of the train (pool) and test splits.

        Parameters
        ----------
        dataset : Dataset
            The loaded data set.
        device : str, default "cpu"
            Torch device for encoders with a network.

        Returns
        -------
        FeatureSet
            float32 rows, L2-normalised, in split order; deterministic for the same weights.
        """
        raise NotImplementedError
