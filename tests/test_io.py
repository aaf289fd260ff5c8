"""The TEM image reader: formats, pixel sizes in nm, folders as stacks, and every bad input.

Every input is written here, in tmp_path: TIFF/PNG/JPEG/BMP with tifffile and imageio, MRC with
mrcfile, EMD with rosettasciio's own writer. DM3/DM4 and EMI/SER cannot be written by any
library, so their dispatch is tested by replacing rosettasciio's reader with one returning the
signals those files give (the real files were checked by hand, see the report).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import imageio.v3 as iio
import mrcfile
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.io import (
    ReadError,
    image_files,
    pixel_size_from_units,
    read_image,
    read_images,
    tiff_frame_writer,
    write_tiff,
)
from napari_nanowire.core.io import reading as io

RNG = np.random.default_rng(0)


def gray(shape=(12, 16), dtype=np.uint16):
    return RNG.integers(0, 200, size=shape).astype(dtype)


# --- TIFF and pixel sizes ---------------------------------------------------------------------


def test_write_tiff_round_trips_image_stack_dtype_and_pixel_size(tmp_path):
    image, stack = gray(dtype=np.uint8), RNG.random((3, 12, 16)).astype(np.float32)
    read2d = read_image(write_tiff(tmp_path / "one.tif", image, 0.7))
    read3d = read_image(write_tiff(tmp_path / "stack.tif", stack, 1.25))
    assert read2d.data.dtype == np.uint8 and np.array_equal(read2d.data, image)
    assert read2d.pixel_size_nm == 0.7 and read2d.names == ["one"]
    assert read3d.data.dtype == np.float32 and np.array_equal(read3d.data, stack)
    assert read3d.pixel_size_nm == 1.25
    assert read3d.names == ["stack[0]", "stack[1]", "stack[2]"]
    assert read3d.source == tmp_path / "stack.tif"
    assert read_image(write_tiff(tmp_path / "nocal.tif", image, None)).pixel_size_nm is None


WRITE_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@WRITE_SETTINGS
@given(st.floats(1e-3, 1e3).map(lambda v: float(f"{v:.8g}")))
@example(0.33333333)
@example(0.7)
def test_write_tiff_pixel_size_comes_back_exactly(tmp_path, pixel_size):
    # The TIFF resolution is a 32-bit rational: without the shortest-decimal step about 1 in 9
    # eight-digit sizes came back a few units in the last place off (measured on 20000 values).
    path = write_tiff(tmp_path / "p.tif", np.zeros((2, 2), np.uint8), pixel_size)
    assert read_image(path).pixel_size_nm == pixel_size


@WRITE_SETTINGS
@given(st.floats(1e-3, 1e3))
@example(0.333333333333)  # 1/ps is stored as 3/1, the nearest 32-bit rational
def test_write_tiff_any_pixel_size_comes_back_within_rational_precision(tmp_path, size):
    # a 32-bit rational holds 1/ps to about 2.3e-10 relative (1/2**32); bound 1e-9
    path = write_tiff(tmp_path / "p.tif", np.zeros((2, 2), np.uint8), size)
    assert read_image(path).pixel_size_nm == pytest.approx(size, rel=1e-9, abs=0)


@pytest.mark.parametrize(
    ("unit", "per_px", "expected_nm"),
    [("micron", 0.5, 500.0), ("\\u00B5m", 0.002, 2.0), ("nm", 0.37, 0.37), ("A", 12.5, 1.25)],
)
def test_imagej_units_are_converted_to_nm(tmp_path, unit, per_px, expected_nm):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path, gray(), imagej=True, resolution=(1 / per_px, 1 / per_px), metadata={"unit": unit}
    )
    image = read_image(path)
    assert image.pixel_size_nm == pytest.approx(expected_nm, rel=1e-12)
    assert image.metadata["original_pixel_size"] == per_px


def test_imagej_file_without_unit_has_no_pixel_size(tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, gray(), imagej=True, resolution=(3.0, 3.0))
    assert read_image(path).pixel_size_nm is None


@pytest.mark.parametrize(
    ("resolution", "unit", "expected_nm"),
    [(1e7, "CENTIMETER", 1.0), (2.54e7 / 4, "INCH", 4.0)],
)
def test_standard_tiff_resolution_units_are_converted_to_nm(
    tmp_path, resolution, unit, expected_nm
):
    path = tmp_path / "std.tif"
    tifffile.imwrite(path, gray(), resolution=(resolution, resolution), resolutionunit=unit)
    assert read_image(path).pixel_size_nm == pytest.approx(expected_nm, rel=1e-9)


def test_print_resolution_is_not_taken_for_a_pixel_size(tmp_path):
    path = tmp_path / "screen.tif"
    tifffile.imwrite(path, gray(), resolution=(72, 72), resolutionunit="INCH")
    image = read_image(path)
    assert image.pixel_size_nm is None
    assert "print or screen resolution" in image.metadata["pixel_size_note"]


def test_non_square_pixels_give_no_pixel_size_and_say_why(tmp_path):
    path = tmp_path / "aniso.tif"
    tifffile.imwrite(path, gray(), imagej=True, resolution=(1.0, 0.5), metadata={"unit": "nm"})
    image = read_image(path)
    assert image.pixel_size_nm is None
    assert "not square" in image.metadata["pixel_size_note"]


@pytest.mark.parametrize(
    ("physical", "expected_nm"),
    [
        ({"PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeXUnit": "nm"}, 0.5),
        ({"PhysicalSizeX": 0.002, "PhysicalSizeY": 0.002}, 2.0),
    ],  # OME's default unit is µm
)
def test_ome_tiff_physical_size_is_the_pixel_size(tmp_path, physical, expected_nm):
    path = tmp_path / "a.ome.tif"
    stack = gray((2, 12, 16))
    tifffile.imwrite(path, stack, ome=True, metadata={"axes": "ZYX", **physical})
    image = read_image(path)
    assert np.array_equal(image.data, stack)
    assert image.pixel_size_nm == pytest.approx(expected_nm, rel=1e-12)


def test_tiff_without_resolution_has_no_pixel_size(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, gray())
    assert read_image(path).pixel_size_nm is None


def test_explicit_pixel_size_overrides_the_file_and_keeps_the_file_value(tmp_path):
    path = write_tiff(tmp_path / "a.tif", gray(), 2.0)
    image = read_image(path, pixel_size_nm=0.5)
    assert image.pixel_size_nm == 0.5
    assert image.metadata["file_pixel_size_nm"] == 2.0
    for bad in (0, -1.0, float("nan"), "1"):
        with pytest.raises(NanowireError, match="pixel_size_nm"):
            read_image(path, pixel_size_nm=bad)


@pytest.mark.parametrize(
    ("value", "unit", "nm"),
    [
        (1.0, "nm", 1.0),
        (0.005, "µm", 5.0),  # micro sign U+00B5
        (0.005, "μm", 5.0),  # Greek mu U+03BC
        (0.005, "um", 5.0),
        (12.5, "Å", 1.25),  # U+00C5
        (12.5, "Å", 1.25),  # angstrom sign U+212B
        (12.5, "A", 1.25),
        (8.5, "pm", 0.0085),
        (2e-9, "m", 2.0),
        (1e-7, "cm", 1.0),
        (1 / 2.54e7, "inch", 1.0),
    ],
)
def test_pixel_size_from_units(value, unit, nm):
    assert pixel_size_from_units(value, unit) == pytest.approx(nm, rel=1e-12)


def test_pixel_size_from_units_is_exact_for_decimal_angstroms():
    assert pixel_size_from_units(12.5, "Å") == 1.25
    assert pixel_size_from_units(7.0, "A") == 0.7


def test_pixel_size_from_units_refuses_unknown_units_and_bad_values():
    with pytest.raises(NanowireError, match="furlong"):
        pixel_size_from_units(1.0, "furlong")
    with pytest.raises(NanowireError, match="positive"):
        pixel_size_from_units(-1.0, "nm")


def test_large_tiff_is_memory_mapped_not_loaded(tmp_path, monkeypatch):
    stack = gray((3, 12, 16))
    path = write_tiff(tmp_path / "big.tif", stack, 1.5)
    monkeypatch.setattr(io, "LAZY_BYTES", 0)
    image = read_image(path)
    assert isinstance(image.data, np.memmap)
    assert np.array_equal(image.data, stack) and image.pixel_size_nm == 1.5


@contextmanager
def no_pixel_reads() -> Iterator[None]:
    """Within the block, any read of TIFF or picture pixels fails: opens must read headers."""

    def refuse(*args, **kwargs):
        raise AssertionError("pixels were read")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tifffile.TiffPage, "asarray", refuse)
        patch.setattr(tifffile.TiffPageSeries, "asarray", refuse)
        patch.setattr(iio, "imread", refuse)
        yield


def test_large_compressed_tiff_opens_as_a_dask_array_of_pages(tmp_path, monkeypatch):
    stack = gray((4, 12, 16))
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, stack, imagej=True, compression="zlib", resolution=(2.0, 2.0),
                     metadata={"unit": "nm", "axes": "ZYX"})  # fmt: skip
    monkeypatch.setattr(io, "LAZY_BYTES", 0)
    with no_pixel_reads():
        image = read_image(path)
    assert not isinstance(image.data, np.ndarray)  # a dask array: memmap is impossible here
    assert image.data.chunks[0] == (1, 1, 1, 1) and image.pixel_size_nm == 0.5
    assert image.names == [f"big[{i}]" for i in range(4)]
    assert np.array_equal(np.asarray(image.data[2]), stack[2])
    assert np.array_equal(np.asarray(image.data), stack)


def test_large_colour_picture_opens_lazily_and_turns_gray_when_read(tmp_path, monkeypatch):
    rgb = gray((12, 16, 3), np.uint8)
    iio.imwrite(tmp_path / "colour.png", rgb)
    eager = read_image(tmp_path / "colour.png")
    monkeypatch.setattr(io, "LAZY_BYTES", 0)
    with no_pixel_reads():
        lazy = read_image(tmp_path / "colour.png")
    assert not isinstance(lazy.data, np.ndarray) and lazy.data.shape == (12, 16)
    assert np.array_equal(np.asarray(lazy.data), eager.data)


def test_large_folder_opens_lazily_from_headers_in_natural_order(tmp_path, monkeypatch):
    write_tiff(tmp_path / "img10.tif", gray(), 0.8)
    write_tiff(tmp_path / "img2.tif", gray((2, 12, 16)), 0.8)
    tifffile.imwrite(tmp_path / "img3.tif", gray(), compression="zlib", resolution=(1.25, 1.25),
                     resolutionunit="NONE", imagej=True, metadata={"unit": "nm"})  # fmt: skip
    eager = read_image(tmp_path)
    monkeypatch.setattr(io, "LAZY_BYTES", 0)
    with no_pixel_reads():
        lazy = read_image(tmp_path)
    assert not isinstance(lazy.data, np.ndarray) and set(lazy.data.chunks[0]) == {1}
    assert lazy.names == eager.names == ["img2[0]", "img2[1]", "img3", "img10"]
    assert lazy.pixel_size_nm == eager.pixel_size_nm == 0.8
    assert lazy.data.dtype == eager.data.dtype
    assert np.array_equal(np.asarray(lazy.data), eager.data)
    assert np.array_equal(np.asarray(lazy.data[3]), eager.data[3])


def test_small_inputs_stay_numpy_arrays(tmp_path):
    write_tiff(tmp_path / "a.tif", gray(), 1.0)
    tifffile.imwrite(tmp_path / "b.tif", gray(), compression="zlib", resolution=(1.0, 1.0),
                     resolutionunit="NONE", imagej=True, metadata={"unit": "nm"})  # fmt: skip
    assert type(read_image(tmp_path / "b.tif").data) is np.ndarray
    assert type(read_image(tmp_path).data) is np.ndarray


# --- writing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(12, 16), (3, 12, 16)])
def test_frame_writer_gives_the_imagej_file_write_tiff_gives(tmp_path, shape):
    data = gray(shape, np.uint8)
    with tiff_frame_writer(tmp_path / "f.tif", shape, np.uint8, 1.25) as writer:
        for frame in [data] if data.ndim == 2 else data:
            writer.append(frame)
    read = read_image(tmp_path / "f.tif")
    assert read.data.shape == shape and read.pixel_size_nm == 1.25
    assert np.array_equal(read.data, data)
    assert tifffile.TiffFile(tmp_path / "f.tif").series[0].axes == (
        "ZYX" if len(shape) == 3 else "YX"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["f.tif"]


def test_frame_writer_leaves_no_file_unless_every_frame_came(tmp_path):
    target = tmp_path / "f.tif"
    with tiff_frame_writer(target, (3, 12, 16), np.float32, None) as writer:
        writer.append(gray(dtype=np.float32))
    assert not target.exists()
    write_tiff(target, gray(), None)
    before = target.read_bytes()
    with pytest.raises(RuntimeError), tiff_frame_writer(target, (3, 12, 16), np.uint8, None) as w:
        w.append(gray(dtype=np.uint8))
        raise RuntimeError("crash mid-stack")
    with (
        pytest.raises(ValueError, match="does not fit"),
        tiff_frame_writer(target, (12, 16), np.uint8, None) as w,
    ):
        w.append(gray((3, 3), np.uint8))
    assert target.read_bytes() == before  # the old file, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["f.tif"]  # no temporary files left


# --- pictures and colour ----------------------------------------------------------------------


def test_rgb_and_rgba_with_gray_content_become_the_gray_image(tmp_path):
    image = gray(dtype=np.uint8)
    iio.imwrite(tmp_path / "rgb.png", np.stack([image] * 3, axis=-1))
    iio.imwrite(tmp_path / "rgba.png", np.stack([image] * 3 + [np.full_like(image, 255)], -1))
    tifffile.imwrite(tmp_path / "rgb.tif", np.stack([image] * 3, axis=-1), photometric="rgb")
    iio.imwrite(tmp_path / "la.png", np.stack([image, np.full_like(image, 255)], axis=-1))
    for name in ("rgb.png", "rgba.png", "rgb.tif", "la.png"):
        read = read_image(tmp_path / name)
        assert read.data.shape == image.shape and read.data.dtype == np.uint8, name
        assert np.array_equal(read.data, image), name
        assert read.pixel_size_nm is None


def test_colour_image_becomes_luminance_and_says_so(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200  # pure red: luminance 0.2125 * 200 = 42.5
    iio.imwrite(tmp_path / "red.png", rgb)
    read = read_image(tmp_path / "red.png")
    assert read.data.shape == (8, 8) and read.data.dtype == np.uint8
    assert np.all(np.abs(read.data.astype(int) - 42.5) <= 0.5)
    assert "luminance" in read.metadata["color"]


def test_gray_png_jpeg_bmp_keep_values_and_dtype(tmp_path):
    image8, image16 = gray(dtype=np.uint8), gray(dtype=np.uint16) * 300
    iio.imwrite(tmp_path / "a.png", image16)
    iio.imwrite(tmp_path / "b.bmp", image8)
    iio.imwrite(tmp_path / "c.jpg", image8, quality=100)
    assert np.array_equal(read_image(tmp_path / "a.png").data, image16)
    assert np.array_equal(read_image(tmp_path / "b.bmp").data, image8)
    jpeg = read_image(tmp_path / "c.jpg").data
    assert jpeg.dtype == np.uint8 and jpeg.shape == image8.shape
    # JPEG is lossy: measured max error 2 grey levels at quality 100 on this noise; bound 8
    assert np.abs(jpeg.astype(int) - image8).max() <= 8


# --- folders and lists ------------------------------------------------------------------------


def test_folder_is_a_stack_in_natural_order_skipping_other_files(tmp_path):
    images = {f"img{i}": gray() for i in (10, 2, 1)}
    for name, image in images.items():
        write_tiff(tmp_path / f"{name}.tif", image, 0.8)
    (tmp_path / "labels.csv").write_text("image,class\n")
    (tmp_path / ".hidden.tif").write_bytes(b"junk")
    (tmp_path / "masks").mkdir()
    stack = read_image(tmp_path)
    assert stack.names == ["img1", "img2", "img10"]
    assert np.array_equal(stack.data, np.stack([images[n] for n in stack.names]))
    assert stack.pixel_size_nm == 0.8 and stack.source == tmp_path
    assert stack.metadata["files"] == [str(tmp_path / f"{n}.tif") for n in stack.names]


def test_folder_with_one_image_gives_that_image_from_the_folder(tmp_path):
    image = gray()
    write_tiff(tmp_path / "only.tif", image, 3.0)
    read = read_image(tmp_path)
    assert np.array_equal(read.data, image) and read.names == ["only"]
    assert read.source == tmp_path and read.pixel_size_nm == 3.0


def test_folder_joins_stacks_and_single_images(tmp_path):
    write_tiff(tmp_path / "a.tif", gray((2, 12, 16)), 1.0)
    write_tiff(tmp_path / "b.tif", gray(), 1.0)
    stack = read_image(tmp_path)
    assert stack.data.shape == (3, 12, 16)
    assert stack.names == ["a[0]", "a[1]", "b"]


@pytest.mark.parametrize("lazy", [False, True])
def test_folder_with_images_of_different_sizes_is_refused_listing_them(tmp_path, lazy):
    write_tiff(tmp_path / "small1.tif", gray((12, 16)), 1.0)
    write_tiff(tmp_path / "small2.tif", gray((12, 16)), 1.0)
    write_tiff(tmp_path / "big.tif", gray((20, 20)), 1.0)
    with pytest.raises(ReadError) as error:
        read_image(tmp_path, lazy=lazy)
    message = str(error.value)
    assert str(tmp_path) in message and "different sizes" in message
    assert "12x16 px (2 files, e.g. small1.tif, small2.tif)" in message
    assert "20x20 px (1 files, e.g. big.tif)" in message
    assert "one by one" in message


@pytest.mark.parametrize("lazy", [False, True])
def test_folder_with_different_pixel_sizes_is_refused_unless_one_is_given(tmp_path, lazy):
    write_tiff(tmp_path / "a.tif", gray(), 1.0)
    write_tiff(tmp_path / "b.tif", gray(), 2.0)
    with pytest.raises(ReadError, match=r"pixel sizes differ \(a.tif: 1 nm/px, b.tif: 2 nm/px"):
        read_image(tmp_path, lazy=lazy)
    assert read_image(tmp_path, pixel_size_nm=1.5, lazy=lazy).pixel_size_nm == 1.5


def test_read_images_stacks_files_in_the_given_order(tmp_path):
    paths = [write_tiff(tmp_path / f"{n}.tif", gray(), 0.5) for n in ("z", "a")]
    stack = read_images(paths)
    assert stack.names == ["z", "a"] and stack.data.shape == (2, 12, 16)
    assert stack.source == tmp_path and stack.pixel_size_nm == 0.5
    with pytest.raises(ReadError, match="No files"):
        read_images([])


def test_folder_skips_ser_files_of_an_emi_there(tmp_path):
    for name in ("scan.emi", "scan_1.ser", "other_1.ser", "b.tif"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in image_files(tmp_path)] == ["b.tif", "other_1.ser", "scan.emi"]


def test_empty_folder_and_folder_without_images_are_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReadError, match="folder is empty") as error:
        read_image(empty)
    assert str(empty) in str(error.value)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(ReadError, match=r"no images with a supported suffix.*notes\.txt"):
        read_image(other)


# --- MRC and EMD, written here ----------------------------------------------------------------


def test_mrc_stack_and_image_with_voxel_size_in_angstrom(tmp_path):
    stack = RNG.random((2, 12, 16)).astype(np.float32)
    with mrcfile.new(tmp_path / "s.mrc") as mrc:
        mrc.set_data(stack)
        mrc.voxel_size = 12.5  # Å
    with mrcfile.new(tmp_path / "i.mrc") as mrc:
        mrc.set_data(stack[0])
    read = read_image(tmp_path / "s.mrc")
    assert np.array_equal(read.data, stack) and read.pixel_size_nm == 1.25
    assert read.metadata["format"] == "MRC"
    single = read_image(tmp_path / "i.mrc")
    assert single.data.shape == (12, 16) and single.pixel_size_nm is None


def emd_signal(data, scale, units, title="HAADF"):
    names = ["z", "y", "x"][-data.ndim :]
    axes = [
        {"name": n, "size": s, "scale": scale, "units": units, "offset": 0.0, "navigate": False}
        for n, s in zip(names, data.shape, strict=True)
    ]
    if data.ndim == 3:
        axes[0].update(navigate=True, units="s", scale=1.0)
    metadata = {"General": {"title": title}, "Signal": {}}
    return {"data": data, "axes": axes, "metadata": metadata, "original_metadata": {}}


def test_emd_image_and_stack_written_by_rosettasciio(tmp_path):
    from rsciio.emd import file_writer

    image = gray()
    file_writer(str(tmp_path / "i.emd"), emd_signal(image, 250.0, "pm"))
    read = read_image(tmp_path / "i.emd")
    assert np.array_equal(read.data, image) and read.pixel_size_nm == 0.25
    assert read.metadata["title"] == "HAADF" and read.metadata["format"] == "EMD"
    stack = gray((3, 12, 16))
    file_writer(str(tmp_path / "s.emd"), emd_signal(stack, 0.002, "µm"))
    read = read_image(tmp_path / "s.emd")
    assert np.array_equal(read.data, stack) and read.pixel_size_nm == 2.0


def test_emd_holding_only_a_spectrum_is_refused(tmp_path):
    from rsciio.emd import file_writer

    spectrum = emd_signal(RNG.random(64).astype(np.float32), 0.01, "keV", title="EDS")
    file_writer(str(tmp_path / "eds.emd"), spectrum)
    with pytest.raises(
        ReadError, match=r"eds\.emd: it holds no 2D image \(found EDS: shape \(64,\)"
    ):
        read_image(tmp_path / "eds.emd")


# --- DM3/DM4 and EMI/SER dispatch (cannot be written here) ------------------------------------


def fake_reader(monkeypatch, module_name, signals):
    """Make rosettasciio's reader in ``module_name`` return ``signals``; record the calls."""
    import importlib

    calls = []

    def file_reader(filename, lazy=False):
        calls.append(filename)
        return signals

    monkeypatch.setattr(importlib.import_module(module_name), "file_reader", file_reader)
    return calls


