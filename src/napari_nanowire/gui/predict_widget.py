"""Predict dock widget: a class and a confidence for every slice, "label these next", masks.

Classifying writes each slice's predicted class and confidence onto the canvas (a Points layer
whose text comes from its features table) and into a table; unlabelled slices typical of what
no labelled slice covers yet are marked "label next" (:func:`label_next`). Segmenting adds
the predicted mask (0 = background, 1.. = mask classes) as a Labels layer over the image.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, SpinBox
from napari.layers import Image
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.progress import Progress

from .layers import (
    Slices,
    check_image_layer,
    current_slice,
    go_to_slice,
    layer_picker,
    shown_names,
    slice_count,
)
from .masks import dense_colors, dense_features, write_slice
from .pixel_size import IMAGE_KEY
from .series import series_of
from .state import slice_labels, state_for, unwrap_viewer
from .table import DataFrameModel, frame_view
from .torch_guard import import_torchvision
from .workers import JobPanel, launch

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels, Points

    from napari_nanowire.core.predict import ClassPrediction

SCOPES = (("slice on screen", "current"), ("all slices", "all"))
MODELS_CHOICE = "as the model chose"
MODEL_OR_FORCED = {MODELS_CHOICE: None, "yes": True, "no": False}
"""Choices of a setting the model chose in training, and the option each gives (None keeps
the model's)."""


def classify_slices(path: Path, slices: Slices, stop) -> Iterator[Progress]:
    """Classify every slice of ``slices`` with the model in ``path``, one slice a step.

    Slices are read one at a time, so a lazy (dask or memory-mapped) stack is never loaded
    whole and the images of a series are read from their files, each with its pixel size.
    Returns the :class:`ClassPrediction` and the classifier's held-out metrics (its estimated
    accuracy), or None when stopped.
    """
    from napari_nanowire.core.predict import Predictor, classify_frames

    predictor = Predictor.load(path)
    prediction = yield from classify_frames(predictor, slices.items(), len(slices), stop)
    return None if prediction is None else (prediction, predictor.meta.classifier.metrics)


def segment_slices(
    path: Path, slices: Slices, indices: list[int], stop, options: dict | None = None
):
    """Masks of the slices ``indices`` of ``slices`` with the segmenter in ``path``, with the
    clean-up ``options`` of :meth:`Predictor.configure` (None: the model's).

    Slices are read one at a time (see :func:`classify_slices`). Returns (indices, masks,
    mask class names), or None when stopped.
    """
    from napari_nanowire.core.predict import Predictor

    predictor = Predictor.load(path)
    predictor.require("segmenter")
    predictor.configure(**(options or {}))
    masks = []
    for _, result in predictor.predict_each(slices.items(indices), ["segmenter"], stop=stop):
        masks.append(result.mask.mask)
        yield Progress("predict", len(masks), len(indices), message="segmented")
    if len(masks) < len(indices):  # stopped
        return None
    return indices, masks, predictor.mask_classes


class PredictWidget(QWidget):
    """Classify and Segment buttons, suggestions, progress and the prediction table."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        import_torchvision()
        super().__init__()
        self.viewer = unwrap_viewer(napari_viewer)
        self.state = state_for(self.viewer)
        self.predictions = pd.DataFrame()
        self.image = layer_picker(self.viewer, Image, "images")
        self.suggest = SpinBox(label="suggest next", min=1, max=100, value=5)
        self.scope = ComboBox(label="segment", choices=SCOPES, value="current")
        self.clean = CheckBox(text="clean up masks (drop specks, fill small holes)", value=True)
        self.min_size = FloatSpinBox(
            label="min. object, hole (nm², 0 = model's)", min=0.0, max=1e9, step=1.0, value=0.0
        )
        self.min_size.tooltip = (
            "Objects and holes smaller than this are removed and filled: nm² for calibrated "
            "images, px² for uncalibrated ones. 0 keeps the model's (16 working pixels)."
        )
        self.fill_holes = ComboBox(
            label="fill every enclosed hole", choices=list(MODEL_OR_FORCED), value=MODELS_CHOICE
        )
        self.fill_holes.tooltip = (
            "Fill holes up to a quarter of the image, as particles left as rings need; not for "
            "wire networks, which enclose background. The model chose on its held-out labels."
        )
        self.refine = ComboBox(
            label="refine with grey levels", choices=list(MODEL_OR_FORCED), value=MODELS_CHOICE
        )
        self.refine.tooltip = (
            "Sharpen the net's borders with each image's grey levels (objects and background "
            "of different brightness, as particles on a support); little changes where they "
            "share grey levels. Segmenters trained with this version refine by default."
        )
        self.form = Container(
            widgets=[
                self.image,
                self.suggest,
                self.scope,
                self.clean,
                self.min_size,
                self.fill_holes,
                self.refine,
            ]
        )
        self.classify_button = QPushButton("Classify all slices")
        self.next_button = QPushButton("Go to next suggestion")
        self.segment_button = QPushButton("Segment")
        self.panel = JobPanel(
            self.state.runner, "Train a classifier or a segmenter first (Train widget)."
        )
        self.bar, self.stop_button, self.status = (
            self.panel.bar,
            self.panel.stop_button,
            self.panel.status,
        )
        self.model = DataFrameModel()
        self.table = frame_view(self.model)
        self._build_layout()
        self.classify_button.clicked.connect(self.classify)
        self.next_button.clicked.connect(self.next_suggestion)
        self.segment_button.clicked.connect(self.segment)
        self.table.clicked.connect(self._go_to_row)
        self.state.labels_changed.connect(self._on_labels)

    def _build_layout(self) -> None:
        row = QHBoxLayout()
        for button in (self.classify_button, self.next_button, self.segment_button):
            row.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addLayout(row)
        layout.addWidget(self.panel)
        layout.addWidget(self.table, stretch=1)

    def reset_choices(self, *_) -> None:
        """Refresh the layer list (napari calls this when layers change)."""
        self.form.reset_choices()

    def classify(self) -> bool:
        """Predict the class of every slice in the background; False if it did not start."""
        return self._launch("Classifying", self._classify_job, self._show_classes)

    def segment(self) -> bool:
        """Predict masks for the slice on screen or all slices; False if it did not start."""
        return self._launch("Segmenting", self._segment_job, self._show_masks)

    def _launch(self, title: str, prepare, show) -> bool:
        """Start the job ``prepare()`` makes; ``show(layer, result)`` shows what it returns."""
        target: list[Image] = []  # the layer the job works on, known once prepared

        def job():
            job, layer = prepare()
            target.append(layer)
            return job

        return launch(
            self.state.runner,
            title,
            job,
            self.panel,
            self,
            on_progress=self._on_progress,
            on_done=lambda result: result is not None and show(target[0], result),
        )

    def _inputs(self, kind: str) -> tuple[Image, object]:
        layer = self.image.value
        if layer is None:
            raise NanowireError("No image layer: open your TEM images (or File > Open Sample).")
        check_image_layer(layer)
        path = self.state.models.get(kind)
        if path is None or not path.is_file():
            raise NanowireError(f"No {kind} yet: train one in the Train widget first.")
        return layer, path

    def _classify_job(self):
        layer, path = self._inputs("classifier")
        slices = Slices(layer)
        return (lambda stop: classify_slices(path, slices, stop)), layer

    def _segment_job(self):
        layer, path = self._inputs("segmenter")
        slices = Slices(layer)
        indices = (
            [current_slice(self.viewer, layer)]
            if self.scope.value == "current"
            else list(range(slice_count(layer)))
        )
        options = self.cleanup_options()
        return (lambda stop: segment_slices(path, slices, indices, stop, options)), layer

    def cleanup_options(self) -> dict:
        """The mask clean-up asked for in the form, as :meth:`Predictor.configure` options."""
        if not self.clean.value:
            return {"postprocess": False}
        options: dict = {"postprocess": True}
        if self.min_size.value > 0:
            size = float(self.min_size.value)
            options.update(
                min_object_nm2=size, min_hole_nm2=size, min_object_px2=size, min_hole_px2=size
            )
        for name, box in (("fill_holes", self.fill_holes), ("refine_intensity", self.refine)):
            if MODEL_OR_FORCED[box.value] is not None:
                options[name] = MODEL_OR_FORCED[box.value]
        return options

    def _on_progress(self, event: Progress) -> None:
        self.panel.show_progress(
            event, f"{event.step} of {event.total_steps} images {event.message}"
        )

    def _show_classes(self, layer: Image, result: tuple[ClassPrediction, dict]) -> None:
        """Table, canvas text and suggestions from the prediction of every slice, and the
        classifier's estimated accuracy, by which to read its per-slice confidences."""
        from napari_nanowire.core.heads.calibrate import accuracy_summary
        from napari_nanowire.core.predict import NEXT_MARK, ranked_table

        prediction, metrics = result

        names = self.state.names_of(layer)
        self.predictions = ranked_table(prediction, names, slice_labels(layer), self.suggest.value)
        self.model.set_frame(self.predictions)
        self._show_on_canvas(layer)
        series = series_of(layer)
        if series is not None and self._paged not in series.paged:
            series.paged.connect(self._paged)
        marked = int(self.predictions[NEXT_MARK].notna().sum())
        self.status.setText(
            f"Classified {len(names)} slices; {marked} marked '{NEXT_MARK}' (typical of what no "
            f"label covers yet). Estimated accuracy: {accuracy_summary(metrics)}; the "
            "percentages on the slices are confidences calibrated on your labelled slices."
        )

    def _show_on_canvas(self, layer: Image) -> Points:
        """A text per slice at its top-left corner: class, confidence, and the suggestion."""
        from napari_nanowire.core.predict import NEXT_MARK

        table = self.predictions
        text = [
            f"{cls} {conf:.0%}" + ("" if pd.isna(rank) else f"  ← label next ({rank})")
            for cls, conf, rank in zip(
                table["predicted"], table["confidence"], table[NEXT_MARK], strict=True
            )
        ]
        features = table.assign(text=text).rename(
            columns={"your label": "your_label", NEXT_MARK: "label_next"}
        )
        points = np.array([[i, 2, 2] for i in table["slice"]], dtype=float)
        series = series_of(layer)
        if series is not None:  # one image on screen: its row only
            shown = (table["slice"] == series.index).to_numpy()
            points, features = points[shown], features[shown].reset_index(drop=True)
        if layer.ndim == 2:
            points = points[:, 1:]
        name = f"{layer.name} predictions"
        text_style = {
            "string": "{text}",
            "anchor": "upper_left",
            "size": 12,
            "color": {
                "encoding_type": "ManualColorEncoding",
                "array": [self.state.color_of(c) for c in features["predicted"]],
            },
        }
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        added = self.viewer.add_points(
            points,
            features=features,
            text=text_style,
            size=0.1,
            name=name,
            scale=layer.scale,
            translate=layer.translate,
            units=layer.units,
            metadata={IMAGE_KEY: layer.name},
            face_color="transparent",
            border_width=0,
            out_of_slice_display=False,
        )
        self.viewer.layers.selection.active = layer
        return added

    def _show_masks(self, layer: Image, result) -> Labels:
        """Put predicted masks into the image's segmentation layer (made on first use)."""
        indices, masks, mask_classes = result
        name = f"{layer.name} segmentation"
        if name not in self.viewer.layers:
            shape = layer.data.shape
            self.viewer.add_labels(
                np.zeros(shape, np.uint8),
                name=name,
                scale=layer.scale,
                translate=layer.translate,
                units=layer.units,
                opacity=0.5,
                metadata={
                    IMAGE_KEY: layer.name,
                    "names": shown_names(layer)
                    if series_of(layer) is not None
                    else self.state.names_of(layer),
                },
            )
        seg = self.viewer.layers[name]
        series = series_of(layer)
        with seg.block_history():  # one undo step for the whole prediction
            for index, mask in zip(indices, masks, strict=True):
                if series is not None and index != series.index:  # shown when paged to
                    series.stash.setdefault(name, {})[index] = np.asarray(mask, np.uint8)
                else:
                    write_slice(seg, index, mask)
        seg.metadata["mask_classes"] = list(mask_classes)
        seg.features = dense_features(mask_classes)  # names each class in the status bar
        seg.colormap = DirectLabelColormap(color_dict=dense_colors(mask_classes))
        self.viewer.layers.selection.active = layer
        self.status.setText(f"Segmented {len(indices)} slice(s) into layer '{name}'.")
        return seg

    def _paged(self, _index: int) -> None:
        """Show the prediction of the image a series pages to."""
        layer = self.image.value
        if not self.predictions.empty and series_of(layer) is not None:
            self._show_on_canvas(layer)

    def next_suggestion(self) -> int | None:
        """Show the first slice by "label next" rank that is still unlabelled; its index."""
        layer = self.image.value
        if layer is None or self.predictions.empty:
            show_info("Classify the slices first: suggestions come from the predictions.")
            return None
        from napari_nanowire.core.predict import suggestions  # loaded with the classifier

        labels = slice_labels(layer)
        for index in suggestions(self.predictions)["slice"]:
            if labels[index] is None:
                go_to_slice(self.viewer, layer, int(index))
                return int(index)
        show_info("Every suggested slice has a label now: train the classifier again.")
        return None

    def _on_labels(self, layer) -> None:
        """Keep the table's "your label" column in step with the Label widget."""
        if self.predictions.empty or layer is not self.image.value:
            return
        self.predictions["your label"] = [label or "" for label in slice_labels(layer)]
        self.model.set_frame(self.predictions)

    def _go_to_row(self, index) -> None:
        layer = self.image.value
        if layer is not None and not self.predictions.empty:  # the rows as shown (sorted)
            go_to_slice(self.viewer, layer, int(self.model.frame["slice"].iat[index.row()]))
