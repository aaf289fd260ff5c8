"""Progress events shared by every long-running job (pretraining, training, prediction).

Long jobs are generators that yield :class:`Progress` between steps. The caller (GUI worker,
CLI progress bar, script) decides what to show, and stops a job by setting the
``threading.Event`` it passed in; jobs check it between steps.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Progress:
    """One report from a long job: where it is, how fast it goes and what it measured."""

    job: str
    step: int
    total_steps: int
    epoch: int = 0
    total_epochs: int = 0
    loss: float | None = None
    images_per_s: float | None = None
    eta_s: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""
    done: bool = False

    @property
    def fraction(self) -> float:
        """Share of the job done, in [0, 1]."""
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


class Rate:
    """Running throughput and time-left estimate for a job of known length."""

    def __init__(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self.start = time.perf_counter()
        self.items = 0
        self.steps = 0

    def update(self, n_items: int) -> tuple[float, float]:
        """Count one finished step of ``n_items`` items; return (items/s, seconds left)."""
        self.items += n_items
        self.steps += 1
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        per_step = elapsed / self.steps
        eta = per_step * max(self.total_steps - self.steps, 0)
        return self.items / elapsed, eta


def result_of(job: Generator[Progress, Any, Any]) -> Any:
    """What a job returns, its events passed over (for scripts that show no progress)."""
    while True:
        try:
            next(job)
        except StopIteration as end:
            return end.value


def stop_requested(stop: threading.Event | None) -> bool:
    """True when the caller asked the job to stop."""
    return stop is not None and stop.is_set()


def format_eta(seconds: float | None) -> str:
    """Human-readable time left, e.g. '2 min 05 s'."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
