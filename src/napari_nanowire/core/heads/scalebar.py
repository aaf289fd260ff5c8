"""Burned-in annotations to ignore: scale bars with their text, databars and label boxes.

Exported micrographs often carry a solid white or black scale bar with its length written
next to it, an instrument databar along one edge, or a white box with a panel letter. A
segmenter trained on strokes has never seen them and calls them wires. They are painted at the
image's extreme grey values, as axis-aligned solid rectangles, near an edge, which real
structures almost never are; :func:`find_annotations` looks for exactly that:

- **bar**: a solid horizontal bar (:func:`_solid_bar`: a resampled figure's soft top and
  bottom rows do not count against it) at least 3.5 x longer than tall, thin (<= 6 % of the
  height), in the outer quarter of the height but not on the edge row itself, plus the
  text-like blobs (glyphs) of the same polarity beside it;
- **text**: a bar's length written further from it or in the other polarity: a line of
  three or more glyphs of about one height side by side over or under the bar
  (:func:`_text_lines`);
- **databar**: a band touching the top or bottom edge across >= 80 % of the width, at most a
  quarter of the height, solid once its text is filled;
- **box**: a solid rectangle near an edge (:data:`BOX_EDGE`) holding text (small holes: 3-40 %
  of the box), e.g. a panel letter or a boxed scale bar.

Training treats the region as "not labelled"; prediction sets it to background and reports it;
the classifier sees the image with the region painted over (:func:`fill_annotations`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.transform import downscale_local_mean

EXTREME = 0.06
"""Pixels within this fraction of the grey range from the minimum/maximum count as painted."""
EDGE_BAND = 0.25
MARGIN_PX = 3
FILL_SIDE = 256
"""Long side in px at which :func:`fill_annotations` interpolates (the fill is smooth)."""
BOX_EDGE = 0.08
"""A label box lies at most this share of the image's size from an edge. The panel-letter and
scale boxes of the 150 EMPS figures sit 1.4-4.3 % in (a 1 % rule missed 8 of them); boxes
anywhere found no more there, so the bound keeps a margin without reaching the image's middle."""


@dataclass(frozen=True)
class Annotation:
    """One detected annotation: its kind and bounding box (rows y0:y1, columns x0:x1)."""

    kind: str
    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def area(self) -> int:
        """Pixels in the box."""
        return (self.y1 - self.y0) * (self.x1 - self.x0)


def find_annotations(image: np.ndarray) -> tuple[np.ndarray, list[Annotation]]:
    """The region to ignore (bool, the image's shape) and the annotations found in it."""
    image = np.asarray(image)  # no float copy: a 4 B/px peak on every predicted frame
    region = np.zeros(image.shape, bool)
    lo, hi = float(image.min()), float(image.max())
    if hi - lo <= 0:
        return region, []
    tolerance = EXTREME * (hi - lo)
    found: list[Annotation] = []
    painted = (image >= hi - tolerance, image <= lo + tolerance)
    for one in painted:
        found += _find_in(one, region)
    found += _text_lines(image, painted, region, found)
    return region, found


def _find_in(painted: np.ndarray, region: np.ndarray) -> list[Annotation]:
    """Annotations among the 8-connected pieces of one polarity; marks them in ``region``."""
    height, width = painted.shape
    pieces, n = ndimage.label(painted, structure=np.ones((3, 3), bool))
    if n == 0:
        return []
    areas = np.bincount(pieces.ravel())
    boxes = ndimage.find_objects(pieces)
    found = []
    for k, box in enumerate(boxes, start=1):
        (ys, xs), area = box, areas[k]
        h, w = ys.stop - ys.start, xs.stop - xs.start
        near_edge = ys.stop <= EDGE_BAND * height or ys.start >= (1 - EDGE_BAND) * height
        kind = None
        if w >= 0.8 * width and h <= 0.25 * height and (ys.start == 0 or ys.stop == height):
            if _filled(pieces[box] == k).mean() >= 0.85:
                kind = "databar"
        elif (
            near_edge
            and ys.start > 0
            and ys.stop < height
            and max(12, 0.03 * width) <= w <= 0.6 * width
            and h <= max(6, 0.06 * height)
            and w >= 3.5 * h
            and _solid_bar(pieces[box] == k)
        ):
            kind = "bar"
        elif _near_edge(box, height, width) and h >= 8 and w >= 8 and 0.6 <= area / (h * w) < 0.97:
            filled = _filled(pieces[box] == k)
            if filled.mean() >= 0.97 and h * w <= 0.1 * height * width:
                kind = "box"
        if kind is None:
            continue
        y0, x0, y1, x1 = ys.start, xs.start, ys.stop, xs.stop
        if kind == "bar":
            y0, x0, y1, x1 = _with_text(pieces, areas, k, (y0, x0, y1, x1))
        y0, x0 = max(y0 - MARGIN_PX, 0), max(x0 - MARGIN_PX, 0)
        y1, x1 = min(y1 + MARGIN_PX, height), min(x1 + MARGIN_PX, width)
        region[y0:y1, x0:x1] = True
        found.append(Annotation(kind, int(y0), int(x0), int(y1), int(x1)))
    return found


