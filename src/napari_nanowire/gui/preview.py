"""The Train step's slice preview: a few seconds of training, then the slice on screen.

"Preview slice" trains the segmenter briefly from the current state on the painted strokes and
predicts the slice in view (:mod:`napari_nanowire.core.heads.preview`); the mask appears in a
Labels layer ``<image> preview`` that covers that slice only, under the strokes. Each press
continues from the last preview's weights (kept in the session folder, never in the project),
so a few presses refine it; a full segmenter training or a new pretraining, being newer, is
where the next preview starts instead. With "update after strokes" the preview runs again a
moment after the last stroke. Full training stays the "Train segmenter" button.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image, Labels
from napari.utils.colormaps import DirectLabelColormap
from qtpy.QtWidgets import QCheckBox, QHBoxLayout, QPushButton
from superqt.utils import qdebounced

from napari_nanowire.core.errors import NanowireError

from .layers import Slices, current_slice
from .masks import dense_colors, dense_features, masks_of
from .pixel_size import IMAGE_KEY
from .pixel_size_widget import ensure_pixel_size
from .workers import Job, launch, show_fraction

if TYPE_CHECKING:
    from napari_nanowire.core.heads.preview import SlicePreview

    from .train_widget import TrainWidget

TITLE = "Slice preview"
SLICE_KEY = "preview_slice"
"""Metadata key of the preview layer: the index of the slice it shows."""
AUTO_DELAY_MS = 1500
"""With "update after strokes", the preview runs this long after the last stroke."""
MODEL_NAME = "preview-segmenter.nwmodel"


def preview_layer_name(image: Image) -> str:
    return f"{image.name} preview"


class SlicePreviewer:
    """The preview button and its auto-update switch, for a :class:`TrainWidget`."""

    def __init__(self, widget: TrainWidget) -> None:
        self.widget = widget
        self.viewer, self.state = widget.viewer, widget.state
        self.button = QPushButton("Preview slice")
        self.button.setToolTip(
            "Train the segmenter for a few seconds on your strokes (continuing from the last "
            "preview) and show its mask of the slice in view. Press again to refine; "
            "'Train segmenter' runs the full training."
        )
        self.auto = QCheckBox("update after strokes")
        self.auto.setToolTip(
            "Run the preview again a moment after you stop painting (each run takes a few "
            "seconds of CPU)."
        )
        self.row = QHBoxLayout()
        self.row.addWidget(self.button)
        self.row.addWidget(self.auto)
        self.row.addStretch(1)
        self.count = 0
        self.last: SlicePreview | None = None
        self._again = False
        self._summary = ""
        self._ended = True
        self._watched: Labels | None = None
        self._later = qdebounced(self._auto_update, timeout=AUTO_DELAY_MS)
        self.button.clicked.connect(lambda: self.preview())
        self.auto.toggled.connect(self.watch)
        widget.masks.changed.connect(lambda *_: self.watch())
        self.button.destroyed.connect(lambda *_: self._unwatch())

    @property
    def model_path(self) -> Path:
        """The preview's weights: in the session folder, never among the saved models."""
        return self.state.session_folder() / MODEL_NAME

    def preview(self, auto: bool = False) -> bool:
        """Preview the slice in view; False if it did not start (the reason is shown).

        ``auto`` (a stroke triggered it) neither asks for a pixel size nor warns when a job
        runs: a preview then runs again when it ends, and other jobs are left alone.
        """
        runner = self.state.runner
        if auto:
            if runner.running:
                self._again = runner.title == TITLE
                return False
            try:
                job = self._prepare()
            except NanowireError as err:
                self.widget.status.setText(f"Preview: {err}")
                return False
            prepare = lambda: job  # noqa: E731 - checked above, quietly
        else:
            if runner.busy(TITLE):
                return False
            layer = self.widget.image.value
            if layer is not None:
                ensure_pixel_size(self.viewer, self.state, layer, self.widget)
            prepare = self._prepare
        self._ended = False
        started = launch(
            runner,
            TITLE,
            prepare,
            self.widget.panel,
            self.widget,
            on_progress=self._on_progress,
            on_done=self._show,
            on_finish=self._finished,
        )
        self.button.setEnabled(not started)
        return started

    def _prepare(self) -> Job:
        """Read the inputs on the main thread; the job trains and predicts in the worker."""
        from napari_nanowire.core.heads.preview import (
            check_strokes,
            current_state,
            preview_config,
            preview_slice,
        )

        widget = self.widget
        layer = widget._image_layer()
        masks, picked, names = widget.stroke_masks(layer)
        check_strokes([masks[i] for i in picked])
        out = self.model_path
        models = self.state.models
        candidates = [out, models.get("segmenter"), models.get("encoder")]
        if not any(path is not None and path.is_file() for path in candidates[1:]):
            raise NanowireError("No pretrained encoder yet: press Pretrain first.")
        index = current_slice(self.viewer, layer)
        slices = Slices(layer)  # a series: each image from its file, at its own pixel size
        targets = [masks[i] for i in picked]
        self.count += 1
        config = preview_config(widget.segmenter_config(), seed=self.count)

        def job(stop):
            start = current_state(candidates, names)  # reads model files: not on the GUI thread
            if start is None:
                raise NanowireError("The encoder file could not be read: press Pretrain again.")
            origin = (
                "continued from the last preview"
                if start == out
                else "continued from the trained segmenter"
                if start == candidates[1]
                else "from the encoder"
            )
            images = slices.read(picked)
            frame = slices.read([index])[0]
            sizes, px = slices.sizes(picked), slices.pixel_sizes[index]
            result = yield from preview_slice(
                start, images, targets, frame, out, sizes, px, names, config, stop
            )
            return layer, index, result, origin

        return job

    def _on_progress(self, event) -> None:
        # napari's activity bar processes Qt events while the last progress is shown, so
        # the end of the job can arrive first: its summary must stay
        if not self._ended:
            self.widget.panel.show_progress(event)

    def _show(self, outcome: tuple[Image, int, SlicePreview, str]) -> None:
        """Put the slice's mask into the preview layer, under the strokes."""
        layer, index, result, origin = outcome
        self.last, self._ended = result, True
        if layer not in self.viewer.layers:
            return  # the image was closed meanwhile
        if result.mask is None:
            self._summary = (
                f"Preview stopped after {result.steps} steps; the next preview continues from "
                "the weights trained so far."
            )
            return
        show_preview(self.viewer, layer, index, result.mask, result.mask_classes)
        origin = origin if result.continued else "from the encoder"
        show_fraction(self.widget.bar, 1.0)
        self._summary = (
            f"Preview of slice {index}: {result.steps} training steps in "
            f"{result.train_seconds:.1f} s ({origin}), predicted in "
            f"{result.predict_seconds:.1f} s. Press again to refine it; 'Train segmenter' "
            "trains the full model."
        )

    def _finished(self) -> None:
        """Last in every case: the summary replaces the progress line; a pending auto-update
        runs now."""
        self._ended = True
        self.button.setEnabled(True)
        if self._summary:
            self.widget.status.setText(self._summary)
            self._summary = ""
        if self._again:
            self._again = False
            self._later()

    def watch(self, *_) -> None:
        """Follow the strokes of the current mask layer while auto-update is on."""
        self._unwatch()
        layer = self.widget.image.value
        if not self.auto.isChecked() or layer is None:
            return
        masks = self.widget.masks.value or masks_of(self.viewer, layer)
        if masks is None:
            return
        self._watched = masks
        masks.events.paint.connect(self._on_paint)

    def _unwatch(self) -> None:
        if self._watched is not None:
            self._watched.events.paint.disconnect(self._on_paint)
            self._watched = None

    def _on_paint(self, _event=None) -> None:
        self._later()

    def _auto_update(self) -> None:
        if self.auto.isChecked():
            self.preview(auto=True)


