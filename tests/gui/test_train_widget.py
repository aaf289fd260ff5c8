"""The Train widget: background training with progress, Stop, refusals and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils import progress

from conftest import label_all, small_settings, wait_for_job


def config_spy(seen: list, setting: str):
    """A stand-in trainer that records one setting of the config it is given and trains nothing."""

    def fake_train(base, images, targets, out, **kwargs):
        seen.append(getattr(kwargs["config"], setting))
        return None
        yield

    return fake_train


def test_stop_ends_the_run_within_a_step_and_keeps_the_checkpoint(viewer, dock, qtbot):
    from napari_nanowire.core.model.modelfile import load_model

    widget = dock("Train")
    small_settings(widget)
    widget.epochs.value = 500  # far longer than the test waits
    events = []
    assert widget.pretrain()
    widget.state.runner.worker.yielded.connect(events.append)
    qtbot.waitUntil(lambda: len(events) >= 1, timeout=30_000)
    activity = [bar for bar in progress._all_instances if bar.desc.startswith("Pretraining")]
    assert len(activity) == 1 and activity[0].total == events[0].total_steps  # activity dock
    widget.stop_button.click()
    stopped_after = events[-1].step
    wait_for_job(qtbot, widget)
    assert events[-1].done and events[-1].message == "stopped"
    # steps already under way when Stop was pressed may still report; no more than one
    assert events[-1].step <= stopped_after + 1 < events[-1].total_steps
    checkpoint = load_model(widget.state.models["encoder"])
    assert checkpoint.meta.step == events[-1].step
    assert not widget.stop_button.isEnabled()


def test_a_second_start_while_training_is_refused_politely(
    viewer, dock, qtbot, monkeypatch, tiny_items
):
    warnings = []
    monkeypatch.setattr("napari_nanowire.gui.workers.show_warning", warnings.append)
    label_all(viewer, tiny_items)
    widget = dock("Train")
    measure = dock("Measure")
    small_settings(widget)
    widget.epochs.value = 500
    assert widget.pretrain()
    assert not widget.pretrain()
    assert not measure.measure()
    assert len(warnings) == 2 and "Pretraining is still running" in warnings[0]
    widget.state.runner.stop()
    wait_for_job(qtbot, widget)


def errors_shown(monkeypatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr("napari_nanowire.gui.notify.show_error", shown.append)
    return shown


def test_user_mistakes_become_notifications_that_say_what_to_do(
    viewer, dock, monkeypatch, tiny_encoder
):
    shown = errors_shown(monkeypatch)
    widget = dock("Train")
    assert not widget.train_classifier()
    assert "press Pretrain first" in shown[-1]
    widget.state.set_model("encoder", tiny_encoder)
    assert not widget.train_classifier()
    assert "No labelled slices" in shown[-1]
    layer = viewer.layers["tiny"]
    widget.state.set_label(layer, 0, "bundle")
    widget.state.set_label(layer, 1, "bundle")
    assert not widget.train_classifier()
    assert "label at least one image of another class" in shown[-1]
    assert not widget.train_segmenter()
    assert "Add mask layer" in shown[-1]
    viewer.add_labels(np.zeros((8, 32, 32), np.uint8), name="wrong size")
    widget.reset_choices()
    widget.masks.value = viewer.layers["wrong size"]
    assert not widget.train_segmenter()
    assert "pick the masks made for these images" in shown[-1]
    assert not widget.state.runner.running


def test_the_descriptors_box_reaches_the_classifier_config(
    viewer, dock, monkeypatch, tiny_items, tiny_encoder
):
    seen = []
    monkeypatch.setattr(
        "napari_nanowire.core.heads.classify.train_classifier", config_spy(seen, "descriptors")
    )
    label_all(viewer, tiny_items)
    widget = dock("Train")
    widget.state.set_model("encoder", tiny_encoder)
    for ticked in (widget.descriptors.value, False):  # ticked by default
        widget.descriptors.value = ticked
        list(widget._classifier_job(widget._out("classifier"))(None))
    assert seen == [True, False]


@pytest.mark.slow  # trains for real: 5.6 s alone, 2 s after a test that warmed up torch
def test_unticking_descriptors_trains_an_exportable_classifier(
    viewer, dock, qtbot, tiny_items, tiny_encoder
):
    from napari_nanowire.core.export.classifier import check_classifier_exportable
    from napari_nanowire.core.model.modelfile import load_model

    label_all(viewer, tiny_items)
    widget = dock("Train")
    widget.state.set_model("encoder", tiny_encoder)
    assert widget.descriptors.value  # today's default: descriptors on
    widget.descriptors.value = False
    assert widget.train_classifier()
    wait_for_job(qtbot, widget)
    model = load_model(widget.state.models["classifier"])
    assert model.meta.classifier.descriptors is False
    check_classifier_exportable(model)  # no refusal
    # the status line says what the labelled images tell about accuracy and confidence
    text, metrics = widget.status.text(), model.meta.classifier.metrics
    assert "ccuracy on new images" in text
    assert ("unknown" in text) == ("cv_accuracy" not in metrics)


def test_out_of_gpu_memory_says_to_lower_the_batch_size(viewer, dock, qtbot, monkeypatch):
    import torch

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        yield

    shown = errors_shown(monkeypatch)
    monkeypatch.setattr("napari_nanowire.core.ssl.pretrain.pretrain", out_of_memory)
    widget = dock("Train")
    assert widget.pretrain()
    wait_for_job(qtbot, widget)
    assert shown == [
        "Pretraining failed: the GPU ran out of memory. Lower the batch size or the image "
        "size, pick a smaller encoder, or choose the CPU as device."
    ]


def test_continue_resumes_a_stopped_pretraining_from_its_checkpoint(viewer, dock, qtbot):
    from napari_nanowire.core.model.modelfile import load_model

    widget = dock("Train")
    small_settings(widget)
    widget.epochs.value = 500
    assert not widget.continue_button.isEnabled()
    events = []
    assert widget.pretrain()
    widget.state.runner.worker.yielded.connect(events.append)
    qtbot.waitUntil(lambda: len(events) >= 1, timeout=30_000)
    widget.stop_button.click()
    wait_for_job(qtbot, widget)
    first = load_model(widget.state.models["encoder"]).meta.step
    assert first >= 1 and widget.continue_button.isEnabled()

    resumed = []
    widget.continue_button.click()
    widget.state.runner.worker.yielded.connect(resumed.append)
    qtbot.waitUntil(lambda: len(resumed) >= 1, timeout=30_000)
    widget.stop_button.click()
    wait_for_job(qtbot, widget)
    assert resumed[0].step > first  # went on from the checkpoint, not from step 0
    assert load_model(widget.state.models["encoder"]).meta.step > first


def test_the_segmenter_tile_is_its_own_setting(viewer, dock, monkeypatch, tiny_encoder):
    seen = []
    monkeypatch.setattr(
        "napari_nanowire.core.heads.segment.train_segmenter", config_spy(seen, "tile")
    )
    widget = dock("Train")
    widget.state.set_model("encoder", tiny_encoder)
    masks = dock("Label").add_masks()
    masks.data[0, 5:9, 5:9] = 2
    widget.reset_choices()
    widget.size.value = 64
    widget.tile.value = 160
    job = widget._segmenter_job(widget._out("segmenter"))
    list(job(None))
    assert seen == [160]  # not derived from the pretraining image size any more


def test_a_too_short_pretraining_is_warned_about_in_steps(monkeypatch):
    from napari_nanowire.gui import train_widget

    shown = []
    monkeypatch.setattr(train_widget, "show_warning", shown.append)
    assert train_widget.warn_few_steps(15, 1)
    assert "only 15 steps" in shown[0] and "about 14" in shown[0]
    assert not train_widget.warn_few_steps(400, 10)


def test_unpainted_slices_train_the_segmenter_only_when_ticked(
    viewer, dock, monkeypatch, tiny_encoder
):
    seen = []

    def fake_train(base, images, targets, out, **kwargs):
        seen.append((kwargs["config"].semi_supervised, len(kwargs.get("unlabelled") or [])))
        return None
        yield

    monkeypatch.setattr("napari_nanowire.core.heads.segment.train_segmenter", fake_train)
    widget = dock("Train")
    widget.state.set_model("encoder", tiny_encoder)
    masks = dock("Label").add_masks()
    masks.data[0, 5:9, 5:9] = 2
    widget.reset_choices()
    assert not widget.semi.value  # off by default (benchmarks/RESULTS.md, issue 11)
    list(widget._segmenter_job(widget._out("segmenter"))(None))
    widget.semi.value = True
    list(widget._segmenter_job(widget._out("segmenter"))(None))
    others = len(masks.data) - 1  # every slice but the painted one
    assert seen == [(False, 0), (True, others)]
