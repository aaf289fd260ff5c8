"""Mask files in napari: predicted masks open as Labels that Measure picks; Labels save back."""

from __future__ import annotations

import numpy as np
import tifffile
from napari.layers import Labels

from conftest import PLUGIN, wait_for_job
from napari_nanowire.core.io import read_image
from napari_nanowire.core.io.labels import LabelsInfo, read_labels_info, write_labels
from napari_nanowire.gui.pixel_size import layer_pixel_size_nm, set_layer_pixel_size_nm


def test_a_mask_file_opens_as_labels_that_measure_picks_and_saves_back(
    viewer, dock, qtbot, tiny_items, tmp_path
):
    masks = np.stack([item.mask for item in tiny_items]).astype(np.uint8)  # 0 / 1 = wire
    write_labels(tmp_path / "pred.tif", masks, 1.0, LabelsInfo(["background", "wire"]))
    (layer,) = viewer.open(tmp_path / "pred.tif", plugin=PLUGIN)
    assert isinstance(layer, Labels)
    assert layer_pixel_size_nm(layer) == 1.0 and tuple(layer.scale) == (1.0, 1.0, 1.0)
    widget = dock("Measure")
    widget.reset_choices()
    assert widget.mask.value is layer  # the newest Labels layer is picked
    widget.scope.value = "all"
    assert widget.measure()
    wait_for_job(qtbot, widget)
    assert set(widget.domains["class_name"]) == {"wire"} and len(widget.summary) == len(masks)
    from_file = widget.domains.copy()
    # the same masks held in memory measure the same: nothing was lost on the way
    memory = viewer.add_labels(masks, metadata={"mask_classes": ["background", "wire"]})
    set_layer_pixel_size_nm(memory, 1.0)
    widget.reset_choices()
    widget.mask.value = memory
    assert widget.measure()
    wait_for_job(qtbot, widget)
    columns = ["area_nm2", "width_mean_nm", "length_nm"]
    assert np.allclose(from_file[columns], widget.domains[columns], equal_nan=True)
    (saved,) = layer.save(str(tmp_path / "again.tif"), plugin=PLUGIN)
    assert read_labels_info(saved) == LabelsInfo(["background", "wire"])
    again = read_image(saved)
    assert again.pixel_size_nm == 1.0 and np.array_equal(again.data, masks)
    assert tifffile.TiffFile(saved).series[0].dtype == np.uint8
