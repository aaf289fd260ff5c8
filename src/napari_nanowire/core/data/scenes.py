"""Wire scenes in nm for synthetic micrographs: random walks, placement, the four classes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial.distance import cdist

WIDTH_RANGE_NM = (5.0, 20.0)
MIN_LENGTH_NM = 100.0
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
