"""Measure dock widget: domain sizes in nm from a mask, as a table, histograms and CSV.

Measures the segmentation the Predict widget added (or any dense mask; a training mask counts
its painted classes), for the slice on screen or every slice, in the background. Widths,
lengths and areas are in nm from the layer's pixel size.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox
from napari.layers import Labels
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.masks import dense
from napari_nanowire.core.progress import Progress

from .layers import current_slice, layer_picker, slice_count, slice_names
from .masks import dense_class_names, is_training_mask
from .notify import report_error
from .pixel_size_widget import layer_pixel_size_nm
from .plots import HistogramPlot
from .state import state_for, unwrap_viewer
from .table import DataFrameModel, frame_view
from .workers import show_fraction

if TYPE_CHECKING:
    import napari

SCOPES = (("slice on screen", "current"), ("all slices", "all"))
VIEWS = (("per domain", "domains"), ("per image", "summary"))
FIRST_DOMAIN_COLUMNS = (
    "image",
    "class_name",
    "domain_id",
    "width_mean_nm",
    "length_nm",
    "area_nm2",
)
FIRST_SUMMARY_COLUMNS = (
    "image",
    "class_name",
    "area_fraction",
    "domain_count",
    "width_median_nm",
    "length_median_nm",
    "percolates_x",
    "percolates_y",
    "nematic_order",
)
HISTOGRAMS = (
    ("width (nm)", "width_mean_nm"),
    ("length (nm)", "length_nm"),
    ("area (nm²)", "area_nm2"),
)


class MeasureWidget(QWidget):
    """Options, Measure and Export buttons, the result table and histograms."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = unwrap_viewer(napari_viewer)
        self.state = state_for(self.viewer)
        self.domains = pd.DataFrame()
        self.summary = pd.DataFrame()
        self.mask = layer_picker(self.viewer, Labels, "mask")
        self.scope = ComboBox(label="measure", choices=SCOPES, value="current")
        self.exclude_border = CheckBox(text="leave out domains touching the border")
        self.min_area = FloatSpinBox(label="min. area (nm²)", min=0, max=1e9, value=0)
        self.view = ComboBox(label="table", choices=VIEWS, value="domains")
        self.form = Container(widgets=[self.mask, self.scope, self.exclude_border, self.min_area])
        self.measure_button = QPushButton("Measure")
        self.export_button = QPushButton("Export CSV…")
        self.bar = QProgressBar()
        self.status = QLabel("Segment the images (Predict widget), then measure.")
        self.status.setWordWrap(True)
        self.model = DataFrameModel()
        self.table = frame_view(self.model)
        self.histograms = HistogramPlot(self.viewer.theme)
        self._build_layout()
        self.measure_button.clicked.connect(self.measure)
        self.export_button.clicked.connect(self._ask_export)
        self.view.changed.connect(self._show_table)

    def _build_layout(self) -> None:
        buttons = QHBoxLayout()
        buttons.addWidget(self.measure_button)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addLayout(buttons)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        layout.addWidget(self.view.native)
        layout.addWidget(self.table, stretch=1)
        layout.addWidget(self.histograms)

    def reset_choices(self, *_) -> None:
        """Refresh the layer list (napari calls this when layers change)."""
        self.form.reset_choices()

    def measure(self) -> bool:
        """Measure the chosen slices in the background; False if it could not start."""
        title = "Measuring"
        if self.state.runner.busy(title):
            return False
        try:
            job = self._job()
        except NanowireError as err:
            report_error(title, err)
            return False
        show_fraction(self.bar, 0.0)
        return self.state.runner.start(
            title, job, on_progress=self._on_progress, on_done=self._show_results
        )

    def _job(self):
        from napari_nanowire.core.measure.tables import MeasureOptions, measure_masks

        layer = self.mask.value
        if layer is None:
            raise NanowireError("No mask layer: segment the images in the Predict widget first.")
        px = layer_pixel_size_nm(layer)
        if px is None:
            show_warning(
                f"The pixel size of '{layer.name}' is unknown, so sizes are in pixels (1 nm/px "
                "assumed). Set it in the Pixel size widget for values in nm."
            )
        options = MeasureOptions(
            pixel_size_nm=px or 1.0,
            exclude_border=self.exclude_border.value,
            min_area_nm2=self.min_area.value,
            class_names=dense_class_names(layer),
        )
        indices = (
            [current_slice(self.viewer, layer)]
            if self.scope.value == "current"
            else list(range(slice_count(layer)))
        )
        data, names, training = layer.data, slice_names(layer), is_training_mask(layer)

        def job(stop):
            domains, summaries = [], []
            for k, i in enumerate(indices):
                if stop.is_set():
                    break
                mask = dense(data if data.ndim == 2 else data[i], training)
                d, s = measure_masks([(names[i], mask, px)], options)
                domains.append(d)
                summaries.append(s)
                yield Progress("measure", k + 1, len(indices), message=names[i])
            if not domains:
                return None
            return pd.concat(domains, ignore_index=True), pd.concat(summaries, ignore_index=True)

        return job

    def _on_progress(self, event: Progress) -> None:
        show_fraction(self.bar, event.fraction)
        self.status.setText(f"Measuring {event.step} of {event.total_steps}: {event.message}")

    def _show_results(self, result: tuple[pd.DataFrame, pd.DataFrame] | None) -> None:
        if result is None:
            return
        self.domains, self.summary = result
        images = self.summary["image"].nunique() if len(self.summary) else 0
        self.status.setText(f"{len(self.domains)} domains in {images} image(s).")
        self._show_table()
        self.histograms.plot(
            [
                (label, self.domains.get(column, pd.Series(dtype=float)).to_numpy())
                for label, column in HISTOGRAMS
            ]
        )

    def _show_table(self, *_) -> None:
        """The chosen table, with the columns a microscopist reads first on the left."""
        domains = self.view.value == "domains"
        table = self.domains if domains else self.summary
        first = [
            c for c in (FIRST_DOMAIN_COLUMNS if domains else FIRST_SUMMARY_COLUMNS) if c in table
        ]
        self.model.set_frame(table[first + [c for c in table if c not in first]])

    def _ask_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for domains.csv and summary.csv")
        if folder:
            self.export(Path(folder))

    def export(self, folder: Path) -> tuple[Path, Path] | None:
        """Write ``domains.csv`` and ``summary.csv`` into ``folder``."""
        from napari_nanowire.core.measure.tables import write_tables

        if self.domains.empty and self.summary.empty:
            show_info("Nothing to export yet: press Measure first.")
            return None
        try:
            paths = write_tables(self.domains, self.summary, folder)
        except OSError as err:
            report_error("Exporting the tables", err)
            return None
        show_info(f"Wrote {paths[0].name} and {paths[1].name} to {folder}.")
        return paths
