"""Domain-size and shape measurements in nanometres from dense label masks.

Mask convention (prediction and ground-truth masks): a 2D integer or boolean array where
0 = background and each value 1, 2, ... is one foreground class; the synthetic ground truth is
0/1 with 1 = wire. Training masks (0 = unlabeled, 1 = background) are not dense masks and must
be converted first. A *domain* is a connected component of one class, 4-connected
(``connectivity=1``) or 8-connected (``connectivity=2``).

Every column names its unit: ``_nm``, ``_nm2``, ``_px``, ``_deg``, ``_per_um2``; columns
without a unit are counts, ratios or flags. Orientations are angles of a domain's major axis
in [0, 180) from +x towards +y, where y is the row index growing downwards (so clockwise as
displayed), as in the synthetic ground truth.

Defined results at the edges:

- An empty mask gives a domain table with no rows and, per class, a summary row with zero
  area fraction, zero domains, ``percolates_x/y = False`` and NaN for quartiles, the order
  parameter and the director (undefined without domains).
- A single pixel is a domain of area 1 px, width 1 px and length sqrt(2) px (its Feret
  diameters: it is measured by calipers, see :mod:`.shape`), solidity 1, no end points and NaN
  orientation (an isotropic shape has no axis); likewise NaN orientation for any domain whose
  second moments are equal (squares, plus signs). With the default minimum area it is flagged
  ``below_min_area`` and left out of the summary.
- Round particles are short domains measured by calipers: width = minimum and length =
  maximum Feret diameter; ``equivalent_diameter_nm`` is the usual particle size.
- An all-foreground mask is one domain that touches every edge and percolates in x and y.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.measure import regionprops_table

from ..errors import NanowireError
from ..io import write_bytes_atomic, write_csv
from ..masks import label_mask
from .domain_shape import second_moments
from .domains import class_domains, resolve_class_names
from .nematic import axial_deg, nematic_order
from .options import MeasureOptions
from .percolation import percolates
from .selection import FLAGS, counted, length_counted, weighted_median
from .shape import domain_shape, pruned_skeletons

# Count columns; every other per-domain column except the names and the flags is float.
_DOMAIN_COUNTS = ("class_value", "domain_id", "branch_points", "end_points")
DOMAIN_COLUMNS: tuple[str, ...] = (
    "class_value",
    "class_name",
    "domain_id",
    "centroid_y_px",
    "centroid_x_px",
    "touches_border",
    "below_min_area",
    "short_skeleton",
    "area_nm2",
    "equivalent_diameter_nm",
    "perimeter_nm",
    "major_axis_nm",
    "minor_axis_nm",
    "aspect_ratio",
    "orientation_deg",
    "solidity",
    "feret_max_nm",
    "feret_min_nm",
    "length_nm",
    "skeleton_length_nm",
    "width_mean_nm",
    "width_median_nm",
    "width_iqr_nm",
    "branch_points",
    "end_points",
)
SUMMARY_COLUMNS: tuple[str, ...] = (
    "class_value",
    "class_name",
    "pixel_size_nm",
    "image_area_um2",
    "area_fraction",
    "min_area_nm2",
    "domain_count",
    "excluded_small",
    "length_excluded",
    "number_density_per_um2",
    "width_q1_nm",
    "width_median_nm",
    "width_q3_nm",
    "width_weighted_median_nm",
    "diameter_median_nm",
    "diameter_area_weighted_median_nm",
    "length_q1_nm",
    "length_median_nm",
    "length_q3_nm",
    "percolates_x",
    "percolates_y",
    "nematic_order",
    "director_deg",
)


@dataclass(frozen=True)
class _ClassPixels:
    """One class of a mask, with what every measurement of it starts from."""

    value: int
    name: str
    binary: np.ndarray
    labels: np.ndarray
    skeleton: np.ndarray
    distance: np.ndarray


def _class_pixels(mask: np.ndarray, options: MeasureOptions) -> list[_ClassPixels]:
    """Check the mask and split it into its named classes, each labelled and skeletonised."""
    mask = label_mask(mask)
    classes = []
    for value, name in resolve_class_names(mask, options.class_names).items():
        binary = mask == value
        labels = class_domains(mask, value, options.connectivity, options.split_touching)
        classes.append(_ClassPixels(value, name, binary, labels, *pruned_skeletons(labels)))
    return classes


def measure_domains(mask: np.ndarray, options: MeasureOptions | None = None) -> pd.DataFrame:
    """One row per domain of every class, with shape measurements in nm (see DOMAIN_COLUMNS).

    Centroid, major and minor axes and orientation come from the domain's second moments;
    the axes are those of the ellipse with these moments, counting each pixel as a unit square
    (1/12 px^2 added to both variances, so a w x l bar gives exactly w and l), and
    ``aspect_ratio`` = major / minor. Perimeter: scikit-image's Crofton estimate. Solidity:
    area over the area of the convex hull of the pixel squares. Feret diameters, skeleton
    length, widths, branch and end points are described in :mod:`.domain_shape`.
    """
    options = options or MeasureOptions()
    return _domain_table(_class_pixels(mask, options), options)


def summarize_image(
    mask: np.ndarray, options: MeasureOptions | None = None, domains: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per class: coverage, density, size distribution, percolation and order.

    ``domains`` (from :func:`measure_domains` with the same options) saves measuring the
    domains again; :func:`measure_masks` makes both tables in one pass.
    Width and length quartiles are over the domains' ``width_mean_nm`` and ``length_nm``;
    ``width_weighted_median_nm`` weighs each domain's width by its skeleton length (robust to
    small false detections on predicted masks). ``diameter_median_nm`` is the median equivalent
    diameter of the domains (particle size by number) and ``diameter_area_weighted_median_nm``
    the diameter at half the domains' total area (by area: a false speck barely counts).
    ``number_density_per_um2`` counts the measured domains over the whole image area.
    ``nematic_order`` is the 2D order parameter S = |<exp(2i theta)>| of the local wire
    directions theta along the class's skeleton, length-weighted (see :mod:`.nematic`): near
    1 for aligned wires (bundles), near 0 for a mesh or randomly dispersed wires;
    ``director_deg`` is their mean direction. Area fraction, percolation and order use every
    pixel of the class, whatever domains the options leave out.
    """
    options = options or MeasureOptions()
    classes = _class_pixels(mask, options)
    if domains is None:
        domains = _domain_table(classes, options)
    return _summary_table(classes, domains, options)


