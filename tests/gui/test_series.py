"""A folder of images of different sizes and pixel sizes opens as a series one pages through,
labels, trains a classifier on and classifies, image by image at each image's pixel size."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import PLUGIN, wait_for_job
from napari_nanowire.core.data.project import Project
from napari_nanowire.core.io import write_tiff
from napari_nanowire.gui import reader
from napari_nanowire.gui.layers import Slices, current_slice, slice_count, slice_names
from napari_nanowire.gui.pixel_size import layer_pixel_size_nm
from napari_nanowire.gui.series import series_of
from napari_nanowire.gui.state import slice_labels

PIXEL_SIZES = (1.0, 2.0, 0.5)


def mixed_images(tiny_items) -> list[np.ndarray]:
    """Three images of three sizes: 64 x 64, 96 x 64 and 64 x 48 px (Y x X)."""
    return [
        tiny_items[0].image,
        np.concatenate([tiny_items[2].image, tiny_items[3].image[:32]]),
        tiny_items[4].image[:, :48],
    ]


@pytest.fixture
def mixed_folder(tmp_path, tiny_items):
    """A folder of the three images as calibrated TIFFs, one pixel size each."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, (image, px) in enumerate(zip(mixed_images(tiny_items), PIXEL_SIZES, strict=True)):
        write_tiff(folder / f"img{i + 1}.tif", image.astype(np.float32), px)
    return folder


@pytest.fixture
def series_viewer(make_napari_viewer, mixed_folder, qtbot):
    """A viewer with the mixed folder opened through the plugin's reader, and a docker."""
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(mixed_folder), plugin=PLUGIN)

    def dock(name: str):
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        viewer.window._qt_window.show()
        qtbot.waitUntil(widget.isVisible)
        return widget

    return viewer, layer, dock


def test_the_reader_gives_a_series_for_a_folder_of_mixed_sizes(mixed_folder, tiny_items):
    ((data, kwargs, kind),) = reader.read_layers(str(mixed_folder))
    assert kind == "image" and data.shape == (64, 64)
    assert kwargs["scale"] == (1.0, 1.0) and kwargs["units"] == ("nm", "nm")
    series = kwargs["metadata"]["series"]
    assert series.names == ["img1", "img2", "img3"] == kwargs["metadata"]["names"]
    assert series.pixel_sizes == pytest.approx(list(PIXEL_SIZES))
    assert [item.shape for item in series.items] == [(64, 64), (96, 64), (64, 48)]
    np.testing.assert_allclose(series.read(2), mixed_images(tiny_items)[2], rtol=1e-6)


def test_a_list_of_files_of_mixed_sizes_is_a_series_too(mixed_folder):
    files = [str(mixed_folder / "img3.tif"), str(mixed_folder / "img1.tif")]
    ((data, kwargs, _),) = reader.read_layers(files)
    assert data.shape == (64, 48) and kwargs["metadata"]["names"] == ["img3", "img1"]


def test_paging_shows_each_image_in_its_own_size_and_keeps_the_labels(series_viewer):
    viewer, layer, dock = series_viewer
    label = dock("Label")
    control = label.series_control
    assert control.isVisible() and control.number.value() == 1
    assert "64 x 64 px" in control.info.text() and not control.previous.isEnabled()
    assert slice_count(layer) == 3 and slice_names(layer) == ["img1", "img2", "img3"]
    assert layer.data.shape == (64, 64) and layer_pixel_size_nm(layer) == pytest.approx(1.0)

    label.assign(0)  # image 1: first class
    control.next.click()
    assert current_slice(viewer, layer) == 1 and control.number.value() == 2
    assert layer.data.shape == (96, 64) and layer_pixel_size_nm(layer) == pytest.approx(2.0)
    assert label.slice_info.text().startswith("Image 1 (img2): unlabelled")
    assert label.summary.text() == "1 of 3 images labelled"

    control.number.setValue(3)
    assert layer.data.shape == (64, 48) and layer_pixel_size_nm(layer) == pytest.approx(0.5)
    pixel_size = dock("Pixel size")
    assert pixel_size.info.text() == "'mixed' image img3: 0.5 nm/px"
    assert pixel_size.size.value() == pytest.approx(0.5)
    pixel_size.size.setValue(0.25)  # a pixel size set by the user stays with its image
    assert pixel_size.set_pixel_size()
    control.go(1)
    assert pixel_size.info.text() == "'mixed' image img2: 2 nm/px"
    control.go(2)
    assert layer_pixel_size_nm(layer) == pytest.approx(0.25)
    label.assign(1)  # image 3: second class
    first, second = label.state.classes[:2]
    control.go(0)
    assert layer.data.shape == (64, 64) and slice_labels(layer) == [first, None, second]
    assert first in label.slice_info.text()
    assert label.next_unlabelled() == 1 and layer.data.shape == (96, 64)


