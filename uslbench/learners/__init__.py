"""Learners: one module per method; importing this package registers them all."""
from .base import Learner, top1_metrics  # noqa: F401
from . import probes  # noqa: F401
from . import supervised, fixmatch  # noqa: F401,E402
from . import mixmatch, comatch  # noqa: F401,E402
from . import simclrv2  # noqa: F401,E402
