"""Running one long core job at a time off the main thread, relaying its progress.

Core jobs are generators that yield :class:`~napari_nanowire.core.progress.Progress` between
steps and end when a ``threading.Event`` is set. :class:`JobRunner` runs such a generator in a
napari thread worker, so the viewer stays responsive; mirrors its progress in napari's activity
dock; hands every event to the widget that started it; turns failures into notifications; and
refuses a second job while one runs (two trainings would fight for the same cores).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils import progress
from napari.utils.notifications import show_info, show_warning

from napari_nanowire.core.progress import Progress, format_eta

from .notify import report_error

Job = Callable[[threading.Event], Iterator[Progress]]
"""Starts a core job; the job stops soon after the event is set. A return value is its result."""


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
        return (yield from job(stop))
    except Exception as err:
        raise JobFailed(err) from err


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

        ``on_progress`` gets every event, ``on_done`` the job's result when it ends without
        error (also after Stop), ``on_finish`` is called last in every case. All run on the
        main thread.
        """
        if self.busy(title):
            return False
        self.title = title
        self._stop = threading.Event()
        self._bar = progress(total=0, desc=title)
        worker = create_worker(_drive, job, self._stop, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._relay)
        if on_progress is not None:
            worker.yielded.connect(on_progress)
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

    def _relay(self, event: Progress) -> None:
        """Mirror a progress event in napari's activity dock."""
        bar = self._bar
        if bar is None:
            return
        if bar.total != event.total_steps:
            bar.total = event.total_steps
        bar.n = event.step
        bar.set_description(f"{self.title}: {event.message}" if event.message else self.title)
        bar.refresh()

    def _finished(self) -> None:
        """Close the activity entry and accept the next job."""
        if self._bar is not None:
            self._bar.close()
        self._bar = None
        self.worker = None
