"""Reading TEM images and stacks with their pixel size in nm/px.

Readers keep the raw intensities (dtype unchanged, never normalised) and convert the file's
calibration to nm/px: TIFF through tifffile, PNG/JPEG/BMP through imageio, and the electron
microscopy formats (Gatan DM3/DM4, FEI TIA EMI/SER, EMD, MRC) through rosettasciio. Every
problem with an input becomes a :class:`ReadError` that names the file, the problem and what
to do about it. Folders and several files become one stack; big inputs are read lazily.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .calibration import _given_pixel_size
from .formats import SUPPORTED_SUFFIXES, ReadError, _checked_image, _concatenate, _decoder
from .limits import LAZY_BYTES


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


class FileFrame(NamedTuple):
    """One 2D image of an input file, as :func:`file_frames` gives it."""

    name: str
    """The file's stem, or ``stem[i]`` for frame i of a stack (as in :attr:`ImageData.names`)."""
    frame: Any
    """The 2D image, unread while the file is read lazily."""
    pixel_size_nm: float | None
    path: Path
    index: int | None
    """The frame's index in its stack; None for a 2D file."""

    @property
    def label(self) -> str:
        """The file's path, with ``[i]`` for a frame of a stack: for tables and messages."""
        return str(self.path) if self.index is None else f"{self.path}[{self.index}]"


def file_frames(
    paths: Sequence[str | os.PathLike], pixel_size_nm: float | None = None
) -> Iterator[FileFrame]:
    """Every 2D image of the files ``paths`` name (folders: each of their image files).

    Files are read one at a time, as they are reached; frames of big (lazily read) files stay
    on disk until used. ``pixel_size_nm`` overrides the files' own calibration.
    """
    for file in input_files(paths):
        data = read_image(file, pixel_size_nm)
        planes = frames(data.data)
        indices = [None] if np.ndim(data.data) == 2 else range(len(planes))
        for name, plane, index in zip(data.names, planes, indices, strict=True):
            yield FileFrame(name, plane, data.pixel_size_nm, file, index)


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


def _too_big(files: list[Path]) -> bool:
    """Whether files together are too large to read into memory: read them lazily."""
    return sum(f.stat().st_size for f in files if f.is_file()) > LAZY_BYTES


def _override_pixel_size(image: ImageData, pixel_size_nm: float | None) -> ImageData:
    """The image with an explicit pixel size in place of the file's, which stays in metadata."""
    if pixel_size_nm is None:
        return image
    metadata = {**image.metadata, "file_pixel_size_nm": image.pixel_size_nm}
    return replace(image, pixel_size_nm=pixel_size_nm, metadata=metadata)


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
