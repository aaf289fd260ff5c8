"""Clean predicted masks: drop specks, fill pinholes, optionally smooth; sizes in nm.

Raw U-Net masks carry 1-px specks and holes, which ruin domain counts and widths. Every
prediction path (GUI, CLI, dask, scripts) runs :func:`postprocess_mask` inside
:meth:`~napari_nanowire.core.predict.Predictor.segment`, with the settings stored in the model
file (``segmenter.postprocess``). Sizes are areas in nm^2 where the image has a
pixel size, else in px^2 of the original image; the defaults follow from the working scale:
what is smaller than :data:`MIN_WORKING_PX2` working pixels the net cannot resolve anyway.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy import ndimage

from ..errors import NanowireError
from ..model.metadata import ModelMeta
from .scale import WorkingScale

MIN_WORKING_PX2 = 16
"""Default smallest object and hole: 16 working pixels (4 x 4)."""
MAX_FILLED_SHARE = 0.25
"""``fill_holes`` leaves enclosed background larger than this share of the image: that is
background a frame of false object encloses (seen on EMPS: a whole SEM field filled), not the
inside of a particle."""
SOLID_RING = 0.9
"""A hole of any size (up to :data:`MAX_FILLED_SHARE`) is filled when at least this share of the
ring around it, as wide as its inscribed radius, is object: the inside of a particle (a bright
centre in a dark TEM particle, a shadow in an SEM sphere), not an opening of a wire network,
whose ring holds thin wires and the next openings. On 33 saved models (benchmarks/RESULTS.md,
issue 11): dark EMPS particles 0.816 -> 0.835 (0.831 with :data:`COMPACT_AREA`), synthetic
wires and bright spheres within 0.002;
0.5 and 0.7 cost synthetic networks 0.04 and 0.016."""
COMPACT_AREA = 3.0
"""Only holes whose area is at most this many discs of their inscribed radius are filled by
the ring rule: a particle's centre is compact, the sliver between two touching wires of a
bundle is long and thin and ringed by wire, but background (seen in the demo's bundles)."""


@dataclass(frozen=True)
class PostProcess:
    """Mask clean-up settings: minimum object and hole areas, and a smoothing radius.

    ``*_nm2`` apply to calibrated images, ``*_px2`` (original pixels) to uncalibrated ones;
    0 turns a step off. ``smooth_px`` > 0 opens then closes each class with a disk of that
    radius in original pixels (off by default: it also erodes thin wires). ``fill_holes``
    fills every enclosed hole up to a quarter of the image: right for particles, whose rims
    and shading a net can leave as rings; off by default, since a wire network encloses real
    background. ``refine_intensity`` refines the net's probabilities with the image's grey
    levels before the mask is taken (:mod:`.refine`; on for models trained since it exists).
    ``object_polarity`` is on which side of the grey levels the objects of the labelled images
    lie (+1 brighter, -1 darker, 0 not known or mixed), for the refinement's check.
    """

    min_object_nm2: float = 0.0
    min_hole_nm2: float = 0.0
    min_object_px2: float = 0.0
    min_hole_px2: float = 0.0
    smooth_px: int = 0
    fill_holes: bool = False
    refine_intensity: bool = False
    object_polarity: int = 0
    enabled: bool = True

    def __post_init__(self) -> None:
        for name in ("min_object_nm2", "min_hole_nm2", "min_object_px2", "min_hole_px2"):
            if getattr(self, name) < 0:
                raise NanowireError(
                    f"Post-processing {name} must be >= 0, got {getattr(self, name)}."
                )
        if self.smooth_px < 0:
            raise NanowireError(f"Smoothing radius must be >= 0 px, got {self.smooth_px}.")

    def areas_px(self, pixel_size_nm: float | None) -> tuple[float, float]:
        """(minimum object, minimum hole) in pixels of an image of ``pixel_size_nm``."""
        if pixel_size_nm and (self.min_object_nm2 or self.min_hole_nm2):
            px2 = float(pixel_size_nm) ** 2
            return self.min_object_nm2 / px2, self.min_hole_nm2 / px2
        return self.min_object_px2, self.min_hole_px2

    def to_meta(self) -> dict:
        """JSON-ready form for the model file."""
        return asdict(self)

    def replace(self, **changes) -> PostProcess:
        """A copy with some settings changed (``None`` values keep the current one)."""
        return PostProcess(
            **{**asdict(self), **{k: v for k, v in changes.items() if v is not None}}
        )


def default_postprocess(working: WorkingScale, pixel_size_nm: float | None) -> PostProcess:
    """Defaults from the working scale: :data:`MIN_WORKING_PX2` working pixels, in nm^2 for
    calibrated training images (``pixel_size_nm``: their median) and in original px^2."""
    px2 = MIN_WORKING_PX2 * working.downsample**2
    nm = working.working_pixel_nm(pixel_size_nm)
    nm2 = MIN_WORKING_PX2 * nm**2 if nm else 0.0
    return PostProcess(round(nm2, 4), round(nm2, 4), round(px2, 2), round(px2, 2))


def postprocess_from_meta(meta: ModelMeta) -> PostProcess:
    """The settings stored in a model file (off for segmenters saved before they existed);
    settings this version does not know are left out."""
    stored = meta.segmenter.postprocess if meta.segmenter is not None else None
    if not stored:
        return PostProcess(enabled=False)
    known = {f.name for f in fields(PostProcess)}
    return PostProcess(**{k: v for k, v in stored.items() if k in known})


def postprocess_mask(
    mask: np.ndarray, settings: PostProcess, pixel_size_nm: float | None = None
) -> np.ndarray:
    """A class mask (0 = background, k = class k) with specks removed and holes filled.

    Objects (4-connected pieces of one class) smaller than the minimum object area become
    background; background pieces not touching the image edge take the class that surrounds
    them most when they are smaller than the minimum hole area, lie inside solid objects
    (:data:`SOLID_RING`), or (with ``fill_holes``) always. Works on a copy; same dtype.
    """
    mask = np.array(mask, copy=True)
    if not settings.enabled:
        return mask
    min_object, min_hole = settings.areas_px(pixel_size_nm)
    if settings.smooth_px:
        mask = _smooth(mask, settings.smooth_px)
    for value in np.unique(mask):
        if value and min_object >= 1:
            pieces, sizes = _pieces(mask == value)
            mask[(sizes < min_object)[pieces] & (pieces > 0)] = 0
    largest = MAX_FILLED_SHARE * mask.size
    if settings.fill_holes or min_hole >= 1:
        _fill_holes(mask, largest if settings.fill_holes else min_hole, largest)
    return mask


def _pieces(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected labels of a binary image and each label's size (index 0 = not in it)."""
    pieces, n = ndimage.label(binary)
    sizes = np.bincount(pieces.ravel(), minlength=n + 1)
    sizes[0] = np.iinfo(sizes.dtype).max
    return pieces, sizes


def _fill_holes(mask: np.ndarray, min_hole: float, max_hole: float) -> None:
    """Give enclosed background pieces the most common class on their rim, in place: those
    smaller than ``min_hole``, and those smaller than ``max_hole`` inside solid objects."""
    pieces, sizes = _pieces(mask == 0)
    border = np.unique(np.concatenate([pieces[0], pieces[-1], pieces[:, 0], pieces[:, -1]]))
    candidates = sizes < max(min_hole, max_hole)
    candidates[border] = False
    slices = ndimage.find_objects(pieces)
    for k in np.flatnonzero(candidates):
        if sizes[k] >= min_hole and not _inside_solid(mask, pieces, k, slices[k - 1], sizes[k]):
            continue
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in slices[k - 1])
        hole = pieces[sl] == k
        rim = ndimage.binary_dilation(hole) & ~hole
        classes = mask[sl][rim]
        classes = classes[classes > 0]
        if classes.size:
            mask[sl][hole] = np.bincount(classes).argmax()


def _inside_solid(
    mask: np.ndarray, pieces: np.ndarray, k: int, box: tuple[slice, slice], area: int
) -> bool:
    """Whether background piece ``k`` (``area`` px) is compact (at most :data:`COMPACT_AREA`
    discs of its inscribed radius: not a sliver between touching wires) and ringed by object
    (:data:`SOLID_RING`)."""
    radius = float(ndimage.distance_transform_edt(np.pad(pieces[box] == k, 1)).max())
    if area > COMPACT_AREA * np.pi * radius**2:
        return False
    grow = int(np.ceil(radius)) + 1
    window = tuple(
        slice(max(s.start - grow, 0), min(s.stop + grow, n))
        for s, n in zip(box, mask.shape, strict=True)
    )
    hole = pieces[window] == k
    ring = (ndimage.distance_transform_edt(~hole) <= radius) & ~hole
    return bool((mask[window][ring] > 0).mean() >= SOLID_RING)


def _smooth(mask: np.ndarray, radius: int) -> np.ndarray:
    """Open then close each class with a disk of ``radius`` px (classes in value order)."""
    from skimage.morphology import disk

    footprint = disk(radius)
    out = np.zeros_like(mask)
    for value in np.unique(mask):
        if value:
            region = ndimage.binary_opening(mask == value, footprint)
            out[ndimage.binary_closing(region, footprint) & (out == 0)] = value
    return out
