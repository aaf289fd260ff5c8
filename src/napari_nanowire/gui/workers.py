"""Running one long core job at a time off the main thread, relaying its progress.

Core jobs are generators that yield :class:`~napari_nanowire.core.progress.Progress` between
steps and end when a ``threading.Event`` is set. :class:`JobRunner` runs such a generator in a
napari thread worker, so the viewer stays responsive; mirrors its progress in napari's activity
dock; hands every event to the widget that started it; turns failures into notifications; and
refuses a second job while one runs (two trainings would fight for the same cores).

Two things keep the viewer responsive while a job runs (measured with benchmarks/bench_gui.py):
the job's torch leaves one CPU core to the GUI, and progress is shown at most every
:data:`SHOW_EVERY_MS`, since every repaint of napari's window costs the main thread a full
window composition (15-35 ms under software OpenGL).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils import progress
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import QProgressBar
from superqt.utils import qthrottled

from napari_nanowire.core.progress import Progress, format_eta

from .notify import report_error

Job = Callable[[threading.Event], Iterator[Progress]]
"""Starts a core job; the job stops soon after the event is set. A return value is its result."""

SHOW_EVERY_MS = 200
"""Progress reaches the widget and the activity dock at most this often (the last events)."""


def job_threads(default: int, cores: int | None) -> int:
    """Torch CPU threads for a job run from the viewer: ``default``, leaving one core to the GUI.

    With as many torch threads as cores, the threads (spinning while they wait for each other)
    and the GUI's repaints fight over every core. Measured with benchmarks/bench_gui.py on 2
    cores under Xvfb: a tiny-encoder pretraining step in the viewer took 3-7x longer with 2
    threads than with 1, and the event loop stalled 16-20 ms at every tick instead of under
    1 ms; the price, a ResNet-18 step at 112 px on an otherwise idle machine, ~20 % longer.
    """
    return max(1, min(default, (cores or 1) - 1))


@contextmanager
def job_thread_policy() -> Iterator[None]:
    """Run the enclosed torch work of this thread on :func:`job_threads` threads.

    Only when torch is loaded: a job that never loaded it (e.g. measuring) has no threads.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(job_threads(before, os.cpu_count()))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class JobFailed(Exception):
    """Carries a job's exception to the main thread.

    superqt's worker takes any RuntimeError for a deleted Qt object and swallows it without
    emitting ``errored`` or ``finished``; torch's errors (out of memory among them) are
    RuntimeErrors, so they travel wrapped in this.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _drive(job: Job, stop: threading.Event) -> Generator[Progress, None, Any]:
    """Run ``job`` in the worker thread, passing its events on and returning its result."""
    try:
        with job_thread_policy():
            return (yield from job(stop))
    except Exception as err:
        raise JobFailed(err) from err


def show_fraction(bar: QProgressBar, fraction: float) -> None:
    """Set ``bar`` to ``fraction`` (0-1), painted with the next repaint of the window.

    QProgressBar.setValue repaints at once, and in napari's window every repaint composes the
    whole window (15-35 ms of the main thread under software OpenGL, 100-270 ms measured while
    training loaded the CPU); with updates off it only marks the bar for the next repaint.
    """
    bar.setUpdatesEnabled(False)
    bar.setValue(int(round(100 * fraction)))
    bar.setUpdatesEnabled(True)  # schedules the repaint


def progress_text(event: Progress) -> str:
    """One status line: epoch, step, loss, speed, time left and the job's message."""
    parts = [f"step {event.step}/{event.total_steps}"]
    if event.total_epochs:
        parts.insert(0, f"epoch {event.epoch}/{event.total_epochs}")
    if event.loss is not None:
        parts.append(f"loss {event.loss:.4f}")
    if event.images_per_s:
        parts.append(f"{event.images_per_s:.1f} img/s")
    if event.eta_s is not None and not event.done:
        parts.append(f"{format_eta(event.eta_s)} left")
    if event.message and not event.message.startswith("epoch "):  # repeats the numbers above
        parts.append(event.message)
    return " · ".join(parts)