def test_dm3_with_an_image_and_a_profile_gives_the_image(tmp_path, monkeypatch):
    # the shape of what rosettasciio returns for multi_signal.dm3
    image = gray((16, 16))
    signals = [
        emd_signal(image, 0.01775, "nm"),
        emd_signal(RNG.random(16).astype(np.float32), 1.0, "", title="Plot"),
    ]
    calls = fake_reader(monkeypatch, "rsciio.digitalmicrograph", signals)
    (tmp_path / "multi.dm3").write_bytes(b"DM")
    read = read_image(tmp_path / "multi.dm3")
    assert calls == [str(tmp_path / "multi.dm3")]
    assert np.array_equal(read.data, image) and read.pixel_size_nm == 0.01775
    assert read.metadata["format"] == "Gatan DigitalMicrograph"
    assert read.metadata["skipped_signals"] == ["Plot: shape (16,), not a 2D image"]


def test_several_image_signals_of_one_size_are_stacked(tmp_path, monkeypatch):
    a, b, other = gray(), gray(), gray((20, 20))
    signals = [emd_signal(a, 5.0, "nm"), emd_signal(b, 5.0, "nm"), emd_signal(other, 5.0, "nm")]
    fake_reader(monkeypatch, "rsciio.tia", signals)
    (tmp_path / "scan.emi").write_bytes(b"EMI")
    read = read_image(tmp_path / "scan.emi")
    assert np.array_equal(read.data, np.stack([a, b])) and read.pixel_size_nm == 5.0
    assert read.names == ["scan[0]", "scan[1]"] and len(read.metadata["skipped_signals"]) == 1


