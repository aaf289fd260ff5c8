"""Percolation: does one connected domain span the image from edge to edge?"""

from __future__ import annotations

import numpy as np


def spans(labels: np.ndarray, axis: int) -> bool:
    """True if one labelled domain touches both opposite image edges across ``axis``.

    ``axis=1`` asks for a path in x (left edge to right edge), ``axis=0`` in y (top to
    bottom). ``labels`` is a label image (0 = background), so connectivity is whatever the
    labelling used.
    """
    first = np.take(labels, 0, axis=axis)
    last = np.take(labels, -1, axis=axis)
    common = np.intersect1d(first[first > 0], last[last > 0])
    return bool(common.size > 0)


def percolates(labels: np.ndarray) -> tuple[bool, bool]:
    """(percolates in x, percolates in y) for a 2D label image."""
    return spans(labels, axis=1), spans(labels, axis=0)
