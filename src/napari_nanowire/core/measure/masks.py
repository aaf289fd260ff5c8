"""Checking a dense label mask and naming its classes, before anything is measured."""

from __future__ import annotations

import numpy as np
import pandas as pd
from skimage.measure import label

from ..errors import NanowireError

DEFAULT_CLASS_NAMES: dict[int, str] = {1: "wire"}


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


def class_domains(mask: np.ndarray, value: int, connectivity: int) -> np.ndarray:
    """Label image of class ``value``'s domains: domain ``k`` of the tables is label ``k``."""
    return label(np.asarray(mask) == value, connectivity=connectivity)


def domain_label_image(
    mask: np.ndarray, domains: pd.DataFrame, connectivity: int, first: int = 1
) -> np.ndarray:
    """One int32 label per row of ``domains`` (this mask's rows), ``first`` + row position.

    The rows need ``class_value`` and ``domain_id`` as :func:`.tables.measure_domains` gives
    them with the same connectivity; pixels of domains not in ``domains`` stay 0.
    """
    mask = as_label_mask(mask)
    out = np.zeros(mask.shape, dtype=np.int32)
    positions = np.arange(len(domains), dtype=np.int32) + first
    for value in np.unique(domains["class_value"]):
        rows = (domains["class_value"] == value).to_numpy()
        labels = class_domains(mask, int(value), connectivity)
        lut = np.zeros(int(labels.max()) + 1, dtype=np.int32)
        lut[domains["domain_id"].to_numpy()[rows]] = positions[rows]
        out += lut[labels]
    return out