def test_4d_signal_is_refused_naming_its_shape(tmp_path, monkeypatch):
    signal = emd_signal(gray((3, 12, 16)), 1.0, "nm")
    signal["data"] = gray((2, 3, 12, 16))
    signal["axes"].insert(0, {"name": "t", "size": 2, "scale": 1.0, "units": "s", "navigate": True})
    fake_reader(monkeypatch, "rsciio.digitalmicrograph", [signal])
    (tmp_path / "scan.dm4").write_bytes(b"DM")
    with pytest.raises(ReadError, match=r"scan\.dm4: it holds 4D data of shape \(2, 3, 12, 16\)"):
        read_image(tmp_path / "scan.dm4")


def test_diffraction_pattern_in_reciprocal_units_has_no_pixel_size(tmp_path, monkeypatch):
    fake_reader(monkeypatch, "rsciio.digitalmicrograph", [emd_signal(gray(), 0.02, "1/nm")])
    (tmp_path / "dp.dm3").write_bytes(b"DM")
    read = read_image(tmp_path / "dp.dm3")
    assert read.pixel_size_nm is None and "diffraction" in read.metadata["pixel_size_note"]


def test_complex_data_is_refused(tmp_path, monkeypatch):
    signal = emd_signal(gray().astype(np.complex64), 1.0, "")  # as test-3.dm4 holds
    fake_reader(monkeypatch, "rsciio.digitalmicrograph", [signal])
    (tmp_path / "fft.dm4").write_bytes(b"DM")
    with pytest.raises(ReadError, match=r"fft\.dm4: it holds complex values"):
        read_image(tmp_path / "fft.dm4")


