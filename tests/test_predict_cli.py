"""The train-classifier, train-segmenter and predict commands, end to end and on bad input."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import tifffile

from helpers import encoder_file, train_segmenter_args
from napari_nanowire.cli.main import main
from napari_nanowire.core.data.synthetic import generate_dataset, write_dataset
from napari_nanowire.core.io import read_image, write_tiff
from napari_nanowire.core.model.modelfile import load_model, save_model
from napari_nanowire.core.model.random_models import random_model, save_random_model
from napari_nanowire.core.predict import Predictor, predict_files

PX = 2.0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A synthetic data set on disk (2 images a class, 64 px) and a random-init encoder file."""
    root = tmp_path_factory.mktemp("data")
    write_dataset(generate_dataset(2, size=64, pixel_size_nm=PX, seed=0), root / "data")
    save_model(encoder_file(), root / "encoder.nwmodel")
    return root


@pytest.fixture(scope="module")
def both_heads(dataset):
    """A model file with a segmenter and, trained on its frozen encoder, a classifier."""
    seg, both = dataset / "seg.nwmodel", dataset / "both.nwmodel"
    data = dataset / "data"
    common = ["--device", "cpu", "--seed", "0"]
    assert (
        main(
            [
                "train-segmenter",
                "--encoder",
                str(dataset / "encoder.nwmodel"),
                "--images",
                str(data / "images"),
                "--masks",
                str(data / "masks"),
                "--dense-masks",
                "--out",
                str(seg),
                "--steps",
                "3",
                "--tile",
                "32",
                "--batch-size",
                "2",
                "--class-names",
                "nanowire",
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train-classifier",
                "--encoder",
                str(seg),
                "--labels",
                str(data / "labels.csv"),
                "--out",
                str(both),
                "--epochs",
                "50",
                *common,
            ]
        )
        == 0
    )
    return both


def test_predict_writes_documented_columns_and_masks(dataset, both_heads, tmp_path):
    meta = load_model(both_heads).meta
    assert meta.heads == ["classifier", "segmenter"]
    images = sorted((dataset / "data" / "images").glob("*.tif"))[:3]
    assert main(["predict", str(both_heads), *map(str, images), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "predictions.csv")
    classes = meta.class_names
    assert list(table.columns) == [
        "image",
        "class",
        "confidence",
        *[f"prob_{c}" for c in classes],
        "entropy",
        "margin",
        "mask",
        "mask_entropy",
        "ignored",
    ]
    assert table["image"].tolist() == [str(p) for p in images]
    probs = table[[f"prob_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(table["confidence"], probs.max(1), atol=1e-6)
    assert set(table["class"]) <= set(classes)
    assert table["entropy"].between(0, 1).all() and table["margin"].between(0, 1).all()
    mask = read_image(tmp_path / table["mask"][0])
    assert mask.data.dtype == np.uint8 and mask.data.shape == (64, 64)
    assert mask.pixel_size_nm == pytest.approx(PX) and set(np.unique(mask.data)) <= {0, 1}


def test_predict_a_stack_gives_a_row_per_frame(both_heads, tmp_path):
    stack = np.stack([i.image for i in generate_dataset(1, size=64, pixel_size_nm=PX, seed=5)])
    write_tiff(tmp_path / "stack.tif", stack, PX)
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(both_heads),
                str(tmp_path / "stack.tif"),
                "--out",
                str(out),
                "--save-uncertainty",
            ]
        )
        == 0
    )
    table = pd.read_csv(out / "predictions.csv")
    assert table["image"].tolist() == [f"{tmp_path / 'stack.tif'}[{i}]" for i in range(4)]
    assert tifffile.imread(out / "masks" / "stack.tif").shape == (4, 64, 64)
    assert tifffile.imread(out / "uncertainty" / "stack.tif").dtype == np.float32


