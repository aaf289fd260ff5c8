"""Reading and writing TEM images with their pixel size in nm/px.

Readers keep the raw intensities (dtype unchanged, never normalised) and convert the file's
calibration to nm/px: TIFF through tifffile, PNG/JPEG/BMP through imageio, and the electron
microscopy formats (Gatan DM3/DM4, FEI TIA EMI/SER, EMD, MRC) through rosettasciio. Every
problem with an input becomes a :class:`ReadError` that names the file, the problem and what
to do about it.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import re
import tempfile
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import tifffile

from .errors import NanowireError


class ReadError(NanowireError):
    """A file or folder that cannot be read as an image; the message says why and what to do."""


@dataclass
class ImageData:
    """An image or stack as read from disk, with its calibration.

    ``data`` is (Y, X) for one image and (N, Y, X) for a stack, in the file's own dtype: a numpy
    array, or, for inputs read lazily (see :func:`read_image`), a memory map (uncompressed TIFF)
    or a dask array (compressed TIFFs, EM files, folders) whose frames are read when indexed.
    ``pixel_size_nm`` is None when the file carries no usable calibration.
    """

    data: Any
    pixel_size_nm: float | None
    source: Path
    names: list[str]
    metadata: dict = field(default_factory=dict)


TIFF_SUFFIXES = (".tif", ".tiff")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
EM_FORMATS = {  # suffix -> (rosettasciio module, format name)
    ".dm3": ("rsciio.digitalmicrograph", "Gatan DigitalMicrograph"),
    ".dm4": ("rsciio.digitalmicrograph", "Gatan DigitalMicrograph"),
    ".emi": ("rsciio.tia", "FEI TIA"),
    ".ser": ("rsciio.tia", "FEI TIA"),
    ".emd": ("rsciio.emd", "EMD"),
    ".mrc": ("rsciio.mrc", "MRC"),
    ".mrcs": ("rsciio.mrc", "MRC"),
    ".ali": ("rsciio.mrc", "MRC"),
}
SUPPORTED_SUFFIXES: tuple[str, ...] = TIFF_SUFFIXES + PICTURE_SUFFIXES + tuple(EM_FORMATS)

LAZY_BYTES = 1 << 30
"""Inputs (a file, or a folder's files together) larger than this are read lazily."""

MAX_PIXEL_SIZE_NM = 10_000.0
"""Calibrations coarser than 10 µm/px are print or screen resolutions (72-300 dpi is 85-350 µm
per pixel), not electron-microscope pixel sizes, and are ignored."""

_NM_PER_UNIT = {
    "nm": Fraction(1),
    "nanometer": Fraction(1),
    "nanometre": Fraction(1),
    "μm": Fraction(1000),
    "um": Fraction(1000),
    "micron": Fraction(1000),
    "microns": Fraction(1000),
    "micrometer": Fraction(1000),
    "micrometre": Fraction(1000),
    "å": Fraction(1, 10),
    "a": Fraction(1, 10),
    "angstrom": Fraction(1, 10),
    "pm": Fraction(1, 1000),
    "mm": Fraction(10**6),
    "cm": Fraction(10**7),
    "m": Fraction(10**9),
    "inch": Fraction(254 * 10**5),
    "in": Fraction(254 * 10**5),
}
_UNCALIBRATED_UNITS = {"", "px", "pixel", "pixels", "none", "<undefined>", "t.b.d."}
_TIFF_RESOLUTION_UNITS = {2: "inch", 3: "cm", 4: "mm", 5: "µm"}
_LUMINANCE = np.array([0.2125, 0.7154, 0.0721])  # ITU-R BT.709, as in skimage.color.rgb2gray


def pixel_size_from_units(value: float, unit: str) -> float:
    """Convert a pixel size given in ``unit`` ('nm', 'µm', 'um', 'Å', 'A', 'pm', 'm', ...) to nm.

    The conversion is exact up to one final rounding, so 12.5 Å gives exactly 1.25 nm.
    """
    factor = _NM_PER_UNIT.get(_unit_key(unit))
    if factor is None:
        raise NanowireError(
            f"Unknown length unit {unit!r} for a pixel size; use one of nm, µm, Å, pm, mm, cm, "
            "m or inch."
        )
    return float(Fraction(_positive_number(value, "A pixel size")) * factor)


def read_image(
    path: str | os.PathLike, pixel_size_nm: float | None = None, lazy: bool | None = None
) -> ImageData:
    """Read one image file, a multi-page file as a stack, or a folder of images as a stack.

    A folder gives every readable image in it (hidden files and sub-folders skipped), in
    natural order (img2 before img10), as one stack; see :func:`read_images` for the rules.
    ``pixel_size_nm`` overrides the file's calibration (e.g. when the file has none).

    ``lazy`` (default: when the input is larger than :data:`LAZY_BYTES`) reads only headers
    and leaves the pixels on disk until a frame is indexed, so stacks larger than memory open:
    uncompressed TIFFs are memory-mapped; compressed TIFFs, PNG/JPEG/BMP files and folders
    become dask arrays of per-page or per-file reads; EM files become rosettasciio's dask
    arrays. Shapes, dtypes and pixel sizes come from the headers, and the size and pixel-size
    checks of a folder run on them.
    """
    path, pixel_size_nm = Path(path), _given_pixel_size(pixel_size_nm)
    if not path.exists():
        raise ReadError(f"Cannot read {path}: it does not exist. Check the path and its spelling.")
    if path.is_dir():
        files = image_files(path)
        if not files:
            raise ReadError(_no_images_message(path))
        lazy = _too_big(files) if lazy is None else lazy
        return _stack([_read_file(f, lazy) for f in files], path, pixel_size_nm, lazy)
    return _override_pixel_size(_read_file(path, lazy), pixel_size_nm)


def read_images(
    paths: Sequence[str | os.PathLike], pixel_size_nm: float | None = None
) -> ImageData:
    """Read several files (or folders) as one stack, in the order given.

    All images must have the same size in pixels; images of different sizes are refused
    rather than padded or resized, because padding adds fake pixels to every measurement and
    resizing changes the pixel size. All must share one pixel size too (or none at all),
    unless ``pixel_size_nm`` is given, which then applies to every image.
    """
    paths, pixel_size_nm = [Path(p) for p in paths], _given_pixel_size(pixel_size_nm)
    if not paths:
        raise ReadError("No files given to read; pass at least one image file or folder.")
    if len(paths) == 1:
        return read_image(paths[0], pixel_size_nm)
    source = Path(os.path.commonpath([p.absolute() for p in paths]))
    lazy = _too_big(input_files(paths))
    return _stack([read_image(p, lazy=lazy) for p in paths], source, pixel_size_nm, lazy)


def input_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files ``paths`` name: files as given, each folder as its :func:`image_files`.

    A folder without images is refused, saying what it holds.
    """
    files = []
    for path in map(Path, paths):
        found = image_files(path) if path.is_dir() else [path]
        if not found:
            raise ReadError(_no_images_message(path))
        files.extend(found)
    return files


def frames(data: Any, indices: Sequence[int] | None = None) -> list:
    """The 2D images of (Y, X) or (N, Y, X) ``data`` (those at ``indices``, or all), unread.

    Frames of a memory map or dask array stay on disk until used, so code that visits one
    frame at a time holds one frame in memory, whatever the length of the stack.
    """
    if np.ndim(data) == 2:
        return [data]
    return [data[i] for i in (range(len(data)) if indices is None else indices)]


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files a folder read gives, in natural order.

    Only files with a supported suffix count; hidden files and sub-folders are skipped, and a
    TIA ``.ser`` file is skipped when the ``.emi`` it belongs to is there (reading the ``.emi``
    already gives its data).
    """
    files = [
        p
        for p in Path(folder).iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUPPORTED_SUFFIXES
    ]
    emi_stems = {p.stem for p in files if p.suffix.lower() == ".emi"}
    files = [
        p
        for p in files
        if not (p.suffix.lower() == ".ser" and p.stem.rpartition("_")[0] in emi_stems)
    ]
    return sorted(files, key=_natural_key)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` when the block ends.

    If the block raises (or a generator holding it is closed early) the temporary file is
    removed instead, so ``path`` is always either the old file or a complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tiff(path: str | os.PathLike, data: np.ndarray, pixel_size_nm: float | None) -> Path:
    """Write a 2D image or (N, Y, X) stack as an ImageJ TIFF with the pixel size in nm.

    The file is written atomically (:func:`atomic_path`), so a crash never leaves a
    half-written file. ImageJ/Fiji and :func:`read_image` both read the pixel size back.
    """
    calibration = _imagej_calibration(pixel_size_nm, np.ndim(data))
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, imagej=True, **calibration)
    return Path(path)


class TiffFrameWriter:
    """Writes an ImageJ TIFF of a known (Y, X) or (N, Y, X) shape one 2D frame at a time.

    The header goes first, with the whole shape, then each frame into its place in the
    file's one contiguous block of pixels, so a stack of any length is written holding one
    frame in memory. Use :func:`tiff_frame_writer`, which makes the file appear only once
    every frame is in it.
    """

    def __init__(self, fh: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.fh, self.shape, self.dtype = fh, shape, dtype
        self.count = 1 if len(shape) == 2 else shape[0]
        self.written = 0

    def append(self, frame: np.ndarray) -> None:
        """Write the next frame (cast to the file's dtype)."""
        if self.written == self.count or np.shape(frame) != self.shape[-2:]:
            raise ValueError(
                f"frame {self.written} of shape {np.shape(frame)} does not fit a TIFF of shape "
                f"{self.shape} with {self.written} of {self.count} frames written"
            )
        self.fh.write(np.ascontiguousarray(frame, self.dtype).data)
        self.written += 1


class _Incomplete(Exception):
    """Raised to drop a frame-by-frame TIFF that did not get all its frames."""


@contextmanager
def tiff_frame_writer(
    path: str | os.PathLike, shape: tuple[int, ...], dtype: Any, pixel_size_nm: float | None
) -> Iterator[TiffFrameWriter]:
    """A :class:`TiffFrameWriter` for ``path``; the file appears there only when complete.

    If the block ends (or raises) before every frame was appended, no file is left under
    ``path``: a stopped or crashed run never leaves a partial stack under the final name.
    """
    dtype = np.dtype(dtype).newbyteorder("<")
    calibration = _imagej_calibration(pixel_size_nm, len(shape))
    try:
        with atomic_path(path) as tmp:
            with tifffile.TiffWriter(tmp, imagej=True) as tif:
                offset, _ = tif.write(
                    None, shape=shape, dtype=dtype, returnoffset=True, **calibration
                )
            with open(tmp, "r+b") as fh:
                fh.seek(offset)
                writer = TiffFrameWriter(fh, tuple(shape), dtype)
                yield writer
            if writer.written < writer.count:
                raise _Incomplete
    except _Incomplete:
        pass


def _imagej_calibration(pixel_size_nm: float | None, ndim: int) -> dict:
    """tifffile's ImageJ resolution and metadata for a pixel size in nm (none if None)."""
    if not pixel_size_nm:
        return {}
    return {
        "resolution": (1.0 / pixel_size_nm, 1.0 / pixel_size_nm),
        "metadata": {"unit": "nm", "axes": "ZYX" if ndim == 3 else "YX"},
    }


def write_bytes_atomic(path: Path, *chunks: bytes | memoryview) -> None:
    """Replace ``path`` with the ``chunks`` written one after another, so readers see either the
    old or the new file, never half. Chunks are written as given: large buffers go to the disk
    without a copy and without holding the GIL."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.writelines(chunks)
        fh.flush()
        os.fsync(fh.fileno())


def write_csv(path: str | os.PathLike, table: Any) -> Path:
    """Write a pandas DataFrame to ``path`` as CSV (UTF-8, no index), atomically."""
    path = Path(path)
    write_bytes_atomic(path, table.to_csv(index=False).encode("utf-8"))
    return path


# --- one file ---------------------------------------------------------------------------------

_Decoded = tuple[Any, float | None, dict]  # data, pixel size in nm, metadata


def _read_file(path: Path, lazy: bool | None = None) -> ImageData:
    """Read one file with the reader for its suffix, check it is an image, and name its slices."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ReadError(
            f"Cannot read {path}: files ending in {path.suffix or '(no suffix)'!r} are not "
            f"supported. Supported: {', '.join(SUPPORTED_SUFFIXES)}. Convert it to TIFF first "
            "(e.g. in Fiji)."
        )
    size = path.stat().st_size
    if size == 0:
        raise ReadError(f"Cannot read {path}: the file is empty (0 bytes). Copy it again.")
    lazy = size > LAZY_BYTES if lazy is None else lazy
    data, pixel_size_nm, metadata = _decoder(suffix)(path, lazy)
    data = _checked_image(data, path)
    names = [path.stem] if data.ndim == 2 else [f"{path.stem}[{i}]" for i in range(len(data))]
    return ImageData(data, pixel_size_nm, path, names, metadata)


def _decoder(suffix: str) -> Callable[[Path, bool], _Decoded]:
    """The function decoding files with this suffix, given the path and whether to be lazy."""
    if suffix in TIFF_SUFFIXES:
        return _decode_tiff
    if suffix in PICTURE_SUFFIXES:
        return _decode_picture
    return _decode_em


@contextmanager
def _library_errors(path: Path, format_name: str) -> Iterator[None]:
    """Turn whatever a format library raises on a bad file into a ReadError naming the file."""
    try:
        yield
    except MemoryError as exc:
        raise ReadError(
            f"Cannot read {path}: it does not fit in memory. Split it into smaller files."
        ) from exc
    except Exception as exc:
        raise ReadError(
            f"Cannot read {path} as {format_name}: the file looks truncated or corrupt "
            f"({type(exc).__name__}: {exc}). Copy or export it again from the microscope "
            "software."
        ) from exc


def _decode_tiff(path: Path, lazy: bool) -> _Decoded:
    """A TIFF's first series, with samples (RGB) made gray, and its pixel size.

    The pixel size comes from OME-XML in OME-TIFFs, else from the resolution tags.

    Read lazily, files stored uncompressed are memory-mapped, others become a dask array of
    per-page reads; either way no pixel is read here.
    """
    with _library_errors(path, "TIFF"), _tifffile_errors(), tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes
        data = _lazy_tiff(path, series) if lazy else None
        if data is None:
            data = series.asarray()
        page = tif.pages.first
        resolution = [page.tags[n].value for n in ("XResolution", "YResolution") if n in page.tags]
        imagej_unit = (tif.imagej_metadata or {}).get("unit")
        resolution_unit = int(page.resolutionunit)
        ome_xml = tif.ome_metadata
    pixel_size_nm, metadata = (
        _ome_calibration(ome_xml)
        if ome_xml
        else _tiff_calibration(resolution, imagej_unit, resolution_unit)
    )
    if "S" in axes:
        data, metadata["color"] = _to_gray(np.moveaxis(data, axes.index("S"), -1), path, lazy)
    return data, pixel_size_nm, {"format": "TIFF", "axes": axes.replace("S", ""), **metadata}


@contextmanager
def _tifffile_errors() -> Iterator[None]:
    """Raise the first error tifffile logs instead of raising it.

    tifffile logs some damage and reads on: a multi-page file cut mid-way comes back with
    fewer pages. Refusing it is better than silently losing images.
    """
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    if records:
        raise ValueError(records[0].getMessage())


def _memmap_tiff(path: Path) -> np.ndarray | None:
    """A memory map of the TIFF's image data, or None when it is compressed or fragmented."""
    try:
        return tifffile.memmap(path, mode="r")
    except ValueError:
        return None


def _lazy_tiff(path: Path, series: Any) -> Any | None:
    """A memory map of the TIFF, else a dask array of its pages, else None (read it whole)."""
    data = _memmap_tiff(path)
    return _paged_tiff(path, series) if data is None else data


def _paged_tiff(path: Path, series: Any) -> Any | None:
    """The series as a dask array reading one page per chunk, or None if pages do not tile it.

    Each chunk opens the file and reads its page alone, so frames are read when indexed.
    """
    pages, page = series.pages, series.keyframe
    if any(p is None for p in pages) or len(pages) * page.size != math.prod(series.shape):
        return None
    readers = [partial(_read_tiff_page, path, p.index) for p in pages]
    return _lazy_frames(readers, page.shape, page.dtype).reshape(series.shape)


def _read_tiff_page(path: Path, index: int) -> np.ndarray:
    """The pixels of one page of a TIFF file."""
    with _library_errors(path, "TIFF"), _tifffile_errors(), tifffile.TiffFile(path) as tif:
        return tif.pages[index].asarray()


def _tiff_calibration(
    resolution: list[tuple[int, int]], imagej_unit: str | None, resolution_unit: int
) -> tuple[float | None, dict]:
    """Pixel size from the X/YResolution rationals and ImageJ's unit or the ResolutionUnit tag.

    The resolution is a ratio of 32-bit integers, so a pixel size written as its inverse
    comes back within about 2e-10 relative, mostly within a few units in the last place; the
    shortest decimal within 1e-14 is taken, which gives every pixel size of up to 8
    significant digits back exactly (checked on 33,511 sizes from 0.001 to 1000 nm, a third
    of them near simple fractions such as 1/3).
    """
    unit = (
        _decode_imagej_unit(imagej_unit)
        if imagej_unit
        else _TIFF_RESOLUTION_UNITS.get(resolution_unit)
    )
    if not resolution or unit is None:
        return None, {}
    x, y = (_inverse_resolution(r) for r in (resolution[0], resolution[-1]))
    return _calibration((x, unit), (y, unit))


def _ome_calibration(xml: str) -> tuple[float | None, dict]:
    """Pixel size from OME-XML's PhysicalSizeX/Y (the unit defaults to µm, as OME defines)."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None, {"pixel_size_note": "the OME metadata is not valid XML"}
    pixels = next((e for e in root.iter() if e.tag.rpartition("}")[2] == "Pixels"), None)
    if pixels is None or "PhysicalSizeX" not in pixels.attrib:
        return None, {}
    x = (float(pixels.get("PhysicalSizeX")), pixels.get("PhysicalSizeXUnit", "µm"))
    y = (float(pixels.get("PhysicalSizeY", x[0])), pixels.get("PhysicalSizeYUnit", x[1]))
    return _calibration(x, y)


def _inverse_resolution(rational: tuple[int, int]) -> float:
    """Pixel size (in the file's unit) from a pixels-per-unit rational, as a short decimal."""
    numerator, denominator = rational
    if numerator == 0:
        return 0.0
    value = denominator / numerator
    for digits in range(1, 16):
        candidate = float(f"{value:.{digits}g}")
        if abs(candidate - value) <= 1e-14 * value:
            return candidate
    return value


def _decode_imagej_unit(unit: str) -> str:
    """ImageJ writes non-ASCII units escaped (``\\u00B5m``); undo that."""
    return (
        unit.encode("ascii", "backslashreplace").decode("unicode_escape") if "\\u" in unit else unit
    )


def _decode_picture(path: Path, lazy: bool) -> _Decoded:
    """A PNG/JPEG/BMP as gray; these formats carry no microscope calibration.

    Read lazily, the shape and dtype come from the header and the pixels are read when used.
    """
    import imageio.v3 as iio

    format_name = path.suffix.lstrip(".").upper()
    if lazy:
        with _library_errors(path, format_name):
            props = iio.improps(path)
        data = _lazy_frames([partial(_read_picture, path)], props.shape, props.dtype)[0]
    else:
        data = _read_picture(path)
    metadata: dict = {"format": format_name}
    if data.ndim == 3:
        data, metadata["color"] = _to_gray(data, path, lazy)
    return data, None, metadata


def _read_picture(path: Path) -> np.ndarray:
    """The pixels of a PNG/JPEG/BMP file."""
    import imageio.v3 as iio

    with _library_errors(path, path.suffix.lstrip(".").upper()):
        return iio.imread(path)


def _to_gray(data: Any, path: Path, lazy: bool = False) -> tuple[Any, str]:
    """Channels-last gray+alpha, RGB or RGBA data as one gray channel, and what was done.

    Alpha is dropped. Equal R, G and B (a gray image saved as colour) give that channel
    unchanged; real colour is converted to luminance in the input's dtype. Lazy data is
    converted frame by frame as frames are read, each frame by the same rule.
    """
    if lazy:
        import dask.array as da

        frames = da.asarray(data).rechunk({-1: -1})
        gray = frames.map_blocks(
            lambda block: _to_gray(block, path)[0], drop_axis=frames.ndim - 1, dtype=data.dtype
        )
        return gray, "converted to gray frame by frame when read (colour to luminance)"
    channels = data.shape[-1]
    if channels not in (1, 2, 3, 4):
        raise ReadError(
            f"Cannot read {path}: it has {channels} colour channels; only gray, RGB and RGBA "
            "images are supported. Save one channel as a gray image."
        )
    if channels < 3:
        return data[..., 0], "gray" if channels == 1 else "gray with alpha; alpha dropped"
    rgb = np.asarray(data[..., :3])
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0], "gray content stored as RGB; one channel kept"
    luminance = rgb @ _LUMINANCE
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        luminance = np.clip(np.rint(luminance), info.min, info.max)
    return (
        luminance.astype(data.dtype),
        "colour image converted to luminance (0.2125 R + 0.7154 G + 0.0721 B)",
    )


def _decode_em(path: Path, lazy: bool) -> _Decoded:
    """The 2D image signal(s) of an EM file, as one image or stack, with the pixel size.

    Files can hold several signals (an image and a spectrum, or several detectors): the image
    signals with the size and calibration of the first one are kept (stacked if several), the
    rest are listed in the metadata under ``skipped_signals``.
    """
    module_name, format_name = EM_FORMATS[path.suffix.lower()]
    with _library_errors(path, format_name):
        signals = importlib.import_module(module_name).file_reader(str(path), lazy=lazy)
    if not signals:
        hint = (
            " An .emi file needs its .ser files beside it." if path.suffix.lower() == ".emi" else ""
        )
        raise ReadError(f"Cannot read {path}: no data found in it; it may be corrupt.{hint}")
    kept: list[tuple[dict, Any]] = []
    skipped = []
    for signal in signals:
        data = _signal_image(signal)
        title, shape = _signal_title(signal), tuple(signal["data"].shape)
        if data is None:
            skipped.append(f"{title}: shape {shape}, not a 2D image")
        elif kept and not _stackable(kept[0], (signal, data)):
            skipped.append(
                f"{title}: shape {shape}, not stackable with {_signal_title(kept[0][0])}"
            )
        else:
            kept.append((signal, data))
    if not kept:
        raise ReadError(
            f"Cannot read {path}: it holds no 2D image (found {'; '.join(skipped)}), e.g. a "
            "spectrum or a line profile. Open it in a spectroscopy tool such as HyperSpy instead."
        )
    first = kept[0][0]
    pixel_size_nm, calibration = _signal_calibration(first)
    metadata = {"format": format_name, **calibration}
    title = first.get("metadata", {}).get("General", {}).get("title")
    if title:
        metadata["title"] = title
    instrument = first.get("metadata", {}).get("Acquisition_instrument")
    if instrument:
        metadata["acquisition_instrument"] = instrument
    if skipped:
        metadata["skipped_signals"] = skipped
    if len(kept) == 1:
        return kept[0][1], pixel_size_nm, metadata
    return _concatenate([d if d.ndim == 3 else d[None] for _, d in kept]), pixel_size_nm, metadata


def _signal_image(signal: dict) -> Any | None:
    """A rosettasciio signal's data with its two image axes last, or None if it is not 2D."""
    axes = _image_axes(signal)
    if axes is None:
        return None
    return np.moveaxis(signal["data"], [position for position, _ in axes], [-2, -1])


def _image_axes(signal: dict) -> list[tuple[int, dict]] | None:
    """The (y, x) image axes of a signal with their array positions, or None if it has none.

    The two signal (not navigation) axes when the reader marks exactly two; readers that mark
    every axis as a signal axis (Berkeley EMD) give an image stack when the last two axes are
    lengths (or uncalibrated), and a spectrum image, whose last axis is an energy, gives None.
    """
    axes = sorted(
        ((int(a.get("index_in_array", i)), a) for i, a in enumerate(signal["axes"])),
        key=lambda item: item[0],
    )
    signal_axes = [
        (p, a) for i, (p, a) in enumerate(axes) if not a.get("navigate", i < len(axes) - 2)
    ]
    if len(signal_axes) == 2:
        return signal_axes
    if len(signal_axes) > 2 and all(_is_spatial(a.get("units")) for _, a in axes[-2:]):
        return axes[-2:]
    return None


def _is_spatial(unit: str | None) -> bool:
    """Whether a unit is a length, a reciprocal length, or missing."""
    key = _unit_key(unit).replace(" ", "").removeprefix("1/").removesuffix("^-1")
    return key in _UNCALIBRATED_UNITS or key in _NM_PER_UNIT


def _signal_calibration(signal: dict) -> tuple[float | None, dict]:
    """Pixel size in nm from a signal's (y, x) image axes' scale and units."""
    (_, y), (_, x) = _image_axes(signal)
    return _calibration(
        (float(x.get("scale", 1.0)), x.get("units")), (float(y.get("scale", 1.0)), y.get("units"))
    )


def _stackable(first: tuple[dict, Any], other: tuple[dict, Any]) -> bool:
    """Whether a further image signal can join the first one in a stack."""
    (first_signal, first_data), (other_signal, other_data) = first, other
    return (
        max(first_data.ndim, other_data.ndim) <= 3
        and first_data.shape[-2:] == other_data.shape[-2:]
        and _signal_calibration(first_signal)[0] == _signal_calibration(other_signal)[0]
    )


def _signal_title(signal: dict) -> str:
    return signal.get("metadata", {}).get("General", {}).get("title") or "untitled signal"


# --- calibration ------------------------------------------------------------------------------


def _unit_key(unit: str | None) -> str:
    """A unit spelled one way: NFKC folds the micro sign into μ and the angstrom sign into Å."""
    return unicodedata.normalize("NFKC", unit or "").strip().lower()


def _calibration(
    x: tuple[float, str | None], y: tuple[float, str | None]
) -> tuple[float | None, dict]:
    """Pixel size in nm from the (value, unit) of x and y, or None with a note saying why.

    None without a note for uncalibrated files; None with a ``pixel_size_note`` for reciprocal
    units (diffraction), unknown units, non-square pixels and print resolutions.
    """
    value, unit = x
    key = _unit_key(unit)
    if key in _UNCALIBRATED_UNITS or not (math.isfinite(value) and value > 0):
        return None, {}
    original = {"original_pixel_size": value, "original_unit": unit}
    if "1/" in key.replace(" ", "") or "^-1" in key:
        note = f"calibrated in {unit}: a diffraction pattern or FFT has no real-space pixel size"
        return None, {**original, "pixel_size_note": note}
    try:
        size_x, size_y = (pixel_size_from_units(v, u) for v, u in (x, y))
    except NanowireError:
        return None, {**original, "pixel_size_note": f"unknown length unit {unit!r}"}
    if not math.isclose(size_x, size_y, rel_tol=1e-6):
        note = f"pixels are not square ({size_x:g} nm wide, {size_y:g} nm high)"
        return None, {**original, "pixel_size_note": note}
    if size_x > MAX_PIXEL_SIZE_NM:
        note = f"{size_x:g} nm/px is a print or screen resolution, not a microscope calibration"
        return None, {**original, "pixel_size_note": note}
    return size_x, original


# --- checks and stacks ------------------------------------------------------------------------


def _checked_image(data: Any, path: Path) -> Any:
    """The data as (Y, X) or (N, Y, X) after dropping length-1 leading axes, or a ReadError.

    NaN/inf are looked for only in data held in memory: scanning a memory-mapped or lazy file
    of gigabytes would read all of it up front.
    """
    if np.issubdtype(data.dtype, np.complexfloating):
        raise ReadError(
            f"Cannot read {path}: it holds complex values ({data.dtype}), e.g. an FFT or an "
            "exit wave, not a micrograph. Export the real-space image (or its amplitude) instead."
        )
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise ReadError(f"Cannot read {path}: its values are not numbers (dtype {data.dtype}).")
    if data.ndim > 2:
        data = data[tuple(0 if n == 1 else slice(None) for n in data.shape[:-2])]
    if data.size == 0:
        raise ReadError(f"Cannot read {path}: it holds no pixels (shape {data.shape}).")
    if data.ndim < 2 or min(data.shape[-2:]) < 2:
        raise ReadError(
            f"Cannot read {path}: it holds 1D data of shape {data.shape} (a spectrum or a line "
            "profile), not an image. Open a 2D image instead."
        )
    if data.ndim > 3:
        raise ReadError(
            f"Cannot read {path}: it holds {data.ndim}D data of shape {data.shape} (e.g. a "
            "4D-STEM scan or a time series of z-stacks); napari-nanowire reads 2D images and "
            "(N, Y, X) stacks. Save the images you need as a 2D image or a 3D stack (e.g. Fiji: "
            "Image > Hyperstacks > Reduce Dimensionality) and open that."
        )
    if isinstance(data, np.ndarray) and not isinstance(data, np.memmap):
        _check_finite(data, path)
    return data


def _check_finite(data: np.ndarray, path: Path) -> None:
    """Refuse NaN and infinite values, which poison every statistic computed later."""
    if not np.issubdtype(data.dtype, np.floating):
        return
    bad = data.size - int(np.count_nonzero(np.isfinite(data)))
    if bad:
        raise ReadError(
            f"Cannot read {path}: {bad} of its {data.size} pixels are NaN or infinite. Replace "
            "them (e.g. Fiji: Process > Noise > Remove NaNs) and save the image again."
        )


def _stack(
    images: list[ImageData], source: Path, pixel_size_nm: float | None, lazy: bool = False
) -> ImageData:
    """Read images as one (N, Y, X) stack from ``source``; refuses mixed sizes and pixel sizes.

    Mixed pixel sizes are accepted when ``pixel_size_nm`` is given: it applies to all. A
    ``lazy`` stack is a dask array with one frame per chunk, read when indexed.
    """
    if len(images) == 1:
        return _override_pixel_size(replace(images[0], source=source), pixel_size_nm)
    sizes: dict[tuple[int, int], list[str]] = {}
    for image in images:
        sizes.setdefault(tuple(image.data.shape[-2:]), []).append(image.source.name)
    if len(sizes) > 1:
        listing = "; ".join(
            f"{y}x{x} px ({len(names)} files, e.g. {', '.join(names[:3])})"
            for (y, x), names in sizes.items()
        )
        raise ReadError(
            f"Cannot stack the images in {source}: they have different sizes: {listing}. A "
            "stack needs one size (padding would add fake pixels, resizing would change the "
            "pixel size): open the files one by one, or put each size in its own folder."
        )
    pixel_sizes = [image.pixel_size_nm for image in images]
    if pixel_size_nm is None and not _same_pixel_size(pixel_sizes):
        listing = ", ".join(
            f"{image.source.name}: {_describe_pixel_size(image.pixel_size_nm)}" for image in images
        )
        raise ReadError(
            f"Cannot stack the images in {source}: their pixel sizes differ ({listing}), so "
            "one scale would make measurements wrong. Open the files one by one, or give the "
            "pixel size explicitly if they really share one."
        )
    data = _concatenate(
        [image.data if image.data.ndim == 3 else image.data[None] for image in images], lazy
    )
    metadata = {
        "files": [str(image.source) for image in images],
        "per_file": [image.metadata for image in images],
    }
    names = [name for image in images for name in image.names]
    return _override_pixel_size(
        ImageData(data, pixel_sizes[0], source, names, metadata), pixel_size_nm
    )


def _same_pixel_size(sizes: list[float | None]) -> bool:
    first = sizes[0]
    if first is None:
        return all(size is None for size in sizes)
    return all(size is not None and math.isclose(size, first, rel_tol=1e-6) for size in sizes)


def _describe_pixel_size(size: float | None) -> str:
    return "none" if size is None else f"{size:g} nm/px"


def _concatenate(arrays: list[Any], lazy: bool = False) -> Any:
    """Join arrays along the first axis; a dask array if ``lazy`` or any of them is one.

    Joined lazily, each frame is read from its array (memory map or dask) when indexed.
    """
    if not lazy and all(isinstance(a, np.ndarray) for a in arrays):
        return np.concatenate(arrays)
    readers = [partial(_frame, a, i) for a in arrays for i in range(len(a))]
    return _lazy_frames(readers, arrays[0].shape[1:], np.result_type(*arrays))


def _frame(data: Any, index: int) -> np.ndarray:
    """One frame of a stack (numpy, memory map or dask), read into memory."""
    return np.asarray(data[index])


def _lazy_frames(readers: list[Callable[[], np.ndarray]], frame_shape: tuple, dtype: Any) -> Any:
    """A dask array (N, *frame_shape) whose frame k is ``readers[k]()``, read when indexed.

    One blockwise layer, so indexing one frame costs the same whatever N; a stack of one task
    per frame is re-ordered whole at every index (measured: 70 ms per frame at 1,000 frames).
    """
    import dask.array as da

    def block(block_info: dict) -> np.ndarray:
        return np.asarray(readers[block_info[None]["chunk-location"][0]](), dtype)[None]

    return da.map_blocks(
        block,
        chunks=((1,) * len(readers), *((n,) for n in frame_shape)),
        dtype=dtype,
        meta=np.empty((0,) * (len(frame_shape) + 1), dtype),
        name=f"read-frames-{uuid.uuid4().hex}",
    )


def _too_big(files: list[Path]) -> bool:
    """Whether files together are too large to read into memory: read them lazily."""
    return sum(f.stat().st_size for f in files if f.is_file()) > LAZY_BYTES


def _override_pixel_size(image: ImageData, pixel_size_nm: float | None) -> ImageData:
    """The image with an explicit pixel size in place of the file's, which stays in metadata."""
    if pixel_size_nm is None:
        return image
    metadata = {**image.metadata, "file_pixel_size_nm": image.pixel_size_nm}
    return replace(image, pixel_size_nm=pixel_size_nm, metadata=metadata)


def _given_pixel_size(pixel_size_nm: Any) -> float | None:
    """A pixel size passed by the caller, checked before any file is read."""
    if pixel_size_nm is None:
        return None
    return _positive_number(pixel_size_nm, "pixel_size_nm (nm per pixel)")


def _positive_number(value: Any, what: str) -> float:
    """The value as a float if it is a finite positive number, else a NanowireError naming it."""
    if isinstance(value, bool) or not (
        isinstance(value, int | float | np.number) and math.isfinite(value) and value > 0
    ):
        raise NanowireError(f"{what} must be a positive number, got {value!r}.")
    return float(value)


def _natural_key(path: Path) -> list:
    """Sort key putting img2 before img10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name.lower())]


def _no_images_message(folder: Path) -> str:
    """Why a folder gave no images: empty, or only files of other types."""
    others = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    if not others:
        return f"Cannot read {folder}: the folder is empty. Choose a folder that holds images."
    return (
        f"Cannot read {folder}: it holds no images with a supported suffix (it holds "
        f"{', '.join(others[:5])}{', ...' if len(others) > 5 else ''}). Supported: "
        f"{', '.join(SUPPORTED_SUFFIXES)}."
    )
