"""What the dock widgets of one viewer share: classes, labels, models, the project, the job.

Each widget is built by napari on its own, so they meet here: :func:`state_for` gives every
widget of a viewer the same :class:`WorkflowState`. Signals tell the others when something
changed. Per-slice class labels live on the image layer (``metadata["class_labels"]``, one entry
per slice, None = unlabelled), so they travel with the layer; when a project is open, every
change is saved to it at once and mask edits a moment after the last stroke.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from psygnal import Signal
from superqt.utils import qdebounced

from napari_nanowire.core.data.project import DEFAULT_MASK_CLASSES, Project, default_color
from napari_nanowire.core.names import CLASSES

from .layers import slice_count, slice_names
from .masks import history_sizes, painted_slices, undo_redo_slices
from .notify import report_error
from .pixel_size import layer_pixel_size_nm
from .series import series_of
from .workers import JobRunner

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels, Layer

LABELS_KEY = "class_labels"
MASK_SAVE_DELAY_MS = 1500
"""Masks are saved this long after the last paint stroke (only the slices it touched)."""

_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def unwrap_viewer(viewer: napari.Viewer) -> napari.Viewer:
    """The viewer behind the proxy napari hands to plugin widgets.

    The proxy wraps every object it returns anew, so layers fetched through it fail identity
    checks and could not key per-viewer state; the widgets use public API only.
    """
    return getattr(viewer, "__wrapped__", viewer)


def state_for(viewer: napari.Viewer) -> WorkflowState:
    """The one state shared by all napari-nanowire widgets of ``viewer``."""
    viewer = unwrap_viewer(viewer)
    state = _STATES.get(viewer)
    if state is None:
        state = _STATES[viewer] = WorkflowState(viewer)
    return state


def slice_labels(layer: Layer) -> list[str | None]:
    """The class label of every slice of ``layer`` (None = unlabelled)."""
    stored = layer.metadata.get(LABELS_KEY)
    count = slice_count(layer)
    if stored is None or len(stored) != count:
        return [None] * count
    return [str(x) if x else None for x in stored]


class WorkflowState:
    """Classes, labels, model files, the open project and the one running job."""

    classes_changed = Signal()
    labels_changed = Signal(object)
    models_changed = Signal()
    project_changed = Signal()
    pixel_size_changed = Signal(object)

    def __init__(self, viewer: napari.Viewer) -> None:
        self._viewer = weakref.ref(viewer)
        self.classes: list[str] = list(CLASSES)
        self.colors: list[str] = [default_color(i) for i in range(len(CLASSES))]
        self.mask_classes: list[str] = list(DEFAULT_MASK_CLASSES)
        self.models: dict[str, Path] = {}
        self.stopped_pretraining: Path | None = None  # the checkpoint Continue resumes
        self.project: Project | None = None
        self.image_layer: Image | None = None
        self.mask_layer: Labels | None = None
        self.runner = JobRunner()
        self.pixel_size_asked: set[str] = set()  # images whose missing pixel size was asked
        self._dirty: set[int] | None = set()  # slices to save; None = all of them
        self._history: tuple[int, int] = (0, 0)  # undo and redo depths of the mask layer
        self._save_masks_later = qdebounced(self.save_masks, timeout=MASK_SAVE_DELAY_MS)
        self._session: Path | None = None
        self._paused: Labels | None = None  # a mask layer whose new data is not an edit
        self._cleanup: weakref.finalize | None = None
        window = getattr(getattr(viewer, "window", None), "_qt_window", None)
        if window is not None:
            self.runner.watch_window(window, on_close=self.close)

    def session_folder(self) -> Path:
        """A temporary folder for models made without a project, removed with the viewer."""
        if self._session is None:
            self._session = Path(tempfile.mkdtemp(prefix="napari-nanowire-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._session, True)
        return self._session

    def close(self) -> None:
        """The viewer closes (its job has ended): save pending masks, drop session models."""
        self._save_masks_later.flush()
        if self._cleanup is not None:
            self._cleanup()
        self._session = None

    def color_of(self, name: str) -> str:
        """The display colour of class ``name`` (gray for a class no longer in the list)."""
        return self.colors[self.classes.index(name)] if name in self.classes else "#888888"

    def set_label(self, layer: Image, index: int, name: str | None) -> None:
        """Give slice ``index`` of ``layer`` class ``name`` (None clears it), saving at once."""
        labels = slice_labels(layer)
        labels[index] = name
        self.set_labels(layer, labels)

    def set_labels(self, layer: Image, labels: list[str | None]) -> None:
        """Replace every slice label of ``layer``, saving to the project if it is the project's."""
        layer.metadata[LABELS_KEY] = list(labels)
        if self.project is not None and layer is self.image_layer:
            self.project.set_slice_labels(labels)
        self.labels_changed.emit(layer)

    def set_classes(
        self, classes: list[str], colors: list[str], renamed: dict[str, str] | None = None
    ) -> None:
        """Replace the class list; labels follow ``renamed`` (old -> new name), labels of
        classes no longer present are cleared."""
        renamed = renamed or {}
        if self.project is not None:
            self.project.set_classes(classes, colors)  # drops renamed labels: re-saved below
        self.classes, self.colors = list(classes), list(colors)
        viewer = self._viewer()
        for layer in viewer.layers if viewer is not None else ():
            if LABELS_KEY in layer.metadata:
                relabelled = [renamed.get(c, c) for c in slice_labels(layer)]
                self.set_labels(layer, [c if c in classes else None for c in relabelled])
        self.classes_changed.emit()

    def set_mask_classes(self, names: list[str]) -> None:
        """Replace the mask classes (background first), saving them to the project."""
        self.mask_classes = list(names)
        if self.project is not None:
            self.project.mask_classes = list(names)
            self.project.save()

    def set_model(self, kind: str, path: Path) -> None:
        """Record a trained model file (encoder, classifier, segmenter)."""
        self.models[kind] = Path(path)
        if self.project is not None:
            self.project.set_model(kind, path)
        self.models_changed.emit()

    def model_out(self, kind: str, workdir: Path) -> Path:
        """Where a new ``kind`` model is written: the project's models folder, else ``workdir``."""
        if self.project is not None:
            return self.project.model_path(kind)
        return Path(workdir) / f"{kind}.nwmodel"

    def attach(
        self, project: Project, image: Image, masks: Labels | None, masks_saved: bool = False
    ) -> None:
        """Make ``project`` the open project, kept in step with ``image`` and ``masks``.

        ``masks_saved`` says the project already holds ``masks`` (it was just opened).
        """
        self.detach_masks()
        self.project, self.image_layer = project, image
        self.classes, self.colors = list(project.classes), list(project.colors)
        self.mask_classes = list(project.mask_classes)
        self.models = {k: p for k in project.models if (p := project.model(k)) is not None}
        image.metadata[LABELS_KEY] = project.slice_labels()
        if masks is not None:
            self.watch_masks(masks, save=not masks_saved)
        self.project_changed.emit()
        self.classes_changed.emit()
        self.labels_changed.emit(image)
        self.models_changed.emit()

    def watch_masks(self, layer: Labels, save: bool = True) -> None:
        """Save ``layer`` to the project shortly after every paint stroke (and now, if asked)."""
        self.detach_masks()
        self.mask_layer = layer
        layer.events.paint.connect(self._on_paint)
        layer.events.data.connect(self._on_new_data)
        layer.events.set_data.connect(self._on_set_data)
        self._history = history_sizes(layer)
        if save and self.project is not None:
            self._dirty = None
            self.save_masks()

    def detach_masks(self) -> None:
        """Stop saving the current mask layer (flushing a pending save first)."""
        if self.mask_layer is None:
            return
        self._save_masks_later.flush()
        self.mask_layer.events.paint.disconnect(self._on_paint)
        self.mask_layer.events.data.disconnect(self._on_new_data)
        self.mask_layer.events.set_data.disconnect(self._on_set_data)
        self.mask_layer = None

    def _on_paint(self, event) -> None:
        """Remember which slices a stroke touched; save them a moment after the last one."""
        self._history = history_sizes(self.mask_layer)
        self._mark_dirty(painted_slices(self.mask_layer, event.value))

    def _mark_dirty(self, touched: set[int] | None) -> None:
        """Save slices ``touched`` (None: all) a moment after the last change."""
        if touched is None or self._dirty is None:
            self._dirty = None
        else:
            self._dirty |= touched
        self._save_masks_later()

    def _on_set_data(self, _event=None) -> None:
        """Save what undo and redo changed: they emit no paint event, only a refresh."""
        layer = self.mask_layer
        before, self._history = self._history, history_sizes(layer)
        if self._history != before:
            self._mark_dirty(undo_redo_slices(layer, before))

    def _on_new_data(self, _event=None) -> None:
        if self._paused is not None and self._paused is self.mask_layer:
            return
        self._dirty = None
        self._save_masks_later()

    def flush_masks(self) -> None:
        """Save pending mask edits now (before a series pages to another image)."""
        self._save_masks_later.flush()

    @contextmanager
    def pausing_mask_saves(self, layer: Labels) -> Iterator[None]:
        """New data put into ``layer`` meanwhile is not an edit to save (a series paging)."""
        self._paused = layer
        try:
            yield
        finally:
            self._paused = None

    def save_masks(self) -> None:
        """Write the mask layer into the project now (no-op without both).

        For a series, the mask layer holds the image shown: it is saved as that image's mask.
        """
        if self.project is None or self.mask_layer is None:
            return
        slices, self._dirty = self._dirty, set()
        series = series_of(self.image_layer)
        try:
            if series is not None:
                mask = np.asarray(self.mask_layer.data)
                self.project.save_mask(series.index, mask, layer_pixel_size_nm(self.mask_layer))
            else:
                self.project.save_masks(np.asarray(self.mask_layer.data), slices)
        except Exception as err:  # a failed autosave must not stop the user painting
            report_error("Saving the masks", err)

    def names_of(self, layer: Image) -> list[str]:
        """Slice names of ``layer`` (the project's names for the project's layer)."""
        if self.project is not None and layer is self.image_layer:
            return list(self.project.names)
        return slice_names(layer)
