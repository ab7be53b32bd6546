"""Progress of a long loop over images: a tqdm bar with images/s on a terminal, plain log lines
(count, rate, time left) every `every_s` seconds otherwise, so job logs stay short. What counts as
a terminal is the project's one rule, `utils.progress_disabled` (stderr a terminal, not under
CI=true). USLBENCH_QUIET=1 silences both."""
from __future__ import annotations

import os
import sys
import time
from typing import TextIO


def _format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class ImageProgress:
    """`with ImageProgress(total, "timm train") as bar: ... bar.update(n)`; `rate` is images/s.
    `terminal` None: a bar when `utils.progress_disabled` allows one; True / False force it (tests)."""

    def __init__(self, total: int, desc: str, every_s: float = 30.0, stream: TextIO | None = None,
                 terminal: bool | None = None) -> None:
        from ..utils import progress_disabled  # looked up per call: the rule reads the current stderr

        self.total, self.desc, self.every_s = int(total), desc, float(every_s)
        self.stream = stream or sys.stderr
        self.quiet = os.environ.get("USLBENCH_QUIET") == "1"
        self.terminal = not progress_disabled() if terminal is None else terminal
        self.done = 0
        self._bar = None
        self._start = self._last = 0.0

    def __enter__(self) -> "ImageProgress":
        self._start = self._last = time.perf_counter()
        if self.terminal and not self.quiet:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=self.desc, unit="img", file=self.stream, leave=False,
                             dynamic_ncols=True)
        return self

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    def update(self, n: int) -> None:
        self.done += int(n)
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        if not self.quiet and now - self._last >= self.every_s and self.done < self.total:
            self._last = now
            left = (self.total - self.done) / self.rate if self.rate > 0 else float("nan")
            print(f"{self.desc}: {self.done:,}/{self.total:,} images ({100 * self.done / max(1, self.total):.0f}%), "
                  f"{self.rate:.1f} img/s, about {_format_seconds(left)} left", file=self.stream, flush=True)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
        if not self.quiet and exc[0] is None and self.total:
            print(f"{self.desc}: {self.done:,} images in {_format_seconds(self.elapsed)} ({self.rate:.1f} img/s)",
                  file=self.stream, flush=True)
