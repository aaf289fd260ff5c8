"""Reading a napari image layer as a stack of 2D slices, the way every widget sees it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.io import frames

from .pixel_size import layer_pixel_size_nm
from .series import SeriesFrames, series_of, show_image

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer


def slice_count(layer: Layer) -> int:
    """Number of 2D images in a (Y, X) or (N, Y, X) layer, or in the series it shows."""
    series = series_of(layer)
    if series is not None:
        return len(series)
    return 1 if layer.ndim == 2 else int(layer.data.shape[0])


def slice_names(layer: Layer) -> list[str]:
    """A name per slice: the file names the reader recorded, else ``<layer> #<index>``."""
    names = layer.metadata.get("names")
    count = slice_count(layer)
    if names is not None and len(names) == count:
        return [str(n) for n in names]
    return [f"{layer.name} #{i}" for i in range(count)]


def shown_names(layer: Layer) -> list[str]:
    """Slice names for a layer made over ``layer`` (masks, segmentation): every slice name of a
    stack; for a series, the name of the one image shown (such a layer holds that image)."""
    series = series_of(layer)
    return [series.items[series.index].name] if series is not None else slice_names(layer)


def current_slice(viewer: napari.Viewer, layer: Layer) -> int:
    """Index of the slice of ``layer`` shown in the viewer now (0 for a 2D layer; the image
    shown for a series)."""
    series = series_of(layer)
    if series is not None:
        return series.index
    if layer.ndim == 2:
        return 0
    index = int(round(layer.world_to_data(viewer.dims.point)[0]))
    return min(max(index, 0), slice_count(layer) - 1)


def go_to_slice(viewer: napari.Viewer, layer: Layer, index: int) -> None:
    """Show slice ``index`` of ``layer`` in the viewer (pages a series to its image)."""
    if series_of(layer) is not None:
        show_image(viewer, layer, index)
        return
    if layer.ndim == 2:
        return
    point = list(viewer.dims.point)
    point[-layer.ndim] = layer.data_to_world([index, 0, 0])[0]
    viewer.dims.point = point


def check_image_layer(layer: Layer) -> None:
    """Refuse colour, volume and multiscale layers: the workflow needs 2D gray slices."""
    if getattr(layer, "rgb", False) or layer.ndim not in (2, 3) or layer.multiscale:
        raise NanowireError(
            f"Layer '{layer.name}' is not a 2D image or a stack of 2D images; open the images "
            "with the napari-nanowire reader, which turns gray RGB files into gray images."
        )


def as_stack(data, indices: list[int] | None = None) -> list[np.ndarray]:
    """2D float32 slices of (Y, X) or (N, Y, X) layer data (those at ``indices``, or all).

    Safe to call in a worker thread: it reads the array and touches no layer.
    """
    return [np.asarray(frame, dtype=np.float32) for frame in frames(data, indices)]


def image_stack(layer: Layer) -> np.ndarray:
    """The layer's pixels as a float32 (N, Y, X) array."""
    check_image_layer(layer)
    return np.stack(as_stack(layer.data))


class Slices:
    """The 2D images of an image layer and their pixel sizes, for a job in a worker thread.

    Made on the main thread (it reads the layer's pixel size and series state there); the
    images are read when the job asks for them, one at a time: frames of a lazy stack stay on
    disk, the images of a series are read from their files.
    """

    def __init__(self, layer: Layer) -> None:
        check_image_layer(layer)
        series = series_of(layer)
        if series is None:
            self.data = layer.data
            self.frames = frames(self.data)
            self.pixel_sizes = [layer_pixel_size_nm(layer)] * len(self.frames)
        else:
            self.data = None
            self.frames = SeriesFrames(series)
            sizes = series.pixel_sizes
            sizes[series.index] = layer_pixel_size_nm(layer)  # the one set on screen counts
            self.pixel_sizes = sizes

    def __len__(self) -> int:
        return len(self.pixel_sizes)

    def read(self, indices: list[int] | None = None) -> list[np.ndarray]:
        """2D float32 images at ``indices`` (default: all), read now."""
        indices = range(len(self)) if indices is None else indices
        return [np.asarray(self.frames[i], dtype=np.float32) for i in indices]

    def items(self, indices: list[int] | None = None) -> Iterator[tuple[int, Any, float | None]]:
        """(index, unread image, pixel size) at ``indices`` (default: all), for
        :meth:`~napari_nanowire.core.predict.Predictor.predict_each`."""
        for i in range(len(self)) if indices is None else indices:
            yield i, self.frames[i], self.pixel_sizes[i]

    def sizes(self, indices: list[int] | None = None) -> list[float | None]:
        """The pixel sizes (nm/px) of the images at ``indices`` (default: all)."""
        return list(self.pixel_sizes) if indices is None else [self.pixel_sizes[i] for i in indices]


def layer_picker(viewer: napari.Viewer, kind: type, label: str, nullable: bool = False):
    """A magicgui drop-down of the viewer's layers of type ``kind``, the newest first.

    Call its ``reset_choices()`` when layers change (napari does so for docked widgets that
    forward ``reset_choices``).
    """
    from magicgui.widgets import ComboBox

    def choices(_widget) -> list[tuple[str, Layer]]:
        return [(layer.name, layer) for layer in reversed(viewer.layers) if isinstance(layer, kind)]

    return ComboBox(label=label, choices=choices, nullable=nullable)
