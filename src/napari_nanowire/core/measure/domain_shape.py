"""Geometry of one domain that scikit-image does not give directly, in pixel units.

A domain is a boolean crop (``True`` inside). Pixels are unit squares centred on integer
coordinates, so a w x l bar of pixels has Feret diameters w and sqrt(w^2 + l^2).

- :func:`hull_stats`: maximum and minimum caliper width (Feret diameters) and area of the
  convex hull of the domain's pixel squares.
- :func:`skeleton_stats`: length along the skeleton, local widths from the distance transform,
  branch points and end points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist
from skimage.morphology import skeletonize


@dataclass(frozen=True)
class HullStats:
    """The convex hull of a domain's pixel squares, in pixels."""

    feret_max: float
    feret_min: float
    area: float


def hull_stats(crop: np.ndarray) -> HullStats:
    """Feret diameters and hull area of a non-empty boolean crop.

    Only the leftmost and rightmost pixel of each row can be on the hull, so the hull is built
    from the four corners of those two pixels per row. Maximum Feret diameter: the largest
    distance between two hull vertices. Minimum: the caliper width is smallest with one jaw
    flush against a hull edge, so for every edge take the farthest vertex from that edge's
    line and keep the smallest of these (all edges at once). On oblique digitised edges the
    pixel squares stick out of the drawn shape, adding up to sqrt(2) px to the minimum.
    """
    rows = np.flatnonzero(crop.any(axis=1))
    first = crop[rows].argmax(axis=1)
    last = crop.shape[1] - 1 - crop[rows, ::-1].argmax(axis=1)
    r = np.concatenate([rows - 0.5, rows + 0.5, rows - 0.5, rows + 0.5])
    c = np.concatenate([first - 0.5, first - 0.5, last + 0.5, last + 0.5])
    hull = ConvexHull(np.column_stack([r, c]))
    vertices = hull.points[hull.vertices]
    edges = np.roll(vertices, -1, axis=0) - vertices
    normals = (
        np.column_stack([-edges[:, 1], edges[:, 0]]) / np.hypot(edges[:, 0], edges[:, 1])[:, None]
    )
    offsets = vertices[None, :, :] - vertices[:, None, :]
    widths = np.abs(np.einsum("evk,ek->ev", offsets, normals)).max(axis=1)
    return HullStats(float(pdist(vertices).max()), float(widths.min()), float(hull.volume))


