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
  area fraction, zero domains, ``percolates_x/y = False`` and NaN for medians, quartiles and
  the order parameter (undefined without domains).
- A single pixel is a domain of area 1 px, width and length 1 px, Feret diameters 1 and
  sqrt(2) px, and NaN orientation (an isotropic shape has no axis); likewise any domain whose
  second moments are equal.
- An all-foreground mask is one domain that touches every edge and percolates in x and y.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.measure import label, regionprops_table
from skimage.morphology import skeletonize

from .domain_shape import feret_diameters, skeleton_stats
from .errors import NanowireError
from .nematic import axial_deg, nematic_order
from .percolation import percolates

DEFAULT_CLASS_NAMES: dict[int, str] = {1: "wire"}

# Count columns; every other per-domain column except the names and the border flag is float.
_DOMAIN_COUNTS = ("class_value", "domain_id", "branch_points", "end_points")
DOMAIN_COLUMNS: tuple[str, ...] = (
    "class_value",
    "class_name",
    "domain_id",
    "centroid_y_px",
    "centroid_x_px",
    "touches_border",
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
    "width_mean_nm",
    "width_median_nm",
    "branch_points",
    "end_points",
)
SUMMARY_COLUMNS: tuple[str, ...] = (
    "class_value",
    "class_name",
    "pixel_size_nm",
    "image_area_um2",
    "area_fraction",
    "domain_count",
    "number_density_per_um2",
    "width_q1_nm",
    "width_median_nm",
    "width_q3_nm",
    "length_q1_nm",
    "length_median_nm",
    "length_q3_nm",
    "percolates_x",
    "percolates_y",
    "nematic_order",
    "director_deg",
)


@dataclass(frozen=True)
class MeasureOptions:
    """How to turn a mask into domains; checked on creation.

    ``class_names`` maps mask values to names. ``None`` names value 1 ``"wire"`` and any
    other value present ``"class_<value>"``; given names must cover every value in the mask.
    ``min_area_nm2`` and ``exclude_border`` select which domains are measured and counted;
    area fraction and percolation always use every pixel of the class.
    """

    pixel_size_nm: float = 1.0
    connectivity: int = 2
    exclude_border: bool = False
    min_area_nm2: float = 0.0
    class_names: dict[int, str] | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.pixel_size_nm) and self.pixel_size_nm > 0):
            raise NanowireError(
                f"Pixel size {self.pixel_size_nm!r} nm/px is not a positive number; "
                "give the real pixel size in nm/px."
            )
        if self.connectivity not in (1, 2):
            raise NanowireError(
                f"Connectivity {self.connectivity!r} is not 1 (4-connected) or 2 (8-connected)."
            )
        if not (math.isfinite(self.min_area_nm2) and self.min_area_nm2 >= 0):
            raise NanowireError(
                f"Minimum area {self.min_area_nm2!r} nm^2 must be zero or a positive number."
            )
        if self.class_names is not None and any(v < 1 for v in self.class_names):
            raise NanowireError(
                f"Class values {sorted(self.class_names)} must be 1 or more: "
                "0 is the background of a dense mask."
            )


