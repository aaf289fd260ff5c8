"""Background jobs keep the viewer responsive: torch thread policy, batched progress, cheap plot.

What these check was found with benchmarks/bench_gui.py (stalls of napari's event loop while
training); the timings themselves live there, not here.
"""

from __future__ import annotations

import threading
import time

import pytest

from napari_nanowire.core.progress import Progress
from napari_nanowire.gui import workers
from napari_nanowire.gui.plots import LossPlot
from napari_nanowire.gui.workers import JobRunner, job_threads


@pytest.mark.parametrize(
    ("default", "cores", "expected"),
    [(2, 2, 1), (8, 8, 7), (4, 16, 4), (1, 1, 1), (2, None, 1)],
)
def test_jobs_leave_one_core_to_the_gui(default, cores, expected):
    assert job_threads(default, cores) == expected


def run(qtbot, runner: JobRunner, job, **callbacks) -> None:
    assert runner.start("Test job", job, **callbacks)
    qtbot.waitUntil(lambda: not runner.running, timeout=30_000)


def torch_threads_in_new_thread() -> int:
    import torch

    seen = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


def test_a_job_runs_on_the_policy_threads_and_gives_them_back(qtbot, monkeypatch):
    import torch

    monkeypatch.setattr(workers, "job_threads", lambda default, cores: 2)
    before = torch.get_num_threads()  # 1: the session pins one thread (conftest)
    results = []

    def job(stop):
        yield Progress("test", 1, 1)
        return torch.get_num_threads()

    run(qtbot, JobRunner(), job, on_done=results.append)
    assert results == [2] != [before]
    assert torch.get_num_threads() == before
    assert torch_threads_in_new_thread() == before


def test_every_event_reaches_the_widget_in_order_before_the_result(qtbot, monkeypatch):
    relayed, shown, at_done = [], [], []
    runner = JobRunner()
    relay = runner._relay
    monkeypatch.setattr(runner, "_relay", lambda event: (relayed.append(event), relay(event)))

    def job(stop):
        for step in range(1, 51):
            yield Progress("test", step, 50)
        return "result"

    run(qtbot, runner, job, on_progress=shown.append, on_done=lambda _: at_done.append(len(shown)))
    assert [event.step for event in shown] == list(range(1, 51))
    assert at_done == [50]
    # 50 events in a burst are shown in a few batches, each one repaint of the window
    assert relayed[-1].step == 50 and len(relayed) < 50


def test_new_metrics_and_runs_are_blitted_without_redrawing_the_axes(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.draw_idle = plot.draw  # full draws at once, so they can be counted
    full_draws = []
    plot.mpl_connect("draw_event", full_draws.append)

    def add(step: int, loss: float, **metrics) -> None:
        plot.add(Progress("test", step, 10, loss=loss, metrics=metrics))
        plot.finish()

    plot.start("pretraining")
    add(1, 4.0)  # the run's first event sets both axes: one full draw
    drawn = len(full_draws)
    assert plot.loss_ax.get_xlim()[1] == 10 and plot.loss_ax.get_ylim()[1] == pytest.approx(4.4)
    add(2, 3.0, knn_accuracy=0.5)
    legend = plot.metric_ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["knn_accuracy"]
    plot.start("classifier training")
    assert plot.loss_ax.get_title() == "classifier training"
    assert len(full_draws) == drawn  # a legend and a new run's title cost no full draw
    add(1, 1.5)
    assert plot.loss_ax.get_ylim()[1] == pytest.approx(1.65)  # fitted to the new run
    assert len(full_draws) == drawn + 1


def test_the_last_events_reach_the_widget_when_the_job_ends_while_they_are_relayed(
    qtbot, monkeypatch
):
    # napari's activity bar processes Qt events when it changes, so the job's end (which
    # clears the runner) can run inside _relay: the Measure bar stopped at 11 of 12 that way
    runner, shown = JobRunner(), []
    relay = runner._relay

    def relay_then_end(event):
        relay(event)
        if event.step == 12:
            runner._end()  # as if napari had processed the worker's "finished" here

    monkeypatch.setattr(runner, "_relay", relay_then_end)

    def job(stop):
        for step in range(1, 13):
            yield Progress("test", step, 12)

    assert runner.start("Test job", job, on_progress=shown.append)
    qtbot.waitUntil(lambda: not runner.running, timeout=30_000)
    assert [event.step for event in shown] == list(range(1, 13))


def test_newer_events_arriving_while_older_ones_are_relayed_are_shown_after_them(
    qtbot, monkeypatch
):
    # While _relay processes Qt events, the worker's next events and its end can be handled:
    # the end flushes the newer events at once. They used to be shown before the older batch,
    # whose last event then stuck on the bar (a finished Measure job at 50 %).
    runner, shown = JobRunner(), []
    relay = runner._relay
    later = [Progress("test", step, 4) for step in (3, 4)]

    def relay_while_the_job_ends(event):
        relay(event)
        if event.step == 2:
            for newer in later:
                runner._receive(newer)  # what the worker's "yielded" does
            runner._flush()  # and its "returned"
            runner._end()  # and its "finished"

    monkeypatch.setattr(runner, "_relay", relay_while_the_job_ends)

    def job(stop):
        yield Progress("test", 1, 4)
        yield Progress("test", 2, 4)
        stop.wait(30)  # ended by the test, as if the worker had finished

    assert runner.start("Test job", job, on_progress=shown.append)
    qtbot.waitUntil(lambda: not runner.running, timeout=30_000)
    runner._stop.set()
    assert [event.step for event in shown] == [1, 2, 3, 4]


def test_the_result_comes_after_the_last_events_when_it_arrives_while_they_are_relayed(
    qtbot, monkeypatch
):
    # A fast job (a collection classified from kept features) can end while its last events
    # are relayed to napari's activity bar, which processes Qt events: the result was shown
    # there, before the widget had those events, whose last progress line then replaced it
    # (the Predict status said "8 of 8 images classified" instead of the estimated accuracy).
    from qtpy.QtWidgets import QApplication

    runner, shown, at_done, order = JobRunner(), [], [], []
    relay = runner._relay

    def relay_while_the_job_ends(event):
        relay(event)
        if event.step == 3:
            runner._done.wait(30)
            deadline = time.monotonic() + 1.0  # the worker's "returned" and "finished" land here
            while time.monotonic() < deadline and not at_done:
                QApplication.processEvents()
                time.sleep(0.01)

    monkeypatch.setattr(runner, "_relay", relay_while_the_job_ends)

    def job(stop):
        for step in (1, 2, 3):
            yield Progress("test", step, 3)
        return "result"

    run(
        qtbot,
        runner,
        job,
        on_progress=lambda event: (shown.append(event), order.append("progress")),
        on_done=lambda _: (at_done.append(len(shown)), order.append("done")),
        on_finish=lambda: order.append("finish"),
    )
    assert at_done == [3] and order[-2:] == ["done", "finish"]


def test_the_curve_shows_held_out_figures_not_accuracy_on_the_training_labels(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.start("segmenter training")
    metrics = {"train_iou": 0.99, "val_iou": 0.62, "train_accuracy": 1.0, "cv_accuracy": 0.7}
    plot.add(Progress("segmenter", 25, 100, loss=0.3, metrics=metrics))
    plot.finish()
    legend = plot.metric_ax.get_legend()
    assert sorted(t.get_text() for t in legend.get_texts()) == ["cv_accuracy", "val_iou"]
