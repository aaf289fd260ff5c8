"""The guided workflow: Label, Train, Predict and Measure as the steps of one dock.

One dock instead of five: the pixel size of the image sits above the steps (asked for as soon
as an image without one opens), and each step is the widget of that name, in a scroll area so
the dock keeps a height that fits a laptop screen. Every step shares the viewer's state (see
:mod:`.state`), so the dock and the single widgets can be mixed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari.layers import Image
from napari.utils.notifications import show_warning
from qtpy.QtCore import QEvent, Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from .label_widget import LabelWidget
from .measure_widget import MeasureWidget
from .pixel_size import layer_pixel_size_nm
from .pixel_size_widget import PixelSizeWidget
from .predict_widget import PredictWidget
from .state import state_for, unwrap_viewer
from .train_widget import TrainWidget

if TYPE_CHECKING:
    import napari

STEPS = ("Label", "Train", "Predict", "Measure")
PAGE_WIDTH = 420
"""Width the pages are laid out for (px); wider content scrolls instead of widening the dock."""
DOCK_HEIGHT = 640
"""Height the dock asks for (px): the steps scroll inside it rather than stretch the window."""


def scrolled(widget: QWidget) -> QScrollArea:
    """``widget`` in a frameless vertical scroll area."""
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return area


class WorkflowWidget(QWidget):
    """Pixel size on top; the Label, Train, Predict and Measure steps as tabs."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = unwrap_viewer(napari_viewer)
        self.state = state_for(self.viewer)
        self.pixel_size = PixelSizeWidget(self.viewer)
        self.label = LabelWidget(self.viewer)
        self.train = TrainWidget(self.viewer)
        self.predict = PredictWidget(self.viewer)
        self.measure = MeasureWidget(self.viewer)
        self.pages = (self.label, self.train, self.predict, self.measure)
        self.tabs = QTabWidget()
        for number, (name, page) in enumerate(zip(STEPS, self.pages, strict=True), start=1):
            self.tabs.addTab(scrolled(page), f"{number} {name}")
        layout = QVBoxLayout(self)
        layout.addWidget(self.pixel_size)
        layout.addWidget(self.tabs, stretch=1)
        self.setMinimumWidth(PAGE_WIDTH)
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.destroyed.connect(self._disconnect_viewer)

    def _disconnect_viewer(self, *_) -> None:
        self.viewer.layers.events.inserted.disconnect(self._on_inserted)

    def sizeHint(self):  # noqa: N802 - Qt's name
        """As wide as the pages need, and a height that fits a laptop screen."""
        hint = super().sizeHint()
        hint.setHeight(DOCK_HEIGHT)
        return hint

    def show_step(self, name: str) -> QWidget:
        """Bring step ``name`` (Label, Train, Predict, Measure) to the front; its widget."""
        index = STEPS.index(name)
        self.tabs.setCurrentIndex(index)
        return self.pages[index]

    def reset_choices(self, *_) -> None:
        """Refresh every step's layer lists (napari calls this when layers change)."""
        self.pixel_size.reset_choices()
        for page in self.pages:
            page.reset_choices()

    def _on_inserted(self, event) -> None:
        """Ask for the pixel size of a newly opened image that has none."""
        layer = event.value
        if not isinstance(layer, Image) or layer_pixel_size_nm(layer) is not None:
            return
        self.pixel_size.reset_choices()
        self.pixel_size.picker.value = layer
        show_warning(
            f"'{layer.name}' has no pixel size in its file: set it at the top of the "
            "Nanowire workflow dock, so masks, training and measurements are in nm."
        )

    def _release(self) -> None:
        self.label.release()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self._release()
        super().closeEvent(event)

    def event(self, event) -> bool:
        """Give the number keys back when napari takes the dock away."""
        if event.type() == QEvent.Type.ParentChange and self.parent() is None:
            self._release()
        return super().event(event)