def skeleton_and_distance(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (Lee) skeleton of a boolean image and its Euclidean distance transform.

    The distance runs from each pixel centre to the nearest background pixel centre, with
    everything outside the image counted as background.
    """
    inside = np.pad(np.asarray(binary, dtype=bool), 1)
    skeleton = skeletonize(inside, method="lee").astype(bool)[1:-1, 1:-1]
    return skeleton, ndimage.distance_transform_edt(inside)[1:-1, 1:-1]


def domain_skeletons(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Skeleton and distance transform of every labelled domain, each computed on its own.

    Returned as whole images (False and 0 outside the domains). Each domain is cut out alone,
    so a 4-connected domain's skeleton ignores a diagonal neighbour that thinning the whole
    mask at once would join to it.
    """
    skeleton = np.zeros(labels.shape, dtype=bool)
    distance = np.zeros(labels.shape, dtype=np.float64)
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        domain = labels[sl] == lab
        skel, dist = skeleton_and_distance(domain)
        skeleton[sl] |= skel
        distance[sl][domain] = dist[domain]
    return skeleton, distance


@dataclass(frozen=True)
class SkeletonStats:
    """What the skeleton of one domain says about it, in pixels."""

    length: float
    width_mean: float
    width_median: float
    width_q1: float
    width_q3: float
    branch_points: int
    end_points: int


# Neighbour steps (row, col) of an 8-connected skeleton graph: right, down, down-right, down-left.
_STEPS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _pair_slices(dr: int, dc: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices selecting every pixel and its neighbour at (dr, dc >= -1) within one array."""
    rows_a, rows_b = (slice(None), slice(None)) if dr == 0 else (slice(None, -1), slice(1, None))
    cols = {0: (slice(None), slice(None)), 1: (slice(None, -1), slice(1, None))}
    cols[-1] = (slice(1, None), slice(None, -1))
    return (rows_a, cols[dc][0]), (rows_b, cols[dc][1])


def skeleton_graph(skel: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(orthogonal steps, diagonal steps, degree, corner flags) of an 8-connected skeleton.

    A diagonal step is dropped where an orthogonal pixel already joins its two pixels (an
    L-corner), so such corners are neither counted twice nor mistaken for junctions. A corner
    is a pixel with two neighbours that are not in a straight line with it.
    """
    degree = np.zeros(skel.shape, dtype=np.int8)
    direction = np.zeros((2, *skel.shape), dtype=np.int8)
    counts = []
    for dr, dc in _STEPS:
        a, b = _pair_slices(dr, dc)
        edge = skel[a] & skel[b]
        if dr and dc:
            edge &= ~skel[a[0], b[1]] & ~skel[b[0], a[1]]
        degree[a] += edge
        degree[b] += edge
        direction[(0, *a)] += dr * edge
        direction[(1, *a)] += dc * edge
        direction[(0, *b)] -= dr * edge
        direction[(1, *b)] -= dc * edge
        counts.append(int(edge.sum()))
    corners = skel & (degree == 2) & direction.any(axis=0)
    return counts[0] + counts[1], counts[2] + counts[3], degree, corners


def skeleton_stats(domain: np.ndarray, skeleton: np.ndarray, distance: np.ndarray) -> SkeletonStats:
    """Length, width and topology of one domain from its skeleton and distance transform.

    ``domain`` is the domain's boolean crop; ``skeleton`` and ``distance`` cover the same crop
    (see :func:`skeleton_and_distance`; pixels outside the domain are ignored).

    Length: the skeleton's steps are weighted with the corner-count estimator of Vossepoel
    and Smeulders (1982), 0.980 per orthogonal step + 1.406 per diagonal step - 0.091 per
    corner. Plain (1, sqrt 2) weights over-estimate straight lines between the axes by up to
    8 % (measured on 150 px bars at 0-90 deg); these weights keep them within 3.5 %. Thinning
    stops about half a width short of each end of a wire, so the local half-width at each end
    point is added back (twice for a lone skeleton pixel, e.g. a disc's centre).

    Width: twice the Euclidean distance transform sampled on the skeleton gives the local
    width, but with a digitisation bias: the distance transform runs to the nearest
    background pixel *centre*, half a pixel beyond an axis-parallel edge (+1 px on the
    width), while on an oblique edge background centres come closer to the edge and the
    staircase's inner corners cut in (bias near 0). So the bias is measured per domain rather
    than assumed: it is the amount by which the mean local width exceeds area / length (the
    width of a band of that area and length) and is subtracted from every sample. The mean
    width is then area / length; the median and quartiles are of the corrected samples.

    Branch points are clusters of skeleton pixels with three or more neighbours; end points
    are skeleton pixels with exactly one neighbour.
    """
    skel = skeleton & domain
    orthogonal, diagonal, degree, corners = skeleton_graph(skel)
    ends = skel & (degree == 1)
    lone = skel & (degree == 0)
    path = 0.980 * orthogonal + 1.406 * diagonal - 0.091 * corners.sum()
    length = float(path + (distance[ends] - 0.5).sum() + 2.0 * (distance[lone] - 0.5).sum())
    local = 2.0 * distance[skel]
    bias = local.mean() - domain.sum() / length
    q1, median, q3 = np.quantile(local, [0.25, 0.5, 0.75]) - bias
    _, branch_points = ndimage.label(skel & (degree >= 3), structure=np.ones((3, 3)))
    return SkeletonStats(
        length=length,
        width_mean=float(local.mean() - bias),
        width_median=float(median),
        width_q1=float(q1),
        width_q3=float(q3),
        branch_points=int(branch_points),
        end_points=int(ends.sum()),
    )


def second_moments(labels: np.ndarray, count: int) -> np.ndarray:
    """Rows (mean y, mean x, var y, var x, cov xy) per label 0..count, all labels at once."""
    rows, cols = np.nonzero(labels)
    lab = labels[rows, cols]
    n = np.maximum(np.bincount(lab, minlength=count + 1), 1)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(lab, weights=values, minlength=count + 1) / n

    mean_y, mean_x = mean(rows), mean(cols)
    # Centre on each label's mean before squaring, so no precision is lost on large images.
    dy, dx = rows - mean_y[lab], cols - mean_x[lab]
    return np.stack([mean_y, mean_x, mean(dy * dy), mean(dx * dx), mean(dx * dy)])
