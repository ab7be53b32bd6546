"""Machine-independent CPU kernels (issue 12, item 12): torch's ATen, oneDNN and MKL kernels are
pinned to AVX2 on every x86-64 CPU with AVX2, so that an AVX-512 machine trains the same weights as
an AVX2 one; the run record says which kernels ran."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from uslbench.numerics import MODE_VARIABLE, PINNED, cpu_flags, pin_cpu_kernels

REPO = Path(__file__).resolve().parents[1]
X86 = platform.machine().lower() in ("x86_64", "amd64")
HAS_AVX2 = X86 and {"avx2", "fma"} <= cpu_flags()
AVX2_FLAGS = {"sse4_2", "avx", "avx2", "fma"}


@pytest.mark.skipif(not X86, reason="the pin applies to x86-64 CPUs")
def test_pin_asks_for_avx2_kernels_and_user_values_win():
    environ: dict[str, str] = {}
    assert pin_cpu_kernels(environ, AVX2_FLAGS) == PINNED == {
        "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2,STRICT"}
    assert environ == PINNED
    environ = {"MKL_CBWR": "COMPATIBLE"}
    assert pin_cpu_kernels(environ, AVX2_FLAGS) == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert environ["MKL_CBWR"] == "COMPATIBLE"
    environ = {MODE_VARIABLE: "native"}
    assert pin_cpu_kernels(environ, AVX2_FLAGS) == {} and environ == {MODE_VARIABLE: "native"}
    # a CPU without AVX2 keeps its kernels: ATen would run AVX2 code on it without checking
    environ = {}
    assert pin_cpu_kernels(environ, {"sse4_2", "avx"}) == {} and environ == {}


def _python(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in PINNED and k != MODE_VARIABLE}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(clean, PYTHONPATH=str(REPO), **env),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(not HAS_AVX2, reason="needs an x86-64 CPU with AVX2")
def test_importing_uslbench_first_pins_torch_to_avx2():
    code = "import uslbench, torch; print(torch.backends.cpu.get_cpu_capability())"
    assert _python(code) == "AVX2"
    native = _python(code, **{MODE_VARIABLE: "native"})
    assert native in ("AVX2", "AVX512")   # the CPU's own choice


TRAIN = """
import hashlib, json, sys, tempfile
import uslbench, torch
from uslbench.harness.pipeline import run_spec
from uslbench.harness.spec import RunSpec
root = tempfile.mkdtemp()
spec = RunSpec(dataset="digits", selector="random", learner="fixmatch", budget=10, seed=1,
               learner_config={"steps": "30", "unlabeled_ratio": "1", "ema": "0.9", "checkpoint_every": "30"})
out = run_spec(spec, root, echo=lambda m: None)
state = torch.load(next(out.record_path.parent.glob("*.ckpt.pt")), map_location="cpu", weights_only=False)
weights = state.get("ema") or state["model"]
digest = hashlib.sha256(b"".join(weights[k].numpy().tobytes() for k in sorted(weights))).hexdigest()
print(json.dumps({"digest": digest, "top1": out.record["metrics"]["top1"], "kernels": out.record["cpu_kernels"]}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not HAS_AVX2, reason="needs an x86-64 CPU with AVX2")
def test_training_gives_the_same_weights_as_an_avx2_only_machine():
    """This machine (whatever its instruction sets) against an emulated AVX2-only machine: the
    libraries capped at AVX2 by their own variables, uslbench's pin switched off. The weights of a
    30-step FixMatch run must be bitwise equal; without the pin an AVX-512 CPU trained others."""
    here = json.loads(_python(TRAIN))
    avx2_machine = json.loads(_python(TRAIN, **{MODE_VARIABLE: "native", "ATEN_CPU_CAPABILITY": "avx2",
                                                 "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}))
    assert here["kernels"]["aten_cpu_capability"] == "AVX2"
    assert {k: here["kernels"][k] for k in PINNED} == PINNED
    assert here["kernels"]["cpu_isa"] in ("avx2", "avx512")
    assert (here["digest"], here["top1"]) == (avx2_machine["digest"], avx2_machine["top1"])


@pytest.mark.skipif(not HAS_AVX2 or "avx512f" not in cpu_flags(), reason="needs an AVX-512 CPU")
def test_a_pin_that_came_too_late_is_reported():
    """torch used before uslbench was imported keeps its AVX-512 kernels; runs say so."""
    code = ("import torch; (torch.ones(3) + 1).sum(); import uslbench; from uslbench.numerics import check_pinned; "
            "print(check_pinned())")
    assert _python(code).startswith("CPU kernels: ATEN_CPU_CAPABILITY=avx2 was asked for but torch runs its AVX512 "
                                    "kernels (torch was imported before uslbench)")
