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
ACCURACY_COLORS = ("#e69f00", "#009e73", "#cc79a7")
ACCURACY_KEYS = ("knn_accuracy", "cv_accuracy", "val_iou")
"""Metrics between 0 and 1 that go on the right axis, in the order of their colours: measured
on images the head was not fitted to (k-NN on held-out crops, cross-validated accuracy of the
classifier, IoU of the segmenter on held-out labels), never accuracy on the training labels."""


class ThemedCanvas(FigureCanvasQTAgg):
    """A matplotlib canvas in the colours of a napari theme, with fixed margins.

    Fixed margins instead of a tight layout: recomputing the layout made every redraw of the
    training curve cost about 170 ms of the main thread.
    """

    def __init__(
        self, theme: str = "dark", height: float = 2.4, right: float = 0.88, bottom: float = 0.2
    ) -> None:
        colors = get_theme(theme)
        self.background = colors.background.as_hex()
        self.text = colors.text.as_hex()
        figure = Figure(figsize=(4, height), facecolor=self.background)
        self.margins = {"left": 0.14, "right": right, "bottom": bottom, "top": 0.88, "wspace": 0.35}
        figure.subplots_adjust(**self.margins)
        super().__init__(figure)
        self.setMinimumHeight(int(height * 80))

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
    """Loss per step on the left axis; accuracy-like metrics (0-1) on the right.

    A full matplotlib draw costs about 30-90 ms of the main thread here, so the curves, the
    legend and the title are blitted onto a cached background (about 1 ms); the axes are drawn
    again only when their limits change: at a run's first event (the x axis spans the whole run,
    the loss axis fits its first loss) and when a loss exceeds the loss axis.
    """

    def __init__(self, theme: str = "dark") -> None:
        super().__init__(theme)
        self.loss_ax = self.figure.add_subplot()
        self.metric_ax = self.loss_ax.twinx()
        for ax in (self.loss_ax, self.metric_ax):
            self.style(ax)
            ax.locator_params(nbins=4)
        self.loss_ax.set_xlabel("step", fontsize=8)
        self.loss_ax.set_ylabel("loss", fontsize=8, color=LOSS_COLOR)
        self.metric_ax.set_ylabel("accuracy", fontsize=8)
        self.metric_ax.set_ylim(0, 1.02)
        (self.loss_line,) = self.loss_ax.plot([], [], color=LOSS_COLOR, linewidth=1.2)
        self.metric_lines = {
            key: self.metric_ax.plot([], [], "o-", color=color, markersize=4, label=key)[0]
            for key, color in zip(ACCURACY_KEYS, ACCURACY_COLORS, strict=True)
        }
        for artist in self._blitted():
            artist.set_animated(True)
        self._background = None
        self._stale_axes = False
        self._fresh = True  # no loss yet in this run: the next one sets the loss axis
        self.mpl_connect("draw_event", self._on_draw)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.metrics: dict[str, list[tuple[int, float]]] = {}
        self._redraw = qthrottled(self.redraw, timeout=REDRAW_MS)
        self.start("")

    def _blitted(self) -> list:
        """What is drawn over the cached axes at every redraw (the legend too, when shown)."""
        legend = self.metric_ax.get_legend()
        extra = [legend] if legend is not None else []
        return [self.loss_ax.title, self.loss_line, *self.metric_lines.values(), *extra]

    def start(self, title: str) -> None:
        """Forget the previous run and show an empty plot titled ``title``.

        The axes keep their limits until the run's first event sets them, so that starting a
        run costs no full draw of its own.
        """
        self.loss_ax.set_title(title or "training curve: starts with a training run", fontsize=9)
        self.steps, self.losses, self.metrics = [], [], {}
        self._fresh = True
        self.redraw()

    def add(self, event: Progress) -> None:
        """Record one progress event; the plot follows within a fifth of a second."""
        if event.loss is not None:
            self.steps.append(event.step)
            self.losses.append(event.loss)
        for key, value in event.metrics.items():
            if key in ACCURACY_KEYS and value is not None and np.isfinite(value):
                self.metrics.setdefault(key, []).append((event.step, float(value)))
        if event.total_steps and self.loss_ax.get_xlim()[1] != event.total_steps:
            self.loss_ax.set_xlim(0, event.total_steps)
            self._stale_axes = True
        self._redraw()

    def finish(self) -> None:
        """Draw what arrived since the last redraw."""
        self._redraw.flush()

    def redraw(self) -> None:
        """Put the recorded data into the lines and repaint them (the axes too if needed)."""
        self.loss_line.set_data(self.steps, self.losses)
        for key, line in self.metric_lines.items():
            points = self.metrics.get(key, [])
            line.set_data([x for x, _ in points], [y for _, y in points])
        self._update_legend()
        full = self._update_limits() or self._stale_axes
        if full or self._background is None:
            self._stale_axes = False
            self.draw_idle()
            return
        self.restore_region(self._background)
        self._draw_lines()
        self.blit(self.figure.bbox)

    def _update_limits(self) -> bool:
        """Fit the loss axis to the run's first loss, then grow it to hold every loss.

        True if it changed.
        """
        top = max(self.losses, default=0.0)
        if not self.losses or not np.isfinite(top):
            return False
        if not self._fresh and top <= self.loss_ax.get_ylim()[1]:
            return False
        self._fresh = False
        self.loss_ax.set_ylim(0, top * 1.1)
        return True

    def _update_legend(self) -> None:
        """Show a legend entry for every metric that has values (blitted like the curves)."""
        shown = [line for key, line in self.metric_lines.items() if self.metrics.get(key)]
        legend = self.metric_ax.get_legend()
        if len(shown) == (len(legend.get_texts()) if legend is not None else 0):
            return
        if legend is not None:
            legend.remove()
        if shown:
            legend = self.metric_ax.legend(handles=shown, fontsize=7, loc="lower left")
            legend.get_frame().set_facecolor(self.background)
            for text in legend.get_texts():
                text.set_color(self.text)
            legend.set_animated(True)

    def _on_draw(self, _event) -> None:
        """After a full draw: keep the background and put the curves on it."""
        self._background = self.copy_from_bbox(self.figure.bbox)
        self._draw_lines()

    def _draw_lines(self) -> None:
        for artist in self._blitted():
            artist.axes.draw_artist(artist)


class HistogramPlot(ThemedCanvas):
    """Side-by-side histograms of a few table columns (e.g. width, length, area in nm)."""

    def __init__(self, theme: str = "dark") -> None:
        super().__init__(theme, height=2.6, right=0.95, bottom=0.26)

    def plot(self, columns: Sequence[tuple[str, np.ndarray]]) -> None:
        """One histogram per (axis label, values); NaNs are left out, empty panels say so."""
        self.figure.clear()
        self.figure.subplots_adjust(**self.margins)  # clear() resets them
        for i, (label, values) in enumerate(columns):
            ax = self.figure.add_subplot(1, len(columns), i + 1)
            self.style(ax)
            ax.locator_params(axis="x", nbins=3)
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