# --- bad input --------------------------------------------------------------------------------


def test_nonexistent_path(tmp_path):
    with pytest.raises(ReadError, match=r"missing\.tif: it does not exist"):
        read_image(tmp_path / "missing.tif")


def test_empty_file(tmp_path):
    (tmp_path / "empty.dm3").write_bytes(b"")
    with pytest.raises(ReadError, match=r"empty\.dm3: the file is empty \(0 bytes\)"):
        read_image(tmp_path / "empty.dm3")


def test_truncated_tiff(tmp_path):
    path = write_tiff(tmp_path / "cut.tif", gray((4, 64, 64)), 1.0)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ReadError, match=r"cut\.tif as TIFF: the file looks truncated or corrupt"):
        read_image(path)


def test_truncated_png(tmp_path):
    iio.imwrite(tmp_path / "cut.png", gray((64, 64), np.uint16) * 300)
    whole = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ReadError, match=r"cut\.png as PNG: the file looks truncated or corrupt"):
        read_image(tmp_path / "cut.png")


@pytest.mark.parametrize("suffix", [".tif", ".png", ".jpg", ".dm3", ".dm4", ".ser", ".emd", ".mrc"])
def test_corrupt_bytes_with_a_valid_suffix(tmp_path, suffix):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(
        ReadError, match=rf"junk\{suffix} as .*: the file looks truncated or corrupt"
    ):
        read_image(path)


