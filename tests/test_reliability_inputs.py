"""Training inputs that would silently train the wrong thing are refused, naming the file."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import train_segmenter_args
from napari_nanowire.cli.main import main
from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.heads.segment import train_segmenter
from napari_nanowire.core.io import write_tiff
from napari_nanowire.core.masks import check_mask_values
from napari_nanowire.core.names import MAX_CLASSES


def pair(folder, mask: np.ndarray, name: str = "a") -> None:
    """An image and its mask, both 32 px, under folder/images and folder/masks."""
    write_tiff(folder / "images" / f"{name}.tif", np.zeros(mask.shape, np.float32), 1.0)
    write_tiff(folder / "masks" / f"{name}.tif", mask, 1.0)


def segmenter(folder, *extra: str) -> list[str]:
    """train-segmenter on folder (the encoder is never reached: inputs are checked first)."""
    return train_segmenter_args(folder / "missing.nwmodel", folder, *extra)


def test_a_0_255_mask_is_refused_naming_file_value_and_range(tmp_path, capsys):
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16] = 255
    pair(tmp_path, mask)
    assert main(segmenter(tmp_path, "--dense-masks")) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'masks' / 'a.tif'} holds the value 255" in err
    assert f"0 to {MAX_CLASSES}" in err and "0 and 1 instead" in err


def test_a_mask_value_beyond_the_named_classes_is_refused(tmp_path, capsys):
    mask = np.ones((32, 32), np.uint8)
    mask[:4] = 2
    mask[4:8] = 3  # class 2 of two, but one name given
    pair(tmp_path, mask)
    assert main(segmenter(tmp_path, "--class-names", "wire")) == 2
    err = capsys.readouterr().err
    assert "holds the value 3" in err and "0 to 2" in err and "1 class name(s)" in err


def test_a_huge_mask_value_is_refused_before_allocating_classes():
    mask = np.zeros((32, 32), np.uint64)
    mask[0, 0] = 2**40  # before: 2^40 class names were allocated (23 GB, killed)
    with pytest.raises(NanowireError, match=f"Mask 1 of 1 holds the value {2**40}"):
        next(train_segmenter("missing.nwmodel", [np.zeros((32, 32))], [mask], "o.nwmodel"))
    with pytest.raises(NanowireError, match="negative|value -1"):
        check_mask_values(np.full((4, 4), -1, np.int16), "m.tif")


def test_mask_values_within_the_classes_pass():
    mask = np.arange(4, dtype=np.uint8).reshape(2, 2)
    check_mask_values(mask, "m.tif", ["wire", "particle"])  # 0 unlabelled, 1 bg, 2-3 classes
    check_mask_values(mask, "m.tif", ["wire", "particle", "droplet"], dense=True)
    check_mask_values(np.full((2, 2), MAX_CLASSES + 1), "m.tif")  # the last allowed class


def labelled_images(folder, n: int = 3) -> None:
    for i in range(n):
        write_tiff(folder / f"img{i}.tif", np.zeros((32, 32), np.float32), 1.0)


def classifier(folder, labels) -> list[str]:
    return [
        "train-classifier",
        "--encoder",
        str(folder / "missing.nwmodel"),
        "--labels",
        str(labels),
        "--out",
        str(folder / "c.nwmodel"),
    ]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["img0.tif,a", "img1.tif,b", "img0.tif,a"], "lists image 'img0.tif' twice (lines 2, 4"),
        (["img0.tif,a", "img1.tif,b", "img1.tif,a"], "'img1.tif' with different labels (a, b)"),
    ],
)
def test_duplicate_and_conflicting_label_rows_are_refused(tmp_path, capsys, rows, message):
    labelled_images(tmp_path)
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(["image,label", *rows]) + "\n")
    assert main(classifier(tmp_path, labels)) == 2
    assert message in capsys.readouterr().err


def test_label_paths_outside_the_images_root_are_refused(tmp_path, capsys):
    labelled_images(tmp_path)
    (tmp_path / "table").mkdir()
    labels = tmp_path / "table" / "labels.csv"
    labels.write_text(f"image,label\n../img0.tif,a\n{tmp_path / 'img1.tif'},b\n")
    assert main(classifier(tmp_path, labels)) == 2
    assert "outside the images root" in capsys.readouterr().err
