"""A collection of images of different sizes or pixel sizes, shown one image at a time.

A napari image layer is one array, so a folder of 512-1088 px exports cannot be one stack
without padding (fake pixels in every measurement) or resizing (a changed pixel size). It
opens as a *series* instead, as micro-sam's image-series annotator does: one image layer shows
one image of the series, in its own size and pixel size, and paging (the Series control of the
Label widget) replaces the layer's data and scale with the next image's.

Every widget keeps seeing "slices": a series image layer has one slice per image, so its slice
count, slice names and class labels (:mod:`.state`, one entry per image) and "the slice on
screen" (the image shown) are those of the series (see :mod:`.layers`). Layers made for the
image (training masks, segmentation) show the current image's 2D data; the series keeps every
other image's data for them and swaps it in when paging. Jobs read the images from their files
one at a time (:meth:`Series.read`), each with its own pixel size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from psygnal import Signal
from qtpy.QtCore import Signal as QtSignal
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout

from napari_nanowire.core.io import ImageData, read_image

from .pixel_size import (
    UNKNOWN,
    format_pixel_size,
    layer_pixel_size_nm,
    linked_layers,
    set_layer_pixel_size_nm,
)

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

SERIES_KEY = "series"
"""Image-layer metadata key holding the layer's :class:`Series`."""


@dataclass
class SeriesItem:
    """One 2D image of a series: a file, or one frame of a multi-page file."""

    path: Path
    frame: int | None
    name: str
    shape: tuple[int, int]
    pixel_size_nm: float | None


class Series:
    """The images of a series, which one is shown, and the per-image data of derived layers."""

    paged = Signal(int)
    """The index of the image now shown, after paging."""

    def __init__(self, items: Sequence[SeriesItem], source: Path) -> None:
        self.items = list(items)
        self.source = Path(source)
        self.index = 0
        self.stash: dict[str, dict[int, np.ndarray]] = {}  # derived layer -> image -> data

    @classmethod
    def from_images(cls, images: Sequence[ImageData], source: Path) -> Series:
        """A series of every 2D image of ``images`` (read lazily: headers only)."""
        items = []
        for image in images:
            shape = tuple(int(n) for n in image.data.shape[-2:])
            frames = [None] if image.data.ndim == 2 else range(image.data.shape[0])
            for name, frame in zip(image.names, frames, strict=True):
                items.append(SeriesItem(image.source, frame, name, shape, image.pixel_size_nm))
        return cls(items, source)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def names(self) -> list[str]:
        return [item.name for item in self.items]

    @property
    def pixel_sizes(self) -> list[float | None]:
        return [item.pixel_size_nm for item in self.items]

    def read(self, index: int) -> np.ndarray:
        """The pixels of image ``index`` (file dtype), read from its file now.

        Safe in a worker thread: it touches no layer.
        """
        item = self.items[index]
        data = read_image(item.path, lazy=True).data
        return np.asarray(data if item.frame is None else data[item.frame])

    def describe(self, index: int | None = None) -> str:
        """'name: 512 x 768 px, 0.5 nm/px' for image ``index`` (default: the one shown)."""
        item = self.items[self.index if index is None else index]
        y, x = item.shape
        return f"{item.name}: {x} x {y} px, {format_pixel_size(item.pixel_size_nm)}"