def test_masks_follow_the_image_and_save_to_the_project(series_viewer, tmp_path):
    viewer, layer, dock = series_viewer
    label = dock("Label")
    project = label.project_box.new_project(tmp_path / "project")
    masks = label.add_masks()
    assert masks.data.shape == (64, 64)
    stroke = np.zeros((64, 64), np.uint8)
    stroke[10:20, 10:20] = 2
    masks.data = stroke
    label.state.save_masks()
    label.series_control.go(1)
    assert masks.data.shape == (96, 64) and not masks.data.any()
    assert layer_pixel_size_nm(masks) == pytest.approx(2.0)
    label.series_control.go(0)
    np.testing.assert_array_equal(masks.data, stroke)
    np.testing.assert_array_equal(Project.open(project.folder).load_mask(0), stroke)
    assert Project.open(project.folder).load_mask(1) is None
    label.assign(2)

    viewer.layers.clear()  # reopen the project: the series, its label and its mask come back
    assert label.project_box.open_project(project.folder) is not None
    reopened = viewer.layers[project.folder.name]
    assert series_of(reopened) is not None and slice_count(reopened) == 3
    assert slice_labels(reopened) == [label.state.classes[2], None, None]
    np.testing.assert_array_equal(viewer.layers[f"{reopened.name} masks"].data, stroke)


def test_train_and_classify_the_series_image_by_image(
    series_viewer, qtbot, monkeypatch, tiny_encoder
):
    import napari_nanowire.core.heads.classify as classify

    viewer, layer, dock = series_viewer
    label, train, predict = dock("Label"), dock("Train"), dock("Predict")
    label.state.set_model("encoder", tiny_encoder)
    label.assign(0)
    label.series_control.go(2)
    label.assign(1)

    seen = {}
    real = classify.train_classifier

    def spy(base, images, labels, out, pixel_sizes_nm=None, **kwargs):
        seen.update(shapes=[i.shape for i in images], sizes=list(pixel_sizes_nm))
        return (yield from real(base, images, labels, out, pixel_sizes_nm, **kwargs))

    monkeypatch.setattr(classify, "train_classifier", spy)
    assert train.train_classifier()
    wait_for_job(qtbot, train)
    assert seen["shapes"] == [(64, 64), (64, 48)]
    assert seen["sizes"] == pytest.approx([1.0, 0.5])
    assert label.state.models["classifier"].is_file()

    assert predict.classify()
    wait_for_job(qtbot, predict)
    table = predict.predictions
    assert list(table["image"]) == ["img1", "img2", "img3"]
    assert table["your label"].tolist() == [label.state.classes[0], "", label.state.classes[1]]
    points = viewer.layers[f"{layer.name} predictions"]
    assert len(points.data) == 1  # the image on screen (img3) only
    label.series_control.go(1)
    points = viewer.layers[f"{layer.name} predictions"]
    assert list(points.features["image"]) == ["img2"]


def test_slices_of_a_series_carry_each_images_pixel_size(series_viewer):
    viewer, layer, _ = series_viewer
    slices = Slices(layer)
    assert slices.sizes() == pytest.approx(list(PIXEL_SIZES))
    assert [image.shape for image in slices.read()] == [(64, 64), (96, 64), (64, 48)]
    assert series_of(layer) is not None


@pytest.mark.slow  # about 11 s: trains a segmenter
def test_segment_and_measure_series_images_at_their_own_size(series_viewer, qtbot, tiny_encoder):
    viewer, layer, dock = series_viewer
    label, train, predict, measure = dock("Label"), dock("Train"), dock("Predict"), dock("Measure")
    label.state.set_model("encoder", tiny_encoder)
    train.steps.value = 3
    masks = label.add_masks()
    for index in (0, 1):  # strokes over a few rows: 1 = background, 2 = wire (any will do)
        label.series_control.go(index)
        rows = np.asarray(layer.data[:8])
        stroke = np.zeros(layer.data.shape, np.uint8)
        stroke[:8] = np.where(rows > np.median(rows), 2, 1)
        masks.data = stroke
    train.reset_choices()
    assert train.train_segmenter()
    wait_for_job(qtbot, train)
    assert label.state.models["segmenter"].is_file()

    predict.scope.value = "all"
    assert predict.segment()
    wait_for_job(qtbot, predict)
    segmentation = viewer.layers[f"{layer.name} segmentation"]
    assert segmentation.data.shape == (96, 64)  # image 2 is on screen
    label.series_control.go(2)
    assert segmentation.data.shape == (64, 48)
    assert layer_pixel_size_nm(segmentation) == pytest.approx(0.5)
    assert segmentation.metadata["names"] == ["img3"]

    measure.reset_choices()
    measure.mask.value = segmentation
    assert measure.measure()
    wait_for_job(qtbot, measure)
    assert set(measure.summary["image"]) == {"img3"}
