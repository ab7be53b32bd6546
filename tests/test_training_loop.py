"""The one training loop (uslbench.training): interrupts, duration estimate, damaged checkpoints,
progress output."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# A child process that trains `supervised` for 10 steps on a 240-image digits pool; at step
# `stop_after` its step callback says "ready" and waits until the test has sent the signal.
CHILD = textwrap.dedent('''
    import dataclasses, json, sys, time
    from pathlib import Path

    import numpy as np

    from uslbench.datasets import load_dataset
    from uslbench.datasets.base import ImageSplit
    from uslbench.registry import LEARNERS, load_all
    from uslbench.training.loop import TrainingInterrupted

    base, stop_after = Path(sys.argv[1]), int(sys.argv[2])
    load_all()
    full = load_dataset("digits")
    dataset = dataclasses.replace(
        full, train=ImageSplit(labels=full.train.labels[:240], array=full.train.array[:240]),
        test=ImageSplit(labels=full.test.labels[:120], array=full.test.array[:120]),
        identity={**full.identity, "subset": "240/120"})
    labels = dataset.train.labels
    labeled = np.concatenate([np.flatnonzero(labels == c)[:2] for c in range(10)])
    # checkpoint_every 1000 > steps 10: without the signal, the only checkpoint is the last step's
    learner = LEARNERS.create("supervised", dataset="digits", steps=10, labeled_batch=8, eval_every=5,
                              checkpoint_every=1000, eval_batch=256, threads=1)
    calls = []

    def callback(phase, step):
        calls.append(step)
        if step == stop_after:
            (base / "ready").touch()
            deadline = time.monotonic() + 120
            while not (base / "sent").exists() and time.monotonic() < deadline:
                time.sleep(0.01)

    learner.step_callbacks.append(callback)
    try:
        metrics = learner.fit(dataset, labeled, seed=1, workdir=base / "run")
    except TrainingInterrupted as exc:
        print(json.dumps({"interrupted_at": exc.step, "calls": calls, "checkpoint": str(exc.checkpoint)}))
        sys.exit(128 + exc.signum)
    print(json.dumps({"steps": metrics["steps"], "calls": calls, "top1": metrics["top1"], "curve": metrics["curve"]}))
''')


def _child(script: Path, base: Path, stop_after: int) -> subprocess.Popen:
    base.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "USLBENCH_QUIET": "1"}
    return subprocess.Popen([sys.executable, str(script), str(base), str(stop_after)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(child: subprocess.Popen) -> tuple[int, dict, str]:
    out, err = child.communicate(timeout=300)
    lines = out.strip().splitlines()
    assert lines, err
    return child.returncode, json.loads(lines[-1]), err


def _interrupt(script: Path, base: Path, signum: int, stop_after: int = 4) -> tuple[int, dict, str]:
    child = _child(script, base, stop_after)
    deadline = time.monotonic() + 300
    while not (base / "ready").exists():
        assert child.poll() is None, child.communicate()[1]
        assert time.monotonic() < deadline, f"the child never reached step {stop_after}"
        time.sleep(0.02)
    child.send_signal(signum)
    (base / "sent").touch()
    return _finish(child)


def _uninterrupted_metrics() -> dict:
    """The child's run, in this process, without interruption (same data, config and seed)."""
    import dataclasses

    import numpy as np

    from uslbench.datasets import load_dataset
    from uslbench.datasets.base import ImageSplit
    from uslbench.registry import LEARNERS, load_all

    load_all()
    full = load_dataset("digits")
    dataset = dataclasses.replace(
        full, train=ImageSplit(labels=full.train.labels[:240], array=full.train.array[:240]),
        test=ImageSplit(labels=full.test.labels[:120], array=full.test.array[:120]),
        identity={**full.identity, "subset": "240/120"})
    labeled = np.concatenate([np.flatnonzero(dataset.train.labels == c)[:2] for c in range(10)])
    learner = LEARNERS.create("supervised", dataset="digits", steps=10, labeled_batch=8, eval_every=5,
                              checkpoint_every=1000, eval_batch=256, threads=1)
    return learner.fit(dataset, labeled, seed=1, workdir=None)


@pytest.mark.slow
def test_sigint_mid_training_leaves_a_checkpoint_and_a_rerun_resumes_from_it(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(CHILD)
    base = tmp_path / "run1"
    code, result, err = _interrupt(script, base, signal.SIGINT)

    checkpoint = base / "run" / "train.ckpt.pt"
    assert code == 130, err
    assert result == {"interrupted_at": 4, "calls": [1, 2, 3, 4], "checkpoint": str(checkpoint)}
    assert f"supervised/train: stopped by SIGINT after step 4 of 10; checkpoint: {checkpoint}." in err
    assert "Run the same command again (same --results-root, without --force) to resume" in err
    assert torch.load(checkpoint, weights_only=False)["state"]["step"] == 4
    assert (base / "run" / "train.ckpt.pt.sha256").is_file()

    # the rerun resumes at step 5: exactly the 6 missing steps run, and it ends where an
    # uninterrupted run ends
    code, resumed, err = _finish(_child(script, base, stop_after=-1))
    assert code == 0, err
    assert resumed["calls"] == [5, 6, 7, 8, 9, 10] and resumed["steps"] == 10
    fresh = _uninterrupted_metrics()
    assert (resumed["top1"], resumed["curve"]) == (fresh["top1"], fresh["curve"])


@pytest.mark.slow
def test_sigterm_mid_training_leaves_a_checkpoint(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(CHILD)
    code, result, err = _interrupt(script, tmp_path, signal.SIGTERM, stop_after=2)
    assert code == 143, err
    assert result["interrupted_at"] == 2 and result["calls"] == [1, 2]
    assert "stopped by SIGTERM after step 2 of 10" in err
    assert torch.load(tmp_path / "run" / "train.ckpt.pt", weights_only=False)["state"]["step"] == 2
