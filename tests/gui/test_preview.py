"""The Train step's slice preview: strokes in, the slice's mask on screen within seconds."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import wait_for_job


def stroke(mask: np.ndarray) -> np.ndarray:
    """A few strokes on one slice: wire pixels (2) and background pixels (1)."""
    out = np.zeros(mask.shape, np.uint8)
    wire = np.argwhere(mask > 0)
    out[tuple(wire[:: max(len(wire) // 40, 1)].T)] = 2
    out[2:4, 2:20] = np.where(mask[2:4, 2:20] > 0, 0, 1)
    out[-4:-2, -20:-2] = np.where(mask[-4:-2, -20:-2] > 0, 0, 1)
    return out


@pytest.fixture
def train(viewer, dock, tiny_encoder):
    """The Train widget with an encoder, a mask layer and 3 steps per preview."""
    widget = dock("Train")
    widget.state.set_model("encoder", tiny_encoder)
    widget.steps.value = 3
    return widget


def errors_shown(monkeypatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr("napari_nanowire.gui.notify.show_error", shown.append)
    return shown


def test_preview_shows_the_slice_in_view_with_the_image_scale_and_continues(
    viewer, dock, train, qtbot, tiny_items
):
    from napari_nanowire.gui.preview import SLICE_KEY

    image = viewer.layers["tiny"]
    masks = dock("Label").add_masks()
    masks.data[2] = stroke(tiny_items[2].mask)
    masks.data[5] = stroke(tiny_items[5].mask)
    viewer.layers.selection.active = masks
    viewer.dims.set_current_step(0, 2)
    train.reset_choices()

    train.preview_button.click()
    assert train.state.runner.running and not train.preview_button.isEnabled()
    wait_for_job(qtbot, train)
    preview = viewer.layers["tiny preview"]
    assert preview.data.shape == (1, 64, 64)  # the slice in view, not the stack
    assert preview.metadata[SLICE_KEY] == 2
    assert tuple(preview.scale) == tuple(image.scale)
    assert [str(u) for u in preview.units] == [str(u) for u in image.units]
    assert preview.translate[0] == 2 * image.scale[0]
    assert set(np.unique(preview.data)) <= {0, 1}
    assert preview.metadata["mask_classes"] == ["background", "nanowire"]
    assert viewer.layers.selection.active is masks  # the next stroke still goes on the masks
    names = [layer.name for layer in viewer.layers]
    assert names.index("tiny preview") < names.index(masks.name)  # under the strokes
    assert not train.previewer.last.continued and train.preview_button.isEnabled()
    assert "Preview of slice 2" in train.status.text() and "from the encoder" in train.status.text()
    assert train.bar.value() == 100
    assert "preview" not in train.state.models  # never among the saved models

    viewer.dims.set_current_step(0, 5)
    assert train.preview_slice()
    wait_for_job(qtbot, train)
    assert train.previewer.last.continued  # from the first preview's weights
    assert "continued from the last preview" in train.status.text()
    assert viewer.layers["tiny preview"] is preview  # replaced in place
    assert preview.metadata[SLICE_KEY] == 5 and preview.translate[0] == 5 * image.scale[0]


def test_preview_refuses_cleanly_and_says_what_to_do(viewer, dock, train, monkeypatch):
    shown = errors_shown(monkeypatch)
    assert not train.preview_slice()
    assert "Add mask layer" in shown[-1]
    masks = dock("Label").add_masks()
    train.reset_choices()
    assert not train.preview_slice()
    assert "is empty" in shown[-1] and "paint background (1)" in shown[-1]
    masks.data[0, 10:14, 10:14] = 2
    assert not train.preview_slice()
    assert "only one class" in shown[-1]
    masks.data[0, 30:34, 30:34] = 1
    train.state.models.clear()
    assert not train.preview_slice()
    assert "press Pretrain first" in shown[-1]
    assert not train.state.runner.running and "tiny preview" not in viewer.layers


def test_stop_ends_a_preview_and_auto_update_follows_the_strokes(
    viewer, dock, train, qtbot, tiny_items
):
    masks = dock("Label").add_masks()
    masks.data[1] = stroke(tiny_items[1].mask)
    viewer.dims.set_current_step(0, 1)
    train.reset_choices()
    train.steps.value = 10_000  # capped by the preview's own budget
    assert train.preview_slice()
    train.stop_button.click()
    wait_for_job(qtbot, train)
    assert train.previewer.last.mask is None and "Preview stopped" in train.status.text()
    assert "tiny preview" not in viewer.layers

    train.steps.value = 3
    train.previewer.auto.setChecked(True)
    masks.paint((1, 40, 40), 1)  # one stroke: the preview follows a moment later
    qtbot.waitUntil(lambda: "tiny preview" in viewer.layers, timeout=30_000)
    wait_for_job(qtbot, train)
    assert train.previewer.last.continued  # from the stopped preview's weights
    train.previewer.auto.setChecked(False)
    assert train.previewer._watched is None
