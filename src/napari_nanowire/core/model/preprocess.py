"""Turning raw TEM intensities into network input: one normalisation for every model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import NanowireError

NORMALIZATION = "percentile-standardize-v1"


def normalize(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Per-image standardisation robust to hot pixels and dose differences.

    Intensities are clipped to the [low, high] percentiles, then shifted to zero mean and unit
    standard deviation; a constant image becomes all zeros. Returns float32 of the same shape.
    Non-finite values are refused, naming the problem, because they poison every statistic.
    """
    image = np.asarray(image)
    wide = np.issubdtype(image.dtype, np.floating) and image.dtype.itemsize > 4
    arr = np.asarray(image, dtype=np.float64 if wide else np.float32)
    if not np.all(np.isfinite(arr)):
        raise NanowireError(
            "Image contains NaN or infinite values; replace them (e.g. with the median) first."
        )
    if wide and float(np.abs(arr).max()) > 1e30:  # beyond float32 (or its squares): rescale,
        arr = arr / float(np.abs(arr).max())  # which standardisation does not notice
    lo, hi = np.percentile(arr, [low, high])
    arr = np.clip(arr, lo, hi)
    std = float(arr.std())
    if std < 1e-12:
        return np.zeros_like(arr)
    return ((arr - float(arr.mean())) / std).astype(np.float32, copy=False)


def median_known(values: Sequence[float | None]) -> float | None:
    """Median of the known (non-empty) pixel sizes, or None when none is known: the pixel size
    a model is trained at when its images come at several."""
    known = [float(v) for v in values if v]
    return float(np.median(known)) if known else None