def test_corrupt_emi_is_refused(tmp_path):
    # rosettasciio finds no signal at all in random bytes named .emi (nor in an .emi whose
    # .ser files were not copied with it)
    path = tmp_path / "junk.emi"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ReadError, match=r"junk\.emi: no data found in it.*needs its \.ser files"):
        read_image(path)


def test_unsupported_suffix_lists_the_supported_ones(tmp_path):
    (tmp_path / "table.csv").write_text("a,b\n")
    with pytest.raises(ReadError) as error:
        read_image(tmp_path / "table.csv")
    message = str(error.value)
    assert "table.csv" in message and "'.csv' are not supported" in message
    assert all(suffix in message for suffix in (".tif", ".dm3", ".emd", ".mrc", ".png"))


def test_4d_tiff_is_refused_naming_its_shape(tmp_path):
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, gray((2, 3, 12, 16)), imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(ReadError) as error:
        read_image(path)
    assert "hyper.tif: it holds 4D data of shape (2, 3, 12, 16)" in str(error.value)
    assert "2D image or a 3D stack" in str(error.value)


def test_singleton_axes_are_dropped_not_refused(tmp_path):
    path = tmp_path / "hyper.tif"
    stack = gray((1, 3, 12, 16))
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "TZYX"})
    assert np.array_equal(read_image(path).data, stack[0])


