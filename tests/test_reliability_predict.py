"""Prediction runs that fail, are killed or are run again keep consistent, complete results."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from napari_nanowire.cli.main import main
from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.io import read_image, write_tiff
from napari_nanowire.core.model.modelfile import save_model
from napari_nanowire.core.model.random_models import random_model, save_random_model
from napari_nanowire.core.predict import Predictor, predict_files
from napari_nanowire.core.predict import files as predict
from napari_nanowire.core.predict import predictor as predictor_module

CLI = [sys.executable, "-m", "napari_nanowire.cli.main"]


@pytest.fixture
def model_path(tmp_path):
    return save_random_model(tmp_path / "model.nwmodel", seed=1)


def images(folder: Path, shapes: list[tuple[int, ...]]) -> list[Path]:
    """Random float32 TIFFs of the given shapes (a 3-tuple is a stack) at 1.5 nm/px."""
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    return [
        write_tiff(folder / f"img{i}.tif", rng.random(shape).astype(np.float32), 1.5)
        for i, shape in enumerate(shapes)
    ]


def run(events) -> None:
    for _ in events:
        pass


def test_a_run_that_fails_midway_keeps_the_finished_rows_and_resume_skips_them(
    model_path, tmp_path, monkeypatch
):
    paths = images(tmp_path / "in", [(40, 40), (2, 40, 40), (40, 40), (40, 40)])
    out = tmp_path / "out"
    original, calls, failed = predict.read_image, [], []

    def failing(path, *args, **kwargs):
        calls.append(Path(path).name)
        if Path(path).name == "img2.tif" and calls.count("img2.tif") == 2 and not failed:
            failed.append(path)  # the first read counts frames; fail the second, once
            raise OSError("disk went away")  # e.g. a network share dropping out
        return original(path, *args, **kwargs)

    monkeypatch.setattr(predict, "read_image", failing)
    with pytest.raises(OSError, match="disk went away"):
        run(predict_files(model_path, paths, out, device="cpu"))
    table = pd.read_csv(out / "predictions.csv")  # the two finished files (three frames) are in
    assert table["image"].tolist() == [str(paths[0]), f"{paths[1]}[0]", f"{paths[1]}[1]"]
    assert {p.name for p in (out / "masks").iterdir()} == {"img0.tif", "img1.tif"}

    calls.clear()
    run(predict_files(model_path, paths, out, device="cpu", resume=True))
    assert calls.count("img0.tif") == calls.count("img1.tif") == 1  # counted, not predicted
    table = pd.read_csv(out / "predictions.csv")
    expected = [str(paths[0]), f"{paths[1]}[0]", f"{paths[1]}[1]", str(paths[2]), str(paths[3])]
    assert table["image"].tolist() == expected
    run(predict_files(model_path, paths, tmp_path / "clean", device="cpu"))
    pd.testing.assert_frame_equal(table, pd.read_csv(tmp_path / "clean" / "predictions.csv"))


def test_resume_redoes_a_file_whose_rows_were_cut_short(model_path, tmp_path):
    paths = images(tmp_path / "in", [(40, 40), (3, 40, 40)])
    out = tmp_path / "out"
    run(predict_files(model_path, paths, out, device="cpu"))
    full = (out / "predictions.csv").read_text()
    lines = full.splitlines(keepends=True)
    (out / "predictions.csv").write_text("".join(lines[:3]) + lines[3][:10])  # a kill mid-row
    run(predict_files(model_path, paths, out, device="cpu", resume=True))
    assert (out / "predictions.csv").read_text() == full


def test_predict_into_a_folder_with_results_needs_overwrite_or_resume(model_path, tmp_path, capsys):
    paths = images(tmp_path / "in", [(40, 40)])
    out = tmp_path / "out"
    argv = ["predict", str(model_path), *map(str, paths), "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    before = (out / "predictions.csv").read_bytes()
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "predictions.csv").read_bytes() == before
    assert main([*argv, "--resume"]) == 0 and (out / "predictions.csv").read_bytes() == before
    assert main([*argv, "--overwrite"]) == 0
    (tmp_path / "file").write_text("x")
    assert main([*argv[:-4], "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_an_overwriting_run_removes_the_old_table_before_writing_masks(model_path, tmp_path):
    paths = images(tmp_path / "in", [(40, 40), (40, 40)])
    out = tmp_path / "out"
    run(predict_files(model_path, paths, out, device="cpu"))
    events = predict_files(model_path, paths[::-1], out, device="cpu")
    next(events)  # the first frame of the new run is done: the old table is gone already
    assert not (out / "predictions.csv").exists()
    events.close()


@pytest.mark.slow
def test_a_killed_predict_keeps_its_finished_rows_and_resumes(model_path, tmp_path):
    paths = images(tmp_path / "in", [(160, 160)] * 8)
    out = tmp_path / "out"
    argv = [*CLI, "predict", str(model_path), *map(str, paths), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*argv, "--device", "cpu"], env=env, stderr=subprocess.PIPE)
    table = out / "predictions.csv"
    end = time.monotonic() + 120
    while not (table.exists() and table.read_text().count("\n") >= 3):  # header + 2 files
        assert proc.poll() is None and time.monotonic() < end, proc.stderr.read()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    kept = pd.read_csv(table)
    assert 2 <= len(kept) < len(paths) and kept["image"].is_unique
    for stem in (Path(p).stem for p in kept["image"]):  # every row's mask is complete
        assert read_image(out / "masks" / f"{stem}.tif").data.shape == (160, 160)
    done = subprocess.run([*argv, "--device", "cpu", "--resume"], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert pd.read_csv(table)["image"].tolist() == list(map(str, paths))
    assert not list(out.rglob("*.tmp"))


def test_nan_weights_are_refused_before_predicting(tmp_path):
    model = random_model(seed=2)
    name = next(k for k, t in model.tensors.items() if k.startswith("classifier"))
    model.tensors[name] = torch.full_like(model.tensors[name], float("nan"))
    path = save_model(model, tmp_path / "nan.nwmodel")
    with pytest.raises(NanowireError, match=f"NaN or infinite weights.*{name}"):
        Predictor.load(path, "cpu")


def test_non_finite_probabilities_are_an_error_not_an_empty_confidence(model_path, monkeypatch):
    predictor = Predictor.load(model_path, "cpu")
    monkeypatch.setattr(
        predictor_module, "class_probabilities", lambda *a, **k: np.array([[np.nan, np.nan]])
    )
    with pytest.raises(NanowireError, match="NaN or infinite probabilities"):
        predictor.classify([np.random.default_rng(0).random((40, 40))])


def test_odd_file_names_are_predicted_and_listed(model_path, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    latin1 = folder / os.fsdecode(b"caf\xe9.tif")  # not UTF-8: the CSV failed to encode it
    long = folder / ("n" * 250 + ".tif")  # its mask's temporary name was over 255 bytes
    formula = folder / "=cmd.tif"
    for path in (latin1, long, formula):
        write_tiff(path, rng.random((40, 40)).astype(np.float32), 1.5)
    out = tmp_path / "out"
    run(predict_files(model_path, [latin1, long, formula], out, device="cpu"))
    text = (out / "predictions.csv").read_bytes().decode("utf-8")
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 3 and "caf\\udce9.tif" in text
    cells = [cell for line in text.splitlines() for cell in line.split(",")]
    assert not any(cell.startswith(("=", "+", "@")) for cell in cells)
    assert {p.name for p in (out / "masks").iterdir()} == {
        latin1.stem + ".tif",
        long.stem + ".tif",
        "=cmd.tif",
    }