def _solid_bar(piece: np.ndarray) -> bool:
    """Whether a piece fills its box as a bar does: the rows at least half painted (its core;
    resizing or compression softens a bar's top and bottom rows) are at least half of the box's
    rows and >= 90 % painted. An ellipse's core is ~87 % painted; a highlight on a sphere is
    mostly soft rows."""
    core = piece.mean(1) >= 0.5
    return bool(core.mean() >= 0.5 and piece[core].mean() >= 0.9)


def _filled(binary: np.ndarray) -> np.ndarray:
    """A piece with its holes (text) filled."""
    return ndimage.binary_fill_holes(binary)


def _near_edge(box: tuple[slice, slice], height: int, width: int) -> bool:
    """Whether a bounding box lies within :data:`BOX_EDGE` of the size from an image edge."""
    ys, xs = box
    gap_y, gap_x = max(1, int(BOX_EDGE * height)), max(1, int(BOX_EDGE * width))
    return (
        ys.start <= gap_y
        or xs.start <= gap_x
        or ys.stop >= height - gap_y
        or (xs.stop >= width - gap_x)
    )


def _with_text(
    pieces: np.ndarray, areas: np.ndarray, bar: int, box: tuple[int, int, int, int]
) -> tuple[int, int, int, int]:
    """The bar's box grown over the small same-polarity blobs (glyphs) next to it."""
    y0, x0, y1, x1 = box
    length = x1 - x0
    reach = max(4 * (y1 - y0), 24)
    wy0, wy1 = max(y0 - reach, 0), min(y1 + reach, pieces.shape[0])
    wx0, wx1 = max(x0 - length // 2, 0), min(x1 + length // 2, pieces.shape[1])
    window = pieces[wy0:wy1, wx0:wx1]
    for k in np.unique(window):
        if k in (0, bar) or areas[k] > 0.5 * length * reach:
            continue
        ys, xs = np.nonzero(window == k)
        glyph = np.ptp(ys) < reach and np.ptp(xs) < length
        if glyph and ys.size == areas[k]:  # wholly inside the window: not a structure
            y0, y1 = min(y0, wy0 + ys.min()), max(y1, wy0 + ys.max() + 1)
            x0, x1 = min(x0, wx0 + xs.min()), max(x1, wx0 + xs.max() + 1)
    return y0, x0, y1, x1


TEXT_REACH = 0.5
"""A bar's text is looked for up to this share of the bar's length above and below it."""
MIN_GLYPHS = 3
"""Fewest glyphs of a text line ("1 µm" has three)."""


def _text_lines(
    image: np.ndarray,
    painted: tuple[np.ndarray, ...],
    region: np.ndarray,
    found: list[Annotation],
) -> list[Annotation]:
    """Lines of text over or under each scale bar in ``found``, of either polarity; marks them
    in ``region``.

    :func:`_with_text` takes glyphs close to the bar in its own polarity; in about half of the
    EMPS figures with a bar the length stands further off ("100 nm" 23 px under a 140 px bar),
    is written in the other polarity, or runs past the glyphs it took (the "1" of "100 nm").
    A line of glyphs of one height side by side is what text is and particle rims are not:
    the looser rule of thin strokes near the bar took the bright rims of SEM spheres (RESULTS,
    issue 12); this one adds text in 44 of the 150 figures and nothing else (looked at). A
    line already inside the region is not reported again.
    """
    height, width = region.shape
    lines = []
    for bar in [a for a in found if a.kind == "bar"]:
        length, reach = bar.x1 - bar.x0, int(TEXT_REACH * (bar.x1 - bar.x0))
        wy0, wx0 = max(bar.y0 - reach, 0), max(bar.x0 - length // 2, 0)
        wy1, wx1 = min(bar.y1 + reach, height), min(bar.x1 + length // 2, width)
        grey = np.asarray(image[wy0:wy1, wx0:wx1], np.float32)
        for one in painted:
            glyphs = _glyphs(one[wy0:wy1, wx0:wx1], grey, 0.08 * height)
            for y0, x0, y1, x1 in _lines_of(glyphs):
                beside = x1 + wx0 <= bar.x0 or x0 + wx0 >= bar.x1  # not over or under the bar
                if beside or region[wy0 + y0 : wy0 + y1, wx0 + x0 : wx0 + x1].all():
                    continue
                y0, x0 = max(wy0 + y0 - MARGIN_PX, 0), max(wx0 + x0 - MARGIN_PX, 0)
                y1, x1 = min(wy0 + y1 + MARGIN_PX, height), min(wx0 + x1 + MARGIN_PX, width)
                region[y0:y1, x0:x1] = True
                lines.append(Annotation("text", int(y0), int(x0), int(y1), int(x1)))
    return lines


GLYPH_CONTRAST = 0.05
"""A glyph differs from the pixels around it by at least this share of the window's grey range.
On the 150 EMPS figures the only lines of non-text, specks of a nearly saturated white film
over a bar (one figure), stood 0.03-0.06 from their surround, the text of 43 figures 0.06-0.64
(median over a line's pieces); 0.05 drops those two lines and none of the text."""


def _glyphs(
    binary: np.ndarray, grey: np.ndarray, tallest: float
) -> list[tuple[int, int, int, int]]:
    """Boxes (y0, x0, y1, x1) of the 8-connected pieces of ``binary`` that could be one or two
    characters: 4 px to ``tallest`` tall, at most twice as wide as tall, not cut by the
    window's edge, and standing out from the ``grey`` around them by :data:`GLYPH_CONTRAST`
    (text is drawn at full contrast; specks of a saturated film are not); left to right."""
    pieces, _ = ndimage.label(binary, structure=np.ones((3, 3), bool))
    spread = float(grey.max() - grey.min())
    boxes = []
    for k, (ys, xs) in enumerate(ndimage.find_objects(pieces), start=1):
        h, w = ys.stop - ys.start, xs.stop - xs.start
        cut = ys.start == 0 or xs.start == 0 or ys.stop == binary.shape[0]
        if cut or xs.stop == binary.shape[1] or not 4 <= h <= tallest or w > 2 * h:
            continue
        around = (slice(ys.start - 1, ys.stop + 1), slice(xs.start - 1, xs.stop + 1))
        inside, values = pieces[around] == k, grey[around]
        if abs(values[inside].mean() - values[~inside].mean()) >= GLYPH_CONTRAST * spread:
            boxes.append((ys.start, xs.start, ys.stop, xs.stop))
    return sorted(boxes, key=lambda box: box[1])


def _lines_of(glyphs: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Boxes of the text lines among ``glyphs``: from each glyph not yet in a line, the glyphs
    to its right of about the line's height (within 1.6 x), sharing at least 0.6 of their
    height with it (a "µ" hangs below the line, an "m" does not reach its top) and at most
    1.2 heights apart; kept when there are :data:`MIN_GLYPHS` or more."""
    lines, used = [], set()
    for i, first in enumerate(glyphs):
        if i in used:
            continue
        line, members = [first], [i]
        for j in range(i + 1, len(glyphs)):
            y0, x0, y1, _ = glyphs[j]
            top, bottom = (float(np.median([g[k] for g in line])) for k in (0, 2))
            size = bottom - top
            shared = min(y1, bottom) - max(y0, top)
            if (
                shared >= 0.6 * min(y1 - y0, size)
                and 1 / 1.6 <= (y1 - y0) / size <= 1.6
                and x0 - line[-1][3] <= 1.2 * size
            ):
                line.append(glyphs[j])
                members.append(j)
        if len(line) >= MIN_GLYPHS:
            used.update(members)
            ys0, xs0, ys1, xs1 = zip(*line, strict=True)
            lines.append((min(ys0), min(xs0), max(ys1), max(xs1)))
    return lines


def fill_annotations(image: np.ndarray) -> np.ndarray:
    """``image`` (float32) with its annotations painted over by the surrounding grey level, or
    ``image`` itself when it has none.

    For features that must describe the specimen: a scale bar's glyphs are a row of small
    bright blobs, which a particle-size spectrum reads as many small particles. On the 150
    EMPS figures (annotations found in 120) the classifier gained 0.01-0.02 accuracy on
    average at 1-8 labels a class (benchmarks/RESULTS.md, issue 12). The fill is a normalised
    convolution of the pixels outside the region, widened until it reaches the region's
    middle, computed on blocks that bring the long side to about :data:`FILL_SIDE` px: smooth,
    like an empty stretch of support film.
    """
    region, found = find_annotations(image)
    if not found:
        return image
    pixels = np.array(image, np.float32)
    block = max(1, int(np.ceil(max(pixels.shape) / FILL_SIDE)))
    valid = ~region
    weight = downscale_local_mean(valid.astype(np.float32), (block, block))
    sums = downscale_local_mean(np.where(valid, pixels, np.float32(0)), (block, block))
    fill = np.full(weight.shape, np.nan, np.float32)
    sigma = 1.0
    while np.isnan(fill).any() and sigma <= 2 * max(fill.shape):
        reach = ndimage.gaussian_filter(weight, sigma)
        reached = np.isnan(fill) & (reach > 1e-3)
        fill[reached] = ndimage.gaussian_filter(sums, sigma)[reached] / reach[reached]
        sigma *= 2
    fill[np.isnan(fill)] = np.median(pixels[valid]) if valid.any() else 0.0
    ys, xs = np.nonzero(region)
    at = np.stack([(ys + 0.5) / block - 0.5, (xs + 0.5) / block - 0.5])
    pixels[ys, xs] = ndimage.map_coordinates(fill, at, order=1, mode="nearest")
    return pixels
