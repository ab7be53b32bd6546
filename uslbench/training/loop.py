"""The one training loop of uslbench, run by the image learners (learners/), USL-T
(selectors/usl_t_train.py) and SimCLR pretraining (encoders/pretrain.py).

A trainer builds its model, optimiser and batches, and hands `TrainLoop` a step function
``step_fn(step, generator) -> (loss, {name: float})`` that draws step `step`'s batch and returns its
loss. The loop does the rest, in one place:

- optimisation: ``zero_grad``, backward (through a `torch.amp.GradScaler` when given), the
  optimiser step, then the EMA update; the learning rate of step k is ``base_lr * lr_factor(k)``
  for every parameter group (the same value `torch.optim.lr_scheduler.LambdaLR` gives, but stateless:
  a resumed run recomputes it from the step);
- an EMA copy of the weights (`EMA`), the model a trainer evaluates (`TrainLoop.evaluated`);
- seeding (`Seeding`): either per step (generators seeded by (seed, phase, step): no stream is
  carried across steps, so a resumed run draws exactly what an uninterrupted one would), or carried
  streams (torch's global generator and named `torch.Generator` objects) whose states go into the
  checkpoint;
- periodic work every `period` steps (evaluation, epoch means) with the losses since the last one;
- checkpoints (`checkpoint.Checkpoint`: atomic, digest-verified, previous one kept) every
  `checkpoint_every` steps (clamped to the run), at the last step, and when SIGINT or SIGTERM
  arrives: the loop finishes the current step, writes the checkpoint, prints where it is and how to
  resume, and raises `TrainingInterrupted` (a `KeyboardInterrupt`); a second signal stops at once;
- resume from the checkpoint, refusing one written for other inputs (`identity`);
- an estimate of the run's duration after a few timed steps (or from a given per-step cost), with a
  warning when it is absurd for the device (`estimate_duration`);
- progress: a tqdm bar when stderr is a terminal, otherwise one plain line every `log_every` steps
  (job logs stay small); nothing but warnings under ``USLBENCH_QUIET=1``.

Determinism: on the CPU a run stopped after a checkpoint and resumed gives the same weights, bit for
bit, as an uninterrupted one (tests/test_learners_loop.py).
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from ..errors import UserError
from ..utils import content_key, progress_disabled, seed_from
from .checkpoint import Checkpoint

Echo = Callable[[str], None]
# step_fn(step, generator) -> (loss, logs); log values are floats or 0-d tensors (read only when shown)
StepFn = Callable[[int, "torch.Generator | None"], "tuple[torch.Tensor, dict[str, Any]]"]


def stderr_echo(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quiet() -> bool:
    """USLBENCH_QUIET=1 silences progress and information lines (warnings still print)."""
    return os.environ.get("USLBENCH_QUIET") == "1"


def interactive() -> bool:
    """Progress bars only on a terminal (and not under CI=true / USLBENCH_QUIET=1): the same rule
    as every other bar (`utils.progress_disabled`)."""
    return not progress_disabled()


# ---------------------------------------------------------------------------------------------
# seeding


def seed_torch(*parts: Any) -> int:
    """Seed torch's global generators with `seed_from(*parts)` (model initialisation); returns the seed."""
    seed = seed_from(*parts)
    torch.manual_seed(seed)
    return seed