class SeriesFrames(Sequence):
    """The images of a series as a sequence read one at a time when indexed (for jobs)."""

    def __init__(self, series: Series, indices: Sequence[int] | None = None) -> None:
        self.series = series
        self.indices = list(range(len(series)) if indices is None else indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.series.read(self.indices[i])


def series_of(layer: Layer | None) -> Series | None:
    """The series ``layer`` shows, or None for a plain image or stack."""
    if layer is None:
        return None
    series = layer.metadata.get(SERIES_KEY)
    return series if isinstance(series, Series) else None


def layer_kwargs(series: Series) -> dict:
    """Name, scale, units and metadata of the image layer showing the first image of ``series``."""
    first = series.items[0]
    pixel_size = first.pixel_size_nm or 1.0
    kwargs: dict = {
        "name": series.source.name,
        "scale": (pixel_size, pixel_size),
        "metadata": {
            "source": str(series.source),
            "names": series.names,
            SERIES_KEY: series,
        },
    }
    if first.pixel_size_nm is not None:
        kwargs["units"] = ("nm", "nm")
    return kwargs


def _set_scale(layer: Layer, pixel_size_nm: float | None) -> None:
    if pixel_size_nm is not None:
        set_layer_pixel_size_nm(layer, pixel_size_nm)
    else:
        layer.units = (UNKNOWN, UNKNOWN)
        layer.scale = (1.0, 1.0)


def show_image(viewer: napari.Viewer, layer: Layer, index: int) -> None:
    """Page ``layer``'s series to image ``index``: its pixels, pixel size and derived layers.

    The pixel size on the layer now (the user may have set one) is kept for the image left;
    the derived Labels layers (masks, segmentation) keep their data for it likewise.
    """
    from napari.layers import Labels

    from .state import state_for

    series = series_of(layer)
    if series is None or not 0 <= index < len(series) or index == series.index:
        return
    state = state_for(viewer)
    state.flush_masks()  # strokes not yet saved belong to the image left
    old = series.index
    series.items[old].pixel_size_nm = layer_pixel_size_nm(layer)
    derived = [d for d in linked_layers(viewer, layer)[1:] if isinstance(d, Labels)]
    for other in derived:
        kept = series.stash.setdefault(other.name, {})
        data = np.asarray(other.data)
        if data.any():
            kept[old] = data.copy()
        else:
            kept.pop(old, None)
    pixels = series.read(index)
    series.index = index
    item = series.items[index]
    layer.data = pixels
    _set_scale(layer, item.pixel_size_nm)
    for other in derived:
        data = series.stash.get(other.name, {}).get(index)
        if data is None or data.shape != item.shape:
            data = np.zeros(item.shape, np.asarray(other.data).dtype)
        with state.pausing_mask_saves(other):
            other.data = data
        reset_history = getattr(other, "_reset_history", None)
        if reset_history is not None:  # an undo must not replay the previous image's strokes
            reset_history()
        _set_scale(other, item.pixel_size_nm)
        other.metadata["names"] = [item.name]  # it holds the image shown (see shown_names)
    viewer.reset_view()
    series.paged.emit(index)
    state.pixel_size_changed.emit(layer)  # the pixel size shown is the new image's


def series_mask(layer: Layer, derived: Layer, index: int) -> np.ndarray | None:
    """The mask ``derived`` (a Labels layer made for ``layer``'s series) holds for image
    ``index`` as uint8, or None where nothing was kept for it."""
    series = series_of(layer)
    if series is None:
        return None
    if index == series.index:
        data = np.asarray(derived.data)
        return data.astype(np.uint8) if data.shape == series.items[index].shape else None
    kept = series.stash.get(derived.name, {}).get(index)
    return None if kept is None else kept.astype(np.uint8)


class SeriesControl(QGroupBox):
    """Previous / next buttons, an image number and the image's name, size and pixel size."""

    shown = QtSignal(int)
    """The series shows image (index) now."""

    def __init__(self, viewer: napari.Viewer) -> None:
        super().__init__("Series: images of different sizes, one at a time")
        self.viewer = viewer
        self.layer: Layer | None = None
        self.previous = QPushButton("◀ Previous")
        self.next = QPushButton("Next ▶")
        self.number = QSpinBox()
        self.number.setMinimum(1)
        self.number.setToolTip("Image number in the series")
        self.count = QLabel()
        self.info = QLabel()
        self.info.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.previous)
        row.addWidget(self.number)
        row.addWidget(self.count)
        row.addWidget(self.next)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.info)
        self.previous.clicked.connect(lambda: self.go(self._index() - 1))
        self.next.clicked.connect(lambda: self.go(self._index() + 1))
        self.number.valueChanged.connect(lambda value: self.go(value - 1))
        self.setVisible(False)

    def _index(self) -> int:
        series = series_of(self.layer)
        return series.index if series is not None else 0

    def bind(self, layer: Layer | None) -> None:
        """Control ``layer``'s series (hidden when it has none)."""
        old = series_of(self.layer)
        if old is not None:
            old.paged.disconnect(self._show)
            self.layer.events.scale.disconnect(self._show)
        self.layer = layer
        series = series_of(layer)
        self.setVisible(series is not None)
        if series is not None:
            series.paged.connect(self._show)
            layer.events.scale.connect(self._show)  # a pixel size set for the image shown
            self._show()

    def go(self, index: int) -> None:
        """Show image ``index`` (0-based) of the series."""
        if self.layer is not None:
            show_image(self.viewer, self.layer, index)

    def _show(self, *_) -> None:
        series = series_of(self.layer)
        if series is None:
            return
        self.number.blockSignals(True)
        self.number.setMaximum(len(series))
        self.number.setValue(series.index + 1)
        self.number.blockSignals(False)
        self.count.setText(f"of {len(series)}")
        self.previous.setEnabled(series.index > 0)
        self.next.setEnabled(series.index < len(series) - 1)
        series.items[series.index].pixel_size_nm = layer_pixel_size_nm(self.layer)
        self.info.setText(series.describe())
        self.shown.emit(series.index)
