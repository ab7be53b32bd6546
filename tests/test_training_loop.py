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
    from uslbench.catalog import LEARNERS
    from uslbench.training.loop import TrainingInterrupted

    base, stop_after = Path(sys.argv[1]), int(sys.argv[2])
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
    from uslbench.catalog import LEARNERS

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


# ---------------------------------------------------------------------------------------------
# duration estimate (issue 12 item 10): decisions from injected per-step times, no wall clock


class Stop(Exception):
    pass


def _toy_loop(steps: int, **options):
    from uslbench.training.loop import TrainLoop

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return TrainLoop(name="toy", model=model, optimizer=optimizer, steps=steps, **options), model


def _toy_step(model, clock=None, seconds=0.0):
    x = torch.ones(4, 3)

    def step_fn(step, generator):
        if clock is not None:
            clock[0] += seconds
        return model(x).pow(2).mean(), {}

    return step_fn


def test_estimate_flags_the_full_cifar_recipe_on_a_cpu_and_not_a_small_run():
    from uslbench.training.loop import estimate_duration

    full = estimate_duration("fixmatch/train", 22.0, 2 ** 20, "cpu", hint="Use the small recipe.")
    assert full.absurd and full.seconds == 22.0 * 2 ** 20
    assert full.message == ("fixmatch/train: about 22 s a step on cpu, so about 267 days for 1,048,576 steps; "
                            "that is more than 24.0 h on a CPU. Use the small recipe.")
    small = estimate_duration("fixmatch/train", 0.05, 400, "cpu", hint="Use the small recipe.")
    assert not small.absurd and small.seconds == pytest.approx(20.0) and "small recipe" not in small.message
    # the limit is one day on a CPU, a month on a GPU
    assert not estimate_duration("x", 1.0, 86_400, "cpu").absurd
    assert estimate_duration("x", 1.0, 86_401, "cpu").absurd
    assert not estimate_duration("x", 0.1, 2 ** 20, "cuda:0").absurd     # 29 h: a GPU run
    assert estimate_duration("x", 0.1, 2 ** 20, "cpu").absurd
    assert estimate_duration("x", 22.0, 2 ** 20, "cuda").absurd


def test_a_given_per_step_cost_warns_before_the_first_step():
    messages: list[str] = []
    loop, model = _toy_loop(2 ** 20, seconds_per_step=22.0, echo=messages.append,
                            slow_hint="Use the small recipe.")
    seen_at_first_step = []

    def step_fn(step, generator):
        seen_at_first_step.extend(messages)
        raise Stop

    with pytest.raises(Stop):
        loop.run(step_fn)
    assert seen_at_first_step == ["warning: toy: about 22 s a step on cpu, so about 267 days for 1,048,576 steps; "
                                  "that is more than 24.0 h on a CPU. Use the small recipe."]


def test_timed_steps_give_the_estimate_after_the_probe(monkeypatch):
    from uslbench.training import loop as loop_module

    monkeypatch.setenv("USLBENCH_QUIET", "1")  # the warning still prints
    clock = [0.0]
    messages: list[str] = []
    loop, model = _toy_loop(2 ** 20, echo=messages.append, clock=lambda: clock[0],
                            slow_hint="Use the small recipe.")
    seen = {}

    def callback(done):
        seen[done] = list(messages)
        if done == loop_module.PROBE_STEPS + 2:
            raise Stop

    loop.callbacks = [callback]
    with pytest.raises(Stop):
        loop.run(_toy_step(model, clock, seconds=22.0))
    # steps 2..4 are timed (the first carries the warm-up): the warning comes with step 4
    assert seen[loop_module.PROBE_STEPS] == []
    assert len(seen[loop_module.PROBE_STEPS + 1]) == 1 and seen[loop_module.PROBE_STEPS + 1][0].startswith(
        "warning: toy: about 22 s a step on cpu, so about 267 days")
    assert loop.estimate.seconds_per_step == 22.0 and loop.estimate.absurd


