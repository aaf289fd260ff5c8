"""Every job can be stopped from every widget, and closing a dock or the viewer ends it cleanly."""

from __future__ import annotations

from conftest import small_settings, wait_for_job
from napari_nanowire.core.progress import Progress


def endless_classify(path, slices, stop):
    """Stands in for classifying a huge stack: one step every few ms until stopped."""
    step = 0
    while not stop.is_set():
        step += 1
        yield Progress("predict", step, 10**6, message="classified")
    return None


def start_endless_classify(predict, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr("napari_nanowire.gui.predict_widget.classify_slices", endless_classify)
    model = tmp_path / "classifier.nwmodel"
    model.write_bytes(b"not read by the stand-in")
    predict.state.models["classifier"] = model
    assert predict.classify()


def test_classify_can_be_stopped_from_predict_and_from_train(
    viewer, dock, qtbot, monkeypatch, tmp_path
):
    train, predict = dock("Train"), dock("Predict")
    assert not train.stop_button.isEnabled() and not predict.stop_button.isEnabled()
    start_endless_classify(predict, monkeypatch, tmp_path)
    assert predict.stop_button.isEnabled() and train.stop_button.isEnabled()
    assert "classifying" in train.stop_button.toolTip()
    train.stop_button.click()
    wait_for_job(qtbot, predict, timeout=10_000)
    assert not predict.stop_button.isEnabled() and not train.stop_button.isEnabled()

    start_endless_classify(predict, monkeypatch, tmp_path)
    predict.stop_button.click()
    wait_for_job(qtbot, predict, timeout=10_000)


def test_the_guided_measure_step_can_stop_a_job(viewer, dock, qtbot, monkeypatch, tmp_path):
    guided = dock("Nanowire workflow")
    start_endless_classify(guided.predict, monkeypatch, tmp_path)
    guided.show_step("Measure")
    assert guided.measure.panel.stop_button.isEnabled()
    guided.measure.panel.stop_button.click()
    wait_for_job(qtbot, guided.predict, timeout=10_000)


def test_a_widget_opened_during_a_job_can_stop_it(viewer, dock, qtbot, monkeypatch, tmp_path):
    predict = dock("Predict")
    start_endless_classify(predict, monkeypatch, tmp_path)
    train = dock("Train")  # opened while the job runs
    assert train.stop_button.isEnabled()
    train.stop_button.click()
    wait_for_job(qtbot, predict, timeout=10_000)


def test_closing_the_dock_that_trains_stops_the_job_and_keeps_the_checkpoint(viewer, dock, qtbot):
    train = dock("Train")
    small_settings(train)
    train.epochs.value = 500  # far longer than the test waits
    runner = train.state.runner
    events = []
    assert train.pretrain()
    runner.worker.yielded.connect(events.append)
    qtbot.waitUntil(lambda: len(events) >= 1, timeout=30_000)
    viewer.window.remove_dock_widget(train)
    assert not runner.running  # stopped and waited for in the call
    assert (runner.title, runner.stop_requested) == ("Pretraining", True)
    reopened = dock("Train")
    assert not reopened.stop_button.isEnabled()
    assert reopened.pretrain()  # a new job may start at once
    reopened.state.runner.stop()
    wait_for_job(qtbot, reopened)


def test_closing_the_viewer_while_training_ends_the_job_without_a_crash(viewer, dock, qtbot):
    train = dock("Train")
    small_settings(train)
    train.epochs.value = 500
    runner = train.state.runner
    events = []
    assert train.pretrain()
    runner.worker.yielded.connect(events.append)
    qtbot.waitUntil(lambda: len(events) >= 1, timeout=30_000)
    done = runner._done
    viewer.close()
    assert done.is_set() and not runner.running  # the thread has left the job
    # progress still queued must not reach the deleted widgets (pytest-qt fails the test on
    # an exception in a Qt slot, as napari aborted before)
    qtbot.wait(500)


def test_the_session_only_model_folder_goes_with_the_viewer(viewer, dock, qtbot):
    train = dock("Train")
    out = train._out("encoder")  # no project: a temporary folder for this session
    out.write_bytes(b"model")
    assert out.parent.is_dir()
    viewer.close()
    qtbot.waitUntil(lambda: not out.parent.exists(), timeout=5000)
