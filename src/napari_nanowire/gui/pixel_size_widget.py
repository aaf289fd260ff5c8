"""Dock widget that shows an image layer's physical pixel size and lets the user set it.

Every measurement in nm uses this value, so a file without pixel-size metadata must get one
before measuring; the other widgets ask for it (:func:`ensure_pixel_size`) before the first
stroke or training. The value is shown and edited with at least 4 significant digits, and a
new one reaches the image, the layers made for it, the project and the view together (see
:mod:`.pixel_size`, the only reader and writer of a layer's pixel size).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari.layers import Image
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .layers import layer_picker, shown_names
from .notify import report_error
from .pixel_size import (
    PixelSizeError,
    format_pixel_size,
    layer_pixel_size_nm,
    set_image_pixel_size,
    show_scale_bar,
)
from .series import series_of
from .state import state_for, unwrap_viewer

if TYPE_CHECKING:
    import napari

    from .state import WorkflowState

__all__ = ["PixelSizeWidget", "ensure_pixel_size"]

DECIMALS = 6
"""Digits after the point: 4 significant digits down to 0.001 nm/px."""
UNKNOWN_STYLE = "color: #ff9f1c; font-weight: bold;"


def ask_pixel_size(parent: QWidget | None, layer: Image) -> float | None:
    """Ask the user for the pixel size of ``layer`` in a dialog; None if cancelled."""
    value, ok = QInputDialog.getDouble(
        parent,
        "Pixel size",
        f"'{layer.name}' has no pixel size in its file.\nnm per pixel (bar length in nm / "
        "bar length in pixels); Cancel keeps sizes in pixels:",
        1.0,
        10.0**-DECIMALS,
        1e6,
        DECIMALS,
    )
    return value if ok else None


def ensure_pixel_size(
    viewer: napari.Viewer, state: WorkflowState, layer: Image, parent: QWidget | None = None
) -> None:
    """Ask once per image for a missing pixel size, before work that depends on it."""
    if layer_pixel_size_nm(layer) is not None or layer.name in state.pixel_size_asked:
        return
    state.pixel_size_asked.add(layer.name)
    value = ask_pixel_size(parent, layer)
    if value is not None:
        set_image_pixel_size(viewer, layer, value, state)
        state.pixel_size_changed.emit(layer)


class PixelSizeWidget(QWidget):
    """Pick an image layer, read its pixel size, set a new one."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = unwrap_viewer(napari_viewer)
        self.state = state_for(self.viewer)
        self.picker = layer_picker(self.viewer, Image, "image")
        self.info = QLabel()
        self.size = QDoubleSpinBox()
        self.size.setDecimals(DECIMALS)
        self.size.setRange(10.0**-DECIMALS, 1e6)
        self.size.setSuffix(" nm/px")
        self.size.setToolTip("nm per pixel: bar length in nm / bar length in pixels")
        self.apply = QPushButton("Set pixel size")
        row = QHBoxLayout()
        row.addWidget(QLabel("pixel size"))
        row.addWidget(self.size, stretch=1)
        row.addWidget(self.apply)
        picker_row = QHBoxLayout()
        picker_row.addWidget(QLabel("image"))
        picker_row.addWidget(self.picker.native, stretch=1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(picker_row)
        layout.addWidget(self.info)
        layout.addLayout(row)
        self.picker.changed.connect(self._show)
        self.apply.clicked.connect(self.set_pixel_size)
        self.size.lineEdit().returnPressed.connect(self.set_pixel_size)
        self.state.pixel_size_changed.connect(self._on_changed)
        show_scale_bar(self.viewer)
        self._show()

    def reset_choices(self, *_) -> None:
        """Refresh the layer list (napari calls this when layers change)."""
        self.picker.reset_choices()
        self._show()

    def _on_changed(self, layer) -> None:
        if layer is self.picker.value:
            self._show()

    def _show(self, *_) -> None:
        layer = self.picker.value
        if layer is None:
            self.info.setText("No image layer.")
            self.info.setStyleSheet("")
            return
        size = layer_pixel_size_nm(layer)
        name = f"'{layer.name}'"
        if series_of(layer) is not None:  # each image of a series has its own pixel size
            name += f" image {shown_names(layer)[0]}"
        if size is None:
            self.info.setText(f"{name}: pixel size unknown, sizes are in pixels. Set it:")
            self.info.setStyleSheet(UNKNOWN_STYLE)
        else:
            self.info.setText(f"{name}: {format_pixel_size(size)}")
            self.info.setStyleSheet("")
        self.size.setValue(size or 1.0)

    def set_pixel_size(self) -> bool:
        """Give the picked image (and its layers, project, view) the value shown; True if new.

        A value equal to the current one as shown changes nothing, so pressing the button
        without editing keeps a calibration read from the file to its full precision.
        """
        layer = self.picker.value
        if layer is None:
            return False
        current = layer_pixel_size_nm(layer)
        if current is not None and round(current, DECIMALS) == round(self.size.value(), DECIMALS):
            return False
        try:
            changed = set_image_pixel_size(self.viewer, layer, self.size.value(), self.state)
        except (PixelSizeError, OSError) as err:
            report_error("Setting the pixel size", err)
            return False
        self.state.pixel_size_changed.emit(layer)
        return changed
