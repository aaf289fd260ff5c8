"""Label dock widget: give slices a class with a click or a key, paint training masks.

Keys 1-9 assign the classes to the slice on screen while the image layer is selected (with the
mask layer selected they keep napari's own paint shortcuts). The canvas names the slice's class,
the list shows which slices are still unlabelled, and "Next unlabelled" jumps to the next one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari.layers import Image, Labels
from napari.utils.notifications import show_info
from qtpy.QtCore import QEvent, Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QColorDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_nanowire.core.data.project import default_color
from napari_nanowire.core.errors import NanowireError

from .layers import current_slice, go_to_slice, layer_picker
from .masks import add_mask_layer, masks_of, style_mask_layer
from .notify import report_error
from .pixel_size_widget import ensure_pixel_size
from .project_box import ProjectBox
from .series import SeriesControl, series_of
from .state import slice_labels, state_for, unwrap_viewer

if TYPE_CHECKING:
    import napari

MAX_SHORTCUTS = 9
KEY_HINT = (
    "A mask layer is selected: keys 1-9 now pick the brush label. Select the image layer "
    "(or click a class) to classify the slice."
)
UNLABELLED_COLOR = "#9a9a9a"


def text_overlay(viewer: napari.Viewer):
    """The canvas text overlay (``viewer.canvas.overlays.text`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.overlays.text if canvas is not None else viewer.text_overlay


def row(*widgets: QWidget) -> QHBoxLayout:
    """Widgets side by side."""
    layout = QHBoxLayout()
    for widget in widgets:
        layout.addWidget(widget)
    return layout


def parse_names(text: str) -> list[str]:
    """Class names from comma-separated text, refusing empty or repeated names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise NanowireError("Give at least one class name, separated by commas.")
    if len(set(names)) != len(names):
        raise NanowireError(f"Class names must differ from each other, got {', '.join(names)}.")
    return names


def renamed_classes(old: list[str], new: list[str]) -> dict[str, str]:
    """Classes renamed in place (old name -> new name) when the class list is edited.

    A name that replaced, at the same position, a name that is gone is a rename, so its
    labels are kept ("dispersed" -> "dispersed-wires"). When the list got shorter, positions
    no longer pair names up: nothing counts as renamed and removed classes lose their labels.
    """
    if len(new) < len(old):
        return {}
    return {
        before: after
        for before, after in zip(old, new, strict=False)
        if before != after and before not in new and after not in old
    }


class LabelWidget(QWidget):
    """Class list with shortcuts and counts, the slice overview, masks and the project."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = unwrap_viewer(napari_viewer)
        self.state = state_for(self.viewer)
        self._bound: Image | None = None
        self.count_labels: list[QLabel] = []
        self.picker = layer_picker(self.viewer, Image, "image")
        self.class_box = QGroupBox("Classes: click, or press 1-9 with the image layer selected")
        self.class_grid = QGridLayout(self.class_box)
        self.names_edit = QLineEdit()
        self.names_edit.setToolTip("Class names, comma-separated")
        self.slice_info = QLabel()
        self.key_hint = QLabel(KEY_HINT)
        self.key_hint.setWordWrap(True)
        self.key_hint.setStyleSheet("color: #ff9f1c;")
        self.key_hint.setVisible(False)
        self.summary = QLabel()
        self.slice_list = QListWidget()
        self.mask_names_edit = QLineEdit()
        self.mask_names_edit.setToolTip("Classes painted as mask values 2, 3, ..., comma-separated")
        self.project_box = ProjectBox(self.viewer, self.state, self.current_image)
        self.series_control = SeriesControl(self.viewer)
        self._build_layout()
        self._connect()
        self.reset_choices()
        self._on_classes()

    def _build_layout(self) -> None:
        self.apply_names = QPushButton("Apply")
        self.apply_mask_names = QPushButton("Apply")
        self.clear_button = QPushButton("Clear label")
        self.next_button = QPushButton("Next unlabelled")
        self.mask_button = QPushButton("Add mask layer")
        mask_box = QGroupBox("Training masks (0 = not labelled, 1 = background)")
        mask_layout = QVBoxLayout(mask_box)
        mask_layout.addLayout(
            row(QLabel("mask classes"), self.mask_names_edit, self.apply_mask_names)
        )
        mask_layout.addWidget(self.mask_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.project_box)
        layout.addLayout(row(QLabel("image"), self.picker.native))
        layout.addWidget(self.series_control)
        layout.addWidget(self.class_box)
        layout.addLayout(row(QLabel("classes"), self.names_edit, self.apply_names))
        layout.addWidget(self.slice_info)
        layout.addWidget(self.key_hint)
        layout.addLayout(row(self.clear_button, self.next_button))
        layout.addWidget(self.summary)
        layout.addWidget(self.slice_list, stretch=1)
        layout.addWidget(mask_box)

    def _connect(self) -> None:
        self.picker.changed.connect(self._on_layer)
        self.names_edit.returnPressed.connect(self._rename_classes)
        self.apply_names.clicked.connect(self._rename_classes)
        self.mask_names_edit.returnPressed.connect(self._rename_mask_classes)
        self.apply_mask_names.clicked.connect(self._rename_mask_classes)
        self.clear_button.clicked.connect(lambda: self.assign(None))
        self.next_button.clicked.connect(self.next_unlabelled)
        self.mask_button.clicked.connect(self.add_masks)
        self.slice_list.itemClicked.connect(self._go_to_item)
        self.series_control.shown.connect(self._show_slice)
        self.state.classes_changed.connect(self._on_classes)
        self.state.labels_changed.connect(self._on_labels)
        self.state.project_changed.connect(self._on_project)
        self.viewer.dims.events.current_step.connect(self._show_slice)
        self.viewer.layers.selection.events.active.connect(self._show_key_hint)

    def reset_choices(self, *_) -> None:
        """Refresh the layer list (napari calls this when layers change)."""
        self.picker.reset_choices()
        self._on_layer()

    def _on_project(self) -> None:
        """Label the project's image layer once a project opens."""
        self.picker.reset_choices()
        if self.state.image_layer is not None:
            self.picker.value = self.state.image_layer
        self._on_layer()

    def current_image(self) -> Image | None:
        """The image layer being labelled."""
        return self.picker.value

    def assign(self, class_index: int | None) -> None:
        """Give the slice on screen the class at ``class_index`` (None clears its label)."""
        layer = self.current_image()
        if layer is None:
            show_info("Open or select an image layer first.")
            return
        if class_index is not None and class_index >= len(self.state.classes):
            return
        name = None if class_index is None else self.state.classes[class_index]
        try:
            self.state.set_label(layer, current_slice(self.viewer, layer), name)
        except (NanowireError, OSError) as err:
            report_error("Saving the label", err)

    def next_unlabelled(self) -> int | None:
        """Show the next unlabelled slice after the current one (wrapping); its index."""
        layer = self.current_image()
        if layer is None:
            return None
        labels = slice_labels(layer)
        start = current_slice(self.viewer, layer)
        order = list(range(start + 1, len(labels))) + list(range(start + 1))
        for index in order:
            if labels[index] is None:
                go_to_slice(self.viewer, layer, index)
                return index
        show_info("Every slice has a label.")
        return None

    def add_masks(self):
        """Add (or select) the training-mask layer of the image being labelled."""
        layer = self.current_image()
        if layer is None:
            show_info("Open or select an image layer first.")
            return None
        ensure_pixel_size(self.viewer, self.state, layer, self)
        masks = masks_of(self.viewer, layer)
        if masks is None:
            masks = add_mask_layer(self.viewer, layer, self.state.mask_classes)
        if layer is self.state.image_layer and masks is not self.state.mask_layer:
            self.state.watch_masks(masks)
        self.viewer.layers.selection.active = masks
        return masks

    def _rename_classes(self) -> None:
        try:
            names = parse_names(self.names_edit.text())
        except NanowireError as err:
            report_error("Changing the classes", err)
            return
        renamed = renamed_classes(self.state.classes, names)
        old_name = {new: old for old, new in renamed.items()}
        colors = [
            self.state.color_of(old_name.get(n, n))
            if old_name.get(n, n) in self.state.classes
            else default_color(i)
            for i, n in enumerate(names)
        ]
        self.state.set_classes(names, colors, renamed)

    def _rename_mask_classes(self) -> None:
        try:
            names = ["background", *parse_names(self.mask_names_edit.text())]
        except NanowireError as err:
            report_error("Changing the mask classes", err)
            return
        self.state.set_mask_classes(names)
        layer = self.current_image()
        masks = masks_of(self.viewer, layer) if layer is not None else None
        if masks is not None:
            style_mask_layer(masks, names)

    def _pick_color(self, index: int) -> None:
        color = QColorDialog.getColor(QColor(self.state.colors[index]), self, "Class colour")
        if color.isValid():
            colors = list(self.state.colors)
            colors[index] = color.name()
            self.state.set_classes(self.state.classes, colors)

    def _on_classes(self) -> None:
        """Rebuild the class buttons after the class list changed."""
        while self.class_grid.count():
            old = self.class_grid.takeAt(0).widget()
            old.setParent(None)  # gone at once, not only when Qt next deletes objects
            old.deleteLater()
        self.count_labels = []
        for i, (name, color) in enumerate(zip(self.state.classes, self.state.colors, strict=True)):
            swatch = QToolButton()
            swatch.setStyleSheet(f"background-color: {color}; border-radius: 3px;")
            swatch.setToolTip("Change the colour")
            swatch.clicked.connect(lambda _=False, i=i: self._pick_color(i))
            key = f"{i + 1}  " if i < MAX_SHORTCUTS else ""
            button = QPushButton(f"{key}{name}")
            button.clicked.connect(lambda _=False, i=i: self.assign(i))
            count = QLabel()
            count.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.class_grid.addWidget(swatch, i, 0)
            self.class_grid.addWidget(button, i, 1)
            self.class_grid.addWidget(count, i, 2)
            self.count_labels.append(count)
        self.names_edit.setText(", ".join(self.state.classes))
        self.mask_names_edit.setText(", ".join(self.state.mask_classes[1:]))
        self._on_labels(self.current_image())

    def _on_layer(self, *_) -> None:
        """Move the key bindings to the newly picked image layer and show its labels."""
        layer = self.current_image()
        if layer is not self._bound:
            self._unbind_keys()
            if layer is not None:
                self._bind_keys(layer)
        if layer is not self.series_control.layer:
            self.series_control.bind(layer)
        self._on_labels(layer)

    def _bind_keys(self, layer: Image) -> None:
        """Bind 1-9 on ``layer`` and select it, so the keys work at once."""
        for i in range(MAX_SHORTCUTS):
            layer.bind_key(str(i + 1), lambda _layer, i=i: self.assign(i), overwrite=True)
        self._bound = layer
        self.viewer.layers.selection.active = layer

    def _unbind_keys(self) -> None:
        if self._bound is not None:
            for i in range(MAX_SHORTCUTS):
                self._bound.bind_key(str(i + 1), None)
        self._bound = None

    def _show_key_hint(self, *_) -> None:
        """Say that 1-9 paint, not classify, while a Labels layer is the active one."""
        active = self.viewer.layers.selection.active
        self.key_hint.setVisible(isinstance(active, Labels) and self._bound is not None)

    def _on_labels(self, layer) -> None:
        """Refresh counts, the slice list and the canvas marker for ``layer``."""
        if layer is not self.current_image() or layer is None:
            return
        labels = slice_labels(layer)
        # The buttons lag the class list for a moment while classes change: zip the overlap.
        for count, name in zip(self.count_labels, self.state.classes, strict=False):
            count.setText(str(labels.count(name)))
        done = sum(lab is not None for lab in labels)
        unit = "images" if series_of(layer) is not None else "slices"
        self.summary.setText(f"{done} of {len(labels)} {unit} labelled")
        names = self.state.names_of(layer)
        self.slice_list.clear()
        for i, (name, label) in enumerate(zip(names, labels, strict=True)):
            item = QListWidgetItem(f"{i:>3}  {name}  —  {label or 'unlabelled'}")
            item.setForeground(QColor(self.state.color_of(label) if label else UNLABELLED_COLOR))
            item.setData(Qt.ItemDataRole.UserRole, i)
            self.slice_list.addItem(item)
        self._show_slice()

    def _show_slice(self, *_) -> None:
        """Name the class of the slice on screen, in the widget and on the canvas."""
        layer = self.current_image()
        overlay = text_overlay(self.viewer)
        if layer is None:
            overlay.visible = False
            self.slice_info.setText("No image layer: open images or File > Open Sample.")
            return
        index = current_slice(self.viewer, layer)
        label = slice_labels(layer)[index]
        name = self.state.names_of(layer)[index]
        keys = min(len(self.state.classes), MAX_SHORTCUTS)
        text = label or f"unlabelled (press 1-{keys})"
        unit = "Image" if series_of(layer) is not None else "Slice"
        self.slice_info.setText(f"{unit} {index} ({name}): {text}")
        overlay.text = f"{name}: {text}"
        overlay.color = self.state.color_of(label) if label else "white"
        overlay.font_size = 14
        overlay.visible = True
        self.slice_list.setCurrentRow(index)

    def _go_to_item(self, item: QListWidgetItem) -> None:
        layer = self.current_image()
        if layer is not None:
            go_to_slice(self.viewer, layer, int(item.data(Qt.ItemDataRole.UserRole)))

    def release(self) -> None:
        """Give the number keys back to napari and hide the canvas marker."""
        self._unbind_keys()
        text_overlay(self.viewer).visible = False

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.release()
        super().closeEvent(event)

    def event(self, event) -> bool:
        """Release the keys when napari takes the widget out of its dock."""
        if event.type() == QEvent.Type.ParentChange and self.parent() is None:
            self.release()
        return super().event(event)
