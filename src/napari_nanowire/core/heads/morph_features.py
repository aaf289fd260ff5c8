"""Per-image measurements of a (predicted) mask as classifier features.

Morphology classes (dispersed, bundle, network) are defined by what a mask measures: how much
of the field is covered, how many domains, how wide and long and round they are, whether they
align and whether they span the image. When a model file has a segmenter, the classifier can
append these numbers to its learned features (the linear head standardises every column).
All foreground classes are measured together as one phase, so the vector has the same length
for every segmenter.
"""

from __future__ import annotations

import numpy as np

from ..measure import MeasureOptions, measure_domains, summarize_image

MORPH_NAMES: tuple[str, ...] = (
    "area_fraction",
    "log_domain_count",
    "log_width_q1",
    "log_width_median",
    "log_width_q3",
    "log_length_q1",
    "log_length_median",
    "log_length_q3",
    "log_aspect_ratio_median",
    "circularity_median",
    "solidity_median",
    "nematic_order",
    "percolates_x",
    "percolates_y",
)
"""The columns :func:`mask_features` returns, in order."""


def mask_features(mask: np.ndarray, pixel_size_nm: float = 1.0) -> np.ndarray:
    """Measurements of a mask's foreground (any value > 0) as a float32 vector (MORPH_NAMES).

    Sizes are logarithms of lengths in nm (or in px of ``pixel_size_nm``'s scale); an image
    without foreground gives zeros for every size and shape column.
    """
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    options = MeasureOptions(pixel_size_nm=float(pixel_size_nm))
    domains = measure_domains(binary, options)
    summary = summarize_image(binary, options, domains)
    row = summary.iloc[0] if len(summary) else None
    count = len(domains)
    values = {"area_fraction": float(binary.mean()), "log_domain_count": np.log1p(count)}
    if row is not None and count:
        for stat in ("q1", "median", "q3"):
            values[f"log_width_{stat}"] = np.log1p(row[f"width_{stat}_nm"])
            values[f"log_length_{stat}"] = np.log1p(row[f"length_{stat}_nm"])
        values["log_aspect_ratio_median"] = np.log(domains["aspect_ratio"].median())
        circularity = (
            4 * np.pi * domains["area_nm2"] / np.maximum(domains["perimeter_nm"], 1e-9) ** 2
        )
        values["circularity_median"] = float(np.clip(circularity, 0, 1).median())
        values["solidity_median"] = float(domains["solidity"].median())
        values["nematic_order"] = row["nematic_order"]
        values["percolates_x"] = float(row["percolates_x"])
        values["percolates_y"] = float(row["percolates_y"])
    vector = np.array([values.get(name, 0.0) for name in MORPH_NAMES], np.float64)
    return np.nan_to_num(vector, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