def test_the_learners_suggest_the_small_recipe():
    from uslbench.learners.image_learner import slow_hint

    hint = slow_hint("mixmatch")
    assert ("--learner-config mixmatch.arch=cnn --learner-config mixmatch.steps=400 "
            "--learner-config mixmatch.labeled_batch=32 --learner-config mixmatch.unlabeled_ratio=2 "
            "--learner-config mixmatch.ema=0.99") in hint and "--device cuda" in hint


@pytest.mark.parametrize("name", ["fixmatch", "mixmatch", "comatch", "supervised", "simclrv2"])
def test_the_small_recipe_hint_is_the_learners_own_digits_preset(name):
    """The hint reads the preset table, so it cannot drift from it (fixmatch's digits preset trains
    300 steps; the hint once said the shared row's 400)."""
    from uslbench.catalog import LEARNERS
    from uslbench.learners.image_learner import slow_hint

    digits = LEARNERS.resolve_config(name, "digits")
    hint = slow_hint(name, LEARNERS.get(name).config_cls)
    assert " ".join(f"--learner-config {name}.{k}={getattr(digits, k)}"
                    for k in ("arch", "steps", "labeled_batch", "unlabeled_ratio", "ema")) in hint
    if name == "fixmatch":
        assert f"{name}.steps=300" in hint


# ---------------------------------------------------------------------------------------------
# damaged checkpoints (issue 12 item 20)


