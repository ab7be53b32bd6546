"""Encoders: importing this package registers them all."""
from .base import Encoder, FeatureSet, l2_normalise  # noqa: F401
from . import clip, mocov2, pixels, precomputed, simclr, timm_encoder  # noqa: F401
