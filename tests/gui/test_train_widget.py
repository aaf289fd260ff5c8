"""The Train widget: background training with progress, Stop, refusals and clear errors."""

from __future__ import annotations

from conftest import label_all, small_settings, wait_for_job


def test_pretrain_then_classifier_save_models_and_draw_the_curve(viewer, dock, qtbot, tiny_items):
    widget = dock("Train")
    label_all(viewer, tiny_items)
    small_settings(widget)
    events = []
    assert widget.pretrain()
    widget.state.runner.worker.yielded.connect(events.append)
    wait_for_job(qtbot, widget)
    encoder = widget.state.models["encoder"]
    assert encoder.is_file() and events[-1].done
    assert widget.plot.losses and "loss" in widget.status.text()
    assert widget.train_classifier()
    wait_for_job(qtbot, widget)
    assert widget.state.models["classifier"].is_file()
    assert "classifier: classifier.nwmodel" in widget.models_label.text()