def show_preview(
    viewer, image: Image, index: int, mask: np.ndarray, mask_classes: list[str]
) -> Labels:
    """Show ``mask`` as slice ``index`` of ``image`` in its preview layer (made on first use).

    The layer holds that one slice, placed on it with the image's scale, units and offset, so
    it shows on that slice only; it sits just under the image's stroke layer, and the layer
    the user had selected stays selected (the next stroke goes where the last one went).
    """
    data = mask[None] if image.ndim == 3 else mask
    translate = np.array(image.translate, float)
    if image.ndim == 3:
        translate[0] += index * image.scale[0]
    name = preview_layer_name(image)
    active = viewer.layers.selection.active
    if name in viewer.layers and viewer.layers[name].data.shape == data.shape:
        preview = viewer.layers[name]
        preview.data = data
        preview.scale, preview.translate, preview.units = image.scale, translate, image.units
    else:
        if name in viewer.layers:
            viewer.layers.remove(name)
        preview = viewer.add_labels(
            data,
            name=name,
            scale=image.scale,
            translate=translate,
            units=image.units,
            opacity=0.5,
        )
        strokes = masks_of(viewer, image)
        if strokes is not None:
            viewer.layers.move(viewer.layers.index(preview), viewer.layers.index(strokes))
    preview.metadata.update({IMAGE_KEY: image.name, SLICE_KEY: index})
    preview.metadata["mask_classes"] = list(mask_classes)
    preview.features = dense_features(mask_classes)
    preview.colormap = DirectLabelColormap(color_dict=dense_colors(mask_classes))
    if active is not None and active in viewer.layers:
        viewer.layers.selection.active = active
    return preview
