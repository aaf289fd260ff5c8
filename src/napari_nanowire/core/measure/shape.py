"""Length and width of one domain, chosen so they hold on ragged and on stubby domains.

The rule, per domain (pixel units; :mod:`.tables` scales to nm):

1. The skeleton is pruned of spurs shorter than a local width (:func:`.pruning.prune_spurs`).
2. Mean width = area / length of the pruned skeleton; median width and quartiles from the
   distance transform along it (the estimators of :func:`.domain_shape.skeleton_stats`,
   validated in ``benchmarks/RESULTS.md``). Branch and end points are counted after pruning.
3. Length = the main (longest) path of the pruned skeleton with half a local width added back
   at each end (:func:`.pruning.main_path`); ``skeleton_length`` is the whole pruned skeleton
   (a network's total wire length).
4. Fallback for short, wide domains: if the main path is shorter than ``SHORT_ASPECT`` times
   the domain's largest local width (twice the largest distance-transform value: the width of
   its widest part, which a curved wire's caliper width is not), the skeleton is mostly end
   effects (a 33 nm wide wire stub cut by the image edge measured 14 nm wide on its skeleton).
   Then width = minimum caliper width (Feret), length = maximum Feret diameter, no width
   spread, and ``short`` is set. A disc is short: its width and length are its diameter.

A domain whose skeleton has no spurs and no branches measures exactly as before pruning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .domain_shape import domain_skeletons, hull_stats, skeleton_stats
from .pruning import PRUNE_FACTOR, main_path, prune_spurs

SHORT_ASPECT = 2.0
"""A domain whose main path is shorter than this many of its largest local widths is measured
by calipers."""


@dataclass(frozen=True)
class DomainShape:
    """Robust shape measures of one domain, in pixels."""

    feret_max: float
    feret_min: float
    hull_area: float
    length: float
    skeleton_length: float
    width_mean: float
    width_median: float
    width_q1: float
    width_q3: float
    branch_points: int
    end_points: int
    short: bool


def pruned_skeletons(
    labels: np.ndarray, factor: float = PRUNE_FACTOR
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`.domain_shape.domain_skeletons`, with every domain's spurs pruned."""
    skeleton, distance = domain_skeletons(labels)
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        domain = labels[sl] == lab
        own = skeleton[sl] & domain
        if own.sum() > 3:
            skeleton[sl][domain] = prune_spurs(own, distance[sl], factor)[domain]
    return skeleton, distance


def domain_shape(domain: np.ndarray, skeleton: np.ndarray, distance: np.ndarray) -> DomainShape:
    """Measure one domain's boolean crop from its pruned skeleton and distance transform."""
    hull = hull_stats(domain)
    skel = skeleton & domain
    whole = skeleton_stats(domain, skel, distance)
    path = main_path(skel)
    length = (
        whole.length
        if np.array_equal(path, skel)
        else skeleton_stats(domain, path, distance).length
    )
    short = length < SHORT_ASPECT * 2.0 * distance[domain].max()
    if short:
        widths = (hull.feret_min,) * 2 + (math.nan,) * 2
        length = hull.feret_max
    else:
        widths = (whole.width_mean, whole.width_median, whole.width_q1, whole.width_q3)
    return DomainShape(
        hull.feret_max,
        hull.feret_min,
        hull.area,
        length,
        whole.length,
        *widths,
        branch_points=whole.branch_points,
        end_points=whole.end_points,
        short=short,
    )
