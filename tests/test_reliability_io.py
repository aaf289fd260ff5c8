"""Writing and reading at the edges: full disks, long and odd names, permissions, stale
temporaries, spreadsheet formulas, decompression bombs, absurd values."""

from __future__ import annotations

import errno
import os
import time

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.io import (
    WriteError,
    atomic_path,
    csv_unsafe,
    formats,
    output_lock,
    read_image,
    write_bytes_atomic,
    write_csv,
    write_tiff,
    writers,
)
from napari_nanowire.core.io.limits import MAX_FRAME_PIXELS_ENV
from napari_nanowire.core.masks import label_mask
from napari_nanowire.core.measure.tables import measure_domains
from napari_nanowire.core.model.preprocess import normalize


def test_a_name_of_254_characters_is_written(tmp_path):
    path = tmp_path / ("n" * 250 + ".csv")  # 254 bytes: .NAME.XXXXXXXX.tmp would be 268
    write_csv(path, pd.DataFrame({"a": [1, 2]}))
    assert pd.read_csv(path)["a"].tolist() == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_name_too_long_for_the_file_system_is_a_clear_error(tmp_path):
    with pytest.raises(WriteError, match="too long"):
        write_bytes_atomic(tmp_path / ("n" * 300), b"x")
    assert not list(tmp_path.iterdir())


def test_a_full_disk_is_a_clear_error_and_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "table.csv"
    write_csv(path, pd.DataFrame({"a": [1]}))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers.tifffile, "imwrite", full)
    with pytest.raises(WriteError, match="disk is full"):
        write_tiff(tmp_path / "mask.tif", np.zeros((8, 8), np.uint8), 1.0)
    monkeypatch.setattr(pd.DataFrame, "to_csv", lambda *a, **k: "a\n2\n")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match=f"Cannot write {path}: the disk is full"):
        write_csv(path, pd.DataFrame({"a": [2]}))
    assert path.read_text() == "a\n1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]  # no temporaries


def test_an_output_path_through_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match="a file, not a folder|in the way"):
        write_bytes_atomic(tmp_path / "file" / "out.csv", b"x")


def test_outputs_get_the_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_csv(tmp_path / "a.csv", pd.DataFrame({"a": [1]}))
        os.umask(0o007)
        write_bytes_atomic(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o660


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    folder.mkdir()
    stale = folder / ".model.nwmodel.ab_cd123.tmp"  # mkstemp's pattern, left by a kill -9
    stale.write_bytes(b"half a model")
    os.utime(stale, (time.time() - 3600,) * 2)
    fresh = folder / ".other.csv.zz_yy987.tmp"  # a writer still at work: touched just now
    fresh.write_bytes(b"x")
    foreign = folder / ".notes.tmp"  # not our pattern
    foreign.write_bytes(b"x")
    os.utime(foreign, (time.time() - 3600,) * 2)
    monkeypatch.setattr(writers, "_PROCESS_START", time.time() - 60)
    write_bytes_atomic(folder / "model.nwmodel", b"new")
    assert not stale.exists() and fresh.exists() and foreign.exists()


def test_atomic_path_removes_its_temporary_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError
    assert not list(tmp_path.iterdir())


def test_csv_cells_that_start_a_formula_are_quoted(tmp_path):
    names = ["=HYPERLINK(1)", "+1", "-cmd", "@SUM(A1)", "plain.tif"]
    table = pd.DataFrame({"image": names, "value": [-1.5, 2.0, -3.0, 4.0, 5.0]})
    write_csv(tmp_path / "t.csv", table)
    back = pd.read_csv(tmp_path / "t.csv")
    assert back["image"].tolist() == ["'=HYPERLINK(1)", "'+1", "'-cmd", "'@SUM(A1)", "plain.tif"]
    assert back["value"].tolist() == [-1.5, 2.0, -3.0, 4.0, 5.0]  # numbers stay numbers
    assert [csv_unsafe(v) for v in back["image"]] == names


def test_a_file_name_that_is_not_utf8_is_written_escaped(tmp_path):
    name = os.fsdecode(b"caf\xe9.tif")  # Latin-1 name on a UTF-8 system: a lone surrogate
    write_csv(tmp_path / "t.csv", pd.DataFrame({"image": [name]}))
    text = (tmp_path / "t.csv").read_bytes().decode("utf-8")  # still valid UTF-8
    assert "caf\\udce9.tif" in text


def test_a_second_writer_of_one_output_is_refused(tmp_path):
    out = tmp_path / "m.nwmodel"
    refused = pytest.raises(WriteError, match="being written by another run")
    with output_lock(out), refused, output_lock(out):
        pass
    with output_lock(out):  # released: the next run may write
        pass
    assert not list(tmp_path.iterdir())


def bomb(path, side: int) -> None:
    """A zlib-compressed TIFF of zeros, ``side`` px square, written tile by tile (tiny on disk)."""
    tiles = (np.zeros((256, 256), np.uint8) for _ in range((side // 256) ** 2))
    tifffile.imwrite(
        path, tiles, shape=(side, side), dtype=np.uint8, tile=(256, 256), compression="zlib"
    )


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    bomb(tmp_path / "bomb.tif", 2048)
    assert (tmp_path / "bomb.tif").stat().st_size < 40_000  # 4 MiB of pixels
    monkeypatch.setenv(MAX_FRAME_PIXELS_ENV, str(1000 * 1000))
    with pytest.raises(NanowireError, match=rf"2048 x 2048 px.*{MAX_FRAME_PIXELS_ENV}"):
        read_image(tmp_path / "bomb.tif")
    picture = tmp_path / "big.png"
    import imageio.v3 as iio

    iio.imwrite(picture, np.zeros((1200, 1000), np.uint8))
    with pytest.raises(NanowireError, match="1200 x 1000 px"):
        read_image(picture)
    monkeypatch.setenv(MAX_FRAME_PIXELS_ENV, "lots")
    with pytest.raises(NanowireError, match="positive whole number"):
        read_image(picture)


def test_a_small_file_that_decodes_large_is_read_lazily(tmp_path, monkeypatch):
    bomb(tmp_path / "zeros.tif", 1024)  # 1 MiB decoded, a few kB on disk
    monkeypatch.setattr(formats, "LAZY_BYTES", 512 * 1024)
    data = read_image(tmp_path / "zeros.tif").data
    assert not isinstance(data, np.ndarray) and data.shape == (1024, 1024)
    assert int(np.asarray(data[:4, :4]).sum()) == 0


def test_huge_float_values_are_named_rightly():
    with pytest.raises(NanowireError, match="value 3e\\+38, too large"):
        label_mask(np.full((8, 8), 3e38, np.float32))
    with pytest.raises(NanowireError, match="negative values \\(minimum -2\\)"):
        label_mask(np.full((8, 8), -2.0))
    image = np.random.default_rng(0).random((32, 32)) * 1e300  # finite, beyond float32
    arr = normalize(image)
    assert arr.dtype == np.float32 and np.isfinite(arr).all() and abs(arr.std() - 1) < 0.01


def test_an_intensity_image_is_not_measured_as_thousands_of_classes():
    image = np.arange(100 * 100, dtype=np.uint16).reshape(100, 100)
    with pytest.raises(NanowireError, match="9999 different class values.*intensity image"):
        measure_domains(image)