@pytest.mark.parametrize("shape", [(64,), (1, 64)])
def test_1d_data_is_refused_as_not_an_image(tmp_path, shape):
    path = tmp_path / "profile.tif"
    tifffile.imwrite(path, gray(shape))
    with pytest.raises(ReadError, match=r"profile\.tif: it holds 1D data .* not an image"):
        read_image(path)


def test_nan_and_inf_values_are_refused_with_their_count(tmp_path):
    image = RNG.random((12, 16)).astype(np.float32)
    image[0, :3] = np.nan
    image[5, 5] = np.inf
    path = write_tiff(tmp_path / "holes.tif", image, 1.0)
    with pytest.raises(ReadError, match=r"holes\.tif: 4 of its 192 pixels are NaN or infinite"):
        read_image(path)


def test_read_error_is_a_user_error_for_the_cli():
    assert issubclass(ReadError, NanowireError)


def test_axes_without_navigation_flags_take_the_last_two_as_the_image(tmp_path, monkeypatch):
    signal = emd_signal(gray((3, 12, 16)), 2.0, "nm")
    for axis in signal["axes"]:
        del axis["navigate"]
    fake_reader(monkeypatch, "rsciio.digitalmicrograph", [signal])
    (tmp_path / "stack.dm3").write_bytes(b"DM")
    read = read_image(tmp_path / "stack.dm3")
    assert read.data.shape == (3, 12, 16) and read.pixel_size_nm == 2.0


