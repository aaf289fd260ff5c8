"""Typed model metadata: every bad field is refused on load, naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file

from helpers import rewrite_meta
from napari_nanowire.core.heads.classify import LinearHead
from napari_nanowire.core.model.encoders import build_encoder
from napari_nanowire.core.model.metadata import (
    ClassifierMeta,
    ModelMeta,
    SegmenterMeta,
    SSLMeta,
)
from napari_nanowire.core.model.modelfile import (
    META_KEY,
    ModelFile,
    ModelFileError,
    load_model,
    save_model,
)
from napari_nanowire.core.model.random_models import save_random_model
from napari_nanowire.core.predict import Predictor

V1 = json.loads((Path(__file__).parent / "data" / "model_meta_v1.json").read_text())
"""Metadata exactly as format version 1 files were written before the metadata was typed
(an SSL encoder, a classifier trained on it, a random-weights model)."""


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """A classifier+segmenter file with random weights and a pixel size."""
    return save_random_model(tmp_path_factory.mktemp("meta") / "m.nwmodel", pixel_size_nm=2.0)


def change(update):
    """An ``edit`` for :func:`rewrite_meta` that changes the parsed metadata in place."""

    def edit(text: str) -> str:
        meta = json.loads(text)
        update(meta)
        return json.dumps(meta)

    return edit


def set_field(path: str, value):
    """Set a dotted field ("segmenter.tile") to ``value``."""

    def update(meta):
        *parents, last = path.split(".")
        for key in parents:
            meta = meta[key]
        meta[last] = value

    return change(update)


def drop(key: str):
    return change(lambda meta: meta.pop(key))


def nested(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


BAD = {
    # name: (edit, the field the message must name, what else it must say)
    "not_json": (lambda text: "{not json", "metadata", "is not JSON"),
    "not_object": (lambda text: "[1, 2]", "its metadata", "is a list [1, 2], not a JSON object"),
    "nested_40": (set_field("notes", nested(40)), "'notes[0]", "nested more than 32"),
    "nested_100000": (lambda text: "[" * 100_000 + "]" * 100_000, "metadata", "nested too deep"),
    "int_5000_digits": (
        lambda text: text.replace('"image_size": 64', '"image_size": ' + "9" * 5000),
        "'image_size'",
        "5000 digits",
    ),
    "version_text": (set_field("format_version", "1"), "'format_version'", "not a whole number"),
    "version_newer": (set_field("format_version", 2), "'format_version'", "newer napari-nanowire"),
    "format_other": (set_field("format", "keras"), "'format'", "not 'napari-nanowire-model'"),
    "encoder_list": (set_field("encoder", ["tiny"]), "'encoder'", "not a text"),
    "encoder_unknown": (set_field("encoder", "vit-h"), "'encoder'", "update napari-nanowire"),
    "encoder_missing": (drop("encoder"), "'encoder'", "is missing"),
    "class_names_missing": (drop("class_names"), "'class_names'", "is missing"),
    "class_names_one": (set_field("class_names", ["a"]), "'class_names'", "fewer than 2"),
    "class_names_numbers": (set_field("class_names", [1, 2]), "'class_names'", "list of texts"),
    "mask_classes_missing": (drop("mask_classes"), "'mask_classes'", "is missing"),
    "heads_missing": (drop("heads"), "'heads'", "is missing"),
    "heads_unknown": (set_field("heads", ["detector"]), "'heads'", "'detector'"),
    "segmenter_missing": (drop("segmenter"), "'segmenter'", "is missing"),
    "tile_0": (set_field("segmenter.tile", 0), "'segmenter.tile'", "outside 8..8192"),
    "tile_negative": (set_field("segmenter.tile", -64), "'segmenter.tile'", "outside 8..8192"),
    "tile_1e9": (set_field("segmenter.tile", 1e9), "'segmenter.tile'", "not a whole number"),
    "tile_10e9": (set_field("classifier.tile", 10**9), "'classifier.tile'", "outside 8..8192"),
    "overlap_tile": (set_field("segmenter.overlap", 64), "'segmenter.overlap'", "outside 0..63"),
    "zoom_zero": (set_field("classifier.zoom", 0), "'classifier.zoom'", "not a number in"),
    "pixel_size_nan": (set_field("pixel_size_nm", float("nan")), "'pixel_size_nm'", "nan"),
    "pixel_size_text": (set_field("pixel_size_nm", "2 nm"), "'pixel_size_nm'", "not a number"),
    "pixel_size_zero": (set_field("pixel_size_nm", 0), "'pixel_size_nm'", "not a number in"),
    "pixel_size_negative": (set_field("pixel_size_nm", -2.0), "'pixel_size_nm'", "not a number"),
    "decoder_huge": (
        set_field("segmenter.decoder_widths", [10**6, 64, 32, 16, 16]),
        "'segmenter.decoder_widths[0]'",
        "1..4096",
    ),
    "decoder_short": (
        set_field("segmenter.decoder_widths", [64, 32]),
        "'segmenter.decoder_widths'",
        "list of 5",
    ),
    "normalization_unknown": (
        set_field("normalization", "minmax-v9"),
        "'normalization'",
        "update napari-nanowire",
    ),
    "image_size_bool": (set_field("image_size", True), "'image_size'", "not a whole number"),
    "polarity_2": (
        change(lambda m: m["segmenter"].setdefault("postprocess", {}).update(object_polarity=2)),
        "'segmenter.postprocess.object_polarity'",
        "outside -1..1",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_metadata_is_refused_naming_file_and_field(model_path, tmp_path, case):
    edit, field, says = BAD[case]
    bad = rewrite_meta(model_path, tmp_path / f"{case}.nwmodel", edit)
    with pytest.raises(ModelFileError) as info:
        load_model(bad)
    message = str(info.value)
    assert str(bad) in message and field in message and says in message, message
    assert "\n" not in message


def test_unknown_keys_survive_a_load_and_save(model_path, tmp_path):
    extra = {"notes": "from a newer trainer", "classifier.calibration": [0.5, 2.0]}

    def update(meta):
        meta["notes"] = extra["notes"]
        meta["classifier"]["calibration"] = extra["classifier.calibration"]

    edited = rewrite_meta(model_path, tmp_path / "extra.nwmodel", change(update))
    model = load_model(edited)
    assert model.meta.extra == {"notes": "from a newer trainer"}
    copy = load_model(save_model(model, tmp_path / "copy.nwmodel"))
    assert copy.meta.extra["notes"] == extra["notes"]
    assert copy.meta.classifier.extra["calibration"] == [0.5, 2.0]


def test_round_trip_of_every_typed_field(tmp_path):
    meta = ModelMeta(
        encoder="tiny",
        image_size=64,
        pixel_size_nm=1.5,
        heads=["classifier", "segmenter"],
        class_names=["bundle", "network"],
        mask_classes=["background", "wire", "droplet"],
        classifier=ClassifierMeta(
            tile=64,
            max_tiles=9,
            zoom=0.5,
            class_counts=[3, 4],
            ignore_annotations=True,
            metrics={"cv_accuracy": 0.75},
        ),
        segmenter=SegmenterMeta(
            tile=96,
            overlap=24,
            decoder_widths=[128, 64, 32, 16, 16],
            history=[1.0, 0.5],
            stopped_early=True,
            train_seconds=2.5,
            n_images=3,
            labelled_pixels=400,
        ),
        ssl=SSLMeta(
            method="barlow",
            encoder="tiny",
            image_size=64,
            steps_per_epoch=7,
            projector_dims=[256, 128],
            crop_side_px_mean=40.0,
            extra={"temperature": 0.2, "augment": {"crop_scale": [0.2, 1.0]}},
        ),
        history=[{"epoch": 1, "loss": 2.0}],
        epoch=1,
        step=7,
        extra={"notes": "kept"},
    )
    path = save_model(ModelFile(meta), tmp_path / "m.nwmodel")
    loaded = load_model(path).meta
    assert loaded == meta
    assert loaded.kind == "classifier+segmenter" and loaded.segmenter.tile == 96


@pytest.mark.parametrize("name", ["encoder", "classifier", "random"])
def test_version_1_files_load_and_save_back_the_same_metadata(tmp_path, name):
    written = V1[name]
    encoder = build_encoder("tiny")
    tensors = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    if name == "classifier":
        head = LinearHead(encoder.out_dim, len(written["class_names"]))
        tensors.update({f"classifier.{k}": v for k, v in head.state_dict().items()})
    path = tmp_path / f"{name}.nwmodel"
    save_file(tensors, path, metadata={META_KEY: json.dumps(written)})
    meta = load_model(path).meta
    assert meta.kind == written["kind"] and meta.encoder == "tiny"
    assert meta.class_names == written.get("class_names")
    resaved = load_model(save_model(load_model(path), tmp_path / "again.nwmodel")).meta
    assert resaved == meta
    if name == "encoder":
        assert meta.ssl.crop_side_px_mean == written["ssl"]["crop_side_px_mean"]
        assert meta.step == 1 and len(meta.optimizer_groups) == 2
    if name == "classifier":
        assert meta.classifier.zoom == written["classifier"]["zoom"]
        assert meta.classifier.tile == 32 and meta.classifier.max_tiles == 16
        assert not meta.classifier.ignore_annotations  # classified as it was written
        image = np.random.default_rng(0).random((40, 40)).astype(np.float32)
        probs = Predictor(load_model(path), str(path), "cpu").classify([image]).probabilities
        assert probs.shape == (1, 4) and np.isclose(probs.sum(), 1.0)
