"""The napari reader contribution: which paths it claims, the layers it makes, how errors show.

The viewer tests open files through napari and npe2 exactly as File > Open does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from napari_nanowire.core.io import SUPPORTED_SUFFIXES, ReadError, write_tiff
from napari_nanowire.gui.pixel_size import layer_pixel_size_nm
from napari_nanowire.gui.reader import get_reader

MANIFEST = Path(__file__).parents[1] / "src" / "napari_nanowire" / "napari.yaml"
PLUGIN = "napari-nanowire"


def stack(n=3):
    return np.random.default_rng(0).integers(0, 255, (n, 12, 16)).astype(np.uint8)


def test_manifest_reader_patterns_are_the_supported_suffixes():
    readers = yaml.safe_load(MANIFEST.read_text())["contributions"]["readers"]
    (reader,) = [r for r in readers if r["command"] == "napari-nanowire.get_reader"]
    assert sorted(reader["filename_patterns"]) == sorted(f"*{s}" for s in SUPPORTED_SUFFIXES)
    assert reader["accepts_directories"] is True


def test_get_reader_claims_images_folders_and_lists_only(tmp_path):
    image = write_tiff(tmp_path / "images" / "a.tif", stack(1)[0], 1.0)
    (tmp_path / "store.zarr").mkdir()
    (tmp_path / "store.zarr" / ".zgroup").write_text("{}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "table.csv").write_text("a\n")
    assert get_reader(str(image)) is not None
    assert get_reader(str(tmp_path / "scan.DM3")) is not None  # suffixes match in any case
    assert get_reader(str(tmp_path / "images")) is not None
    assert get_reader(str(tmp_path / "empty")) is not None  # so the user hears it is empty
    assert get_reader([str(image), str(image)]) is not None
    assert get_reader(str(tmp_path / "table.csv")) is None
    assert get_reader(str(tmp_path / "store.zarr")) is None
    assert get_reader([str(image), str(tmp_path / "table.csv")]) is None


def test_layer_data_of_a_calibrated_stack_and_an_uncalibrated_image(tmp_path):
    import imageio.v3 as iio

    data = stack()
    path = write_tiff(tmp_path / "s.tif", data, 0.5)
    ((layer_data, kwargs, kind),) = get_reader(str(path))(str(path))
    assert kind == "image" and np.array_equal(layer_data, data)
    assert kwargs["name"] == "s" and kwargs["scale"] == (1.0, 0.5, 0.5)
    assert kwargs["units"] == ("pixel", "nm", "nm")
    assert kwargs["metadata"]["source"] == str(path)
    assert kwargs["metadata"]["names"] == ["s[0]", "s[1]", "s[2]"]

    iio.imwrite(tmp_path / "p.png", data[0])
    ((_, kwargs, _),) = get_reader(str(tmp_path / "p.png"))(str(tmp_path / "p.png"))
    assert kwargs["scale"] == (1.0, 1.0) and "units" not in kwargs


@pytest.mark.slow  # 16 s with teardown under load
def test_viewer_opens_a_folder_as_a_stack_scaled_in_nm(make_napari_viewer, tmp_path):
    data = stack()
    for i, image in enumerate(data):
        write_tiff(tmp_path / "run" / f"img{i}.tif", image, 2.0)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(tmp_path / "run", plugin=PLUGIN)
    assert layer.name == "run" and np.array_equal(layer.data, data)
    assert tuple(layer.scale) == (1.0, 2.0, 2.0)
    assert layer_pixel_size_nm(layer) == 2.0
    assert layer.metadata["names"] == ["img0", "img1", "img2"]

    paths = [tmp_path / "run" / f"img{i}.tif" for i in (2, 0)]
    (picked,) = viewer.open(paths, plugin=PLUGIN, stack=True)
    assert np.array_equal(picked.data, data[[2, 0]])


def test_viewer_shows_the_read_error_message(make_napari_viewer, tmp_path):
    from napari.errors import ReaderPluginError

    broken = tmp_path / "broken.dm3"
    broken.write_bytes(b"not a DM file at all")
    viewer = make_napari_viewer()
    # File > Open and drag-and-drop go through this path: napari wraps the reader's error in a
    # ReaderPluginError whose text is shown in its reader dialog.
    with pytest.raises(ReaderPluginError) as error:
        viewer.open(broken, plugin=None)
    assert f"Cannot read {broken} as Gatan DigitalMicrograph" in str(error.value)
    assert isinstance(error.value.original_error, ReadError)
    # asking for this plugin by name passes the ReadError itself through
    with pytest.raises(ReadError, match="truncated or corrupt"):
        viewer.open(broken, plugin=PLUGIN)
    assert len(viewer.layers) == 0
