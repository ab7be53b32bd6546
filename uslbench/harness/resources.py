"""What each sweep job asks for (executor, parallelism, time, Slurm options), checked before planning."""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field

from ..errors import UserError

EXECUTORS = ("inline", "local", "slurm")


@dataclass
class Resources:
    """What each job asks for. `gpus` go only to jobs whose entries want a GPU (tags `trains`,
    `gpu_recommended`); probes and cheap selectors get none."""

    executor: str = "local"
    max_parallel: int = 2
    time_min: int = 120
    partition: str | None = None
    gpus: int = 0
    cpus: int | None = None
    mem: str | None = None
    array_parallelism: int | None = None
    account: str | None = None
    qos: str | None = None
    sbatch: dict[str, str] = field(default_factory=dict)
    runs_per_job: int = 0            # 0: automatic
    device: str = "auto"

    def check(self) -> None:
        if self.executor not in EXECUTORS:
            raise UserError(f"Unknown executor {self.executor!r}; use one of {', '.join(EXECUTORS)}.")
        if self.executor == "slurm" and shutil.which("sbatch") is None:
            raise UserError("--executor slurm needs Slurm's `sbatch` command, which is not on PATH on this "
                            "machine. Use --executor local to run the sweep here (local processes, "
                            "--max-parallel at a time), or start a single-node Slurm with scripts/slurm_up.sh "
                            "(as root).")
        if self.max_parallel < 1:
            raise UserError(f"--max-parallel must be at least 1, got {self.max_parallel}.")
        if self.time_min < 1:
            raise UserError(f"--time must be at least one minute, got {self.time_min} minutes.")
        if self.runs_per_job < 0:
            raise UserError(f"--runs-per-job must be 0 (automatic) or more, got {self.runs_per_job}.")


def parse_time_minutes(text: str | int) -> int:
    """'90' -> 90; '2:00:00' -> 120; '1-00:00:00' -> 1440 (Slurm's formats)."""
    text = str(text).strip()
    try:
        days = 0
        if "-" in text:
            day_text, text = text.split("-", 1)
            days = int(day_text)
        parts = [int(p) for p in text.split(":")]
        if len(parts) == 1:
            minutes = parts[0]
        elif len(parts) == 2:
            minutes = parts[0] + math.ceil(parts[1] / 60)
        elif len(parts) == 3:
            minutes = parts[0] * 60 + parts[1] + math.ceil(parts[2] / 60)
        else:
            raise ValueError
        return days * 1440 + minutes
    except ValueError:
        raise UserError(f"--time {text!r} is not minutes or [D-]HH:MM:SS (for example 90 or 2:00:00).") from None


