"""uslbench: benchmark suite and leaderboard harness for unsupervised selective labeling."""
import os as _os

# faiss and torch each run an OpenMP pool whose idle workers spin. On a small shared machine
# (2 cores here, other processes running) spinning workers starve the ones doing the work:
# a 50,000-point K-Means ran 9x slower with the default policy than with PASSIVE (measured).
# Set before faiss or torch is first imported; a value the user exported wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The same CPU kernels on every x86-64 machine with AVX2 (AVX-512 machines trained other weights
# than AVX2 ones: see uslbench/numerics.py). Also set before torch is first imported.
from .numerics import pin_cpu_kernels as _pin_cpu_kernels  # noqa: E402

_pin_cpu_kernels()
__version__ = "0.1.0"
SCHEMA_VERSION = 1

# Defaults that every layer shares, declared once (each import site uses these names).
DEFAULT_SEED = 1            # the run seed when none is given: CLI, RunSpec, Selector.select, Learner.fit
RESULTS_ROOT = "results"    # the default results root (caches, runs, leaderboards, weights)
DATA_ROOT_ENV = "USLBENCH_DATA"  # the data root when --data-root is not given ...
DATA_ROOT = "data"          # ... and without it (relative to the working folder)

from .errors import install_warning_format as _install_warning_format  # noqa: E402

_install_warning_format()  # the package's data warnings print as one clean line each
