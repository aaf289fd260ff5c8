"""Which domains a summary counts: the default minimum area and the per-domain flags.

On masks predicted from real micrographs, 1-px specks outnumbered the real domains (1,424
"domains" in 20 frames holding 20 wires and 20 droplets) and set the summary's median width to
0.05 nm. So every domain carries flags, and summaries leave flagged domains out by default:

- ``below_min_area``: smaller than the minimum area. Left out of the domain count, number
  density and every size statistic.
- ``touches_border``: cut by the image edge, so its length is not the object's length. Left
  out of the length statistics only (its width is still its width).
- ``short_skeleton``: shorter than two caliper widths, measured by calipers (see
  :mod:`.shape`). Left out of the length statistics only: a stub's length is not a wire's.

The summary says how many domains each rule left out (``excluded_small``,
``length_excluded``); area fraction, percolation and nematic order always use every pixel.

Default minimum area (``min_area_nm2=None``, "auto"), per image:
``max(MIN_AREA_PX * pixel_size^2, MIN_AREA_FLOOR_NM2, the segmenter's own minimum)``.
Below 4 x 4 px a domain's width, length and shape are set by the pixel grid, not by the
object; below 1 nm^2 nothing is a nanostructure domain at any TEM magnification (at
0.07 nm/px that is 204 px). The segmenter's post-processing minimum (its model metadata) is
used when the mask came from a model and the model says it; otherwise it is ignored.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..model.metadata import ModelMeta

MIN_AREA_PX = 16
"""Domains under this many pixels (4 x 4) are below the default minimum area."""

MIN_AREA_FLOOR_NM2 = 1.0
"""Domains under 1 nm^2 are below the default minimum area at any pixel size."""

MIN_AREA_RULE = (
    f"max({MIN_AREA_PX} px * pixel_size_nm^2, {MIN_AREA_FLOOR_NM2:g} nm^2, the segmenter's "
    "post-processing minimum if the mask came from a model that records one)"
)
FLAG_RULES = {
    "below_min_area": "left out of domain_count, number density and all size statistics",
    "touches_border": "left out of the length statistics (cut by the image edge)",
    "short_skeleton": "left out of the length statistics (measured by calipers, a stub)",
}
FLAGS = tuple(FLAG_RULES)
LENGTH_FLAGS = ("touches_border", "short_skeleton")


def auto_min_area_nm2(pixel_size_nm: float, model_min_area_nm2: float | None = None) -> float:
    """The default minimum domain area in nm^2 for this pixel size (rule in module docs)."""
    floor = max(MIN_AREA_PX * pixel_size_nm**2, MIN_AREA_FLOOR_NM2)
    if model_min_area_nm2 is not None and math.isfinite(model_min_area_nm2):
        floor = max(floor, float(model_min_area_nm2))
    return floor


def segmenter_min_area_nm2(meta: ModelMeta) -> float | None:
    """The minimum object area (nm^2) a segmenter's post-processing removed, if it says
    (``segmenter.postprocess.min_object_nm2``); ``None`` when absent (older models, no
    post-processing)."""
    settings = (meta.segmenter.postprocess if meta.segmenter is not None else None) or {}
    if not settings.get("enabled", True):
        return None
    value = settings.get("min_object_nm2")
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def counted(domains: pd.DataFrame, include_flagged: bool = False) -> pd.Series:
    """Boolean per domain row: counted in the summary (not below the minimum area)."""
    if include_flagged or "below_min_area" not in domains:
        return pd.Series(True, index=domains.index)
    return ~domains["below_min_area"].astype(bool)


def length_counted(domains: pd.DataFrame, include_flagged: bool = False) -> pd.Series:
    """Boolean per domain row: in the length statistics (counted, not cut, not a stub)."""
    keep = counted(domains, include_flagged)
    return keep if include_flagged else keep & length_measurable(domains)


def length_measurable(domains: pd.DataFrame) -> pd.Series:
    """Boolean per domain row: its length is an object's length (not cut, not a stub)."""
    keep = pd.Series(True, index=domains.index)
    for flag in LENGTH_FLAGS:
        if flag in domains:
            keep &= ~domains[flag].astype(bool)
    return keep


def unflagged(domains: pd.DataFrame) -> pd.DataFrame:
    """The rows with no flag set: what histograms of wire sizes should show by default."""
    flags = [f for f in FLAGS if f in domains]
    if not flags:
        return domains
    return domains[~np.any(domains[flags].to_numpy(dtype=bool), axis=1)]


def weighted_median(values: pd.Series, weights: pd.Series) -> float:
    """The value at half the total weight (NaN without finite values or weight).

    Used for ``width_weighted_median_nm`` (widths weighted by skeleton length, so a wire counts
    by how long it is) and ``diameter_area_weighted_median_nm`` (diameters weighted by area): a
    small false detection next to the real domains barely counts.
    """
    ok = np.isfinite(values.to_numpy(dtype=float)) & (weights.to_numpy(dtype=float) > 0)
    v, w = values.to_numpy(dtype=float)[ok], weights.to_numpy(dtype=float)[ok]
    if v.size == 0:
        return math.nan
    order = np.argsort(v)
    cumulative = np.cumsum(w[order])
    return float(v[order][np.searchsorted(cumulative, cumulative[-1] / 2)])
