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

from ..errors import NanowireError
from ..io import write_csv, write_tiff
from ..names import CLASSES
from .imaging import _form_image
from .scenes import (
    WIDTH_RANGE_NM,
    WIRE_COLUMNS,
    _bundle,
    _dispersed,
    _network,
    _percolation,
    _Scene,
    _singular,
    _Style,
)

MIN_SIZE = 32
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


_DRAW: dict[str, Callable[[_Scene, np.random.Generator, _Style], None]] = {
    "singular": _singular,
    "dispersed": _dispersed,
    "bundle": _bundle,
    "network": _network,
}


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
