"""Selectors: one module per method; importing this package registers them all."""
from .base import LabelAccessError, Selection, SelectionContext, Selector  # noqa: F401
from . import random, stratified, usl  # noqa: F401