def run_error(argv, capsys) -> str:
    """Run a command that must fail with exit 2; return its one-line message."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    return err


def test_predict_with_an_encoder_only_file_says_to_train(dataset, tmp_path, capsys):
    image = dataset / "data" / "images" / "bundle_000.tif"
    err = run_error(
        ["predict", str(dataset / "encoder.nwmodel"), str(image), "--out", str(tmp_path)], capsys
    )
    assert "no classifier or segmenter" in err and "encoder.nwmodel" in err


def test_predict_an_unreadable_image_names_it(both_heads, tmp_path, capsys):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff")
    err = run_error(["predict", str(both_heads), str(bad), "--out", str(tmp_path / "o")], capsys)
    assert "broken.tif" in err


def write_labels(path, rows, header="image,label"):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.mark.parametrize(
    ("header", "rows", "match"),
    [
        ("file,label", ["images/bundle_000.tif,bundle"], "needs columns 'image' and 'label'"),
        (
            "image,class",
            ["images/bundle_000.tif,bundle", "images/bundle_001.tif,bundle"],
            "another class",
        ),
        ("image,label", [], "no labelled rows"),
        ("image,label", ["images/missing.tif,bundle", "images/bundle_000.tif,x"], "missing.tif"),
    ],
)
def test_train_classifier_label_table_errors(dataset, tmp_path, capsys, header, rows, match):
    labels = write_labels(tmp_path / "labels.csv", rows, header)
    root = dataset / "data"
    err = run_error(
        [
            "train-classifier",
            "--encoder",
            str(dataset / "encoder.nwmodel"),
            "--labels",
            str(labels),
            "--images-root",
            str(root),
            "--out",
            str(tmp_path / "c.nwmodel"),
        ],
        capsys,
    )
    assert match in err


def test_train_classifier_refuses_a_stack_and_an_existing_output(dataset, tmp_path, capsys):
    write_tiff(tmp_path / "s.tif", np.zeros((2, 32, 32), np.float32), PX)
    write_tiff(tmp_path / "t.tif", np.zeros((32, 32), np.float32), PX)
    labels = write_labels(tmp_path / "labels.csv", ["s.tif,a", "t.tif,b"])
    enc = str(dataset / "encoder.nwmodel")
    args = ["train-classifier", "--encoder", enc, "--labels", str(labels), "--out"]
    assert "stack of 2 images" in run_error([*args, str(tmp_path / "c.nwmodel")], capsys)
    assert "--overwrite" in run_error([*args, enc], capsys)


def segmenter_args(dataset, folder, *extra: str) -> list[str]:
    """train-segmenter on ``folder``/images and ``folder``/masks with the test encoder."""
    return train_segmenter_args(dataset / "encoder.nwmodel", folder, *extra)


def test_train_segmenter_matching_errors(dataset, tmp_path, capsys):
    write_tiff(tmp_path / "images" / "a.tif", np.zeros((32, 32), np.float32), PX)
    write_tiff(tmp_path / "masks" / "b.tif", np.zeros((32, 32), np.uint8), PX)
    args = segmenter_args(dataset, tmp_path)
    assert "No mask in" in run_error(args, capsys)
    write_tiff(tmp_path / "masks" / "a.tif", np.zeros((16, 32), np.uint8), PX)
    err = run_error(args, capsys)
    assert "a.tif" in err and "pixel for pixel" in err


def test_train_segmenter_uses_images_without_masks_only_when_asked(dataset, tmp_path, capsys):
    item = generate_dataset(1, size=64, pixel_size_nm=PX, seed=0)[1]
    write_tiff(tmp_path / "images" / "a.tif", item.image, PX)
    write_tiff(tmp_path / "images" / "lonely.tif", item.image, PX)
    write_tiff(tmp_path / "masks" / "a.tif", item.mask, PX)
    write_tiff(tmp_path / "more" / "b.tif", np.stack([item.image, item.image]), PX)
    extra = ("--dense-masks", "--steps", "1", "--tile", "32", "--batch-size", "1")
    args = segmenter_args(dataset, tmp_path, *extra, "--device", "cpu", "--overwrite")
    assert main(args) == 0
    assert "images without a mask: lonely" in capsys.readouterr().out
    meta = load_model(tmp_path / "s.nwmodel").meta.segmenter
    assert meta.extra["n_unlabelled"] == 0 and meta.settings["semi_supervised"] is False
    assert main([*args, "--semi-supervised"]) == 0
    meta = load_model(tmp_path / "s.nwmodel").meta.segmenter
    assert meta.extra["n_unlabelled"] == 1 and meta.settings["semi_supervised"] is True
    assert main([*args, "--unlabelled", str(tmp_path / "more")]) == 0  # + a 2-frame stack
    assert load_model(tmp_path / "s.nwmodel").meta.segmenter.extra["n_unlabelled"] == 3
    capsys.readouterr()
    assert "not a folder" in run_error([*args, "--unlabelled", str(tmp_path / "no")], capsys)


def test_stop_mid_stack_keeps_finished_files_and_leaves_no_partial_stack(tmp_path):
    rng = np.random.default_rng(1)
    model = save_random_model(tmp_path / "model.nwmodel", tile=32)
    single = write_tiff(tmp_path / "a.tif", rng.random((48, 48), dtype=np.float32), PX)
    stack = write_tiff(tmp_path / "b.tif", rng.random((3, 48, 48), dtype=np.float32), PX)
    out, stop, events = tmp_path / "out", threading.Event(), []
    for event in predict_files(model, [single, stack], out, device="cpu", stop=stop):
        events.append(event)
        if event.step == 2:  # the stack's first frame is done
            stop.set()
    assert [(e.step, e.total_steps) for e in events[:-1]] == [(1, 4), (2, 4)]  # per frame
    assert events[-1].done and events[-1].message.startswith("stopped")
    assert pd.read_csv(out / "predictions.csv")["image"].tolist() == [str(single)]
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["a.tif"]  # nor temp files


def test_one_frame_function_serves_stacks_files_and_the_gui():
    # predict_stack (the GUI's per-slice loop) and predict_frame give what classify and
    # segment give for each frame, in the order asked, and stop between frames.
    predictor = Predictor(random_model(tile=32, seed=1), "random", "cpu")
    stack = np.random.default_rng(0).random((3, 40, 56)).astype(np.float32)
    results = list(predictor.predict_stack(stack, 2.0, indices=[2, 0]))
    assert [i for i, _ in results] == [2, 0]
    for index, result in results:
        expected = predictor.classify([stack[index]], [2.0]).probabilities
        assert np.allclose(result.classes.probabilities, expected)
        assert np.array_equal(result.mask.mask, predictor.segment(stack[index], 2.0).mask)
        row = result.row("masks/x.tif")
        assert list(row)[-3:] == ["mask", "mask_entropy", "ignored"] and row["class"] in (
            "bundle",
            "network",
        )
    only = predictor.predict_frame(stack[1], 2.0, heads=["segmenter"])
    assert only.classes is None and only.mask.mask.shape == (40, 56)
    stop = threading.Event()
    seen = []
    for index, _ in predictor.predict_stack(stack, 2.0, stop=stop):
        seen.append(index)
        stop.set()
    assert seen == [0]
