"""scripts/gpu_check.sh and uslbench.gpu_check: every part at tiny sizes on the CPU (`--cpu-smoke`),
the table built from their JSON, and the shell wrapper's parts, time limits and failure reports
(with a stand-in Python). Only the CUDA calls are left to a GPU machine."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from uslbench import gpu_check

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


@pytest.mark.slow
def test_cpu_smoke_runs_every_part_and_writes_the_table(tmp_path, one_torch_thread):
    out = tmp_path / "check"
    for part in ("device", "density", "fixmatch", "selection"):
        assert gpu_check.main([part, "--out", str(out), "--cpu-smoke"]) == 0
    device = json.loads((out / "device.json").read_text())
    assert device["smoke"] is True and device["faiss_gpus"] == 0
    density = json.loads((out / "density.json").read_text())
    assert density["equal"] is True and density["max_relative_difference"] <= 1e-5 and density["n"] == 1500
    selection = json.loads((out / "selection.json").read_text())
    assert selection["shared_picks"] == 30 and selection["cpu"]["knn_index"].startswith("ivf")  # the 1.28M path
    assert selection["accelerated"]["selection_device"] == ("cuda" if gpu_check.cuda_available() else "cpu")
    fixmatch = json.loads((out / "fixmatch.json").read_text())
    assert fixmatch["pool"] == 200 and fixmatch["amp"]["steps_timed"] == 1 and "fp32" not in fixmatch
    assert (out / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()

    assert gpu_check.main(["table", "--out", str(out)]) == 0
    text = (out / "gpu_check.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| (")]
    assert [row[:5] for row in rows] == ["| (a)", "| (b)", "| (c)"]
    assert "30 / 30 picks shared" in rows[0] and "sums equal" in rows[1] and "steps/s" in rows[2]
    assert "CPU SMOKE RUN" in text


def test_table_reports_missing_and_failed_parts(tmp_path):
    gpu_check.write_json(tmp_path, "density", {"n": 50_000, "d": 128, "k": 400, "device": None,
                                               "error": "no CUDA GPU visible"})
    gpu_check.write_json(tmp_path, "selection", {"n": 1_280_000, "d": 128, "budget": 2911, "device": "cuda",
                                                 "accelerated": {"seconds": 20.0, "phases": {"kmeans": 5.0},
                                                                 "selection_device": "cuda", "faiss_gpu": True}})
    text = gpu_check.table(tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| (")]
    assert "20.0 s (kmeans 5.0) on cuda, faiss GPU True" in rows[0]
    assert "timed out or failed: see gpu_check.log, part selection" in rows[0]  # the CPU run never finished
    assert "no CUDA GPU visible" in rows[1]
    assert "timed out or failed: see gpu_check.log, part fixmatch" in rows[2]


def test_full_sizes_are_the_issue_s():
    full = gpu_check.FULL
    assert (full.selection_n, full.selection_d, full.selection_budget) == (1_280_000, 128, 2911)
    assert (full.density_n, full.density_d, full.density_k) == (50_000, 128, 400)
    assert (full.labeled_batch, full.labeled_batch * full.unlabeled_ratio) == (64, 448)


def test_mixture_is_seeded_and_normalised():
    a, b = gpu_check.mixture(1000, 8, 5, seed=3, chunk=300), gpu_check.mixture(1000, 8, 5, seed=3, chunk=300)
    assert np.array_equal(a, b) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)


def test_shell_wrapper_runs_the_parts_under_timeouts(tmp_path):
    """The wrapper with a stand-in Python: every part in order with its time limit's flags, the
    CIFAR options passed to fixmatch only, a failing part reported and the rest still run, the
    table made last, and the whole budget (with the kill grace) inside 10 minutes."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    fake.write_text(f"""#!/usr/bin/env bash
echo "$*" >> {calls}
if [ "$3" = density ]; then echo boom >&2; exit 3; fi
if [ "$3" = device ]; then echo '{{"gpu": "fake"}}' > "$5/device.json"; fi
exit 0
""")
    fake.chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": str(fake), "GPU_CHECK_OUT": str(out), "CIFAR_ROOT": "/data/c10",
           "SHARED_CIFAR": "/data/jpeg"}
    run = subprocess.run(["bash", str(SCRIPT), "--cpu-smoke"], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = calls.read_text().splitlines()
    assert [line.split()[2] for line in lines] == ["device", "density", "fixmatch", "selection", "table"]
    assert all("--cpu-smoke" in line for line in lines[:4])
    assert "--cifar-root /data/c10 --shared-cifar /data/jpeg" in lines[2]
    assert "--cifar-root" not in lines[1] + lines[3]
    assert "failed (exit 3)" in run.stdout and "boom" in run.stdout and '"gpu": "fake"' in run.stdout
    limits = [int(word.split("(at most ")[1].split(" s")[0]) for word in run.stdout.splitlines() if "(at most" in word]
    assert len(limits) == 4 and sum(limits) + 5 * len(limits) <= 600
    assert "== density\nboom\n== fixmatch" in (out / "gpu_check.log").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["device.json", "gpu_check.log"]  # the stand-in wrote no more
