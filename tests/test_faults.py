"""Faults: killed processes, broken model files on the predict paths, concurrent writers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import rewrite_meta
from napari_nanowire.cli.main import main
from napari_nanowire.core.data.project import Project
from napari_nanowire.core.io import read_image, write_tiff
from napari_nanowire.core.model.modelfile import load_model
from napari_nanowire.core.model.random_models import random_model, save_random_model
from napari_nanowire.core.predict import Predictor

CLI = [sys.executable, "-m", "napari_nanowire.cli.main"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # a loaded 2-core machine: one thread each


def images(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """``n`` random float32 images of ``size`` px written as TIFFs."""
    rng = np.random.default_rng(seed)
    return [
        write_tiff(folder / f"img{i}.tif", rng.random((size, size)).astype(np.float32), 1.5)
        for i in range(n)
    ]


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL a child process and reap it."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll ``condition`` until true; fail with the child's output if it ended or took too long."""
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > end:
            kill(proc) if proc.poll() is None else None
            pytest.fail(f"child ended or stalled: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)


@pytest.mark.slow  # 21 s under load
def test_killed_pretraining_leaves_a_loadable_checkpoint(tmp_path):
    paths = images(tmp_path, 4, 96)
    out = tmp_path / "encoder.nwmodel"
    args = ["pretrain", *map(str, paths), "--out", str(out), "--epochs", "500"]
    args += ["--steps-per-epoch", "2", "--batch-size", "4", "--image-size", "32", "--device", "cpu"]
    proc = subprocess.Popen([*CLI, *args], env=ENV, stderr=subprocess.PIPE, text=True)
    wait_for(out.exists, proc)
    first = load_model(out).meta.epoch
    # Let it write further checkpoints, then kill it at an arbitrary point (maybe mid-write).
    wait_for(lambda: load_model(out).meta.epoch >= first + 2, proc)
    kill(proc)
    model = load_model(out)
    assert model.meta.epoch >= first + 2
    assert model.has_part("encoder") and model.meta.step == 2 * model.meta.epoch


def test_killed_labelling_leaves_the_project_intact(tmp_path):
    stack = np.zeros((3, 32, 32), np.uint8)
    Project.create(tmp_path, ["a", "b", "c"], 1.0, stack=stack)
    script = textwrap.dedent(f"""
        import numpy as np
        from napari_nanowire.core.data.project import Project
        project = Project.open({str(tmp_path)!r})
        for k in range(100_000):
            project.set_slice_labels([project.classes[k % 2]] * 3)
            project.save_masks(np.full((3, 32, 32), 1 + k % 2, np.uint8))
            if k == 5:
                print("saving", flush=True)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "saving\n", proc.stderr.read()
    time.sleep(0.3)
    kill(proc)
    project = Project.open(tmp_path)
    labels = project.slice_labels()
    assert labels[0] in project.classes[:2] and len(set(labels)) == 1
    masks = project.load_masks()
    assert masks.shape == (3, 32, 32) and set(np.unique(masks)) <= {1, 2}


@pytest.fixture
def model_path(tmp_path):
    return save_random_model(tmp_path / "model.nwmodel")


def broken_files(model_path: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """Model files that must be refused, each with a pattern its error message must match."""
    data = model_path.read_bytes()
    truncated = folder / "truncated.nwmodel"
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = folder / "corrupt.nwmodel"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    pickled = folder / "pickled.nwmodel"
    torch.save({"encoder.w": torch.zeros(2)}, pickled)
    # tiny-encoder weights labelled as another architecture
    other = rewrite_meta(
        model_path,
        folder / "other_arch.nwmodel",
        lambda text: json.dumps({**json.loads(text), "encoder": "resnet18"}),
    )
    return {
        "truncated": (truncated, "truncated or corrupt"),
        "corrupt": (corrupt, "truncated or corrupt"),
        "pickled": (pickled, "pickle"),
        "other_arch": (other, "do not fit this architecture"),
    }


def test_broken_model_files_give_one_clear_line_from_predict(model_path, tmp_path, capsys):
    image = images(tmp_path, 1, 64)[0]
    for name, (path, message) in broken_files(model_path, tmp_path).items():
        out = tmp_path / f"out_{name}"
        assert main(["predict", str(path), str(image), "--out", str(out)]) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("napari-nanowire predict: error: Model file")
        assert str(path) in err and message in err and "\n" not in err, err
        assert not (out / "predictions.csv").exists()


def test_predictor_refuses_a_model_without_heads(tmp_path):
    model = random_model()
    model.meta.heads = []
    with pytest.raises(ValueError, match="holds no classifier or segmenter"):
        Predictor(model, "encoder.nwmodel")


@pytest.mark.slow  # 87 s under load
def test_two_predict_runs_into_one_folder_leave_every_file_complete(model_path, tmp_path):
    paths = images(tmp_path, 3, 256)
    out = tmp_path / "out"
    command = [*CLI, "predict", str(model_path), *map(str, paths), "--out", str(out)]
    command += ["--device", "cpu", "--save-uncertainty"]
    procs = [subprocess.Popen(command, env=ENV, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    codes = [p.wait(timeout=240) for p in procs]
    errors = [p.stderr.read() for p in procs]
    # The second run is refused (the folder's lock, or the first run's finished table), or,
    # started after the lock was released but before the table appeared, redoes the set alone.
    assert sorted(codes) in ([0, 0], [0, 2]), errors
    for code, err in zip(codes, errors, strict=True):
        assert code == 0 or "another run" in err or "already holds" in err, err
    table = pd.read_csv(out / "predictions.csv")
    assert table["image"].tolist() == list(map(str, paths))
    predictor = Predictor.load(model_path, "cpu")
    for path in paths:
        expected = predictor.segment(read_image(path).data, 1.5, entropy_map=True)
        np.testing.assert_array_equal(
            read_image(out / "masks" / f"{path.stem}.tif").data, expected.mask
        )
        uncertainty = read_image(out / "uncertainty" / f"{path.stem}.tif").data
        np.testing.assert_allclose(uncertainty, expected.entropy_map, atol=1e-6)
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_sigterm_stops_pretraining_with_a_save_like_ctrl_c(tmp_path):
    paths = images(tmp_path, 4, 96)
    out = tmp_path / "encoder.nwmodel"
    args = ["pretrain", *map(str, paths), "--out", str(out), "--epochs", "2"]
    args += ["--steps-per-epoch", "100000", "--batch-size", "4", "--image-size", "32"]
    proc = subprocess.Popen([*CLI, *args, "--device", "cpu"], env=ENV, stdout=subprocess.PIPE)
    wait_for(lambda: proc.stdout.readline().startswith(b"pretraining"), proc)
    time.sleep(2.0)  # a few steps, far from the end of the first epoch
    proc.send_signal(signal.SIGTERM)  # what batch systems and `kill` send
    assert proc.wait(timeout=120) == 130  # before: killed by the signal (-15), nothing saved
    model = load_model(out)
    assert 0 < model.meta.step < 100000 and model.has_part("encoder")


def test_a_second_pretraining_on_the_same_out_is_refused(tmp_path, capsys):
    from napari_nanowire.core.io import output_lock

    paths = images(tmp_path, 2, 48)
    out = tmp_path / "encoder.nwmodel"
    args = ["pretrain", *map(str, paths), "--out", str(out), "--epochs", "1"]
    args += ["--steps-per-epoch", "1", "--batch-size", "2", "--image-size", "32"]
    with output_lock(out):  # a first run is writing it
        assert main([*args, "--device", "cpu"]) == 2
    assert "being written by another run" in capsys.readouterr().err and not out.exists()
    (tmp_path / "folder").mkdir()
    folder_out = ["pretrain", *map(str, paths), "--out", str(tmp_path / "folder")]
    assert main([*folder_out, "--overwrite"]) == 2
    assert "is a folder" in capsys.readouterr().err
