"""Machine-independent CPU kernels: the same training run is to give the same weights on any x86-64
CPU with AVX2, whatever its newer instruction sets.

Why: torch picks its CPU kernels per instruction set, in three libraries. ATen's vectorised kernels
(`ATEN_CPU_CAPABILITY`: default / avx2 / avx512), oneDNN's convolutions (`ONEDNN_MAX_CPU_ISA`) and
MKL's BLAS (`MKL_CBWR`, "conditional numerical reproducibility") each use AVX-512 code on a CPU that
has it and AVX2 code on one that does not, and the two sum in different orders. The results differ
in the last bits, and a few hundred SGD steps turn that into different accuracies: the quick
preset's FixMatch cell usl_t m=10 on digits was 67.9 ± 0.8 on an AVX-512 machine and 69.6 ± 3.1 on
an AVX2 one (the committed reference). ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA each alone change
the weights of a 100-step digits FixMatch run on an AVX-512 CPU; MKL runs its AVX2 code on AMD CPUs
anyway but its AVX-512 code on Intel ones (and MKL_CBWR=COMPATIBLE alone changes the weights too);
thread counts 1, 2, 4 and 16 change nothing; selections and the feature probes (scikit-learn, faiss)
are the same under every setting.

What: before torch is imported (`uslbench/__init__.py` calls `pin_cpu_kernels`), every x86-64 CPU
with AVX2 is asked for its AVX2 kernels: ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2,
MKL_CBWR=AVX2,STRICT (STRICT: MKL's strict mode, bitwise also across thread counts for its BLAS
routines). Checked on an AVX-512 AMD EPYC: the pinned run equals an emulated AVX2-only machine (the
libraries capped by their own variables) bit for bit. A value the user exported wins;
`USLBENCH_CPU_KERNELS=native` leaves all three to the libraries (7-9% less CPU time when training on
an AVX-512 CPU). CPUs without AVX2, and other architectures (ARM), keep their own kernels: their
FixMatch cells can differ from the reference by a point or two (1.8 at most, measured with emulated
kernels of a CPU without AVX2). Every run record says which kernels it ran with
(`cpu_kernels`), and `check_pinned` tells when the pin did not take effect (torch imported and used
before uslbench).
"""
from __future__ import annotations

import os
import platform
import subprocess
from typing import Any, MutableMapping

MODE_VARIABLE = "USLBENCH_CPU_KERNELS"      # "avx2" (default) or "native"
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2,STRICT"}


def cpu_flags() -> set[str]:
    """The CPU's feature flags (lower case: avx2, fma, avx512f, ...); empty when unknown."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    if platform.system() == "Darwin" and platform.machine() in ("x86_64", "AMD64"):
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                                 capture_output=True, text=True, timeout=5).stdout
            return {flag.lower() for flag in out.split()}
        except (OSError, subprocess.SubprocessError):
            pass
    return set()


def cpu_model() -> str:
    """'AMD EPYC 9654 96-Core Processor' or platform.processor()."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_isa(flags: set[str] | None = None) -> str:
    """The widest vector instruction set of this CPU: avx512, avx2, avx, sse4_2, or the machine name."""
    flags = cpu_flags() if flags is None else flags
    for isa, needed in (("avx512", "avx512f"), ("avx2", "avx2"), ("avx", "avx"), ("sse4_2", "sse4_2")):
        if needed in flags:
            return isa
    return platform.machine()


def pin_cpu_kernels(environ: MutableMapping[str, str] = os.environ, flags: set[str] | None = None) -> dict[str, str]:
    """Set the AVX2 kernel choice for ATen, oneDNN and MKL where this CPU has AVX2 (user values
    win). Must run before torch is imported. Returns the variables it set."""
    if environ.get(MODE_VARIABLE, "avx2").lower() == "native":
        return {}
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    flags = cpu_flags() if flags is None else flags
    if not {"avx2", "fma"} <= flags:  # ATen would execute AVX2 code without checking: never on such CPUs
        return {}
    set_here = {}
    for name, value in PINNED.items():
        if name not in environ:
            environ[name] = value
            set_here[name] = value
    return set_here


def cpu_kernels() -> dict[str, Any]:
    """What a run record keeps about the kernels it ran with (imports torch)."""
    import torch

    return {"mode": os.environ.get(MODE_VARIABLE, "avx2"),
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            **{name: os.environ.get(name) for name in PINNED},
            "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
            "torch_threads": torch.get_num_threads(),
            "cpu": cpu_model(), "cpu_isa": cpu_isa()}


def check_pinned() -> str | None:
    """A warning when the ATen kernels in use are not the requested ones (torch was imported and
    ran an operation before uslbench set ATEN_CPU_CAPABILITY), else None."""
    wanted = os.environ.get("ATEN_CPU_CAPABILITY")
    if not wanted:
        return None
    import torch

    actual = torch.backends.cpu.get_cpu_capability()
    if actual.lower() == wanted.lower():
        return None
    return (f"CPU kernels: ATEN_CPU_CAPABILITY={wanted} was asked for but torch runs its {actual} kernels (torch "
            "was imported before uslbench); training results may differ from other machines in the last digits. "
            f"Import uslbench first, or export ATEN_CPU_CAPABILITY={wanted} before starting Python.")