class Seeding:
    """Where a loop's random draws come from.

    `Seeding.per_step(seed, phase, device)`: before step k, a fresh generator seeded with
    seed_from(seed, phase, "step", k) is handed to the step function (batch indices, augmentation,
    MixUp) and torch's global generators are seeded with seed_from(seed, phase, "global", k) (dropout
    or any other global draw). Nothing is carried across steps.

    `Seeding.carried(*generators)`: the step function draws from streams carried across steps
    (torch's global generator and the given CPU generators); their states are saved in checkpoints
    and restored on resume.
    """

    def __init__(self, seed: Any = None, phase: str = "", device: str = "cpu", per_step: bool = False,
                 generators: Sequence[torch.Generator] = ()) -> None:
        self.seed, self.phase, self.device, self.is_per_step = seed, phase, device, per_step
        self.generators = list(generators)

    @classmethod
    def per_step(cls, seed: Any, phase: str, device: str = "cpu") -> "Seeding":
        return cls(seed, phase, device, per_step=True)

    @classmethod
    def carried(cls, *generators: torch.Generator) -> "Seeding":
        return cls(generators=generators)

    def begin_step(self, step: int) -> torch.Generator | None:
        if not self.is_per_step:
            return None
        generator = torch.Generator(device=self.device).manual_seed(seed_from(self.seed, self.phase, "step", step))
        torch.manual_seed(seed_from(self.seed, self.phase, "global", step))
        return generator

    def host_generator(self, step: int, generator: torch.Generator | None) -> torch.Generator | None:
        """A CPU generator of step `step` for values the host needs (a draw read with int() from a
        GPU generator would wait for the GPU): `generator` itself when it is a CPU one (so CPU runs
        keep their single stream), else one seeded by (seed, phase, "host", step)."""
        if generator is None or generator.device.type == "cpu":
            return generator
        return torch.Generator().manual_seed(seed_from(self.seed, self.phase, "host", step))

    def state(self) -> dict[str, Any]:
        return {"torch": torch.get_rng_state(), "generators": [g.get_state() for g in self.generators]}

    def load_state(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        torch.set_rng_state(state["torch"].cpu())
        for generator, saved in zip(self.generators, state.get("generators", [])):
            generator.set_state(saved.cpu())


class IndexStream:
    """Batch b of step k = positions [k b, (k + 1) b) of an endless concatenation of seeded
    permutations of range(n). A step's indices depend only on (seed, name, k): resumable, no state."""

    def __init__(self, n: int, batch: int, seed: int, name: str) -> None:
        self.n, self.batch, self.seed, self.name = n, batch, seed, name
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.pop(min(self._perms))
            g = torch.Generator().manual_seed(seed_from(self.seed, self.name, epoch))
            self._perms[epoch] = torch.randperm(self.n, generator=g)
        return self._perms[epoch]

    def indices(self, step: int) -> torch.Tensor:
        start = step * self.batch
        positions = torch.arange(start, start + self.batch)
        epochs = positions // self.n
        out = torch.empty(self.batch, dtype=torch.int64)
        for epoch in torch.unique(epochs).tolist():
            members = epochs == epoch
            out[members] = self._perm(int(epoch))[positions[members] % self.n]
        return out


# ---------------------------------------------------------------------------------------------
# optimisation pieces


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on BatchNorm weights and biases (every parameter with ndim <= 1)."""
    decay, no_decay = [], []
    for parameter in module.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cosine_factor(step: int, total_steps: int) -> float:
    """FixMatch's schedule: cos(7 pi k / (16 K)), from 1 down to cos(7 pi / 16) ~ 0.195."""
    return math.cos(7.0 * math.pi * step / (16.0 * max(total_steps, 1)))


def half_cosine_factor(step: int, total_steps: int) -> float:
    """SimCLR's cosine decay without restarts: (1 + cos(pi min(k, K) / K)) / 2, from 1 down to 0."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))


class EMA:
    """Exponential moving average of the parameters, ema <- decay ema + (1 - decay) p; buffers (BN
    statistics) are copied.

    On the CPU the update is one ``mul_`` + ``add_`` per parameter (the arithmetic every CPU result
    so far was computed with); elsewhere it is one fused ``torch._foreach_lerp_`` (ema + (1 - decay)
    (p - ema), equal to float rounding) and one ``torch._foreach_copy_`` for the buffers: a few
    kernel launches per step instead of a few per parameter (`foreach` forces either path)."""

    def __init__(self, model: nn.Module, decay: float, foreach: bool | None = None) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.foreach = foreach

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params, params = list(self.model.parameters()), [p.detach() for p in model.parameters()]
        foreach = self.foreach
        if foreach is None:
            foreach = bool(params) and params[0].device.type != "cpu"
        if foreach:
            torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
            ema_buffers, buffers = list(self.model.buffers()), list(model.buffers())
            if ema_buffers:
                torch._foreach_copy_(ema_buffers, buffers)
            return
        for ema_p, p in zip(ema_params, params):
            ema_p.mul_(self.decay).add_(p, alpha=1.0 - self.decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)


def as_floats(values: Sequence[Any]) -> list[float]:
    """Floats and 0-d tensors (a step's detached loss, on any device) -> floats, with one copy
    from the device for all the tensors (not one host sync per step)."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    if not tensors:
        return [float(v) for v in values]
    converted = iter(torch.stack([t.detach().reshape(()).double() for t in tensors]).tolist())
    return [next(converted) if isinstance(v, torch.Tensor) else float(v) for v in values]


@contextlib.contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """Temporarily set torch's CPU thread count (0 keeps it). Why: the small presets' tiny
    convolutions run several times faster on one thread than on two contended ones (measured: 9 ms
    vs 250 ms per step on a loaded 2-core machine), because OpenMP synchronisation dominates such
    small kernels."""
    previous = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------------
# duration estimate


# A run longer than this on the device kind is reported as absurd (with the trainer's hint).
ABSURD_SECONDS = {"cpu": 24 * 3600.0, "cuda": 30 * 24 * 3600.0}
# Estimates shorter than this are not worth a line.
MENTION_SECONDS = 60.0
LINE_SECONDS = 10.0  # least time between two progress lines (job logs)
POSTFIX_SECONDS = 1.0  # least time between two updates of the bar's loss numbers (each reads the device)
PROBE_STEPS = 3  # steps timed (after the first one of an invocation, which carries the warm-up)


def format_duration(seconds: float) -> str:
    """12 -> '12 s', 300 -> '5.0 min', 7200 -> '2.0 h', 3e7 -> '347 days'."""
    if seconds < 90:
        return f"{seconds:.3g} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


@dataclass(frozen=True)
class DurationEstimate:
    """Expected duration of the steps left and whether it is absurd for the device."""

    seconds_per_step: float
    steps: int
    seconds: float
    absurd: bool
    message: str


def estimate_duration(name: str, seconds_per_step: float, steps: int, device: str, hint: str = "") -> DurationEstimate:
    """Decide whether `steps` steps at `seconds_per_step` are reasonable on `device`.

    Absurd means longer than `ABSURD_SECONDS` for the device kind (a day on a CPU, a month on a
    GPU): e.g. the full CIFAR FixMatch recipe (2^20 steps of WRN-28-2) on a CPU, at 22 s a step, is
    267 days. The message then ends with `hint` (what to run instead).
    """
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    seconds = float(seconds_per_step) * int(steps)
    absurd = seconds > ABSURD_SECONDS[kind]
    message = (f"{name}: about {format_duration(seconds_per_step)} a step on {device}, so about "
               f"{format_duration(seconds)} for {steps:,} steps")
    if absurd:
        where = "a CPU" if kind == "cpu" else "a GPU"
        message += f"; that is more than {format_duration(ABSURD_SECONDS[kind])} on {where}."
        if hint:
            message += f" {hint}"
    return DurationEstimate(float(seconds_per_step), int(steps), seconds, absurd, message)


# ---------------------------------------------------------------------------------------------
# interrupts


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training after a checkpoint was written (or there was none to
    write). `str(exc)` says where the checkpoint is and how to resume; `signum` is the signal."""

    def __init__(self, message: str, signum: int, step: int, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint


class _StopRequest:
    signum: int | None = None


@contextlib.contextmanager
def deferred_interrupts(name: str) -> Iterator[_StopRequest]:
    """While training, SIGINT / SIGTERM only set a flag that the loop reads after each step; a
    second signal raises KeyboardInterrupt at once. Outside the main thread nothing changes.
    Forked DataLoader workers inherit the handler and ignore the signal (their parent stops them)."""
    request = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    owner = os.getpid()

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        if os.getpid() != owner:
            return
        if request.signum is not None:
            raise KeyboardInterrupt
        request.signum = signum
        # os.write: a signal handler must not re-enter a buffered stream the step may be writing to
        os.write(2, (f"\n{name}: {signal.Signals(signum).name} received; finishing this step and writing a "
                     "checkpoint (send it again to stop at once).\n").encode())

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ---------------------------------------------------------------------------------------------
# progress


class _Progress:
    """A tqdm bar on a terminal; otherwise a plain line every `every` steps (and at the end)."""

    def __init__(self, name: str, total: int, initial: int, echo: Echo, every: int | None, clock) -> None:
        self.name, self.total, self.echo, self.clock = name, total, echo, clock
        self.every = max(1, every if every else math.ceil(total / 20))
        self.bar = None
        self.lines = False
        if interactive():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=name, dynamic_ncols=True, leave=False)
        elif not quiet():
            self.lines = True
        self.since, self.since_step = clock(), initial
        self.postfix_at = -math.inf
        self.printed = 0

    def update(self, done: int, loss: Any, logs: dict[str, Any]) -> None:
        """`loss` and the `logs` values are floats or 0-d tensors; tensors are read (a host sync on
        a GPU) only when a line or the bar's numbers are written, at most once a second."""
        if self.bar is not None:
            self.bar.update(1)
            now = self.clock()
            if now - self.postfix_at >= POSTFIX_SECONDS or done == self.total:
                self.postfix_at = now
                values = as_floats([loss, *logs.values()])
                self.bar.set_postfix({"loss": f"{values[0]:.3f}",
                                      **{k: f"{v:.3f}" for k, v in zip(logs, values[1:])}}, refresh=False)
        elif self.lines and (done % self.every == 0 or done == self.total):
            now = self.clock()
            # short phases stay silent: a line needs LINE_SECONDS since the last one (the last step
            # gets one only when earlier lines were written)
            if now - self.since < LINE_SECONDS and not (done == self.total and self.printed):
                return
            self.printed += 1
            rate = (now - self.since) / max(done - self.since_step, 1)
            self.since, self.since_step = now, done
            loss, *values = as_floats([loss, *logs.values()])
            extras = "".join(f" {k} {v:.3f}" for k, v in zip(logs, values))
            self.echo(f"{self.name}: step {done:,}/{self.total:,} loss {loss:.4f}{extras} "
                      f"({format_duration(rate)} a step, {format_duration(rate * (self.total - done))} left)")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------------------
# the loop


@dataclass
class LoopResult:
    """What a finished `TrainLoop.run` returns."""

    steps: int                        # steps done in total (this invocation and the resumed ones)
    train_seconds: float              # training time, summed over invocations, up to the last checkpoint
    history: list[Any]                # the values `on_period` returned, in order
    pending_losses: list[float]       # losses since the last period
    resumed_from: int = 0             # the step this invocation started from (0: fresh)
    model: nn.Module | None = None    # the evaluated model (the EMA copy when there is one)


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".") or "value"]


