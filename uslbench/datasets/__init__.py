"""Data sets: one module per source; importing this package registers them all."""
from .base import Dataset, ImageSplit  # noqa: F401
from . import cifar, custom, digits, features, imagenet, medmnist  # noqa: F401
from ..registry import DATASETS


def load_dataset(name: str, data_root: str | None = None, download: bool = False, **overrides) -> Dataset:
    """Create and load a registered data set; `data_root`/`download` go to entries that take them."""
    entry = DATASETS.get(name)
    fields = {f.name for f in entry.config_fields()}
    if "data_root" in fields:
        overrides.setdefault("data_root", data_root)
    if "download" in fields:
        overrides.setdefault("download", download or None)
    return DATASETS.create(name, **overrides).load()
