"""A dense mask's classes and domains: class names, and one label per measured domain."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.measure import label
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from ..errors import NanowireError
from ..masks import label_mask
from ..names import MAX_CLASSES

DEFAULT_CLASS_NAMES: dict[int, str] = {1: "wire"}
SPLIT_DEPTH_PX = 2.0
"""Touching particles are split at necks at least this many pixels narrower than both
particles' centres (h-maxima of the distance transform), so ragged outlines do not split."""


def resolve_class_names(mask: np.ndarray, class_names: dict[int, str] | None) -> dict[int, str]:
    """Mask value -> class name for every class to report, sorted by value."""
    present = {int(v) for v in np.unique(mask)} - {0}
    if len(present) > MAX_CLASSES:
        raise NanowireError(
            f"The mask holds {len(present)} different class values (at most {MAX_CLASSES} are "
            "measured): it looks like an intensity image (a micrograph) or an instance mask, "
            "not a class mask. Measure a mask with one value per class (0 = background)."
        )
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


def class_domains(
    mask: np.ndarray, value: int, connectivity: int, split_touching: bool = False
) -> np.ndarray:
    """Label image of class ``value``'s domains: domain ``k`` of the tables is label ``k``.

    ``split_touching`` cuts touching particles apart, as ImageJ's binary watershed does: a
    watershed of the distance transform from its h-maxima (:data:`SPLIT_DEPTH_PX`). Without
    it a clump of touching particles is one domain, which a semantic mask cannot tell apart.
    """
    binary = np.asarray(mask) == value
    if not split_touching:
        return label(binary, connectivity=connectivity)
    distance = ndimage.distance_transform_edt(binary)
    markers = label(h_maxima(distance, SPLIT_DEPTH_PX), connectivity=2)
    return watershed(-distance, markers, mask=binary, connectivity=connectivity)


def domain_label_image(
    mask: np.ndarray,
    domains: pd.DataFrame,
    connectivity: int,
    first: int = 1,
    split_touching: bool = False,
) -> np.ndarray:
    """One int32 label per row of ``domains`` (this mask's rows), ``first`` + row position.

    The rows need ``class_value`` and ``domain_id`` as :func:`.tables.measure_domains` gives
    them with the same connectivity and splitting; pixels of domains not in ``domains`` stay 0.
    """
    mask = label_mask(mask)
    out = np.zeros(mask.shape, dtype=np.int32)
    positions = np.arange(len(domains), dtype=np.int32) + first
    for value in np.unique(domains["class_value"]):
        rows = (domains["class_value"] == value).to_numpy()
        labels = class_domains(mask, int(value), connectivity, split_touching)
        lut = np.zeros(int(labels.max()) + 1, dtype=np.int32)
        lut[domains["domain_id"].to_numpy()[rows]] = positions[rows]
        out += lut[labels]
    return out
