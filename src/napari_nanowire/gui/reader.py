"""napari reader contribution: TEM image files, folders of images and lists of files.

The reading itself is :mod:`napari_nanowire.core.io`. Inputs larger than
:data:`~napari_nanowire.core.io.LAZY_BYTES` come back lazy (a memory map or a dask array read
frame by frame) and go to napari as they are, so stacks larger than memory open; napari reads
the slice on screen. Mask files this package wrote (predicted masks, Labels saved with its
writer) open as Labels layers with their class names. A file that cannot be read raises its
:class:`~napari_nanowire.core.io.ReadError`; napari catches reader exceptions and shows the
message to the user (in the reader dialog when a file is dropped or opened from the menu).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_info, show_warning

from napari_nanowire.core.io import (
    SUPPORTED_SUFFIXES,
    ImageData,
    ReadError,
    image_files,
    input_files,
    read_image,
    read_images,
)
from napari_nanowire.core.io.labels import LabelsInfo, read_labels_info

from .series import Series
from .series import layer_kwargs as series_kwargs

PathOrPaths = str | os.PathLike | list[str | os.PathLike]


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[tuple]] | None:
    """The reader function for ``path`` (a file, folder or list of files), or None.

    None tells napari to try other readers: for files with other suffixes and for folders
    holding other things (e.g. a zarr store). An empty folder is taken, so the user is told
    it is empty.
    """
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if paths and all(_handles(Path(p)) for p in paths):
        return read_layers
    return None


def read_layers(path: PathOrPaths) -> list[tuple]:
    """Read ``path`` into one napari layer scaled to nm when the pixel size is known: a Labels
    layer with named classes for a mask file this package wrote, else an image layer.

    A folder or list of files whose images differ in size or pixel size becomes a series
    (:mod:`.series`): one image layer showing the first image, paged through in the Label
    widget.
    """
    single = isinstance(path, str | os.PathLike)
    if not single:
        image = read_list(path)
    elif Path(path).is_dir():
        image = read_folder(Path(path))
    else:
        image = read_image(path)
    if isinstance(image, Series):
        show_info(
            f"Opened the {len(image)} images of {image.source.name} as a series (they differ "
            "in size or pixel size): page through them with the Series control of the Label "
            "widget."
        )
        return [(image.read(0), series_kwargs(image), "image")]
    info = read_labels_info(path) if single and not Path(path).is_dir() else None
    if info is not None:
        return [(image.data, labels_kwargs(image, info), "labels")]
    return [(image.data, layer_kwargs(image), "image")]


def labels_kwargs(image: ImageData, info: LabelsInfo) -> dict:
    """The image layer's kwargs plus the mask classes: names in the status bar, the plugin's
    colours, and the metadata that Measure and the writer read."""
    from .masks import MASK_KEY, dense_colors, mask_colors, mask_features

    kwargs = layer_kwargs(image)
    names = info.mask_classes
    kwargs["metadata"]["mask_classes"] = names
    if info.training:
        kwargs["metadata"][MASK_KEY] = info.mask_for or kwargs["name"]
    if names:
        kwargs["features"] = (
            mask_features(names)
            if info.training
            else {"index": list(range(len(names))), "class": names}
        )
        colors = mask_colors(names) if info.training else dense_colors(names)
        kwargs["colormap"] = DirectLabelColormap(color_dict=colors)
    return kwargs


def read_folder(folder: Path) -> ImageData | Series:
    """A folder of images as one stack, or as a series when their sizes or pixel sizes differ,
    leaving out (and naming) files that cannot be read.

    One corrupt or truncated file among many should not keep the user from the rest; the
    warning names each file left out and why the first one failed. A folder without any
    readable image is refused.
    """
    try:
        return read_image(folder)
    except ReadError:
        files = image_files(folder)
        good, bad = _readable(files)
        if not good:
            raise
    if bad:
        show_warning(
            f"Left out {len(bad)} of {len(files)} files in {folder} that cannot be read: "
            f"{', '.join(bad)}. {next(iter(bad.values()))}"
        )
    return _stack_or_series([f for f, _ in good], [im for _, im in good], folder)


def read_list(paths: list) -> ImageData | Series:
    """Several files (or folders) as one stack, or as a series when they cannot be stacked
    because their sizes or pixel sizes differ. Unreadable files are refused (named)."""
    try:
        return read_images(paths)
    except ReadError:
        files = input_files(paths)
        good, bad = _readable(files)
        if bad or len(good) < 2:
            raise
    source = Path(os.path.commonpath([p.absolute() for p in files]))
    return _stack_or_series(files, [im for _, im in good], source)


def _readable(files: list[Path]) -> tuple[list[tuple[Path, ImageData]], dict[str, str]]:
    """The files that read (headers only: lazily) with their images, and why the others fail."""
    good, bad = [], {}
    for file in files:
        try:
            good.append((file, read_image(file, lazy=True)))
        except ReadError as err:
            bad[file.name] = str(err)
    return good, bad


def _stack_or_series(files: list[Path], images: list[ImageData], source: Path):
    """The images as one stack if they share a size and a pixel size, else as a series."""
    try:
        return replace(read_images(files), source=source)
    except ReadError:
        if len(images) < 2:
            raise
    return Series.from_images(images, source)


def layer_kwargs(image: ImageData) -> dict:
    """Name, scale, units and metadata of the image layer for ``image``.

    Without a pixel size the scale stays 1 in napari's "pixel" unit, so the widgets ask the
    user for one (see :mod:`.pixel_size`, which reads it back from scale and units).
    """
    source = image.source
    stack_axes = image.data.ndim - 2
    pixel_size = image.pixel_size_nm or 1.0
    kwargs: dict = {
        "name": source.stem if source.is_file() else source.name,
        "scale": (1.0,) * stack_axes + (pixel_size, pixel_size),
        "metadata": {
            "source": str(source),
            "names": list(image.names),
            "file_metadata": image.metadata,
        },
    }
    if image.pixel_size_nm is not None:
        kwargs["units"] = ("pixel",) * stack_axes + ("nm", "nm")
    return kwargs


def _handles(path: Path) -> bool:
    """Whether this reader claims ``path``: a supported suffix, or a folder of such files."""
    if path.is_dir():
        return not any(path.iterdir()) or bool(image_files(path))
    return path.suffix.lower() in SUPPORTED_SUFFIXES