def _default_mismatch(path: Path, differences: str) -> str:
    return (f"The checkpoint {path} belongs to another run (it differs in: {differences}); delete it or use "
            "another results folder.")


@dataclass
class TrainLoop:
    """One training run of `steps` optimisation steps; see the module documentation.

    Parameters
    ----------
    name : str
        Shown in progress and messages, e.g. "fixmatch/train".
    model, optimizer
        The trained module and its optimiser (its groups' initial lr are the base lrs).
    steps : int
        Length of the schedule K (lr factor, last period).
    stop_at : int, optional
        Stop this invocation after this many steps (smoke runs); default `steps`.
    lr_factor : callable, optional
        k -> factor of the base lr at step k; None keeps the optimiser's lr.
    ema : float
        EMA decay of the evaluated weights, 0 for none.
    scaler : torch.amp.GradScaler, optional
        Mixed-precision loss scaling.
    seeding : Seeding
        Where the random draws come from (default: nothing seeded by the loop).
    checkpoint : Checkpoint, optional
        Where the state is saved and resumed from; None keeps no checkpoint.
    identity : dict
        JSON-able description of the inputs (config, seed, data); a checkpoint with another identity
        is refused with ``mismatch(path, differences)`` as the UserError message.
    checkpoint_every : int, optional
        Checkpoint period in steps (clamped to the run); the last step is always checkpointed.
    period, on_period : int, callable
        Every `period` steps and at step `steps`: ``on_period(done, losses_since_last)``; the
        returned value is appended to the history (saved in checkpoints).
    extra_state, load_extra_state, train_mode : callable
        Method state carried in checkpoints (e.g. memory banks); put the model in training mode.
    callbacks : list of callable
        ``fn(done)`` after each step and its checkpoint (tests use them to interrupt runs).
    resume_hint, slow_hint : str
        Said after an interrupt (how to resume) and after an absurd duration estimate.
    seconds_per_step : float, optional
        A known per-step cost: the estimate is made before the first step instead of timing steps.
    """

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    steps: int
    stop_at: int | None = None
    lr_factor: Callable[[int], float] | None = None
    ema: float = 0.0
    scaler: Any = None
    seeding: Seeding = field(default_factory=Seeding)
    checkpoint: Checkpoint | None = None
    identity: Any = None
    mismatch: Callable[[Path, str], str] = _default_mismatch
    upgrade: Callable[[dict], dict] | None = None
    checkpoint_every: int | None = None
    period: int | None = None
    on_period: Callable[[int, list[float]], Any] | None = None
    extra_state: Callable[[], dict] | None = None
    load_extra_state: Callable[[dict], None] | None = None
    train_mode: Callable[[], None] | None = None
    callbacks: Iterable[Callable[[int], None]] = ()
    device: str = "cpu"
    echo: Echo = stderr_echo
    resume_hint: str = ""
    slow_hint: str = ""
    seconds_per_step: float | None = None
    log_every: int | None = None
    clock: Callable[[], float] = time.perf_counter

    def __post_init__(self) -> None:
        self.stop_at = self.steps if self.stop_at is None else min(self.stop_at, self.steps)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.ema_model = EMA(self.model, self.ema) if self.ema > 0 else None
        self.state: dict[str, Any] = {"step": 0, "history": [], "train_seconds": 0.0, "pending_losses": []}
        self.restored: int | None = None
        self.estimate: DurationEstimate | None = None

    @property
    def evaluated(self) -> nn.Module:
        """The model to evaluate: the EMA copy when there is one."""
        return self.ema_model.model if self.ema_model is not None else self.model

    @property
    def key(self) -> str:
        return content_key(self.identity)

    # --- checkpoints ---------------------------------------------------------------------------
    def restore(self) -> int:
        """Load the checkpoint if there is a good one; returns the step it resumes from (0: none)."""
        if self.restored is not None:
            return self.restored
        self.restored = 0
        if self.checkpoint is None:
            return 0
        saved = self.checkpoint.load(map_location=self.device)
        if saved is None:
            return 0
        if self.upgrade is not None:
            saved = self.upgrade(saved)
        if saved.get("key") != self.key:
            differences = ", ".join(_differences(saved.get("identity"), self.identity)) if "identity" in saved \
                else "unknown difference"
            raise UserError(self.mismatch(self.checkpoint.loaded_from or self.checkpoint.path, differences))
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.ema_model is not None:
            self.ema_model.model.load_state_dict(saved["ema"])
        if self.scaler is not None and saved.get("scaler"):  # a disabled scaler saves {}
            self.scaler.load_state_dict(saved["scaler"])
        if self.load_extra_state is not None:
            self.load_extra_state(saved.get("extra") or {})
        self.seeding.load_state(saved.get("rng"))
        state = dict(saved["state"])
        if "history" not in state:  # checkpoints of version 1 called it the curve
            state["history"] = state.pop("curve", [])
        self.state = state
        self.restored = int(state["step"])
        return self.restored

    def _snapshot(self) -> dict[str, Any]:
        return {"key": self.key, "identity": self.identity, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "ema": self.ema_model.model.state_dict() if self.ema_model is not None else None,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "extra": self.extra_state() if self.extra_state is not None else {},
                "rng": self.seeding.state(), "state": self.state}

    # --- the loop ------------------------------------------------------------------------------
    def run(self, step_fn: StepFn) -> LoopResult:
        """Train from the restored step to `stop_at`; see the class documentation."""
        start = self.restore()
        state = self.state
        stop_at = self.stop_at
        every = max(1, min(self.checkpoint_every or stop_at, stop_at))
        # floats (from a checkpoint) and this invocation's detached 0-d loss tensors, read from the
        # device only at a period or a checkpoint (no host sync per step)
        pending: list[Any] = list(state["pending_losses"])
        started = self.clock()
        saved_at = -1

        def persist(done: int) -> None:
            nonlocal started, saved_at
            now = self.clock()
            state["step"] = done
            pending[:] = as_floats(pending)
            state["pending_losses"] = list(pending)
            state["train_seconds"] += now - started
            started = now
            if self.checkpoint is not None:
                self.checkpoint.save(self._snapshot())
                if done == stop_at:
                    self.checkpoint.discard_previous()
            saved_at = done

        if self.seconds_per_step is not None and start < stop_at:
            self._report_estimate(self.seconds_per_step, stop_at - start)
        probe_from = None
        progress = _Progress(self.name, stop_at, start, self.echo, self.log_every, self.clock)
        try:
            with deferred_interrupts(self.name) as stop:
                if self.train_mode is not None:
                    self.train_mode()
                for step in range(start, stop_at):
                    generator = self.seeding.begin_step(step)
                    if self.lr_factor is not None:
                        factor = self.lr_factor(step)
                        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                            group["lr"] = base * factor
                    try:
                        loss, logs = step_fn(step, generator)
                        self.optimizer.zero_grad(set_to_none=True)
                        if self.scaler is not None:
                            self.scaler.scale(loss).backward()
                            self.scaler.step(self.optimizer)
                            self.scaler.update()
                        else:
                            loss.backward()
                            self.optimizer.step()
                    except Exception as exc:
                        if stop.signum is None:
                            raise
                        # e.g. a DataLoader worker killed by the same signal: keep the steps done
                        self._stop(stop.signum, step, persist, saved_at, exc)
                    if self.ema_model is not None:
                        self.ema_model.update(self.model)
                    value = loss.detach()
                    pending.append(value)
                    done = step + 1
                    progress.update(done, value, logs)
                    if self.period and self.on_period is not None and (done % self.period == 0 or done == self.steps):
                        state["history"].append(self.on_period(done, as_floats(pending)))
                        pending = []
                        if self.train_mode is not None:
                            self.train_mode()
                    if done % every == 0 or done == stop_at:
                        persist(done)
                    if self.seconds_per_step is None and self.estimate is None and stop_at - start > PROBE_STEPS + 1:
                        if done == start + 1:
                            probe_from = self.clock()
                        elif done == start + 1 + PROBE_STEPS and probe_from is not None:
                            self._report_estimate((self.clock() - probe_from) / PROBE_STEPS, stop_at - start)
                    for callback in self.callbacks:
                        callback(done)
                    if stop.signum is not None:
                        self._stop(stop.signum, done, persist, saved_at)
        finally:
            progress.close()
        return LoopResult(steps=state["step"], train_seconds=round(state["train_seconds"], 3),
                          history=state["history"], pending_losses=as_floats(pending), resumed_from=start,
                          model=self.evaluated)

    def _report_estimate(self, seconds_per_step: float, steps: int) -> None:
        self.estimate = estimate_duration(self.name, seconds_per_step, steps, self.device, self.slow_hint)
        if self.estimate.absurd:
            self.echo(f"warning: {self.estimate.message}")
        elif self.estimate.seconds >= MENTION_SECONDS and not quiet():
            self.echo(self.estimate.message)

    def _stop(self, signum: int, done: int, persist: Callable[[int], None], saved_at: int,
              cause: BaseException | None = None) -> None:
        signame = signal.Signals(signum).name
        if self.checkpoint is not None:
            if saved_at != done:
                persist(done)
            message = (f"{self.name}: stopped by {signame} after step {done:,} of {self.steps:,}; checkpoint: "
                       f"{self.checkpoint.path}. {self.resume_hint or 'Run it again to resume.'}").rstrip()
            path = self.checkpoint.path
        else:
            message = (f"{self.name}: stopped by {signame} after step {done:,} of {self.steps:,}; this phase keeps "
                       "no checkpoint, so it starts from the beginning next time.")
            path = None
        self.echo(message)
        raise TrainingInterrupted(message, signum, done, path) from cause
