"""Command-line options out of range fail while parsing, before any file is read."""

from __future__ import annotations

import pytest

from napari_nanowire.cli.main import build_parser

BAD_OPTIONS = [
    (["predict", "m.nwmodel", "a.tif", "--out", "o", "--tile", "0"], "--tile"),
    (["predict", "m.nwmodel", "a.tif", "--out", "o", "--tile", "7"], "--tile"),
    (["predict", "m.nwmodel", "a.tif", "--out", "o", "--tile", "-64"], "--tile"),
    (["predict", "m.nwmodel", "a.tif", "--out", "o", "--retries", "-1"], "--retries"),
    (["predict", "m.nwmodel", "a.tif", "--out", "o", "--pixel-size", "nan"], "--pixel-size"),
    (["pretrain", "a.tif", "--out", "m", "--batch-size", "0"], "--batch-size"),
    (["pretrain", "a.tif", "--out", "m", "--seed", "-1"], "--seed"),
    (["pretrain", "a.tif", "--out", "m", "--seed", str(2**70)], "--seed"),
    (["pretrain", "a.tif", "--out", "m", "--image-size", "100000"], "--image-size"),
    (["pretrain", "a.tif", "--out", "m", "--epochs", "-2"], "--epochs"),
    (["pretrain", "a.tif", "--out", "m", "--steps-per-epoch", "0"], "--steps-per-epoch"),
    (["pretrain", "a.tif", "--out", "m", "--lr", "inf"], "--lr"),
    (
        ["train-segmenter", "--encoder", "e", "--images", "i", "--masks", "k", "--out", "o"]
        + ["--steps", "-5"],
        "--steps",
    ),
    (
        ["train-segmenter", "--encoder", "e", "--images", "i", "--masks", "k", "--out", "o"]
        + ["--batch-size", "0"],
        "--batch-size",
    ),
    (
        ["train-segmenter", "--encoder", "e", "--images", "i", "--masks", "k", "--out", "o"]
        + ["--tile", "100"],
        "--tile",
    ),
    (
        ["train-classifier", "--encoder", "e", "--labels", "l.csv", "--out", "o"]
        + ["--epochs", "0"],
        "--epochs",
    ),
    (
        ["train-classifier", "--encoder", "e", "--labels", "l.csv", "--out", "o"]
        + ["--fine-tune-epochs", "-1"],
        "--fine-tune-epochs",
    ),
    (["synth", "o", "--seed", "-1"], "--seed"),
    (["synth", "o", "--size", "100000"], "--size"),
    (["measure", "m.tif", "--out", "o", "--min-area", "-1"], "--min-area"),
    (["demo", "--epochs", "0"], "--epochs"),
]


@pytest.mark.parametrize(("argv", "option"), BAD_OPTIONS)
def test_out_of_range_options_exit_2_naming_the_option(argv, option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "Traceback" not in err


def test_in_range_options_parse_to_numbers():
    argv = ["pretrain", "a.tif", "--out", "m", "--seed", str(2**32 - 1), "--batch-size", "2"]
    args = build_parser().parse_args([*argv, "--image-size", "32", "--lr", "1e-3"])
    assert (args.seed, args.batch_size, args.image_size, args.lr) == (2**32 - 1, 2, 32, 1e-3)
    args = build_parser().parse_args(["predict", "m", "a", "--out", "o", "--tile", "64"])
    assert args.tile == 64 and args.retries == 2


@pytest.mark.parametrize(
    "argv",
    [["measure", "m.tif", "--out", "{file}"], ["synth", "{file}", "--n-per-class", "1"]],
)
def test_an_out_that_is_a_file_is_refused_before_any_work(argv, tmp_path, capsys):
    from napari_nanowire.cli.main import main

    file = tmp_path / "taken"
    file.write_text("keep me")
    assert main([a.format(file=file) for a in argv]) == 2
    assert f"--out {file} is a file" in capsys.readouterr().err
    assert file.read_text() == "keep me"


def test_measure_refuses_to_overwrite_earlier_tables(tmp_path, capsys):
    from napari_nanowire.cli.main import main

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "summary.csv").write_text("old")
    assert main(["measure", "m.tif", "--out", str(tmp_path / "out")]) == 2
    assert "already holds summary.csv" in capsys.readouterr().err


def test_a_full_disk_in_a_writing_command_is_one_clear_line(tmp_path, capsys, monkeypatch):
    import errno
    import os

    from napari_nanowire.cli.main import main

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    argv = ["synth", str(tmp_path / "s"), "--n-per-class", "1", "--size", "32"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "the disk is full" in err and "Traceback" not in err
    assert not list((tmp_path / "s").rglob("*.tmp"))
