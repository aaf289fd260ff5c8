"""The Label widget: class shortcuts, counts, next unlabelled, masks, the project on disk."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nanowire.core.data.project import Project
from napari_nanowire.gui.label_widget import text_overlay
from napari_nanowire.gui.masks import brush_size_px, painted_slices
from napari_nanowire.gui.pixel_size import layer_pixel_size_nm
from napari_nanowire.gui.state import slice_labels


def press(viewer, key: str) -> None:
    """Press a key on the canvas as the user would (the active layer's keymap first)."""
    viewer.window._qt_viewer._key_map_handler.press_key(key)


def test_keys_and_buttons_label_the_slice_on_screen(viewer, dock):
    widget = dock("Label")
    layer = viewer.layers["tiny"]
    assert viewer.layers.selection.active is layer  # selected, so the keys work at once
    viewer.dims.set_current_step(0, 2)
    press(viewer, "3")
    viewer.dims.set_current_step(0, 5)
    widget.assign(0)
    labels = slice_labels(layer)
    assert labels[2] == "bundle" and labels[5] == "singular"
    assert [c.text() for c in widget.count_labels] == ["1", "0", "1", "0"]
    assert "2 of 8" in widget.summary.text()
    assert text_overlay(viewer).text == "bundle_001: singular"
    # napari's own "1" (pan/zoom) is replaced only on the image layer
    assert widget.next_unlabelled() == 6
    widget.assign(None)
    assert slice_labels(layer)[6] is None and slice_labels(layer)[2] == "bundle"


def test_number_keys_go_back_to_napari_when_the_widget_closes(viewer, dock):
    widget = dock("Label")
    layer = viewer.layers["tiny"]
    viewer.window.remove_dock_widget(widget)
    viewer.layers.selection.active = layer
    press(viewer, "1")
    assert slice_labels(layer) == [None] * 8
    assert not text_overlay(viewer).visible


def test_mask_layer_matches_the_image_and_is_ready_to_paint(viewer, dock):
    widget = dock("Label")
    masks = widget.add_masks()
    image = viewer.layers["tiny"]
    assert masks.data.shape == image.data.shape and not masks.data.any()
    assert tuple(masks.scale) == tuple(image.scale)
    assert masks.mode == "paint" and masks.selected_label == 2
    assert masks.brush_size == brush_size_px(1.0) == 6
    assert list(masks.features["class"]) == ["not labelled", "background", "nanowire"]
    assert widget.add_masks() is masks  # a second click selects the same layer


@pytest.mark.slow  # 16 s with teardown under load
def test_project_saves_labels_and_masks_as_they_change_and_reopens(
    viewer, dock, make_napari_viewer, qtbot, tmp_path
):
    widget = dock("Label")
    image = viewer.layers["tiny"]
    viewer.dims.set_current_step(0, 1)
    widget.assign(1)
    masks = widget.add_masks()
    project = widget.project_box.new_project(tmp_path / "proj")
    assert project is not None and (tmp_path / "proj" / "images.tif").is_file()
    viewer.dims.set_current_step(0, 4)
    widget.assign(2)  # saved at once, no Save button
    assert Project.open(tmp_path / "proj").labels == {
        "singular_001": "dispersed",
        "bundle_000": "bundle",
    }
    touched = []
    masks.events.paint.connect(lambda event: touched.append(painted_slices(masks, event.value)))
    masks.paint((4, 10, 10), 2)  # one brush stroke on slice 4 ...
    assert touched == [{4}]
    saved = tmp_path / "proj" / "masks"
    qtbot.waitUntil(lambda: (saved / "00004.tif").is_file(), timeout=5000)
    assert [p.name for p in saved.iterdir()] == ["00004.tif"]  # ... rewrites its slice only
    assert Project.open(tmp_path / "proj").load_masks()[4].max() == 2

    other = make_napari_viewer()
    _, reopened = other.window.add_plugin_dock_widget("napari-nanowire", "Label")
    again = reopened.project_box.open_project(tmp_path / "proj")
    layer = reopened.current_image()
    assert again is not None and layer is not image
    assert slice_labels(layer) == slice_labels(image)
    np.testing.assert_allclose(layer.data, image.data)
    reopened_masks = other.layers["proj masks"]
    np.testing.assert_array_equal(reopened_masks.data, masks.data)
    assert layer_pixel_size_nm(layer) == 1.0


def test_renaming_classes_keeps_labels_of_kept_classes(viewer, dock):
    widget = dock("Label")
    image = viewer.layers["tiny"]
    viewer.dims.set_current_step(0, 0)
    widget.assign(0)
    viewer.dims.set_current_step(0, 1)
    widget.assign(3)
    widget.names_edit.setText("singular, mesh")
    widget.names_edit.returnPressed.emit()
    assert widget.state.classes == ["singular", "mesh"]
    assert slice_labels(image)[:2] == ["singular", None]
    assert len(widget.count_labels) == 2


def test_bad_class_names_give_a_notification_not_a_crash(viewer, dock, monkeypatch):
    shown = []
    monkeypatch.setattr("napari_nanowire.gui.notify.show_error", shown.append)
    widget = dock("Label")
    widget.names_edit.setText("a, a")
    widget.names_edit.returnPressed.emit()
    assert shown and "differ" in shown[0]
    assert widget.state.classes[0] == "singular"


def test_a_project_that_cannot_be_read_gives_a_notification(viewer, dock, monkeypatch, tmp_path):
    shown = []
    monkeypatch.setattr("napari_nanowire.gui.notify.show_error", shown.append)
    widget = dock("Label")
    stack = np.zeros((2, 8, 8), np.float32)  # made elsewhere: not the project open here
    project = Project.create(tmp_path / "proj", names=["a", "b"], pixel_size_nm=1.0, stack=stack)
    (tmp_path / "proj" / "images.tif").unlink()
    assert widget.project_box.open_project(project.folder) is None
    assert "images" in shown[-1] and "are missing" in shown[-1]
    assert widget.project_box.open_project(tmp_path) is None
    assert "is not a napari-nanowire project" in shown[-1]
    assert [layer.name for layer in viewer.layers] == ["tiny"]  # nothing half-opened


def test_renaming_a_class_keeps_its_labels_also_in_the_project(viewer, dock, tmp_path):
    widget = dock("Label")
    image = viewer.layers["tiny"]
    viewer.dims.set_current_step(0, 2)
    widget.assign(1)  # dispersed
    widget.project_box.new_project(tmp_path / "proj")
    widget.names_edit.setText("singular, dispersed-wires, bundle, network, mesh")
    widget.apply_names.click()
    assert slice_labels(image)[2] == "dispersed-wires"
    assert widget.state.color_of("dispersed-wires") == widget.state.colors[1]
    assert Project.open(tmp_path / "proj").labels == {"dispersed_000": "dispersed-wires"}


def test_an_undone_stroke_is_undone_in_the_project_too(viewer, dock, qtbot, tmp_path):
    widget = dock("Label")
    masks = widget.add_masks()
    widget.project_box.new_project(tmp_path / "proj")
    saved = tmp_path / "proj" / "masks" / "00003.tif"
    masks.paint((3, 20, 20), 2)
    qtbot.waitUntil(saved.is_file, timeout=5000)
    masks.undo()  # napari 0.9 emits no paint event for this
    assert not masks.data[3].any()
    qtbot.waitUntil(lambda: not saved.exists(), timeout=5000)  # an empty slice has no file
    masks.redo()
    qtbot.waitUntil(saved.is_file, timeout=5000)
    assert Project.open(tmp_path / "proj").load_masks()[3].max() == 2


def test_a_hint_says_keys_paint_while_the_mask_layer_is_selected(viewer, dock):
    widget = dock("Label")
    masks = widget.add_masks()  # selects the mask layer
    assert viewer.layers.selection.active is masks
    assert widget.key_hint.isVisible() and "brush label" in widget.key_hint.text()
    viewer.layers.selection.active = viewer.layers["tiny"]
    assert not widget.key_hint.isVisible()


def test_opening_the_open_project_again_adds_no_layers(viewer, dock, tmp_path):
    widget = dock("Label")
    widget.add_masks()
    project = widget.project_box.new_project(tmp_path / "proj")
    before = [layer.name for layer in viewer.layers]
    assert widget.project_box.open_project(tmp_path / "proj") is project
    assert [layer.name for layer in viewer.layers] == before