def test_spectrum_image_with_every_axis_a_signal_axis_is_refused(tmp_path):
    # Berkeley EMD marks every axis as a signal axis; an energy last means a spectrum image
    from rsciio.emd import file_writer

    signal = emd_signal(RNG.random((12, 16, 32)).astype(np.float32), 1.0, "nm", title="EELS")
    signal["axes"][0].update(navigate=False, units="nm")
    signal["axes"][2].update(units="eV")
    file_writer(str(tmp_path / "si.emd"), signal)
    with pytest.raises(ReadError, match=r"si\.emd: it holds no 2D image \(found EELS"):
        read_image(tmp_path / "si.emd")


def test_file_frames_names_every_frame_of_files_and_folders_and_reads_lazily(tmp_path, monkeypatch):
    folder = tmp_path / "folder"
    folder.mkdir()
    one = write_tiff(folder / "one.tif", gray((12, 16)), 2.0)
    other = write_tiff(folder / "other.tif", gray((20, 10)), 3.0)  # another size: not a stack
    stack = gray((3, 12, 16))
    tifffile.imwrite(tmp_path / "stack.tif", stack, imagej=True, compression="zlib",
                     resolution=(2.0, 2.0), metadata={"unit": "nm", "axes": "ZYX"})  # fmt: skip
    monkeypatch.setattr(io, "LAZY_BYTES", 0)
    with no_pixel_reads():  # a generator of unread frames: only headers are read
        found = list(io.file_frames([folder, tmp_path / "stack.tif"]))
    assert [f.name for f in found] == ["one", "other", "stack[0]", "stack[1]", "stack[2]"]
    assert [f.label for f in found[:3]] == [str(one), str(other), f"{tmp_path / 'stack.tif'}[0]"]
    assert [f.pixel_size_nm for f in found] == [2.0, 3.0, 0.5, 0.5, 0.5]
    assert [f.index for f in found] == [None, None, 0, 1, 2]
    assert np.array_equal(np.asarray(found[3].frame), stack[1])
    given = io.file_frames([one], pixel_size_nm=7.0)
    assert [(f.name, f.pixel_size_nm) for f in given] == [("one", 7.0)]


def test_an_em_file_over_the_frame_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    from rsciio.emd import file_writer

    file_writer(str(tmp_path / "big.emd"), emd_signal(np.zeros((64, 64), np.int16), 250.0, "pm"))
    monkeypatch.setenv("NANOWIRE_MAX_FRAME_PIXELS", str(64 * 64 - 1))
    with pytest.raises(NanowireError, match="64 x 64 px"):
        read_image(tmp_path / "big.emd")
    monkeypatch.setenv("NANOWIRE_MAX_FRAME_PIXELS", str(64 * 64))
    assert read_image(tmp_path / "big.emd").data.shape == (64, 64)
