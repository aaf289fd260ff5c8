"""Figures for reports: image montages with titles and a scale bar."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def nice_scale_bar_nm(field_nm: float) -> float:
    """A round bar length (1, 2 or 5 x 10^k nm) near a fifth of the field of view."""
    target = field_nm / 5
    exponent = math.floor(math.log10(target))
    for step in (5, 2, 1):
        if step * 10**exponent <= target:
            return step * 10**exponent
    return 10**exponent


def _save(fig: Figure, path: str | Path) -> Path:
    """Lay out and write a figure as PNG (no pyplot: safe inside napari's Qt session)."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def save_montage(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    path: str | Path,
    pixel_size_nm: float | None = None,
    ncols: int = 4,
    overlays: Sequence[np.ndarray | None] | None = None,
) -> Path:
    """Save a grid of grayscale images as a PNG, each titled, with a scale bar in nm.

    ``overlays`` (optional, one per image) are label images drawn in colour over the image.
    """
    n = len(images)
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(2.6 * ncols, 2.8 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (image, title) in enumerate(zip(images, titles, strict=True)):
        ax = axes.flat[i]
        lo, hi = np.percentile(image, [0.5, 99.5])
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        overlay = overlays[i] if overlays is not None else None
        if overlay is not None and np.any(overlay):
            ax.imshow(np.ma.masked_equal(overlay, 0), cmap="autumn", alpha=0.45, vmin=0)
        ax.set_title(title, fontsize=9)
        if pixel_size_nm:
            height, width = image.shape[-2:]
            bar_nm = nice_scale_bar_nm(width * pixel_size_nm)
            bar_px = bar_nm / pixel_size_nm
            x0, y0 = width * 0.05, height * 0.93
            ax.plot([x0, x0 + bar_px], [y0, y0], color="white", linewidth=3)
            ax.text(x0, y0 - height * 0.03, f"{bar_nm:g} nm", color="white", fontsize=7)
    return _save(fig, path)


def save_histograms(
    tables: dict[str, pd.DataFrame], columns: Sequence[str], path: str | Path
) -> Path:
    """Save one histogram panel per column, overlaying each named table's values, as a PNG."""
    fig = Figure(figsize=(4 * len(columns), 3.2))
    axes = fig.subplots(1, len(columns), squeeze=False)
    for ax, column in zip(axes.flat, columns, strict=True):
        values = [t[column].dropna().to_numpy() for t in tables.values()]
        joined = np.concatenate(values) if values else np.array([])
        bins = np.histogram_bin_edges(joined, bins=30) if joined.size else 10
        for name, v in zip(tables, values, strict=True):
            ax.hist(v, bins=bins, alpha=0.55, label=f"{name} (n={v.size})")
        ax.set_xlabel(column.replace("_nm2", " (nm²)").replace("_nm", " (nm)").replace("_", " "))
        ax.set_ylabel("domains")
    axes.flat[0].legend(fontsize=8)
    return _save(fig, path)
