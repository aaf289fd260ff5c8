"""The Qt-free project folder: atomic saves, round trips and clear refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_nanowire.core.data.project import PROJECT_FILE, Project, ProjectError
from napari_nanowire.core.io import write_tiff


def make(tmp_path, **kwargs):
    stack = np.arange(3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)
    return Project.create(
        tmp_path / "p", names=["a", "b", "a"], pixel_size_nm=2.5, stack=stack, **kwargs
    ), stack


def test_round_trip_keeps_labels_masks_models_and_the_stack(tmp_path):
    project, stack = make(tmp_path)
    assert project.names == ["a", "b", "a-2"]  # repeated names get a suffix
    project.set_slice_labels(["bundle", None, "network"])
    masks = np.zeros((3, 8, 8), np.uint8)
    masks[1, 2:4, 2:4] = 2
    project.save_masks(masks)
    model = project.model_path("encoder")
    model.parent.mkdir()
    model.write_bytes(b"x")
    project.set_model("encoder", model)

    again = Project.open(tmp_path / "p")
    assert again.slice_labels() == ["bundle", None, "network"]
    assert again.models == {"encoder": "models/encoder.nwmodel"}
    assert again.model("encoder") == model and again.model("segmenter") is None
    np.testing.assert_array_equal(again.load_masks(), masks)
    assert [p.name for p in (tmp_path / "p" / "masks").iterdir()] == ["00001.tif"]  # painted
    masks[2, 0, 0] = 1
    masks[1] = 0
    project.save_masks(masks, slices=[1])  # only slice 1 is written: it is empty now
    assert Project.open(tmp_path / "p").load_masks() is None
    images = again.load_images()
    np.testing.assert_array_equal(images.data, stack)
    assert images.pixel_size_nm == pytest.approx(2.5)


def test_a_project_can_point_at_the_users_files(tmp_path):
    source = write_tiff(tmp_path / "data.tif", np.ones((2, 4, 4), np.uint16), 1.0)
    project = Project.create(tmp_path / "p", names=["x", "y"], pixel_size_nm=1.0, images=[source])
    assert not (tmp_path / "p" / "images.tif").exists()
    assert Project.open(tmp_path / "p").load_images().data.shape == (2, 4, 4)
    source.unlink()
    with pytest.raises(ProjectError, match="missing"):
        project.load_images()


def test_labels_and_classes_are_checked(tmp_path):
    project, _ = make(tmp_path)
    with pytest.raises(ProjectError, match="not among the classes"):
        project.set_slice_labels(["bundle", "blob", None])
    with pytest.raises(ProjectError, match="3 images"):
        project.set_slice_labels(["bundle"])
    project.set_slice_labels(["bundle", "network", None])
    project.set_classes(["bundle", "mesh"], ["#ff0000", "#00ff00"])
    assert Project.open(tmp_path / "p").slice_labels() == ["bundle", None, None]
    with pytest.raises(ProjectError, match="unique"):
        project.set_classes(["a", "a"], ["#000", "#111"])


def test_bad_folders_are_refused_with_what_to_do(tmp_path):
    with pytest.raises(ProjectError, match="not a napari-nanowire project"):
        Project.open(tmp_path)
    make(tmp_path)
    with pytest.raises(ProjectError, match="already holds a project"):
        make(tmp_path)
    (tmp_path / "p" / PROJECT_FILE).write_text("{broken")
    with pytest.raises(ProjectError, match="cannot be read"):
        Project.open(tmp_path / "p")
    (tmp_path / "p" / PROJECT_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ProjectError, match="update napari-nanowire"):
        Project.open(tmp_path / "p")


def test_a_crash_while_saving_leaves_the_last_project_file(tmp_path, monkeypatch):
    project, _ = make(tmp_path)
    project.set_slice_labels(["bundle", None, None])
    before = (tmp_path / "p" / PROJECT_FILE).read_bytes()

    def crash(*_):
        raise OSError("disk full")

    monkeypatch.setattr("napari_nanowire.core.data.project.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        project.set_slice_labels(["network", None, None])
    assert (tmp_path / "p" / PROJECT_FILE).read_bytes() == before
    assert [p.name for p in (tmp_path / "p").iterdir() if p.name.endswith(".tmp")] == []
