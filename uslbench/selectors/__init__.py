"""Selectors: one module per method; importing this package registers them all."""
from .base import LabelAccessError, Selection, SelectionContext, Selector  # noqa: F401
from . import clip_usl, coreset, file_index, probcover, random, stratified, typiclust, usl, usl_t  # noqa: F401
