"""Classifying collections of images of different sizes and pixel sizes, from the CLI."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import torch

from napari_nanowire.cli.main import main
from napari_nanowire.core.data.synthetic import generate_dataset
from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.heads.classify import classifier_input
from napari_nanowire.core.io import file_frames, write_tiff
from napari_nanowire.core.model.encoders import build_encoder
from napari_nanowire.core.model.metadata import ModelMeta
from napari_nanowire.core.model.modelfile import ModelFile, load_model, save_model


def test_uncalibrated_images_of_any_size_meet_at_one_working_scale():
    wide, tall = np.zeros((50, 120), np.uint8), np.zeros((300, 100), np.uint8)
    assert classifier_input(wide, None, None, 1.0, 60).shape == (25, 60)
    assert classifier_input(tall, None, 2.0, 1.0, 60).shape == (60, 20)
    # Calibrated images keep their size in nm: 4 nm/px shown at the model's 2 nm/px, zoom 0.5.
    assert classifier_input(wide, 4.0, 2.0, 0.5, 60).shape == (50, 120)
    with pytest.raises(NanowireError, match="2D grayscale"):  # not an error from the scale bars
        classifier_input(np.zeros((40, 40, 3)), None, None, 1.0, 60, ignore_annotations=True)


def test_file_frames_give_one_item_per_image_of_any_size(tmp_path):
    iio.imwrite(tmp_path / "a.png", np.zeros((40, 60), np.uint8))
    write_tiff(tmp_path / "b.tif", np.zeros((3, 20, 30), np.uint16), pixel_size_nm=1.5)
    series = list(file_frames([tmp_path]))
    assert [s.name for s in series] == ["a", "b[0]", "b[1]", "b[2]"]
    assert [np.shape(s.frame) for s in series] == [(40, 60)] + [(20, 30)] * 3
    assert [s.pixel_size_nm for s in series] == [None, 1.5, 1.5, 1.5]
    assert next(file_frames([tmp_path / "a.png"], 2.0)).pixel_size_nm == 2.0


@pytest.mark.slow
def test_train_and_predict_a_folder_of_mixed_sizes_without_calibration(tmp_path, capsys):
    # Synthetic images saved as 8-bit PNGs (no calibration), cropped or enlarged to four
    # different sizes, as a folder of exported micrographs would be.
    folder = tmp_path / "images"
    folder.mkdir()
    shapes = [(64, 64), (48, 80), (96, 72), (40, 56)]
    rows = []
    for k, item in enumerate(generate_dataset(2, size=96, pixel_size_nm=2.0, seed=0)):
        h, w = shapes[k % 4]
        image = item.image[:h, :w].astype(float)
        image = (255 * (image - image.min()) / (np.ptp(image) + 1e-9)).astype(np.uint8)
        iio.imwrite(folder / f"{item.name}.png", image)
        rows.append({"image": f"images/{item.name}.png", "label": item.label})
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    torch.manual_seed(0)
    encoder = ModelFile(ModelMeta(encoder="tiny", image_size=32))
    encoder.set_part("encoder", build_encoder("tiny"))
    save_model(encoder, tmp_path / "encoder.nwmodel")
    model = tmp_path / "c.nwmodel"
    common = ["--device", "cpu", "--epochs", "50"]
    args = ["train-classifier", "--encoder", str(tmp_path / "encoder.nwmodel")]
    args += ["--labels", str(tmp_path / "labels.csv"), "--out", str(model), *common]
    assert main([*args, "--working-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "estimated accuracy on new images" in out and "temperature" in out
    settings = load_model(model).meta.classifier
    assert settings.working_size == 64 and settings.metrics["cv_images"] == 8
    assert main(["predict", str(model), str(folder), "--out", str(tmp_path / "out")]) == 0
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert len(table) == 8 and table["confidence"].between(0.25, 1).all()
