"""Outputs that travel: compressed streamed TIFFs, masks that reopen as Labels with their nm and
class names (core and the napari reader/writer contributions), and segmenters and classifiers
exported as TorchScript files and BioImage.IO packages (checked by bioimageio.core's test)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_nanowire.core.data.synthetic import generate_dataset
from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.io import read_image, tiff_frame_writer
from napari_nanowire.core.io import writers as writers_module
from napari_nanowire.core.io.labels import LabelsInfo, read_labels_info, write_labels


@pytest.fixture(scope="module")
def masks():
    """Three 64 px synthetic wire masks (0 = background, 1 = wire): realistic to compress."""
    return np.stack([(s.mask > 0).astype(np.uint8) for s in generate_dataset(1, size=64)[:3]])


def test_streamed_stack_is_compressed_imagej_with_the_pixel_size(tmp_path, masks):
    path = tmp_path / "masks.tif"
    with tiff_frame_writer(path, masks.shape, np.uint8, 0.8) as writer:
        for frame in masks:
            writer.append(frame)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "nm"
        assert all(p.compression == tifffile.COMPRESSION.ADOBE_DEFLATE for p in tif.pages)
    read = read_image(path)
    assert read.pixel_size_nm == pytest.approx(0.8)
    np.testing.assert_array_equal(read.data, masks)
    # measured 1.6 kB for these 12 kB of masks (uncompressed: 12 kB plus header); bound 1/3
    assert path.stat().st_size < masks.nbytes / 3


def test_a_failing_write_raises_and_leaves_no_file(tmp_path, monkeypatch, masks):
    def disk_full(path, frames, **kwargs):
        next(frames)  # takes the first frame, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers_module.tifffile, "imwrite", disk_full)
    path = tmp_path / "masks.tif"
    with (
        pytest.raises(OSError, match="No space left"),
        tiff_frame_writer(path, masks.shape, np.uint8, None) as writer,
    ):
        for frame in masks:  # the second or third append finds the writer gone
            writer.append(frame)
    assert list(tmp_path.iterdir()) == []


def test_labels_files_carry_classes_and_the_smallest_type(tmp_path, masks):
    info = LabelsInfo(["background", "wire"])
    write_labels(tmp_path / "m.tif", masks, 1.5, info)
    assert read_labels_info(tmp_path / "m.tif") == info
    read = read_image(tmp_path / "m.tif")
    assert read.data.dtype == np.uint8 and read.pixel_size_nm == pytest.approx(1.5)
    instances = masks.astype(np.int64) * 300
    training = LabelsInfo(["background", "wire"], training=True, mask_for="stack")
    write_labels(tmp_path / "i.tif", instances, None, training)
    assert read_image(tmp_path / "i.tif").data.dtype == np.uint16
    assert read_labels_info(tmp_path / "i.tif") == training
    # a plain ImageJ TIFF, e.g. a picture, is not taken for a mask
    tifffile.imwrite(tmp_path / "plain.tif", masks, imagej=True)
    assert read_labels_info(tmp_path / "plain.tif") is None
    with pytest.raises(NanowireError, match="holds -1 to 0"):
        write_labels(tmp_path / "bad.tif", masks.astype(int) - 1, None, info)


def test_predicted_masks_are_marked_with_the_model_classes(tmp_path):
    from napari_nanowire.core.model.random_models import save_random_model
    from napari_nanowire.core.predict import predict_files

    model = save_random_model(tmp_path / "m.nwmodel", tile=32, mask_classes=("background", "np"))
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((2, 40, 40), np.float32))
    list(predict_files(model, [tmp_path / "img.tif"], tmp_path / "out", device="cpu"))
    info = read_labels_info(tmp_path / "out" / "masks" / "img.tif")
    assert info == LabelsInfo(["background", "np"])


# --- napari: the reader and writer contributions ----------------------------------------------


def test_a_labels_layer_round_trips_through_the_plugin(tmp_path, masks):
    napari_layers = pytest.importorskip("napari.layers")
    import npe2

    from napari_nanowire.gui.reader import get_reader

    npe2.PluginManager.instance().discover()  # as napari does at start-up (no viewer here)
    layer = napari_layers.Labels(
        masks.astype(np.int32) * 2,  # a training mask: 0 = not labelled, 1 = background, 2 = wire
        scale=(1.0, 0.7, 0.7),
        units=("pixel", "nm", "nm"),
        metadata={"mask_classes": ["background", "wire"], "mask_for": "stack"},
    )
    assert layer.data.dtype == np.int32  # napari's own writer would save it as uint32
    (saved,) = layer.save(str(tmp_path / "painted.tif"), plugin="napari-nanowire")
    with tifffile.TiffFile(saved) as tif:
        assert tif.series[0].dtype == np.uint8
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        properties = tif.imagej_metadata["Properties"]
    assert json.loads(properties["mask_classes"]) == ["background", "wire"]

    ((data, kwargs, kind),) = get_reader(saved)(saved)
    assert kind == "labels"
    np.testing.assert_array_equal(data, masks * 2)
    assert kwargs["scale"] == (1.0, pytest.approx(0.7), pytest.approx(0.7))
    assert kwargs["units"][-2:] == ("nm", "nm")
    assert kwargs["metadata"]["mask_for"] == "stack"  # a training mask, paired with its image
    reopened = napari_layers.Labels(data, **kwargs)
    assert reopened.features.set_index("index").loc[2, "class"] == "wire"
    # the same through npe2, as napari's File > Open does
    (npe2_data, _, npe2_kind) = npe2.read([saved], stack=False, plugin_name="napari-nanowire")[0]
    assert npe2_kind == "labels" and npe2_data.shape == masks.shape


def test_the_reader_opens_predicted_masks_as_dense_labels(tmp_path, masks):
    pytest.importorskip("napari")
    from napari_nanowire.gui.reader import read_layers

    write_labels(tmp_path / "pred.tif", masks, 2.0, LabelsInfo(["background", "wire"]))
    ((_, kwargs, kind),) = read_layers(tmp_path / "pred.tif")
    assert kind == "labels" and "mask_for" not in kwargs["metadata"]
    assert kwargs["features"]["class"] == ["background", "wire"]
    tifffile.imwrite(tmp_path / "image.tif", masks, imagej=True)
    assert read_layers(tmp_path / "image.tif")[0][2] == "image"


def test_the_writer_reads_the_pixel_size_from_the_scale():
    pytest.importorskip("napari")
    from napari_nanowire.gui.pixel_size import pixel_size_from

    assert pixel_size_from((0.5, 0.5), ("nm", "nm")) == 0.5
    assert pixel_size_from((1.0, 2.0), ("pixel", "µm")) == pytest.approx(2000.0)
    # napari's "pixel" unit: no calibration, whatever the scale
    assert pixel_size_from((2.0, 2.0), ("pixel", "pixel")) is None


# --- export: TorchScript and BioImage.IO --------------------------------------------------------


@pytest.fixture(scope="module")
def steep_model(tmp_path_factory):
    """A random-weight model whose masks are about half wire (see tests/test_api.py)."""
    from napari_nanowire.core.model.modelfile import save_model
    from napari_nanowire.core.model.random_models import random_model

    model = random_model(tile=64, pixel_size_nm=2.0)
    model.tensors["segmenter.out.weight"] *= 200
    return save_model(model, tmp_path_factory.mktemp("export") / "wires.nwmodel")


@pytest.mark.slow  # about 10 s: tracing and checking the U-Net
def test_torchscript_export_predicts_what_the_predictor_does(steep_model, tmp_path):
    import torch

    from napari_nanowire.cli.main import main
    from napari_nanowire.core.export.torchscript import EXTRA_FILE
    from napari_nanowire.core.predict import Predictor

    out = tmp_path / "wires.pt"
    command = ["export", str(steep_model), "--format", "torchscript", "--out", str(out)]
    assert main(command) == 2  # the file holds a classifier too: --head says which
    assert not out.exists()
    assert main([*command, "--head", "segmenter"]) == 0
    extra = {EXTRA_FILE: ""}
    module = torch.jit.load(str(out), _extra_files=extra)  # needs only torch
    meta = json.loads(extra[EXTRA_FILE])
    assert meta["mask_classes"] == ["background", "wire"] and meta["pixel_size_nm"] == 2.0
    image = np.random.default_rng(3).random((64, 64), dtype=np.float32) * 1000 + 50
    with torch.no_grad():
        probs = module(torch.from_numpy(image)[None, None])[0].numpy()
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    expected = Predictor.load(steep_model, "cpu").segment(image, 2.0).mask  # one 64 px tile
    assert 0.1 < expected.mean() < 0.9
    assert (probs.argmax(0) == expected).mean() > 0.999
    # another valid size runs too (the shapes were not frozen by tracing)
    with torch.no_grad():
        assert module(torch.rand(2, 1, 96, 128)).shape == (2, 2, 96, 128)
    assert main([*command, "--head", "segmenter"]) == 2  # exists; no --overwrite


@pytest.mark.slow  # about 15 s: tracing, export, then bioimageio.core's test of the package
def test_bioimageio_package_passes_bioimageio_core_test(steep_model, tmp_path):
    pytest.importorskip("bioimageio.core")
    from napari_nanowire.core.export.bioimageio import check_bioimageio, export_bioimageio

    check_bioimageio()  # the bioimageio extra's pins must let it write packages: no skip
    from bioimageio.core import test_model
    from bioimageio.spec import load_model_description

    package = export_bioimageio(steep_model, tmp_path / "wires.zip", head="segmenter")
    summary = test_model(package)
    assert summary.status == "passed", summary.format()
    descr = load_model_description(package)
    assert descr.outputs[0].axes[1].channel_names == ["background", "wire"]
    y_axis = descr.inputs[0].axes[2]
    assert y_axis.scale == 2.0 and y_axis.unit == "nanometer"
    assert "10.1039/D2DD00066K" in str(descr.cite[0].doi)


# --- export of a classifier ---------------------------------------------------------------------

CLASSES = ["bundle", "dispersed", "network"]


def classifier_model(path, descriptors=False):
    """A classifier-only model file with random weights: tiny encoder, 16 px tiles, three feature
    scales of a 48 px working image, a temperature, and logits large enough to differ."""
    import torch

    from napari_nanowire.core.heads.features import add_head
    from napari_nanowire.core.heads.linear import LinearHead
    from napari_nanowire.core.model.encoders import build_encoder
    from napari_nanowire.core.model.metadata import ClassifierMeta, ModelMeta
    from napari_nanowire.core.model.modelfile import ModelFile, save_model

    torch.manual_seed(0)
    encoder = build_encoder("tiny").eval()
    scales = [1.0, 0.5, 0.25]
    head = LinearHead(encoder.out_dim * len(scales), len(CLASSES))
    with torch.no_grad():
        head.scale.fill_(0.02)  # features of random weights vary little: spread the logits
        head.linear.weight.mul_(30)
    settings = ClassifierMeta(
        tile=16,
        max_tiles=4,
        scales=scales,
        working_size=48,
        temperature=1.7,
        zoom=2.0,
        descriptors=descriptors,
    )
    base = ModelFile(ModelMeta(encoder="tiny", image_size=16, pixel_size_nm=3.0))
    model, _ = add_head(base, encoder, "classifier", head, CLASSES, settings, False)
    return save_model(model, path)


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    return classifier_model(tmp_path_factory.mktemp("classifier") / "morph.nwmodel")


def test_classifier_torchscript_gives_the_predictors_probabilities(classifier_file, tmp_path):
    import torch

    from napari_nanowire.cli.main import main
    from napari_nanowire.core.export.torchscript import EXTRA_FILE
    from napari_nanowire.core.predict import Predictor

    out = tmp_path / "morph.pt"
    command = ["export", str(classifier_file), "--format", "torchscript", "--out", str(out)]
    assert main(command) == 0  # its only head: no --head needed
    extra = {EXTRA_FILE: ""}
    module = torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra[EXTRA_FILE])
    assert meta["head"] == "classifier" and meta["class_names"] == CLASSES
    assert meta["input_side_px"] == 48 and meta["pixel_size_nm"] == pytest.approx(1.5)

    rng = np.random.default_rng(5)
    images = [rng.random((48, 48), dtype=np.float32) * 900 + 100 for _ in range(2)]
    images[1][10:20] += 2000  # a bright band: other features at every scale
    predictor = Predictor.load(classifier_file, "cpu")
    expected = predictor.classify(images)  # square 48 px images, no pixel size: taken as is
    assert expected.probabilities.max() - expected.probabilities.min() > 0.1  # not uniform
    at_scale = predictor.classify(images, [1.5, 1.5])  # model px / zoom: taken as is too
    batch = torch.from_numpy(np.stack(images))[:, None]
    with torch.no_grad():
        probs = module(batch).numpy()
    np.testing.assert_allclose(probs, expected.probabilities, atol=1e-5)
    np.testing.assert_allclose(probs, at_scale.probabilities, atol=1e-5)
    # the eager module's features are the predictor's (so equality is not a softmax accident)
    from napari_nanowire.core.export.classifier import build_classifier
    from napari_nanowire.core.model.modelfile import load_model

    with torch.no_grad():
        features = build_classifier(load_model(classifier_file)).features(batch).numpy()
    np.testing.assert_allclose(features, expected.features, rtol=1e-4, atol=1e-6)


def test_classifiers_with_descriptors_are_refused_naming_them(tmp_path, steep_model):
    from napari_nanowire.cli.main import main
    from napari_nanowire.core.export import export_torchscript

    path = classifier_model(tmp_path / "described.nwmodel", descriptors=True)
    with pytest.raises(NanowireError, match="hand-made image descriptors") as refused:
        export_torchscript(path, tmp_path / "described.pt")
    message = str(refused.value)  # names the fix, on the command line and in napari
    assert "retrain with `train-classifier --no-descriptors`" in message
    assert "untick 'classifier with hand-made descriptors' in the Train widget" in message
    assert "--measurements" not in message  # this one has none
    assert not (tmp_path / "described.pt").exists()
    with pytest.raises(NanowireError, match="has no segmenter head"):
        export_torchscript(path, tmp_path / "x.pt", head="segmenter")
    command = ["export", str(steep_model), "--format", "torchscript", "--out"]
    assert main([*command, str(tmp_path / "both.pt")]) == 2  # both heads, no --head


def test_train_classifier_no_descriptors_gives_an_exportable_classifier(tmp_path, capsys):
    import torch

    from napari_nanowire.cli.main import main
    from napari_nanowire.core.export.classifier import classifier_metadata
    from napari_nanowire.core.export.torchscript import EXTRA_FILE
    from napari_nanowire.core.io import write_tiff
    from napari_nanowire.core.model.encoders import build_encoder
    from napari_nanowire.core.model.metadata import ModelMeta
    from napari_nanowire.core.model.modelfile import ModelFile, load_model, save_model
    from napari_nanowire.core.predict import Predictor

    items = generate_dataset(1, size=48, seed=0)[:3]  # three classes, one image each
    rows = ["image,label"]
    for item in items:
        write_tiff(tmp_path / f"{item.name}.tif", item.image.astype(np.float32), None)
        rows.append(f"{item.name}.tif,{item.label}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    encoder = ModelFile(ModelMeta(encoder="tiny", image_size=16))
    encoder.set_part("encoder", build_encoder("tiny"))
    save_model(encoder, tmp_path / "encoder.nwmodel")
    model = tmp_path / "c.nwmodel"
    command = ["train-classifier", "--encoder", str(tmp_path / "encoder.nwmodel")]
    command += ["--labels", str(tmp_path / "labels.csv"), "--out", str(model)]
    command += ["--working-size", "48", "--epochs", "20", "--device", "cpu", "--no-descriptors"]
    assert main(command) == 0
    settings = load_model(model).meta.classifier
    assert settings.descriptors is False and settings.measurements is False
    assert settings.ignore_annotations  # painted over: the export's metadata must say it is not
    assert "scale bars" in classifier_metadata(load_model(model))["not_included"]
    assert main([*command, "--no-ignore-scale-bar", "--overwrite"]) == 0
    assert not load_model(model).meta.classifier.ignore_annotations

    out = tmp_path / "c.pt"
    export = ["export", str(model), "--format", "torchscript", "--out", str(out)]
    assert main([*export, "--head", "classifier"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    extra = {EXTRA_FILE: ""}
    module = torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra[EXTRA_FILE])
    assert meta["class_names"] == sorted(i.label for i in items)
    assert "scale bars" not in meta["not_included"]  # the module does all napari-nanowire does
    images = [item.image.astype(np.float32) for item in items]
    with torch.no_grad():
        probs = module(torch.from_numpy(np.stack(images))[:, None]).numpy()
    expected = Predictor.load(model, "cpu").classify(images).probabilities
    np.testing.assert_allclose(probs, expected, atol=1e-5)


@pytest.mark.slow  # about 10 s: export, then bioimageio.core's test of the package
def test_classifier_bioimageio_package_passes_bioimageio_core_test(classifier_file, tmp_path):
    pytest.importorskip("bioimageio.core")
    from bioimageio.core import test_model
    from bioimageio.spec import load_model_description

    from napari_nanowire.core.export.bioimageio import export_bioimageio

    package = export_bioimageio(classifier_file, tmp_path / "morph.zip")
    summary = test_model(package)
    assert summary.status == "passed", summary.format()
    descr = load_model_description(package)
    assert descr.outputs[0].axes[1].channel_names == CLASSES
    assert [a.size for a in descr.inputs[0].axes[2:]] == [48, 48]
    assert descr.inputs[0].axes[2].scale == 1.5 and descr.inputs[0].axes[2].unit == "nanometer"
    assert descr.config.model_dump()["napari_nanowire"]["temperature"] == pytest.approx(1.7)
    assert "10.1039/D2DD00066K" in str(descr.cite[0].doi)