class JobRunner:
    """At most one background job for one viewer, with a Stop that keeps what was saved."""

    def __init__(self) -> None:
        self.title = ""
        self.worker: GeneratorWorker | None = None
        self._stop: threading.Event | None = None
        self._bar: progress | None = None
        self._description = ""
        self._on_progress: Callable[[Progress], None] | None = None
        self._pending: list[Progress] = []
        self._show = qthrottled(self._show_pending, timeout=SHOW_EVERY_MS)

    @property
    def running(self) -> bool:
        """True while a job runs."""
        return self.worker is not None

    def start(
        self,
        title: str,
        job: Job,
        on_progress: Callable[[Progress], None] | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_finish: Callable[[], None] | None = None,
    ) -> bool:
        """Run ``job`` in the background; False (and a polite notice) if one already runs.

        ``on_progress`` gets every event, in order, at most every :data:`SHOW_EVERY_MS` (the
        events since the last time, all before ``on_done``); ``on_done`` the job's result when
        it ends without error (also after Stop); ``on_finish`` is called last in every case.
        All run on the main thread.
        """
        if self.busy(title):
            return False
        self.title = title
        self._stop = threading.Event()
        self._on_progress, self._pending = on_progress, []
        self._bar, self._description = progress(total=0, desc=title), title
        worker = create_worker(_drive, job, self._stop, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._receive)
        for ended in (worker.returned, worker.errored, worker.finished):
            ended.connect(self._flush)  # connected first: runs before the others
        if on_done is not None:
            worker.returned.connect(lambda result: self._safely(title, on_done, result))
        worker.errored.connect(lambda err: report_error(title, getattr(err, "error", err)))
        worker.finished.connect(self._finished)
        if on_finish is not None:
            worker.finished.connect(on_finish)
        self.worker = worker
        worker.start()
        return True

    def busy(self, title: str) -> bool:
        """True, with a polite notice, when a job runs and ``title`` must wait."""
        if self.running:
            show_warning(
                f"{self.title} is still running: wait until it ends, or press Stop, "
                f"before starting {title.lower()}."
            )
        return self.running

    def stop(self) -> None:
        """Ask the job to stop after its current step; it saves what it has first."""
        if self._stop is not None and self.running:
            self._stop.set()
            show_info(f"Stopping {self.title.lower()} after the current step.")

    @property
    def stop_requested(self) -> bool:
        """True once Stop was pressed for the running job."""
        return self._stop is not None and self._stop.is_set()

    @staticmethod
    def _safely(title: str, show: Callable[[Any], None], result: Any) -> None:
        """Hand the result over; a failure while showing it becomes a notification."""
        try:
            show(result)
        except Exception as err:  # shown, never a traceback dialog
            report_error(f"Showing the result of {title.lower()}", err)

    def _receive(self, event: Progress) -> None:
        """Keep ``event`` and show it now, or with later ones when the throttle allows."""
        self._pending.append(event)
        self._show()

    def _flush(self, *_) -> None:
        """Show the events still kept back (the job ended)."""
        self._show.flush()

    def _show_pending(self) -> None:
        """Mirror the last event kept so far in the activity dock, then hand them all to the widget.

        The activity dock goes first: napari's progress bar processes Qt events when it changes,
        which would otherwise also run the widget's pending plot redraw in the same stall.
        """
        events, self._pending = self._pending, []
        if not events:
            return
        self._relay(events[-1])
        if self._on_progress is not None:
            for event in events:
                self._on_progress(event)

    def _relay(self, event: Progress) -> None:
        """Mirror a progress event in napari's activity dock (what changed only)."""
        bar = self._bar
        if bar is None:
            return
        if bar.total != event.total_steps:
            bar.total = event.total_steps
        description = f"{self.title}: {event.message}" if event.message else self.title
        if description != self._description:
            self._description = description
            bar.set_description(description)
        bar.n = event.step
        bar.refresh()

    def _finished(self) -> None:
        """Close the activity entry and accept the next job."""
        if self._bar is not None:
            self._bar.close()
        self._bar = None
        self.worker = None
