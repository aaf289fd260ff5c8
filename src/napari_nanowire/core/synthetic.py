"""Synthetic bright-field TEM images of nanowires in four morphology classes, with ground truth.

The classes follow Lu et al. 2022 (Digital Discovery 1, 816): *singular* (one to a few isolated
wires), *dispersed* (many separate wires), *bundle* (wires aligned and packed side by side) and
*network* (a percolating mesh of crossing wires). They drive every benchmark of the project, so
the geometry is physical and the truth exact:

- Everything is drawn in nm and converted with ``pixel_size_nm``. Pixel (row i, column j) covers
  x in [j, j+1) and y in [i, i+1) pixels, x to the right and y downwards.
- A wire is a smooth centreline (a worm-like random walk with a persistence length, as a
  polyline) swept with its width: a pixel belongs to the wire when its centre lies within
  width/2 of the centreline, so wires have round end caps. Widths are 5-20 nm (fields of
  view under 160 nm get the thinner ones); lengths run from 100 nm to micrometres (shorter
  only when the field of view is too small for isolated wires to fit).
- ``mask`` is the union of all wires; ``instances`` numbers wires in drawing order and, where
  wires overlap, the wire drawn later (lying on top) takes the pixel (so, rarely, a wire that
  later ones cover entirely has no instance pixels).
- ``wires`` holds the truth per wire: ``width_nm``; ``length_nm``, the arc length of the part of
  the centreline inside the image (segments whose midpoint is inside); ``total_length_nm``;
  ``orientation_deg``, the axial mean direction of the inside part in [0, 180) from +x towards
  +y; the centreline's start and end points in nm; ``bundle_id`` (k >= 1 for wires of bundle k,
  0 otherwise).
- ``percolates_x``/``percolates_y`` come from the mask: one 4-connected cluster of wire pixels
  touches the left and right (top and bottom) image edges.

The classes at difficulty 0 (field F = size x pixel size; density is the reduced stick density
N L^2 / F^2, whose percolation threshold is 5.64 (Li & Zhang, Phys. Rev. E 80, 040104, 2009)):

- singular: 1-3 wires (median length min(600 nm, 0.7 F)), at least 20 nm apart, none reaching
  across the image, so they never percolate;
- dispersed: density 1-2 of wires of median length min(300 nm, 0.45 F), at least 4 nm apart,
  never percolating;
- bundle: 1-2 bundles of 4-10 wires side by side (gaps 0-2 nm, angular spread 2 degrees,
  staggered ends) along a stiff, gently curved axis about as long as the field;
- network: density 9-14 of long (median min(1000 nm, F)), curvier wires that also enter from
  outside, covering at most about 40 % of the field; wires are added until one cluster spans
  the image both ways, so networks percolate (up to 3 N + 10 wires).

Image formation (bright field): the projected thickness of each wire (a cylinder's chord,
2 sqrt(r^2 - d^2), summed where wires overlap) and of stain blobs attenuates the beam
(mass-thickness contrast, so overlaps are darker), a weak underfocus Fresnel fringe brightens
the outside of edges, amorphous carbon film adds correlated texture, the illumination is uneven
(gradient and vignette), the objective blurs (Gaussian defocus), and the detector adds shot noise
at a dose plus Gaussian read noise. Stain blobs are dark round spots that are NOT in the mask.

``difficulty`` in [0, 1] moves every setting linearly from clean to hard: the dose falls from
about 400 to 40 electrons per pixel, the contrast of a 10 nm wire from about 40 % to 18 %, the
blur grows from about 0.9 to 2.2 nm, illumination unevenness and stain blobs increase; and the
classes overlap: singular images get up to 5 wires instead of 3, dispersed wires get denser
(approaching the percolation threshold) and may touch, bundles are looser (angular spread 2 to
17 degrees, wider gaps, fewer wires, stray wires around them) and networks get sparser (closer
to the percolation threshold).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import fft as sp_fft
from scipy import ndimage
from scipy.spatial.distance import cdist

from .errors import NanowireError
from .io import write_csv, write_tiff

CLASSES: tuple[str, ...] = ("singular", "dispersed", "bundle", "network")
WIDTH_RANGE_NM = (5.0, 20.0)
MIN_LENGTH_NM = 100.0
MIN_SIZE = 32
WIRE_COLUMNS = (
    "wire_id",
    "width_nm",
    "length_nm",
    "total_length_nm",
    "orientation_deg",
    "x_start_nm",
    "y_start_nm",
    "x_end_nm",
    "y_end_nm",
    "bundle_id",
)
TRUTH_COLUMNS = (
    "image",
    "label",
    "pixel_size_nm",
    "percolates_x",
    "percolates_y",
    "area_fraction",
    "n_wires",
)


@dataclass
class SyntheticImage:
    """One synthetic image and its truth (see the module docstring for the conventions).

    ``image`` is float32 in about [0, 1], dark wires on a bright background; ``mask`` is uint8
    (1 = wire); ``instances`` is uint16 (k = row ``wire_id == k`` of ``wires``).
    """

    name: str
    label: str
    image: np.ndarray
    mask: np.ndarray
    instances: np.ndarray
    wires: pd.DataFrame
    pixel_size_nm: float
    percolates_x: bool
    percolates_y: bool


def check_settings(
    size: int = 256, pixel_size_nm: float = 1.0, difficulty: float = 0.0, n_per_class: int = 1
) -> None:
    """Raise NanowireError naming the first setting the generator cannot use."""
    if int(size) != size or size < MIN_SIZE:
        raise NanowireError(f"Image size {size} px is too small: use at least {MIN_SIZE} px.")
    if not np.isfinite(pixel_size_nm) or pixel_size_nm <= 0:
        raise NanowireError(
            f"Pixel size {pixel_size_nm} nm/px must be positive (0.5-2 nm/px is typical)."
        )
    if not 0.0 <= difficulty <= 1.0:
        raise NanowireError(f"Difficulty {difficulty} is outside [0, 1] (0 = clean, 1 = hard).")
    if int(n_per_class) != n_per_class or n_per_class < 1:
        raise NanowireError(f"Images per class {n_per_class} must be a whole number >= 1.")


def _check_label(label: str) -> None:
    if label not in CLASSES:
        raise NanowireError(f"Unknown class {label!r}: choose one of {', '.join(CLASSES)}.")


def _lerp(difficulty: float, easy: float, hard: float) -> float:
    return easy + (hard - easy) * difficulty


def _percolation(mask: np.ndarray) -> tuple[bool, bool]:
    """Whether one 4-connected cluster touches left and right, and top and bottom edges."""
    labels, _ = ndimage.label(mask)

    def spans(a: np.ndarray, b: np.ndarray) -> bool:
        return np.intersect1d(a[a > 0], b[b > 0]).size > 0

    return spans(labels[:, 0], labels[:, -1]), spans(labels[0], labels[-1])


def _walk(
    rng: np.random.Generator, length_nm: float, step_nm: float, persistence_nm: float
) -> np.ndarray:
    """A 2D worm-like centreline of exact arc length, centred on its arc midpoint, (n, 2) nm."""
    n = max(2, int(np.ceil(length_nm / step_nm)))
    step = length_nm / n
    turns = rng.normal(0.0, np.sqrt(step / persistence_nm), n)
    angle = rng.uniform(0, 2 * np.pi) + np.cumsum(turns)
    points = np.zeros((n + 1, 2))
    points[1:] = np.cumsum(step * np.column_stack([np.cos(angle), np.sin(angle)]), axis=0)
    return points - points[n // 2]


def _step_nm(width_nm: float, pixel_size_nm: float, persistence_nm: float) -> float:
    """Centreline sampling: coarse enough to rasterise fast, fine enough to look smooth."""
    radius_px = width_nm / (2 * pixel_size_nm)
    return min(float(np.clip(radius_px / 2, 0.5, 6.0)) * pixel_size_nm, persistence_nm / 40)


class _Scene:
    """Wires drawn one at a time onto a square field: truth mask, instances, thickness."""

    def __init__(self, size: int, pixel_size_nm: float) -> None:
        self.size = size
        self.pixel_size_nm = pixel_size_nm
        self.field_nm = size * pixel_size_nm
        self.mask = np.zeros((size, size), bool)
        self.instances = np.zeros((size, size), np.uint16)
        self.thickness_nm = np.zeros((size, size), np.float32)
        self.records: list[dict] = []
        self._nearest = np.full((size, size), np.inf, np.float32)
        self._centrelines: list[np.ndarray] = []
        self._boxes: list[tuple[float, float, float, float]] = []

    def footprint(
        self, points_nm: np.ndarray, reach_nm: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, columns and distances (nm) of the pixels whose centre is within reach.

        Each polyline segment is tested against a small window of pixels around it, in chunks,
        and the nearest distance per pixel is kept.
        """
        px = self.pixel_size_nm
        q = points_nm / px - 0.5
        a, d = q[:-1], np.diff(q, axis=0)
        reach = reach_nm / px
        lo = np.floor(np.minimum(q[:-1], q[1:]) - reach).astype(np.int64)
        win = int(np.ceil(np.abs(d).max() + 2 * reach)) + 2
        oy, ox = np.divmod(np.arange(win * win), win)
        chunk = max(1, 2**20 // (win * win))
        found_r, found_c = [], []
        for s in range(0, len(a), chunk):
            sl = slice(s, s + chunk)
            cx = lo[sl, 0, None] + ox
            cy = lo[sl, 1, None] + oy
            rx, ry = cx - a[sl, 0, None], cy - a[sl, 1, None]
            dx, dy = d[sl, 0, None], d[sl, 1, None]
            t = np.clip((rx * dx + ry * dy) / np.maximum(dx * dx + dy * dy, 1e-12), 0, 1)
            d2 = (rx - t * dx) ** 2 + (ry - t * dy) ** 2
            keep = (d2 <= reach * reach) & (cx >= 0) & (cy >= 0)
            keep &= (cx < self.size) & (cy < self.size)
            r, c = cy[keep], cx[keep]
            np.minimum.at(self._nearest, (r, c), d2[keep].astype(np.float32))
            found_r.append(r)
            found_c.append(c)
        rows, cols = np.concatenate(found_r), np.concatenate(found_c)
        if rows.size == 0:
            return rows, cols, np.zeros(0)
        r0, c0 = rows.min(), cols.min()
        box = self._nearest[r0 : rows.max() + 1, c0 : cols.max() + 1]
        rows, cols = np.nonzero(box < np.inf)
        dist = np.sqrt(box[rows, cols]) * px
        box[rows, cols] = np.inf
        return rows + r0, cols + c0, dist

    def inside_length(self, points_nm: np.ndarray) -> tuple[float, float]:
        """Arc length (nm) and axial mean orientation (deg) of the centreline inside the field."""
        mid = (points_nm[1:] + points_nm[:-1]) / 2
        inside = np.all((mid >= 0) & (mid < self.field_nm), axis=1)
        seg = np.diff(points_nm, axis=0)[inside]
        lengths = np.hypot(seg[:, 0], seg[:, 1])
        phi = 2 * np.arctan2(seg[:, 1], seg[:, 0])
        angle = 0.5 * np.arctan2((lengths * np.sin(phi)).sum(), (lengths * np.cos(phi)).sum())
        return float(lengths.sum()), float(np.degrees(angle) % 180.0)

    def shows(self, points_nm: np.ndarray, width_nm: float) -> bool:
        """Whether enough of the wire is inside to draw it: not just a clipped corner."""
        total = np.hypot(*np.diff(points_nm, axis=0).T).sum()
        return self.inside_length(points_nm)[0] >= min(2 * width_nm, 0.5 * total)

    def add(
        self,
        points_nm: np.ndarray,
        width_nm: float,
        bundle_id: int = 0,
        core: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Draw one wire on top of the others and record its truth row."""
        rows, cols, dist = core if core is not None else self.footprint(points_nm, width_nm / 2)
        wire_id = len(self.records) + 1
        self.mask[rows, cols] = True
        self.instances[rows, cols] = wire_id
        radius = width_nm / 2
        self.thickness_nm[rows, cols] += 2 * np.sqrt(np.maximum(radius**2 - dist**2, 0))
        self._centrelines.append(points_nm)
        self._boxes.append((*(points_nm.min(axis=0) - radius), *(points_nm.max(axis=0) + radius)))
        length, orientation = self.inside_length(points_nm)
        seg = np.diff(points_nm, axis=0)
        self.records.append(
            dict(
                zip(
                    WIRE_COLUMNS,
                    (
                        wire_id,
                        float(width_nm),
                        length,
                        float(np.hypot(seg[:, 0], seg[:, 1]).sum()),
                        orientation,
                        *map(float, points_nm[0]),
                        *map(float, points_nm[-1]),
                        int(bundle_id),
                    ),
                    strict=True,
                )
            )
        )

    def crowds(self, points_nm: np.ndarray, width_nm: float, gap_nm: float) -> bool:
        """Whether a drawn wire comes closer than ``gap_nm`` (edge to edge) to this one.

        Only wires whose bounding boxes come that close are compared, vertex to vertex, so the
        distance errs by up to half a sampling step.
        """
        if not self._boxes:
            return False
        reach = width_nm / 2 + gap_nm
        boxes = np.asarray(self._boxes)
        lo, hi = points_nm.min(axis=0) - reach, points_nm.max(axis=0) + reach
        close = np.all((boxes[:, :2] < hi) & (boxes[:, 2:] > lo), axis=1)
        for k in np.flatnonzero(close):
            radius = self.records[k]["width_nm"] / 2
            if cdist(points_nm, self._centrelines[k]).min() < reach + radius:
                return True
        return False

    def wires(self) -> pd.DataFrame:
        return pd.DataFrame(self.records, columns=list(WIRE_COLUMNS))


@dataclass
class _Style:
    """Per-image sample properties shared by the wires of one image."""

    width_nm: float
    difficulty: float

    def width(self, rng: np.random.Generator) -> float:
        return float(np.clip(self.width_nm * np.exp(rng.normal(0, 0.12)), *WIDTH_RANGE_NM))


def _length(rng: np.random.Generator, median_nm: float, field_nm: float) -> float:
    """A log-normal wire length, at least 100 nm unless the field is too small for that."""
    low = min(MIN_LENGTH_NM, 0.4 * field_nm)
    return float(np.clip(median_nm * np.exp(rng.normal(0, 0.35)), low, 5000.0))


class _Clusters:
    """4-connected clusters of wire pixels and the image edges each touches, kept up to date as
    wires are added (union-find), so that testing a candidate needs no relabelling.

    A wire counts as one piece even where it leaves the field and comes back, and as touching
    every cluster within 1.5 px of its edge: both err on the side of "percolates".
    """

    LEFT, RIGHT, TOP, BOTTOM = 1, 2, 4, 8

    def __init__(self, mask: np.ndarray) -> None:
        self.labels, n = ndimage.label(mask)
        self.parent = list(range(n + 1))
        self.edges = [0] * (n + 1)
        borders = (self.labels[:, 0], self.labels[:, -1], self.labels[0], self.labels[-1])
        for bit, line in zip((self.LEFT, self.RIGHT, self.TOP, self.BOTTOM), borders, strict=True):
            for k in np.unique(line[line > 0]):
                self.edges[k] |= bit

    def _root(self, k: int) -> int:
        while self.parent[k] != k:
            self.parent[k] = self.parent[self.parent[k]]
            k = self.parent[k]
        return k

    def join(
        self, near: tuple[np.ndarray, np.ndarray], core: tuple[np.ndarray, np.ndarray]
    ) -> tuple[set[int], int]:
        """The clusters a wire would join (pixels ``near`` it) and the edges they would touch."""
        roots = {self._root(int(k)) for k in np.unique(self.labels[near]) if k}
        rows, cols = core
        last = self.labels.shape[0] - 1
        edges = (
            self.LEFT * (cols.min() == 0)
            | self.RIGHT * (cols.max() == last)
            | self.TOP * (rows.min() == 0)
            | self.BOTTOM * (rows.max() == last)
        )
        for root in roots:
            edges |= self.edges[root]
        return roots, int(edges)

    def spans(self, edges: int) -> bool:
        both_x, both_y = self.LEFT | self.RIGHT, self.TOP | self.BOTTOM
        return (edges & both_x) == both_x or (edges & both_y) == both_y

    def add(self, roots: set[int], edges: int, core: tuple[np.ndarray, np.ndarray]) -> None:
        new = len(self.parent)
        self.parent.append(new)
        self.edges.append(edges)
        for root in roots:
            self.parent[root] = new
        self.labels[core] = new


def _place_isolated(
    scene: _Scene,
    rng: np.random.Generator,
    style: _Style,
    n: int,
    median_nm: float,
    persistence_nm: tuple[float, float],
    gap_nm: float,
    touch_probability: float = 0.0,
    margin: float = 0.0,
) -> None:
    """Add up to ``n`` wires that never make the image percolate and touch others only rarely.

    A candidate closer than ``gap_nm`` (edge to edge) to a drawn wire is kept with
    ``touch_probability``; a candidate that would connect opposite edges is redrawn shorter.
    """
    field = scene.field_nm
    clusters = _Clusters(scene.mask)
    for _ in range(n):
        width = style.width(rng)
        length = _length(rng, median_nm, field)
        persistence = rng.uniform(*persistence_nm)
        for _attempt in range(30):
            points = _walk(
                rng, length, _step_nm(width, scene.pixel_size_nm, persistence), persistence
            )
            points += rng.uniform(margin * field, (1 - margin) * field, 2)
            if not scene.shows(points, width):
                continue
            if scene.crowds(points, width, gap_nm) and rng.random() >= touch_probability:
                continue
            rows, cols, dist = scene.footprint(points, width / 2 + 1.5 * scene.pixel_size_nm)
            core = dist <= width / 2
            if not core.any():
                continue
            roots, edges = clusters.join((rows, cols), (rows[core], cols[core]))
            if clusters.spans(edges):
                length = max(0.85 * length, width)
                continue
            clusters.add(roots, edges, (rows[core], cols[core]))
            scene.add(points, width, core=(rows[core], cols[core], dist[core]))
            break


def _singular(scene: _Scene, rng: np.random.Generator, style: _Style) -> None:
    d = style.difficulty
    n = int(rng.integers(1, 1 + round(_lerp(d, 3, 5))))
    median = min(600.0, 0.7 * scene.field_nm)
    _place_isolated(scene, rng, style, n, median, (300, 1500), gap_nm=_lerp(d, 20, 8), margin=0.1)


def _stick_count(density: float, field_nm: float, length_nm: float) -> int:
    """How many sticks of this length give reduced density N L^2 / A in the field."""
    return max(1, round(density * field_nm**2 / length_nm**2))


def _dispersed(scene: _Scene, rng: np.random.Generator, style: _Style) -> None:
    d = style.difficulty
    median = min(300.0, 0.45 * scene.field_nm)
    density = rng.uniform(1.0, 2.0) + d * rng.uniform(1.0, 2.5)
    n = min(_stick_count(density, scene.field_nm, median), 400)
    _place_isolated(
        scene, rng, style, n, median, (200, 1000), gap_nm=_lerp(d, 4, 1), touch_probability=0.6 * d
    )


def _network(scene: _Scene, rng: np.random.Generator, style: _Style) -> None:
    """Long crossing wires, entering from outside too, until one cluster spans both ways."""
    d = style.difficulty
    field = scene.field_nm
    median = min(1000.0, field)
    density = rng.uniform(*(_lerp(d, 9, 5), _lerp(d, 14, 8)))
    # Wide wires percolate at fewer sticks; also keep the covered area below about 40 %.
    n0 = min(
        _stick_count(density, field, median),
        max(1, round(0.4 * field**2 / (median * style.width_nm))),
    )
    target, cap = n0, 3 * n0 + 10
    for _attempt in range(50 * cap):
        width = style.width(rng)
        persistence = rng.uniform(100, 500)
        points = _walk(
            rng,
            _length(rng, median, field),
            _step_nm(width, scene.pixel_size_nm, persistence),
            persistence,
        )
        points += rng.uniform(-0.15 * field, 1.15 * field, 2)
        if not scene.shows(points, width):
            continue
        scene.add(points, width)
        if len(scene.records) < target:
            continue
        if all(_percolation(scene.mask)) or len(scene.records) >= cap:
            return
        target += max(1, n0 // 8)


def _smooth_wiggle(rng: np.random.Generator, s: np.ndarray, amplitude_nm: float) -> np.ndarray:
    """A smooth lateral displacement along arc length s: a few random long-wavelength sines."""
    wavelengths = rng.uniform(60, 400, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    waves = np.sin(2 * np.pi * s[:, None] / wavelengths + phases).sum(axis=1)
    return amplitude_nm * waves / np.sqrt(1.5)


def _bundle(scene: _Scene, rng: np.random.Generator, style: _Style) -> None:
    """One to a few bundles of aligned wires packed side by side along a stiff, gently curved
    axis, with staggered ends; at higher difficulty looser and with stray wires around."""
    d = style.difficulty
    field = scene.field_nm
    spread = np.radians(_lerp(d, 2.0, 17.0))
    n_bundles = int(rng.integers(1, 1 + round(_lerp(d, 2, 3))))
    for bundle_id in range(1, n_bundles + 1):
        axis_len = _length(rng, min(1500.0, 1.1 * field), field) + 0.3 * field
        persistence = rng.uniform(2000, 8000)
        axis = _walk(rng, axis_len, min(2.0, axis_len / 50), persistence)
        axis += rng.uniform(0.25 * field, 0.75 * field, 2)
        arc = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(axis, axis=0).T))])
        tangent = np.gradient(axis, arc, axis=0)
        normal = np.column_stack([-tangent[:, 1], tangent[:, 0]])
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        n_wires = int(rng.integers(round(_lerp(d, 4, 3)), round(_lerp(d, 10, 7)) + 1))
        widths = np.array([style.width(rng) for _ in range(n_wires)])
        gaps = rng.uniform(0, _lerp(d, 2.0, 8.0), n_wires - 1)
        centres = np.concatenate([[0], np.cumsum((widths[:-1] + widths[1:]) / 2 + gaps)])
        centres -= centres.mean()
        for i in rng.permutation(n_wires):
            s0 = rng.uniform(0, 0.3) * arc[-1]
            s1 = arc[-1] - rng.uniform(0, 0.3) * arc[-1]
            step = _step_nm(widths[i], scene.pixel_size_nm, persistence)
            s = np.linspace(s0, s1, max(2, int(np.ceil((s1 - s0) / step))) + 1)
            along = np.column_stack([np.interp(s, arc, axis[:, k]) for k in (0, 1)])
            across = np.column_stack([np.interp(s, arc, normal[:, k]) for k in (0, 1)])
            offset = centres[i] + np.tan(rng.normal(0, spread)) * (s - (s0 + s1) / 2)
            offset += _smooth_wiggle(rng, s, _lerp(d, 0.5, 3.0))
            points = along + across * offset[:, None]
            if scene.shows(points, widths[i]):
                scene.add(points, widths[i], bundle_id=bundle_id)
    strays = int(rng.poisson(3 * d))
    _place_isolated(
        scene,
        rng,
        style,
        strays,
        min(300.0, 0.45 * field),
        (200, 1000),
        gap_nm=2,
        touch_probability=0.5,
    )


_DRAW: dict[str, Callable[[_Scene, np.random.Generator, _Style], None]] = {
    "singular": _singular,
    "dispersed": _dispersed,
    "bundle": _bundle,
    "network": _network,
}


def _stain(rng: np.random.Generator, scene: _Scene, difficulty: float) -> np.ndarray:
    """Projected thickness (nm) of a few roundish stain blobs, placed anywhere, not in the mask."""
    stain = np.zeros_like(scene.thickness_nm)
    mean = _lerp(difficulty, 0.4, 2.0) * (scene.field_nm / 200.0) ** 2
    for _ in range(rng.poisson(mean)):
        radius = rng.uniform(3, 12)
        points = _walk(rng, rng.uniform(0.01, 0.6) * radius, radius, 1e6)
        points += rng.uniform(0, scene.field_nm, 2)
        rows, cols, dist = scene.footprint(points, radius)
        stain[rows, cols] += rng.uniform(1.0, 2.0) * np.sqrt(radius**2 - dist**2)
    return stain


def _gauss_px(image: np.ndarray, sigma_nm: float, pixel_size_nm: float) -> np.ndarray:
    return ndimage.gaussian_filter(image, sigma_nm / pixel_size_nm, mode="reflect")


def _carbon_film(rng: np.random.Generator, size: int, px: float) -> np.ndarray:
    """Optical density of amorphous carbon: fine grain (about 1 nm) plus slow thickness drift.

    Both are one white noise low-passed in Fourier space (faster than a large Gaussian); each
    is divided by its standard deviation, known exactly: the product over both axes of
    sqrt(mean gauss^2), i.e. mean gauss^2 of the 1D transfer.
    """
    freq2 = sp_fft.fftfreq(size) ** 2
    spectrum = sp_fft.rfft2(rng.standard_normal((size, size), dtype=np.float32))
    transfer = np.zeros(spectrum.shape, np.float32)
    for sigma_nm, amplitude in (
        (rng.uniform(0.6, 1.2), rng.uniform(0.02, 0.04)),
        (rng.uniform(20, 60), rng.uniform(0.005, 0.02)),
    ):
        gauss = np.exp(-2 * np.pi**2 * (sigma_nm / px) ** 2 * freq2)
        std = np.mean(gauss**2)
        transfer += (amplitude / std) * gauss[:, None] * gauss[None, : spectrum.shape[1]]
    return sp_fft.irfft2(spectrum * transfer, s=(size, size))


def _illumination(rng: np.random.Generator, size: int, difficulty: float) -> np.ndarray:
    """Relative beam intensity: a linear gradient and an off-centre vignette."""
    y, x = np.ogrid[0:size, 0:size]
    x, y = (x / size - 0.5).astype(np.float32), (y / size - 0.5).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = rng.uniform(0, _lerp(difficulty, 0.1, 0.35)) * (
        x * np.cos(angle) + y * np.sin(angle)
    )
    cx, cy = rng.uniform(-0.3, 0.3, 2)
    vignette = rng.uniform(0, _lerp(difficulty, 0.15, 0.5)) * ((x - cx) ** 2 + (y - cy) ** 2)
    return (1.0 + gradient - vignette).astype(np.float32)


def _form_image(rng: np.random.Generator, scene: _Scene, difficulty: float) -> np.ndarray:
    """Bright-field image of the scene: attenuation, fringe, blur, illumination, noise."""
    px, shape = scene.pixel_size_nm, scene.mask.shape
    contrast_10nm = rng.uniform(_lerp(difficulty, 0.33, 0.15), _lerp(difficulty, 0.48, 0.22))
    mu = -np.log1p(-contrast_10nm) / 10.0
    density = np.float32(mu) * (scene.thickness_nm + _stain(rng, scene, difficulty))
    fringe = _gauss_px(density, 1.0, px) - _gauss_px(density, 3.0, px)
    density += np.float32(rng.uniform(0.3, 0.8)) * fringe + _carbon_film(rng, scene.size, px)
    beam = np.exp(-density) * _illumination(rng, scene.size, difficulty)
    beam = _gauss_px(
        beam, rng.uniform(*(_lerp(difficulty, 0.6, 1.6), _lerp(difficulty, 1.2, 2.8))), px
    )
    dose = rng.uniform(_lerp(difficulty, 250, 25), _lerp(difficulty, 550, 60))
    counts = rng.poisson(np.clip(beam, 0, None) * dose).astype(np.float32)
    counts += np.float32(rng.uniform(1, 3)) * rng.standard_normal(shape, dtype=np.float32)
    level = rng.uniform(0.65, 0.8)
    return np.clip(counts * np.float32(level / dose), 0, 1)


def generate_image(
    label: str,
    size: int = 256,
    pixel_size_nm: float = 1.0,
    difficulty: float = 0.0,
    seed: int | np.random.Generator = 0,
    name: str | None = None,
) -> SyntheticImage:
    """One synthetic image of class ``label`` with its truth, bit-identical for a given seed."""
    _check_label(label)
    check_settings(size, pixel_size_nm, difficulty)
    if isinstance(seed, np.random.Generator):
        rng, default_name = seed, label
    else:
        rng, default_name = np.random.default_rng(seed), f"{label}_{seed}"
    scene = _Scene(int(size), float(pixel_size_nm))
    # Small fields of view get the thinner wires of the range, so that wires fit in them.
    thin = min(1.0, scene.field_nm / 160.0)
    width = max(rng.uniform(6, 16) * thin, WIDTH_RANGE_NM[0] + 0.5)
    style = _Style(width_nm=width, difficulty=float(difficulty))
    _DRAW[label](scene, rng, style)
    image = _form_image(rng, scene, float(difficulty))
    px, py = _percolation(scene.mask)
    return SyntheticImage(
        name=name if name is not None else default_name,
        label=label,
        image=image,
        mask=scene.mask.astype(np.uint8),
        instances=scene.instances,
        wires=scene.wires(),
        pixel_size_nm=float(pixel_size_nm),
        percolates_x=px,
        percolates_y=py,
    )


def image_seed(seed: int, label: str, index: int) -> np.random.Generator:
    """The generator for image ``index`` of class ``label``: independent of other classes."""
    return np.random.default_rng([seed, zlib.crc32(label.encode()), index])


def generate_dataset(
    n_per_class: int,
    size: int = 256,
    pixel_size_nm: float = 1.0,
    difficulty: float = 0.0,
    seed: int = 0,
    classes: Sequence[str] = CLASSES,
) -> list[SyntheticImage]:
    """``n_per_class`` images of each class, named ``<class>_<index:03d>``, class by class."""
    check_settings(size, pixel_size_nm, difficulty, n_per_class)
    for label in classes:
        _check_label(label)
    return [
        generate_image(
            label,
            size,
            pixel_size_nm,
            difficulty,
            image_seed(seed, label, i),
            name=f"{label}_{i:03d}",
        )
        for label in classes
        for i in range(int(n_per_class))
    ]


def write_dataset(items: Sequence[SyntheticImage], out_dir: str | os.PathLike) -> Path:
    """Write images, masks, instance labels (ImageJ TIFFs with pixel size) and truth tables.

    Layout: ``images/``, ``masks/``, ``instances/`` with ``<name>.tif`` each, and ``labels.csv``
    (image, label), ``wires.csv`` (image plus the wire columns) and ``truth.csv`` (image, label,
    pixel_size_nm, percolates_x, percolates_y, area_fraction, n_wires); ``image`` is the path
    of the image relative to ``out_dir``.
    """
    out = Path(out_dir)
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        raise NanowireError(f"Image names must be unique to be written to {out}.")
    truth, wires = [], []
    for item in items:
        rel = f"images/{item.name}.tif"
        write_tiff(out / rel, item.image, item.pixel_size_nm)
        write_tiff(out / "masks" / f"{item.name}.tif", item.mask, item.pixel_size_nm)
        write_tiff(out / "instances" / f"{item.name}.tif", item.instances, item.pixel_size_nm)
        truth.append(
            dict(
                image=rel,
                label=item.label,
                pixel_size_nm=item.pixel_size_nm,
                percolates_x=item.percolates_x,
                percolates_y=item.percolates_y,
                area_fraction=float(item.mask.mean()),
                n_wires=len(item.wires),
            )
        )
        wires.append(item.wires.assign(image=rel))
    truth_table = pd.DataFrame(truth, columns=list(TRUTH_COLUMNS))
    columns = ["image", *WIRE_COLUMNS]
    wire_table = (
        pd.concat(wires, ignore_index=True)[columns] if wires else pd.DataFrame(columns=columns)
    )
    tables = {
        "labels.csv": truth_table[["image", "label"]],
        "truth.csv": truth_table,
        "wires.csv": wire_table,
    }
    for filename, table in tables.items():
        write_csv(out / filename, table)
    return out


def simulate_strokes(
    mask: np.ndarray,
    seed: int | np.random.Generator = 0,
    n_wire_strokes: int = 6,
    n_background_strokes: int = 10,
    stroke_px: int = 40,
    brush_px: int = 3,
) -> np.ndarray:
    """Sparse training strokes such as a user paints them, from a dense 0/1 truth mask.

    Returns uint8 in the training convention: 0 = not labelled, 1 = background, 2 = wire.
    Wire strokes follow short pieces of the wires' centrelines; background strokes are short
    straight lines kept a brush width away from any wire.
    """
    from scipy.ndimage import binary_dilation
    from skimage.draw import line
    from skimage.morphology import disk, skeletonize

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    mask = np.asarray(mask) > 0
    h, w = mask.shape
    strokes = np.zeros(mask.shape, np.uint8)
    centre = np.argwhere(skeletonize(mask))
    for _ in range(n_wire_strokes if len(centre) else 0):
        y, x = centre[rng.integers(len(centre))]
        near = np.abs(centre - (y, x)).max(1) <= stroke_px // 2
        strokes[tuple(centre[near].T)] = 2
    brush = disk(max(brush_px // 2, 0))
    strokes[binary_dilation(strokes == 2, structure=brush) & mask] = 2
    free = ~binary_dilation(mask, structure=disk(brush_px + 2))
    for _ in range(n_background_strokes):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        angle = rng.uniform(0, np.pi)
        y1 = int(np.clip(y0 + stroke_px * np.sin(angle), 0, h - 1))
        x1 = int(np.clip(x0 + stroke_px * np.cos(angle), 0, w - 1))
        rr, cc = line(int(y0), int(x0), y1, x1)
        piece = np.zeros(mask.shape, bool)
        piece[rr, cc] = True
        strokes[binary_dilation(piece, structure=brush) & free] = 1
    return strokes
