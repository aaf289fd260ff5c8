"""Measure dock widget: domain sizes in nm from a mask, as a table, histograms and CSV.

Measures the segmentation the Predict widget added (the newest "<image> segmentation" layer is
picked by default; any dense mask works, and a training mask counts its painted classes), for
the slice on screen or every slice, in the background. Widths, lengths and areas are in nm
from the layer's pixel size. The measured domains become a Labels layer "<mask> domains" whose
``features`` hold every measurement (napari's features table shows them); selecting a table
row shows that domain's slice, centres the view on it and highlights it. Domains below the
minimum area are hidden from the table and histograms unless "show domains below the minimum
area" is ticked; the length histogram, like the summary, leaves out domains cut by the image
edge and stubs (see core.measure.selection).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox
from napari.layers import Labels
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_nanowire.core.errors import NanowireError
from napari_nanowire.core.masks import dense
from napari_nanowire.core.progress import Progress

from .layers import current_slice, go_to_slice, layer_picker, slice_count, slice_names
from .masks import dense_class_names, is_training_mask
from .notify import report_error
from .pixel_size import layer_pixel_size_nm
from .plots import HistogramPlot
from .state import state_for, unwrap_viewer
from .table import DataFrameModel, frame_view
from .workers import JobPanel, launch, show_fraction

if TYPE_CHECKING:
    import napari

SCOPES = (("slice on screen", "current"), ("all slices", "all"))
VIEWS = (("per domain", "domains"), ("per image", "summary"))
SEGMENTATION_SUFFIX = " segmentation"
"""The Predict widget names its mask layers "<image> segmentation"."""
DOMAINS_SUFFIX = " domains"
MODEL_MIN_AREA_KEY = "min_object_nm2"
"""Mask layer metadata key for the segmenter's post-processing minimum area, if known."""
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
        self.measured: Labels | None = None  # the mask layer the tables came from
        self.domain_layer: Labels | None = None
        self.options = None  # the MeasureOptions of the tables shown
        self.slice_of: dict[str, int] = {}
        self.mask = layer_picker(self.viewer, Labels, "mask")
        self.scope = ComboBox(label="measure", choices=SCOPES, value="current")
        self.exclude_border = CheckBox(text="leave out domains touching the border")
        self.split_touching = CheckBox(text="split touching particles")
        self.split_touching.tooltip = (
            "Measure touching particles one by one (watershed of the distance transform); "
            "off: a clump of touching particles is one domain."
        )
        self.auto_min_area = CheckBox(text="automatic minimum area", value=True)
        self.min_area = FloatSpinBox(
            label="min. area (nm²)", min=0, max=1e9, value=0, step=1, enabled=False
        )
        self.show_small = CheckBox(text="show domains below the minimum area")
        self.view = ComboBox(label="table", choices=VIEWS, value="domains")
        self.form = Container(
            widgets=[
                self.mask,
                self.scope,
                self.exclude_border,
                self.split_touching,
                self.auto_min_area,
                self.min_area,
                self.show_small,
            ]
        )
        self.measure_button = QPushButton("Measure")
        self.export_button = QPushButton("Export CSV…")
        self.panel = JobPanel(
            self.state.runner, "Segment the images (Predict widget), then measure."
        )
        self.bar, self.status = self.panel.bar, self.panel.status
        self.model = DataFrameModel()
        self.table = frame_view(self.model)
        self.histograms = HistogramPlot(self.viewer.theme)
        self._build_layout()
        self.measure_button.clicked.connect(self.measure)
        self.export_button.clicked.connect(self._ask_export)
        self.view.changed.connect(self._show_table)
        self.show_small.changed.connect(self._show_filtered)
        self.auto_min_area.changed.connect(self._show_min_area)
        self.mask.changed.connect(self._show_min_area)
        self.table.selectionModel().selectionChanged.connect(self._on_row_selected)
        self.reset_choices()

    def _build_layout(self) -> None:
        buttons = QHBoxLayout()
        buttons.addWidget(self.measure_button)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addLayout(buttons)
        layout.addWidget(self.panel)
        layout.addWidget(self.view.native)
        layout.addWidget(self.table, stretch=1)
        layout.addWidget(self.histograms)

    def reset_choices(self, *_) -> None:
        """Refresh the layer list (napari calls this when layers change).

        The mask defaults to the newest segmentation layer ("<image> segmentation"): when
        nothing, a training-stroke layer or one of our domain layers is chosen, the newest
        segmentation layer (else the newest other mask) takes its place.
        """
        self.form.reset_choices()
        layer = self.mask.value
        if layer is None or self._rarely_measured(layer):
            labels = [c for c in reversed(self.viewer.layers) if isinstance(c, Labels)]
            segmentations = [c for c in labels if c.name.endswith(SEGMENTATION_SUFFIX)]
            others = [c for c in labels if not self._rarely_measured(c)]
            best = (segmentations or others or [layer])[0]
            if best is not layer:
                self.mask.value = best
        self._show_min_area()

    def _rarely_measured(self, layer: Labels) -> bool:
        """True for layers one rarely measures: training strokes and our own domain layers."""
        return is_training_mask(layer) or layer.name.endswith(DOMAINS_SUFFIX)

    def _min_area_settings(self) -> tuple[float | None, float | None]:
        """(minimum area or None for automatic, the mask's segmenter minimum if recorded)."""
        layer = self.mask.value
        model_min = layer.metadata.get(MODEL_MIN_AREA_KEY) if layer is not None else None
        return (None if self.auto_min_area.value else self.min_area.value), model_min

    def _show_min_area(self, *_) -> None:
        """Show the automatic minimum area for the chosen mask's pixel size in the field."""
        from napari_nanowire.core.measure.selection import auto_min_area_nm2

        self.min_area.enabled = not self.auto_min_area.value
        layer = self.mask.value
        if self.auto_min_area.value and layer is not None:
            px = layer_pixel_size_nm(layer) or 1.0
            self.min_area.value = auto_min_area_nm2(px, self._min_area_settings()[1])

    def measure(self) -> bool:
        """Measure the chosen slices in the background; False if it could not start."""
        return launch(
            self.state.runner,
            "Measuring",
            self._job,
            self.panel,
            self,
            on_progress=self._on_progress,
            on_done=self._show_results,
        )

    def _job(self):
        from napari_nanowire.core.measure import MeasureOptions
        from napari_nanowire.core.measure.domains import domain_label_image
        from napari_nanowire.core.measure.tables import measure_masks

        layer = self.mask.value
        if layer is None:
            raise NanowireError("No mask layer: segment the images in the Predict widget first.")
        px = layer_pixel_size_nm(layer)
        if px is None:
            show_warning(
                f"The pixel size of '{layer.name}' is unknown, so sizes are in pixels (1 nm/px "
                "assumed). Set it in the Pixel size widget for values in nm."
            )
        min_area, model_min = self._min_area_settings()
        options = MeasureOptions(
            pixel_size_nm=px or 1.0,
            exclude_border=self.exclude_border.value,
            split_touching=self.split_touching.value,
            min_area_nm2=min_area,
            model_min_area_nm2=model_min,
            class_names=dense_class_names(layer),
        )
        self.options = options
        indices = (
            [current_slice(self.viewer, layer)]
            if self.scope.value == "current"
            else list(range(slice_count(layer)))
        )
        data, names, training = layer.data, slice_names(layer), is_training_mask(layer)

        def job(stop):
            domains, summaries, label_images, first = [], [], {}, 1
            for k, i in enumerate(indices):
                if stop.is_set():
                    break
                mask = dense(data if data.ndim == 2 else data[i], training)
                d, s = measure_masks([(names[i], mask, px)], options)
                label_images[i] = domain_label_image(
                    mask, d, options.connectivity, first, options.split_touching
                )
                domains.append(d.assign(label=np.arange(first, first + len(d)), slice=i))
                first += len(d)
                summaries.append(s)
                yield Progress("measure", k + 1, len(indices), message=names[i])
            if not domains:
                return None
            tables = pd.concat(domains, ignore_index=True), pd.concat(summaries, ignore_index=True)
            return (layer, *tables, label_images)

        return job

    def _on_progress(self, event: Progress) -> None:
        show_fraction(self.bar, event.fraction)
        if self.state.runner.running:  # a late event must not hide the results' message
            self.status.setText(f"Measuring {event.step} of {event.total_steps}: {event.message}")

    def _show_results(self, result: tuple | None) -> None:
        if result is None:
            return
        self.measured, self.domains, self.summary, label_images = result
        self.slice_of = {name: i for i, name in enumerate(slice_names(self.measured))}
        self._show_domain_layer(label_images)
        images = self.summary["image"].nunique() if len(self.summary) else 0
        small = int(self.summary["excluded_small"].sum()) if len(self.summary) else 0
        self.status.setText(
            f"{len(self.domains)} domains in {images} image(s); {small} below the minimum "
            "area are left out of the summary. Select a row to see its domain."
        )
        self._show_filtered()

    def _show_domain_layer(self, label_images: dict[int, np.ndarray]) -> None:
        """Put the measured domains, with their measurements as features, into a Labels layer."""
        mask = self.measured
        name = f"{mask.name}{DOMAINS_SUFFIX}"
        if name in self.viewer.layers and self.viewer.layers[name].data.shape == mask.data.shape:
            layer = self.viewer.layers[name]
            layer.data = np.zeros(mask.data.shape, np.int32)
        else:
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            layer = self.viewer.add_labels(
                np.zeros(mask.data.shape, np.int32),
                name=name,
                scale=mask.scale,
                units=mask.units,  # in the mask's nm, or napari mixes units and drops them
                translate=mask.translate,
                opacity=0.8,
            )
            layer.contour = 1
        for i, labels in label_images.items():
            if layer.ndim == 2:
                layer.data = labels
            else:
                layer.data[i] = labels
        layer.features = self.domains.rename(columns={"label": "index"})
        layer.refresh()
        self.domain_layer = layer

    def _visible_domains(self) -> pd.DataFrame:
        """The domain rows the filter lets through (small ones only when asked for)."""
        from napari_nanowire.core.measure.selection import counted

        return self.domains[counted(self.domains, self.show_small.value)]

    def _show_filtered(self, *_) -> None:
        """Table and histograms of the domains the filters let through."""
        from napari_nanowire.core.measure.selection import length_measurable

        self._show_table()
        domains = self._visible_domains()
        lengths = domains[length_measurable(domains)]
        empty = pd.Series(dtype=float)
        self.histograms.plot(
            [
                (label, (lengths if column == "length_nm" else domains).get(column, empty))
                for label, column in HISTOGRAMS
            ]
        )

    def _on_row_selected(self, *_) -> None:
        """Show the selected row's slice; for a domain, centre on it and highlight it."""
        rows = self.table.selectionModel().selectedRows()
        if not rows or self.measured is None or self.measured not in self.viewer.layers:
            return
        row = self.model.frame.iloc[rows[0].row()]
        index = self.slice_of.get(row["image"], 0)
        go_to_slice(self.viewer, self.measured, index)
        if "label" not in row or self.domain_layer not in self.viewer.layers:
            return
        self.show_domain(int(row["label"]))

    def show_domain(self, label: int) -> None:
        """Centre the view on the domain with this label and highlight it."""
        row = self.domains[self.domains["label"] == label].iloc[0]
        point = [row["centroid_y_px"], row["centroid_x_px"]]
        if self.measured.ndim == 3:
            point = [row["slice"], *point]
        world = self.measured.data_to_world(point)
        self.viewer.camera.center = tuple(world[-2:])
        self.domain_layer.selected_label = label
        self.domain_layer.show_selected_label = True

    def _show_table(self, *_) -> None:
        """The chosen table, with the columns a microscopist reads first on the left."""
        domains = self.view.value == "domains"
        table = self._visible_domains() if domains else self.summary
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
            paths = write_tables(self.domains, self.summary, folder, self.options)
        except OSError as err:
            report_error("Exporting the tables", err)
            return None
        show_info(f"Wrote {paths[0].name} and {paths[1].name} to {folder}.")
        return paths
