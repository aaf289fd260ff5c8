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

import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils import progress
from napari.utils.notifications import show_info, show_warning
from psygnal import Signal
from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import qthrottled

from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.progress import Progress, format_eta

from .notify import report_error

Job = Callable[[threading.Event], Iterator[Progress]]
"""Starts a core job; the job stops soon after the event is set. A return value is its result."""

SHOW_EVERY_MS = 200
"""Progress reaches the widget and the activity dock at most this often (the last events)."""
CANCEL_WAIT_S = 120.0
"""How long closing waits for a job's current step (a ResNet step on a CPU takes seconds)."""

log = logging.getLogger(__name__)


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


def _drive(
    job: Job, stop: threading.Event, done: threading.Event
) -> Generator[Progress, None, Any]:
    """Run ``job`` in the worker thread, passing its events on and returning its result.

    ``done`` is set when the job's thread has left the job, however it ended.
    """
    try:
        with job_thread_policy():
            return (yield from job(stop))
    except Exception as err:
        raise JobFailed(err) from err
    finally:
        done.set()


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


class _Watcher(QObject):
    """Cancels the runner's job when its window closes or its widget leaves its dock.

    A child of the watched object, so it lives as long as that; it holds the runner and the
    ``on_close`` method weakly, so a viewer's state never keeps its window alive.
    """

    def __init__(
        self,
        watched: QObject,
        runner: JobRunner,
        window_close: bool,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(watched)
        self._runner = weakref.ref(runner)
        self._window_close = window_close
        self._on_close = weakref.WeakMethod(on_close) if on_close is not None else None
        watched.installEventFilter(self)

    def release(self) -> None:
        """Stop watching."""
        with suppress(RuntimeError):  # the watched widget may be deleted already
            self.parent().removeEventFilter(self)
            self.deleteLater()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        kind = event.type()
        closing = self._window_close and kind == QEvent.Type.Close
        undocked = kind == QEvent.Type.ParentChange and watched.parent() is None
        runner = self._runner()
        if (closing or undocked) and runner is not None and runner.running:
            runner.cancel()
        if closing and self._on_close is not None:
            # once napari handled the event: the user may still cancel the closing
            # (both held weakly: a pending call must not keep a closed window alive)
            QTimer.singleShot(0, partial(_after_close, weakref.ref(watched), self._on_close))
        return False


def _after_close(window: weakref.ref, on_close: weakref.WeakMethod) -> None:
    """Call ``on_close`` if ``window`` did close (is hidden or already deleted)."""
    try:
        closed = window() is None or not window().isVisible()
    except RuntimeError:  # deleted
        closed = True
    callback = on_close()
    if closed and callback is not None:
        callback()


def dock_root(widget: QWidget) -> QWidget:
    """The widget napari docked that holds ``widget`` (``widget`` itself when not docked).

    napari removes a dock widget by taking this out of its QDockWidget (``setParent(None)``).
    """
    while (parent := widget.parent()) is not None and not isinstance(parent, QDockWidget):
        if parent.isWindow():
            break
        widget = parent
    return widget


class JobRunner:
    """At most one background job for one viewer, with a Stop that keeps what was saved.

    ``started`` (with the job's title) and ``ended`` tell every widget of the viewer, so each
    can offer Stop whichever widget started the job. Closing the viewer's window, or taking
    the widget that started the job out of its dock, stops the job and waits for its thread
    (:meth:`cancel`), so nothing reaches widgets that are gone.
    """

    started = Signal(str)
    ended = Signal()

    def __init__(self) -> None:
        self.title = ""
        self.worker: GeneratorWorker | None = None
        self._stop: threading.Event | None = None
        self._done = threading.Event()
        self._token: object | None = None
        self._bar: progress | None = None
        self._description = ""
        self._on_progress: Callable[[Progress], None] | None = None
        self._pending: list[Progress] = []
        self._showing = False  # a _show_pending call is delivering events
        self._after_showing: list[Callable[[], None]] = []  # the job's end, held until then
        self._show = qthrottled(self._show_pending, timeout=SHOW_EVERY_MS)
        self._owner: _Watcher | None = None  # watches the widget that started the job
        self._cancelled = object()  # replaced at each cancel: no events reach widgets after it

    @property
    def running(self) -> bool:
        """True while a job runs."""
        return self.worker is not None

    def watch_window(self, window: QWidget, on_close: Callable[[], None] | None = None) -> None:
        """Cancel the running job (and wait for it) when ``window`` closes; then, once the
        window is closed for good (the user can still cancel), call ``on_close``."""
        _Watcher(window, self, window_close=True, on_close=on_close)

    def start(
        self,
        title: str,
        job: Job,
        on_progress: Callable[[Progress], None] | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_finish: Callable[[], None] | None = None,
        owner: QWidget | None = None,
    ) -> bool:
        """Run ``job`` in the background; False (and a polite notice) if one already runs.

        ``on_progress`` gets every event, in order, at most every :data:`SHOW_EVERY_MS` (the
        events since the last time, all before ``on_done``); ``on_done`` the job's result when
        it ends without error (also after Stop); ``on_finish`` is called last in every case.
        All run on the main thread, and none after :meth:`cancel`. Taking ``owner`` out of
        its dock cancels the job.
        """
        if self.busy(title):
            return False
        token = self._token = object()
        self.title = title
        self._stop, self._done = threading.Event(), threading.Event()
        self._on_progress, self._pending = on_progress, []
        self._bar, self._description = progress(total=0, desc=title), title
        worker = create_worker(
            _drive, job, self._stop, self._done, _start_thread=False, _ignore_errors=True
        )

        def live(callback: Callable) -> Callable:
            """``callback``, dropped once this job is cancelled or over."""
            return lambda *args: callback(*args) if self._token is token else None

        def at_end(callback: Callable) -> Callable:
            """``callback`` for the job's end (:func:`live`), run after the progress events
            being handed to the widget, if the end arrives while they are (napari's progress
            bar processes Qt events): a fast job's result was shown, then overwritten by its
            last progress line."""
            alive = live(callback)
            return lambda *args: (
                self._after_showing.append(lambda: alive(*args)) if self._showing else alive(*args)
            )

        worker.yielded.connect(live(self._receive))
        for ended in (worker.returned, worker.errored, worker.finished):
            ended.connect(at_end(self._flush))  # connected first: runs first
        if on_done is not None:
            worker.returned.connect(at_end(lambda result: self._safely(title, on_done, result)))
        worker.errored.connect(at_end(lambda err: report_error(title, getattr(err, "error", err))))
        if on_finish is not None:
            worker.finished.connect(
                at_end(lambda: self._safely(title, lambda _: on_finish(), None))
            )
        worker.finished.connect(at_end(self._end))
        self.worker = worker
        if owner is not None:
            self._watch_owner(owner)
        worker.start()
        self.started.emit(title)
        return True

    def _watch_owner(self, owner: QWidget) -> None:
        self._owner = _Watcher(dock_root(owner), self, window_close=False)

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

    def cancel(self, timeout_s: float = CANCEL_WAIT_S) -> bool:
        """Stop the job and wait (up to ``timeout_s``) until its thread has left it.

        For closing: the job saves its checkpoint as after Stop, but no callback of the
        widgets runs any more. True when no job runs any more.
        """
        if not self.running or self._stop is None:
            return True
        self._stop.set()
        self._cancelled = object()
        ended = self._done.wait(timeout_s)
        if not ended:
            log.warning("%s did not stop within %.0f s of closing.", self.title, timeout_s)
        self._end()
        return ended

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
        which would otherwise also run the widget's pending plot redraw in the same stall. Those
        Qt events can bring newer events and call this again; the nested call leaves them to
        this one, which hands them over after the older ones, so the widget sees every event in
        order (a nested delivery let an older event overwrite the last one: a finished job's
        bar stuck at 50 %, 1-2 runs in 10 of tests/gui/test_workflow.py).
        """
        if self._showing:
            return
        self._showing = True
        # taken first: the events napari processes in _relay may end the job (and clear it)
        on_progress, cancelled = self._on_progress, self._cancelled
        try:
            # until the kept events are handed over, or another job took the runner
            while self._pending and self._on_progress in (on_progress, None):
                events, self._pending = self._pending, []
                self._relay(events[-1])
                if on_progress is not None and self._cancelled is cancelled:
                    for event in events:
                        self._safely(self.title, on_progress, event)
        finally:
            self._showing = False
            while self._after_showing:
                self._after_showing.pop(0)()

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

    def _end(self) -> None:
        """Close the activity entry, drop the job's callbacks and accept the next job."""
        self._token = None
        self._show.cancel()
        if not self._showing:  # else the delivery under way hands the kept events over
            self._pending = []
        self._on_progress = None
        if self._owner is not None:
            self._owner.release()
            self._owner = None
        if self._bar is not None:
            self._bar.close()
        self._bar = None
        self.worker = None
        self.ended.emit()


class JobPanel(QWidget):
    """Progress bar, Stop and a status line for the viewer's one job, in each widget.

    Every panel of a viewer follows the running job, whichever widget started it: Stop is
    enabled (and names the job) while any job runs, also in a widget opened after it began.
    Only the panel of the widget that started the job shows its progress.
    """

    def __init__(self, runner: JobRunner, idle_text: str) -> None:
        super().__init__()
        self.runner = runner
        self.bar = QProgressBar()
        self.stop_button = QPushButton("Stop")
        self.status = QLabel(idle_text)
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.bar, stretch=1)
        row.addWidget(self.stop_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self.stop_button.clicked.connect(runner.stop)
        slots = ((runner.started, self._sync), (runner.ended, self._sync))
        for signal, slot in slots:
            signal.connect(slot)
        # the runner outlives the widget: let go of it when Qt deletes the widget
        self.destroyed.connect(lambda *_: [signal.disconnect(slot) for signal, slot in slots])
        self._sync()

    def _sync(self, *_) -> None:
        """Enable Stop while a job runs, naming it."""
        running = self.runner.running
        self.stop_button.setEnabled(running)
        self.stop_button.setToolTip(
            f"Stop {self.runner.title.lower()} after the current step" if running else ""
        )

    def begin(self, title: str) -> None:
        """Show that ``title`` starts."""
        show_fraction(self.bar, 0.0)
        self.status.setText(f"{title}: starting…")

    def show_progress(self, event: Progress, text: str | None = None) -> None:
        """Show ``event`` (with ``text``, or the standard progress line)."""
        show_fraction(self.bar, event.fraction)
        self.status.setText(text if text is not None else progress_text(event))


def launch(
    runner: JobRunner,
    title: str,
    prepare: Callable[[], Job],
    panel: JobPanel,
    owner: QWidget,
    on_progress: Callable[[Progress], None] | None = None,
    on_done: Callable[[Any], None] | None = None,
    on_finish: Callable[[], None] | None = None,
) -> bool:
    """Check the inputs and start a widget's job in the background; False if it did not start.

    ``prepare`` reads the widget's inputs and returns the job, or raises a
    :class:`NanowireError` saying what to fix (shown as a notification). Progress goes to
    ``on_progress`` if given, else to ``panel``'s standard line; the job stops when ``owner``
    leaves its dock or the window closes (see :class:`JobRunner`).
    """
    if runner.busy(title):
        return False
    try:
        job = prepare()
    except NanowireError as err:
        report_error(title, err)
        return False
    started = runner.start(
        title,
        job,
        on_progress=on_progress or panel.show_progress,
        on_done=on_done,
        on_finish=on_finish,
        owner=owner,
    )
    if started:  # after napari's activity entry, which repaints the window at once
        panel.begin(title)
    return started
