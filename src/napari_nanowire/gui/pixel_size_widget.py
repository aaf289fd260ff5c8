"""Dock widget that shows an image layer's physical pixel size and lets the user set it.

Every measurement in nm uses this value, so a file without pixel-size metadata must get one
here before measuring. The value lives in ``layer.metadata["pixel_size_nm"]`` and in the
layer's scale, so napari's scale bar and cursor read-out are in nm too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import Container, FloatSpinBox, Label, PushButton, create_widget

if TYPE_CHECKING:
    import napari

from napari.layers import Image


def layer_pixel_size_nm(layer: Image) -> float | None:
    """The pixel size recorded on a layer, or None when unknown."""
    value = layer.metadata.get("pixel_size_nm")
    return float(value) if value else None


def set_layer_pixel_size_nm(layer: Image, pixel_size_nm: float) -> None:
    """Record a pixel size on a layer and scale its two image axes to nm."""
    if not pixel_size_nm > 0:
        raise ValueError(f"Pixel size must be positive, got {pixel_size_nm!r} nm/px.")
    layer.metadata["pixel_size_nm"] = float(pixel_size_nm)
    scale = list(layer.scale)
    scale[-2:] = [pixel_size_nm, pixel_size_nm]
    layer.scale = scale
    units = list(layer.units)
    units[-2:] = ["nm", "nm"]
    layer.units = units


class PixelSizeWidget(Container):
    """Pick an image layer, read its pixel size, set a new one."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self._layer = create_widget(annotation=Image, label="image")
        self._info = Label(label="from file")
        self._size = FloatSpinBox(label="pixel size (nm/px)", min=0.0001, max=1e6, step=0.1)
        self._apply = PushButton(text="Set pixel size")
        super().__init__(widgets=[self._layer, self._info, self._size, self._apply])
        self._layer.changed.connect(self._show)
        self._apply.changed.connect(self._set)
        viewer.scale_bar.visible = True
        viewer.scale_bar.unit = "nm"
        self._show()

    def _show(self) -> None:
        layer = self._layer.value
        if layer is None:
            self._info.value = "no image layer"
            return
        size = layer_pixel_size_nm(layer)
        self._info.value = f"{size:g} nm/px" if size else "unknown: set it below"
        self._size.value = size or 1.0

    def _set(self) -> None:
        layer = self._layer.value
        if layer is not None:
            set_layer_pixel_size_nm(layer, self._size.value)
            self._show()
