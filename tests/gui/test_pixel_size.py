"""The pixel size: shown to 4+ digits, never rounded, set for all layers of an image at once."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_nanowire.core.data.project import Project
from napari_nanowire.gui import pixel_size_widget
from napari_nanowire.gui.pixel_size import (
    PixelSizeError,
    layer_pixel_size_nm,
    set_image_pixel_size,
    set_layer_pixel_size_nm,
)


@pytest.mark.parametrize("calibrated", [0.01775, 0.0543, 0.0177541234])
def test_set_without_editing_keeps_the_file_calibration(viewer, dock, calibrated):
    image = viewer.layers["tiny"]
    set_layer_pixel_size_nm(image, calibrated)
    widget = dock("Pixel size")
    widget.reset_choices()
    shown = widget.info.text()
    assert f"{calibrated:.4g}" in shown  # 4 significant digits at least, not "0.02"
    assert widget.size.value() == pytest.approx(calibrated, rel=1e-4)
    assert not widget.set_pixel_size()
    assert layer_pixel_size_nm(image) == calibrated  # unchanged to the last digit


def test_a_new_pixel_size_reaches_masks_segmentation_project_and_view(
    viewer, dock, tmp_path, monkeypatch
):
    warnings = []
    monkeypatch.setattr("napari._vispy.canvas.show_warning", warnings.append)
    label = dock("Label")
    image = viewer.layers["tiny"]
    masks = label.add_masks()
    project = label.project_box.new_project(tmp_path / "proj")
    widget = dock("Pixel size")
    widget.reset_choices()
    widget.picker.value = image
    widget.size.setValue(0.0543)
    assert widget.set_pixel_size()
    for layer in (image, masks):
        assert layer_pixel_size_nm(layer) == pytest.approx(0.0543)
        assert [str(u) for u in layer.units[-2:]] == ["nanometer", "nanometer"]
    assert viewer.layers.extent.units is not None  # consistent: the scale bar keeps its unit
    viewer.window._qt_viewer.canvas._update_world_units()
    assert warnings == []
    saved = json.loads((tmp_path / "proj" / "project.json").read_text())
    assert saved["pixel_size_nm"] == pytest.approx(0.0543)
    assert Project.open(project.folder).pixel_size_nm == pytest.approx(0.0543)
    # the view was reset onto the rescaled image: its centre is the image's centre in nm
    center = np.asarray(viewer.scene.camera.center[-2:])
    np.testing.assert_allclose(center, (np.array(image.data.shape[-2:]) - 1) * 0.0543 / 2, atol=0.1)
    assert "0.0543 nm/px" in widget.info.text()


def test_bad_pixel_sizes_are_refused_with_what_to_do(viewer):
    with pytest.raises(PixelSizeError, match="scale bar"):
        set_image_pixel_size(viewer, viewer.layers["tiny"], 0)
    with pytest.raises(PixelSizeError, match="positive"):
        set_image_pixel_size(viewer, viewer.layers["tiny"], float("nan"))


def test_an_uncalibrated_image_is_asked_for_once_before_the_first_stroke(viewer, dock, monkeypatch):
    asked = []

    def answer(parent, layer):
        asked.append(layer.name)
        return 0.25

    monkeypatch.setattr(pixel_size_widget, "ask_pixel_size", answer)
    bare = viewer.add_image(np.zeros((2, 32, 32), np.float32), name="bare")
    assert layer_pixel_size_nm(bare) is None
    label = dock("Label")
    label.picker.value = bare
    masks = label.add_masks()
    assert asked == ["bare"]
    assert layer_pixel_size_nm(bare) == layer_pixel_size_nm(masks) == 0.25
    label.add_masks()
    assert asked == ["bare"]  # asked once


def test_the_pixel_size_widget_uses_no_deprecated_scale_bar_api(viewer, dock):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        widget = dock("Pixel size")
        widget.size.setValue(0.5)
        widget.set_pixel_size()
    assert not [w for w in caught if "scale_bar" in str(w.message).lower()]
    assert viewer.canvas.overlays.scale_bar.visible