def test_checkpoint_keeps_the_previous_one_and_sets_a_damaged_one_aside(tmp_path):
    import hashlib

    from uslbench.training.checkpoint import Checkpoint

    warnings: list[str] = []
    checkpoint = Checkpoint(tmp_path / "train.ckpt.pt", warn=warnings.append)
    checkpoint.save({"step": 1})
    checkpoint.save({"step": 2})
    data = checkpoint.path.read_bytes()
    assert (tmp_path / "train.ckpt.pt.sha256").read_text() == f"{hashlib.sha256(data).hexdigest()}  train.ckpt.pt\n"
    assert checkpoint.load() == {"step": 2} and checkpoint.loaded_from == checkpoint.path and warnings == []

    checkpoint.path.write_bytes(data[: len(data) // 2])  # truncated by a disk fault
    assert checkpoint.load() == {"step": 1} and checkpoint.loaded_from == tmp_path / "train.ckpt.pt.prev"
    assert len(warnings) == 1
    assert warnings[0].startswith(f"training checkpoint {checkpoint.path} is damaged (its sha256 ")
    assert warnings[0].endswith(f"); moved it to {tmp_path / 'train.ckpt.pt.bad'}, trying the previous "
                                f"checkpoint {tmp_path / 'train.ckpt.pt.prev'}.")
    assert (tmp_path / "train.ckpt.pt.bad").read_bytes() == data[: len(data) // 2]
    assert not checkpoint.path.exists()

    checkpoint.discard_previous()
    assert checkpoint.load() is None  # nothing good left: a fresh start


def test_a_truncated_checkpoint_without_digest_is_named_and_training_starts_again(tmp_path):
    from uslbench.training.checkpoint import Checkpoint

    path = tmp_path / "simclr.resume.pt"
    torch.save({"step": 5}, path)  # written by a version without digests
    warnings: list[str] = []
    assert Checkpoint(path, warn=warnings.append).load() == {"step": 5}
    path.write_bytes(path.read_bytes()[:100])  # killed while it was written
    assert Checkpoint(path, warn=warnings.append).load() is None
    assert len(warnings) == 1 and warnings[0].startswith(f"training checkpoint {path} is damaged (")
    assert warnings[0].endswith(f"moved it to {path}.bad, training starts again from the beginning.")




def _supervised(calls: list[int] | None = None, stop_at: int | None = None):
    from uslbench.catalog import LEARNERS

    learner = LEARNERS.create("supervised", dataset="digits", steps=9, labeled_batch=8, eval_every=3,
                              checkpoint_every=3, eval_batch=256, threads=1)

    def callback(phase, step):
        if calls is not None:
            calls.append(step)
        if step == stop_at:
            raise Stop

    learner.step_callbacks.append(callback)
    return learner


@pytest.mark.slow
def test_a_run_resumes_from_the_previous_checkpoint_when_the_last_is_truncated(small_digits, tmp_path, capsys):
    import numpy as np

    labeled = np.concatenate([np.flatnonzero(small_digits.train.labels == c)[:2] for c in range(10)])
    fresh = _supervised().fit(small_digits, labeled, seed=1, workdir=tmp_path / "fresh")
    run = tmp_path / "run"
    with pytest.raises(Stop):  # killed after the checkpoint of step 6 (the one of step 3 is .prev)
        _supervised(stop_at=6).fit(small_digits, labeled, seed=1, workdir=run)
    current = run / "train.ckpt.pt"
    current.write_bytes(current.read_bytes()[:1000])
    capsys.readouterr()

    calls: list[int] = []
    resumed = _supervised(calls).fit(small_digits, labeled, seed=1, workdir=run)
    err = capsys.readouterr().err
    assert f"training checkpoint {current} is damaged" in err and f"moved it to {current}.bad" in err
    assert f"trying the previous checkpoint {run / 'train.ckpt.pt.prev'}" in err
    assert calls == [4, 5, 6, 7, 8, 9]
    assert (resumed["top1"], resumed["curve"]) == (fresh["top1"], fresh["curve"])
    # the finished run keeps one good checkpoint (and the damaged file, set aside with its digest)
    assert sorted(p.name for p in run.iterdir()) == ["train.ckpt.pt", "train.ckpt.pt.bad", "train.ckpt.pt.bad.sha256",
                                                     "train.ckpt.pt.sha256"]

    # both checkpoints damaged: reported, set aside, and the run starts from scratch
    with pytest.raises(Stop):
        _supervised(stop_at=6).fit(small_digits, labeled, seed=2, workdir=tmp_path / "both")
    for name in ("train.ckpt.pt", "train.ckpt.pt.prev"):
        (tmp_path / "both" / name).write_bytes(b"\0" * 64)
    calls = []
    _supervised(calls).fit(small_digits, labeled, seed=2, workdir=tmp_path / "both")
    err = capsys.readouterr().err
    assert calls == list(range(1, 10)) and err.count("is damaged") == 2
    assert "training starts again from the beginning" in err


# ---------------------------------------------------------------------------------------------
# progress output (issue 12 item 15): a bar on a terminal, plain lines in job logs


def _progress_run(monkeypatch, seconds_per_step: float, steps: int = 20, **env):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("USLBENCH_QUIET", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    clock = [0.0]
    messages: list[str] = []
    loop, model = _toy_loop(steps, echo=messages.append, clock=lambda: clock[0], log_every=5)
    loop.run(_toy_step(model, clock, seconds=seconds_per_step))
    return messages


def test_job_logs_get_a_line_every_n_steps_and_no_bar(monkeypatch, capsys):
    messages = _progress_run(monkeypatch, seconds_per_step=11.0)
    lines = [m for m in messages if ": step " in m]
    assert [m.split()[2] for m in lines] == ["5/20", "10/20", "15/20", "20/20"]
    assert lines[0].startswith("toy: step 5/20 loss ") and lines[0].endswith("(11 s a step, 2.8 min left)")
    assert lines[-1].endswith("(11 s a step, 0 s left)")
    assert capsys.readouterr().err == ""  # no progress bar in a log


def test_short_phases_and_quiet_runs_stay_silent(monkeypatch):
    assert _progress_run(monkeypatch, seconds_per_step=0.1) == []  # a 2 s phase: no line
    assert [m for m in _progress_run(monkeypatch, seconds_per_step=11.0, USLBENCH_QUIET="1") if ": step " in m] == []


def test_a_terminal_gets_a_bar_and_no_lines(monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    messages = _progress_run(monkeypatch, seconds_per_step=11.0)
    assert [m for m in messages if ": step " in m] == []
    assert "\rtoy:   0%|" in terminal.getvalue() and "/20 [" in terminal.getvalue()  # a tqdm bar
