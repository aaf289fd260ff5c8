"""Matplotlib plots inside the dock widgets: the live training curve and measurement histograms.

Both draw on a Qt canvas coloured like napari's theme. The training curve gets an event per
step but redraws at most five times a second, so plotting never slows the viewer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.utils.theme import get_theme
from superqt.utils import qthrottled

from napari_nanowire.core.progress import Progress

REDRAW_MS = 200
LOSS_COLOR = "#56b4e9"
ACCURACY_COLORS = ("#e69f00", "#009e73", "#cc79a7", "#f0e442")
ACCURACY_KEYS = ("knn_accuracy", "cv_accuracy", "train_accuracy", "train_iou")
"""Metrics between 0 and 1 that go on the right axis, in the order of their colours."""


class ThemedCanvas(FigureCanvasQTAgg):
    """A matplotlib canvas in the colours of a napari theme."""

    def __init__(self, theme: str = "dark", height: float = 2.4) -> None:
        colors = get_theme(theme)
        self.background = colors.background.as_hex()
        self.text = colors.text.as_hex()
        super().__init__(Figure(figsize=(4, height), facecolor=self.background, layout="tight"))
        self.setMinimumHeight(int(height * 70))

    def style(self, ax) -> None:
        """Theme colours for one axes."""
        ax.set_facecolor(self.background)
        ax.tick_params(colors=self.text, labelsize=8)
        for spine in ax.spines.values():
            spine.set_color(self.text)
        ax.xaxis.label.set_color(self.text)
        ax.yaxis.label.set_color(self.text)
        ax.title.set_color(self.text)


class LossPlot(ThemedCanvas):
    """Loss per step on the left axis; accuracy-like metrics (0-1) on the right."""

    def __init__(self, theme: str = "dark") -> None:
        super().__init__(theme)
        self.loss_ax = self.figure.add_subplot()
        self.metric_ax = self.loss_ax.twinx()
        self.title = ""
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.metrics: dict[str, list[tuple[int, float]]] = {}
        self._redraw = qthrottled(self.redraw, timeout=REDRAW_MS)
        self.redraw()

    def start(self, title: str) -> None:
        """Forget the previous run and show an empty plot titled ``title``."""
        self.title = title
        self.steps, self.losses, self.metrics = [], [], {}
        self.redraw()

    def add(self, event: Progress) -> None:
        """Record one progress event; the plot follows within a fifth of a second."""
        if event.loss is not None:
            self.steps.append(event.step)
            self.losses.append(event.loss)
        for key, value in event.metrics.items():
            if key in ACCURACY_KEYS and value is not None and np.isfinite(value):
                self.metrics.setdefault(key, []).append((event.step, float(value)))
        self._redraw()

    def finish(self) -> None:
        """Draw what arrived since the last redraw."""
        self._redraw.flush()

    def redraw(self) -> None:
        """Draw the curves now."""
        loss_ax, metric_ax = self.loss_ax, self.metric_ax
        loss_ax.clear()
        metric_ax.clear()
        for ax in (loss_ax, metric_ax):
            self.style(ax)
        loss_ax.set_title(self.title or "training curve: starts with a training run", fontsize=9)
        loss_ax.set_xlabel("step", fontsize=8)
        loss_ax.set_ylabel("loss", fontsize=8, color=LOSS_COLOR)
        if self.losses:
            loss_ax.plot(self.steps, self.losses, color=LOSS_COLOR, linewidth=1.2)
        metric_ax.set_ylim(0, 1.02)
        metric_ax.set_ylabel("accuracy", fontsize=8)
        handles = []
        for key, color in zip(ACCURACY_KEYS, ACCURACY_COLORS, strict=True):
            points = self.metrics.get(key)
            if points:
                xs, ys = zip(*points, strict=True)
                (line,) = metric_ax.plot(xs, ys, "o-", color=color, markersize=4, label=key)
                handles.append(line)
        if handles:
            legend = metric_ax.legend(handles=handles, fontsize=7, loc="lower left")
            legend.get_frame().set_facecolor(self.background)
            for text in legend.get_texts():
                text.set_color(self.text)
        self.draw_idle()


class HistogramPlot(ThemedCanvas):
    """Side-by-side histograms of a few table columns (e.g. width, length, area in nm)."""

    def __init__(self, theme: str = "dark") -> None:
        super().__init__(theme, height=2.2)

    def plot(self, columns: Sequence[tuple[str, np.ndarray]]) -> None:
        """One histogram per (axis label, values); NaNs are left out, empty panels say so."""
        self.figure.clear()
        for i, (label, values) in enumerate(columns):
            ax = self.figure.add_subplot(1, len(columns), i + 1)
            self.style(ax)
            values = np.asarray(values, dtype=float)
            values = values[np.isfinite(values)]
            if values.size:
                ax.hist(values, bins=min(30, max(5, values.size // 3)), color=LOSS_COLOR)
            else:
                ax.text(
                    0.5,
                    0.5,
                    "no domains",
                    ha="center",
                    va="center",
                    color=self.text,
                    transform=ax.transAxes,
                    fontsize=8,
                )
            ax.set_xlabel(label, fontsize=8)
        if columns:
            self.figure.axes[0].set_ylabel("domains", fontsize=8)
        self.draw_idle()