def measure_masks(
    masks: Iterable[tuple[str, np.ndarray, float | None]], options: MeasureOptions | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Measure many masks: (domains, summary) with an ``image`` column naming each mask.

    Each item is ``(name, mask, pixel_size_nm)``; a pixel size of ``None`` falls back to
    ``options.pixel_size_nm``. Problems are reported with the mask's name.
    """
    options = options or MeasureOptions()
    domain_tables, summary_tables = [], []
    for name, mask, pixel_size_nm in masks:
        try:
            mine = (
                options if pixel_size_nm is None else replace(options, pixel_size_nm=pixel_size_nm)
            )
            classes = _class_pixels(mask, mine)
            domains = _domain_table(classes, mine)
            summary = _summary_table(classes, domains, mine)
        except NanowireError as err:
            raise NanowireError(f"{name}: {err}") from err
        domain_tables.append(domains.assign(image=name))
        summary_tables.append(summary.assign(image=name))
    domains = _concat(domain_tables, _empty_domains()).reindex(columns=["image", *DOMAIN_COLUMNS])
    summary = _concat(summary_tables, pd.DataFrame(columns=list(SUMMARY_COLUMNS)))
    return domains, summary.reindex(columns=["image", *SUMMARY_COLUMNS])


def write_tables(
    domains: pd.DataFrame,
    summary: pd.DataFrame,
    out_dir: str | os.PathLike,
    options: MeasureOptions | None = None,
) -> tuple[Path, Path]:
    """Write ``domains.csv`` and ``summary.csv`` into ``out_dir``; each write is atomic.

    With ``options``, ``measure.json`` beside them records the settings and rules (minimum
    area, flags, pruning); the minimum area used per image is in the summary's column.
    """
    paths = Path(out_dir) / "domains.csv", Path(out_dir) / "summary.csv"
    for table, path in zip((domains, summary), paths, strict=True):
        write_csv(path, table)
    if options is not None:
        text = json.dumps(options.describe(), indent=2)
        write_bytes_atomic(Path(out_dir) / "measure.json", text.encode())
    return paths


def _domain_table(classes: list[_ClassPixels], options: MeasureOptions) -> pd.DataFrame:
    """The domain rows of every class, in class order."""
    return _concat([_class_domains(c, options) for c in classes], _empty_domains())


def _summary_table(
    classes: list[_ClassPixels], domains: pd.DataFrame, options: MeasureOptions
) -> pd.DataFrame:
    """One summary row per class (see :func:`summarize_image`)."""
    rows = []
    for pixels in classes:
        image_area_um2 = pixels.binary.size * options.pixel_size_nm**2 / 1e6
        all_mine = domains[domains["class_value"] == pixels.value]
        mine = all_mine[counted(all_mine, options.include_flagged)]
        long = mine[length_counted(mine, options.include_flagged)]
        widths = mine["width_mean_nm"].quantile([0.25, 0.5, 0.75]).to_numpy()
        lengths = long["length_nm"].quantile([0.25, 0.5, 0.75]).to_numpy()
        perc_x, perc_y = percolates(pixels.labels)
        order, director = nematic_order(pixels.skeleton)
        rows.append(
            {
                "class_value": pixels.value,
                "class_name": pixels.name,
                "pixel_size_nm": options.pixel_size_nm,
                "image_area_um2": image_area_um2,
                "area_fraction": float(pixels.binary.mean()),
                "min_area_nm2": options.min_area(),
                "domain_count": len(mine),
                "excluded_small": len(all_mine) - len(mine),
                "length_excluded": len(mine) - len(long),
                "number_density_per_um2": len(mine) / image_area_um2,
                "width_q1_nm": widths[0],
                "width_median_nm": widths[1],
                "width_q3_nm": widths[2],
                "width_weighted_median_nm": weighted_median(
                    mine["width_mean_nm"], mine["skeleton_length_nm"]
                ),
                "diameter_median_nm": float(mine["equivalent_diameter_nm"].median()),
                "diameter_area_weighted_median_nm": weighted_median(
                    mine["equivalent_diameter_nm"], mine["area_nm2"]
                ),
                "length_q1_nm": lengths[0],
                "length_median_nm": lengths[1],
                "length_q3_nm": lengths[2],
                "percolates_x": perc_x,
                "percolates_y": perc_y,
                "nematic_order": order,
                "director_deg": director,
            }
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _class_domains(pixels: _ClassPixels, options: MeasureOptions) -> pd.DataFrame:
    """Measured and flagged domains of one class, after the options' selection."""
    labels = pixels.labels
    count = int(labels.max())
    scale = options.pixel_size_nm
    area_px = np.bincount(labels.ravel(), minlength=count + 1)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    on_border = np.zeros(count + 1, dtype=bool)
    on_border[edge] = True
    keep = np.ones(count + 1, dtype=bool)
    if options.exclude_border:
        keep &= ~on_border
    keep[0] = False
    ids = np.flatnonzero(keep)
    if ids.size == 0:
        return _empty_domains()
    kept = np.where(keep[labels], labels, 0)
    moments = second_moments(kept, count)[:, ids]
    perimeter = regionprops_table(kept, properties=("perimeter_crofton",))["perimeter_crofton"]
    slices = ndimage.find_objects(labels)
    shapes = []
    for lab in ids:
        sl = slices[lab - 1]
        shapes.append(domain_shape(labels[sl] == lab, pixels.skeleton[sl], pixels.distance[sl]))

    def column(name: str) -> np.ndarray:
        return np.array([getattr(shape, name) for shape in shapes])

    mean_y, mean_x, var_y, var_x, cov = moments
    half_sum, half_diff = (var_x + var_y) / 2, np.hypot((var_x - var_y) / 2, cov)
    major = 4.0 * np.sqrt(half_sum + half_diff + 1.0 / 12.0)
    minor = 4.0 * np.sqrt(np.maximum(half_sum - half_diff, 0.0) + 1.0 / 12.0)
    isotropic = half_diff <= 1e-9 * np.maximum(half_sum, 1e-12)
    angle = np.rad2deg(np.arctan2(2.0 * cov, var_x - var_y)) / 2.0
    area = area_px[ids]
    table = pd.DataFrame(
        {
            "class_value": pixels.value,
            "class_name": pixels.name,
            "domain_id": ids,
            "centroid_y_px": mean_y,
            "centroid_x_px": mean_x,
            "touches_border": on_border[ids],
            "below_min_area": area_px[ids] * scale**2 < options.min_area(),
            "short_skeleton": column("short").astype(bool),
            "area_nm2": area * scale**2,
            "equivalent_diameter_nm": np.sqrt(4.0 * area / np.pi) * scale,
            "perimeter_nm": perimeter * scale,
            "major_axis_nm": major * scale,
            "minor_axis_nm": minor * scale,
            "aspect_ratio": major / minor,
            "orientation_deg": np.where(isotropic, np.nan, axial_deg(angle)),
            "solidity": area / column("hull_area"),
            "feret_max_nm": column("feret_max") * scale,
            "feret_min_nm": column("feret_min") * scale,
            "length_nm": column("length") * scale,
            "skeleton_length_nm": column("skeleton_length") * scale,
            "width_mean_nm": column("width_mean") * scale,
            "width_median_nm": column("width_median") * scale,
            "width_iqr_nm": (column("width_q3") - column("width_q1")) * scale,
            "branch_points": column("branch_points"),
            "end_points": column("end_points"),
        },
        columns=list(DOMAIN_COLUMNS),
    )
    return table.astype({c: np.int64 for c in _DOMAIN_COUNTS})


def _concat(tables: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    """The non-empty tables stacked, or ``empty`` (typed, no rows) if there are none."""
    full = [t for t in tables if len(t)]
    return pd.concat(full, ignore_index=True) if full else empty


def _empty_domains() -> pd.DataFrame:
    """A domain table with every column and no rows, with the dtypes a full one has."""
    dtypes = {c: np.float64 for c in DOMAIN_COLUMNS}
    dtypes |= {c: np.int64 for c in _DOMAIN_COUNTS}
    dtypes |= {"class_name": object} | {flag: bool for flag in FLAGS}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})