def as_label_mask(mask: np.ndarray) -> np.ndarray:
    """The mask as a 2D non-negative integer array, or a NanowireError saying what is wrong.

    Booleans become 0/1; floats are accepted if every value is a whole number (masks saved
    as float), but a probability map is refused: threshold it first.
    """
    arr = np.asarray(mask)
    if arr.ndim != 2 or arr.size == 0:
        raise NanowireError(
            f"A mask must be a non-empty 2D (Y, X) array; got shape {arr.shape}. "
            "Measure a stack one plane at a time."
        )
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise NanowireError(f"A mask must hold integer class values; got dtype {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.floating):
        if not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            raise NanowireError(
                "The mask holds fractional or non-finite values (a probability map?); "
                "threshold it into integer class values first."
            )
        arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise NanowireError(
            f"The mask holds negative values (minimum {arr.min()}); class values are 0 "
            "(background), 1, 2, ..."
        )
    return arr


def resolve_class_names(mask: np.ndarray, class_names: dict[int, str] | None) -> dict[int, str]:
    """Mask value -> class name for every class to report, sorted by value."""
    present = {int(v) for v in np.unique(mask)} - {0}
    if class_names is None:
        names = DEFAULT_CLASS_NAMES | {v: f"class_{v}" for v in present - set(DEFAULT_CLASS_NAMES)}
    else:
        unnamed = present - set(class_names)
        if unnamed:
            raise NanowireError(
                f"The mask holds class values {sorted(unnamed)} that have no name (names are "
                f"given for {sorted(class_names)}); name every foreground value, in order "
                "1, 2, ..."
            )
        names = dict(class_names)
    return dict(sorted(names.items()))


def measure_domains(mask: np.ndarray, options: MeasureOptions | None = None) -> pd.DataFrame:
    """One row per domain of every class, with shape measurements in nm (see DOMAIN_COLUMNS).

    Area, centroid and perimeter (Crofton estimate) come from scikit-image. Major and minor
    axes are those of the ellipse with the domain's second moments, counting each pixel as a
    unit square (adds 1/12 px^2 to both variances, so a w x l bar gives exactly w and l);
    ``aspect_ratio`` = major / minor. Solidity is scikit-image's. Feret diameters, skeleton
    length, widths, branch and end points are described in :mod:`.domain_shape`.
    """
    options = options or MeasureOptions()
    mask = as_label_mask(mask)
    names = resolve_class_names(mask, options.class_names)
    tables = [_class_domains(mask == value, value, name, options) for value, name in names.items()]
    tables = [t for t in tables if len(t)]
    return pd.concat(tables, ignore_index=True) if tables else _empty_domains()


def summarize_image(
    mask: np.ndarray, options: MeasureOptions | None = None, domains: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per class: coverage, density, size distribution, percolation and order.

    ``domains`` (from :func:`measure_domains` with the same options) avoids measuring twice.
    Width and length quartiles are over the domains' ``width_mean_nm`` and ``length_nm``.
    ``number_density_per_um2`` counts the measured domains over the whole image area.
    ``nematic_order`` is the 2D order parameter S = |<exp(2i theta)>| of the local wire
    directions theta along the class's skeleton, length-weighted (see :mod:`.nematic`): near
    1 for aligned wires (bundles), near 0 for a mesh or randomly dispersed wires;
    ``director_deg`` is their mean direction. Area fraction, percolation and order use every
    pixel of the class, whatever domains the options leave out.
    """
    options = options or MeasureOptions()
    mask = as_label_mask(mask)
    names = resolve_class_names(mask, options.class_names)
    if domains is None:
        domains = measure_domains(mask, options)
    image_area_um2 = mask.size * options.pixel_size_nm**2 / 1e6
    rows = []
    for value, name in names.items():
        binary = mask == value
        mine = domains[domains["class_value"] == value]
        widths = mine["width_mean_nm"].quantile([0.25, 0.5, 0.75]).to_numpy()
        lengths = mine["length_nm"].quantile([0.25, 0.5, 0.75]).to_numpy()
        perc_x, perc_y = percolates(label(binary, connectivity=options.connectivity))
        order, director = nematic_order(skeletonize(binary, method="lee"))
        rows.append(
            {
                "class_value": value,
                "class_name": name,
                "pixel_size_nm": options.pixel_size_nm,
                "image_area_um2": image_area_um2,
                "area_fraction": float(binary.mean()),
                "domain_count": len(mine),
                "number_density_per_um2": len(mine) / image_area_um2,
                "width_q1_nm": widths[0],
                "width_median_nm": widths[1],
                "width_q3_nm": widths[2],
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
            domains = measure_domains(mask, mine)
            summary = summarize_image(mask, mine, domains)
        except NanowireError as err:
            raise NanowireError(f"{name}: {err}") from err
        domains.insert(0, "image", name)
        summary.insert(0, "image", name)
        domain_tables.append(domains)
        summary_tables.append(summary)
    domain_tables = [t for t in domain_tables if len(t)]
    domains = pd.concat(domain_tables, ignore_index=True) if domain_tables else _empty_domains()
    if "image" not in domains:
        domains.insert(0, "image", pd.Series(dtype=str))
    summary = (
        pd.concat(summary_tables, ignore_index=True)
        if summary_tables
        else pd.DataFrame(columns=["image", *SUMMARY_COLUMNS])
    )
    return domains, summary


def write_tables(
    domains: pd.DataFrame, summary: pd.DataFrame, out_dir: str | os.PathLike
) -> tuple[Path, Path]:
    """Write ``domains.csv`` and ``summary.csv`` into ``out_dir``; each write is atomic."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return _write_csv(domains, out / "domains.csv"), _write_csv(summary, out / "summary.csv")


def _class_domains(
    binary: np.ndarray, value: int, name: str, options: MeasureOptions
) -> pd.DataFrame:
    """Measured domains of one class (a boolean mask), after the options' selection."""
    labels = label(binary, connectivity=options.connectivity)
    count = int(labels.max())
    if count == 0:
        return _empty_domains()
    scale = options.pixel_size_nm
    area_px = np.bincount(labels.ravel(), minlength=count + 1)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    on_border = np.zeros(count + 1, dtype=bool)
    on_border[edge] = True
    keep = area_px * scale**2 >= options.min_area_nm2
    if options.exclude_border:
        keep &= ~on_border
    keep[0] = False
    if not keep.any():
        return _empty_domains()
    kept = np.where(keep[labels], labels, 0)
    props = regionprops_table(
        kept,
        properties=(
            "label",
            "area",
            "centroid",
            "perimeter_crofton",
            "inertia_tensor_eigvals",
            "orientation",
            "solidity",
        ),
    )
    ids = props["label"]
    slices = ndimage.find_objects(labels)
    ferets, skeletons = [], []
    for lab in ids:
        crop = labels[slices[lab - 1]] == lab
        ferets.append(feret_diameters(crop))
        skeletons.append(skeleton_stats(crop))
    feret = np.array(ferets, dtype=float).reshape(-1, 2)
    big, small = props["inertia_tensor_eigvals-0"], props["inertia_tensor_eigvals-1"]
    major = 4.0 * np.sqrt(big + 1.0 / 12.0)
    minor = 4.0 * np.sqrt(small + 1.0 / 12.0)
    isotropic = np.isclose(big, small, rtol=1e-9, atol=1e-12)
    orientation = np.where(isotropic, np.nan, axial_deg(-np.rad2deg(props["orientation"]) - 90.0))
    table = pd.DataFrame(
        {
            "class_value": value,
            "class_name": name,
            "domain_id": ids,
            "centroid_y_px": props["centroid-0"],
            "centroid_x_px": props["centroid-1"],
            "touches_border": on_border[ids],
            "area_nm2": props["area"] * scale**2,
            "equivalent_diameter_nm": np.sqrt(4.0 * props["area"] / np.pi) * scale,
            "perimeter_nm": props["perimeter_crofton"] * scale,
            "major_axis_nm": major * scale,
            "minor_axis_nm": minor * scale,
            "aspect_ratio": major / minor,
            "orientation_deg": orientation,
            "solidity": props["solidity"],
            "feret_max_nm": feret[:, 0] * scale,
            "feret_min_nm": feret[:, 1] * scale,
            "length_nm": [s.length * scale for s in skeletons],
            "width_mean_nm": [s.width_mean * scale for s in skeletons],
            "width_median_nm": [s.width_median * scale for s in skeletons],
            "branch_points": [s.branch_points for s in skeletons],
            "end_points": [s.end_points for s in skeletons],
        },
        columns=list(DOMAIN_COLUMNS),
    )
    return table.astype({c: np.int64 for c in _DOMAIN_COUNTS})


def _empty_domains() -> pd.DataFrame:
    """A domain table with every column and no rows, with the dtypes a full one has."""
    dtypes = {c: np.float64 for c in DOMAIN_COLUMNS}
    dtypes |= {c: np.int64 for c in _DOMAIN_COUNTS}
    dtypes |= {"class_name": object, "touches_border": bool}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})


def _write_csv(table: pd.DataFrame, path: Path) -> Path:
    """Write a CSV through a temporary file in the same folder, then move it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        table.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
