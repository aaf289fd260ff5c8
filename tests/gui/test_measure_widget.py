"""The Measure widget: domain tables in nm for one slice or all, histograms, CSV export."""

from __future__ import annotations

import numpy as np
import pandas as pd

from conftest import wait_for_job
from napari_nanowire.gui.pixel_size import set_layer_pixel_size_nm


def add_true_masks(viewer, tiny_items, scale_nm: float = 1.0):
    masks = np.stack([item.mask for item in tiny_items])
    meta = {
        "mask_classes": ["background", "wire"],
        "names": [item.name for item in tiny_items],
    }
    layer = viewer.add_labels(masks, name="truth", metadata=meta)
    set_layer_pixel_size_nm(layer, scale_nm)
    return layer


def test_all_slices_fill_the_tables_histograms_and_csv(viewer, dock, qtbot, tiny_items, tmp_path):
    add_true_masks(viewer, tiny_items)
    widget = dock("Measure")
    widget.reset_choices()
    widget.scope.value = "all"
    assert widget.measure()
    wait_for_job(qtbot, widget)
    assert sorted(widget.summary["image"]) == sorted(item.name for item in tiny_items)
    assert set(widget.domains["class_name"]) == {"wire"}
    shown = widget.domains[~widget.domains["below_min_area"]]
    assert widget.model.rowCount() == len(shown) > 0
    true_width = np.median(np.concatenate([item.wires["width_nm"] for item in tiny_items]))
    # measured 9.12 nm against the generator's 9.87 nm (7.6 % low); bound 25 %
    assert abs(shown["width_mean_nm"].median() / true_width - 1) < 0.25
    assert len(widget.histograms.figure.axes) == 3
    widget.view.value = "summary"
    assert widget.model.rowCount() == 8
    domains_csv, summary_csv = widget.export(tmp_path)
    assert len(pd.read_csv(domains_csv)) == len(widget.domains)
    assert "area_fraction" in pd.read_csv(summary_csv).columns


def test_slice_on_screen_and_pixel_size_scale_the_numbers(viewer, dock, qtbot, tiny_items):
    layer = add_true_masks(viewer, tiny_items)
    widget = dock("Measure")
    widget.reset_choices()
    viewer.dims.set_current_step(0, 6)
    widget.measure()
    wait_for_job(qtbot, widget)
    assert list(widget.summary["image"]) == [tiny_items[6].name]
    area_1nm = widget.domains["area_nm2"].sum()
    set_layer_pixel_size_nm(layer, 2.0)
    widget.measure()
    wait_for_job(qtbot, widget)
    assert widget.domains["area_nm2"].sum() == 4 * area_1nm


def test_training_masks_count_their_painted_classes(viewer, dock, qtbot):
    widget_label = dock("Label")
    masks = widget_label.add_masks()
    masks.data[0, 10:20, 10:40] = 2  # a painted wire
    masks.data[0, 40:50, 0:64] = 1  # painted background is not a domain
    widget = dock("Measure")
    widget.reset_choices()
    widget.mask.value = masks
    viewer.dims.set_current_step(0, 0)
    widget.measure()
    wait_for_job(qtbot, widget)
    assert list(widget.domains["class_name"]) == ["nanowire"]
    assert widget.domains["area_nm2"].iloc[0] == 300


def test_selecting_a_row_shows_centres_and_highlights_its_domain(viewer, dock, qtbot, tiny_items):
    add_true_masks(viewer, tiny_items).scale = (1, 2, 2)
    widget = dock("Measure")
    widget.reset_choices()
    widget.scope.value = "all"
    widget.show_small.value = True
    assert widget.measure()
    wait_for_job(qtbot, widget)
    layer = viewer.layers["truth domains"]
    assert layer.features["index"].tolist() == widget.domains["label"].tolist()
    assert tuple(map(str, layer.units))[-2:] == ("nanometer", "nanometer")  # same as the mask
    assert "width_median_nm" in layer.features
    viewer.dims.set_current_step(0, 0)
    frame = widget.model.frame
    row = int(np.flatnonzero(frame["image"] == tiny_items[5].name)[0])
    widget.table.selectRow(row)
    domain = frame.iloc[row]
    assert viewer.dims.current_step[0] == 5
    # The mask layer's scale is 2 nm per pixel: the centroid (px) is at twice that in nm.
    expected = (2 * domain["centroid_y_px"], 2 * domain["centroid_x_px"])
    np.testing.assert_allclose(viewer.camera.center[-2:], expected)
    assert layer.selected_label == domain["label"] and layer.show_selected_label
    # The domains layer holds exactly that domain's pixels (of 4 nm^2 each) under its label.
    assert (layer.data[5] == domain["label"]).sum() * 4 == domain["area_nm2"]


def test_flagged_domains_filter_the_table_and_histograms(viewer, dock, qtbot):
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[10:15, 5:60] = 1  # a wire
    mask[30:33, 30:33] = 1  # a 9 px speck: below the automatic 16 px
    mask[40:64, 20:26] = 1  # cut by the bottom edge: left out of the lengths
    viewer.add_labels(mask, name="tiny segmentation", metadata={"pixel_size_nm": 1.0})
    widget = dock("Measure")
    widget.reset_choices()
    assert widget.min_area.value == 16 and not widget.min_area.enabled
    widget.measure()
    wait_for_job(qtbot, widget)
    assert len(widget.domains) == 3
    assert widget.model.rowCount() == 2  # the speck is hidden by default

    def plotted(axis: int) -> int:
        patches = widget.histograms.figure.axes[axis].patches
        return int(sum(p.get_height() for p in patches))

    assert (plotted(0), plotted(1)) == (2, 1)  # widths of both, the length of the uncut wire
    widget.show_small.value = True
    assert widget.model.rowCount() == 3 and (plotted(0), plotted(1)) == (3, 1)
    assert widget.summary["excluded_small"].tolist() == [1]
    assert "1 below the minimum area" in widget.status.text()


def test_mask_picker_defaults_to_the_newest_segmentation(viewer, dock):
    strokes = dock("Label").add_masks()
    widget = dock("Measure")
    widget.reset_choices()
    assert widget.mask.value is strokes  # the only mask there is
    seg = viewer.add_labels(np.zeros((8, 64, 64), np.uint8), name="tiny segmentation")
    widget.reset_choices()
    assert widget.mask.value is seg
    viewer.layers.selection.active = strokes
    widget.reset_choices()
    assert widget.mask.value is seg
