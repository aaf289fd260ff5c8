"""The segmenter's working scale: the one rule for how big a pixel the U-Net sees.

Real micrographs are 1024-4096 px; a U-Net run at full resolution on 128 px tiles sees a few
nanometres of context and 16x more pixels than it needs. So the segmenter trains and predicts
at a *working scale*: images are resampled to it on the way in (area-averaged when shrinking)
and class probabilities are resampled back to the original grid on the way out, then argmaxed.

A :class:`WorkingScale` holds both forms of the scale, so it also works without calibration:

- ``pixel_size_nm``: the working pixel size in nm/px, used for calibrated images;
- ``downsample``: one working pixel is this many original pixels (>= 1), used when an image
  has no pixel size (uncalibrated PNG/JPEG), or when the model's ``pixel_size_nm`` is unknown.

By default (:func:`default_working_scale`) the training images' median long side is brought to
:data:`TARGET_SIDE` px (never enlarged); the scale is stored in the segmenter metadata of the
model file (``segmenter.working``) and read back with :func:`working_from_meta`, so
the GUI, the CLI, the dask path and scripts all resample identically.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import NanowireError
from ..model.metadata import ModelMeta
from ..model.preprocess import median_known
from .features import prepare_image, resize_labels

TARGET_SIDE = 384
"""Default working size of the median training image's long side, in working pixels.

On the EMPS real set (512 px tall) and 1024 px synthetic frames, see benchmarks/RESULTS.md."""
MAX_TILE = 256
"""Largest default segmenter tile (working pixels): whole default-size images in one or few."""
MIN_TILE = 64
TRAIN_CROP = 128
"""Largest default training crop (working pixels). A step on 8 crops of 128 px takes a fifth of
one on 256 px crops (0.38 vs 2.0 s, tiny encoder, one CPU thread), so a time-capped run takes
five times the steps; on EMPS that lifted held-out IoU (benchmarks/RESULTS.md)."""


@dataclass(frozen=True)
class WorkingScale:
    """The segmenter's working pixel: nm/px where known, and original pixels per working pixel."""

    pixel_size_nm: float | None = None
    downsample: float = 1.0

    def __post_init__(self) -> None:
        if self.pixel_size_nm is not None and not self.pixel_size_nm > 0:
            raise NanowireError(
                f"Working pixel size {self.pixel_size_nm} nm/px must be positive; "
                "give e.g. --working-pixel-size 0.5."
            )
        if not self.downsample > 0 or not math.isfinite(self.downsample):
            raise NanowireError(
                f"Working downsampling factor {self.downsample} must be a positive number."
            )

    def factor(self, pixel_size_nm: float | None) -> float:
        """Zoom that brings an image of ``pixel_size_nm`` (None = unknown) to this scale."""
        if pixel_size_nm and self.pixel_size_nm:
            return float(pixel_size_nm) / self.pixel_size_nm
        return 1.0 / self.downsample

    def working_pixel_nm(self, pixel_size_nm: float | None) -> float | None:
        """The size in nm of one working pixel of an image of ``pixel_size_nm`` (None = unknown)."""
        if pixel_size_nm and self.pixel_size_nm:
            return self.pixel_size_nm
        return float(pixel_size_nm) * self.downsample if pixel_size_nm else None

    def to_meta(self) -> dict:
        """JSON-ready form for the model file."""
        return asdict(self)


def working_from_meta(meta: ModelMeta) -> WorkingScale:
    """The working scale stored in a model file's segmenter metadata.

    Segmenters written before working scales existed ran at the model's pixel size (or at full
    resolution without one); they get exactly that back.
    """
    stored = meta.segmenter.working if meta.segmenter is not None else None
    if stored is None:
        return WorkingScale(meta.pixel_size_nm, 1.0)
    return WorkingScale(stored.get("pixel_size_nm"), float(stored["downsample"]))


def default_working_scale(
    shapes: Sequence[tuple[int, ...]],
    pixel_sizes_nm: Sequence[float | None] | None = None,
    pixel_size_nm: float | None = None,
    downsample: float | None = None,
    target_side: int = TARGET_SIDE,
) -> WorkingScale:
    """The working scale for a training set: given values win, the rest follow from the data.

    Without ``downsample``, the median long side of ``shapes`` is brought to ``target_side``
    (never enlarged). With ``pixel_size_nm`` (the ``--working-pixel-size`` option) and known
    image pixel sizes, the downsampling factor follows from it and the median pixel size.
    """
    if not shapes:
        raise NanowireError("No training images to choose a working scale from.")
    median_px = median_known(list(pixel_sizes_nm or []))
    if downsample is None:
        if pixel_size_nm and median_px:
            downsample = max(pixel_size_nm / median_px, 1e-3)
        else:
            long_side = float(np.median([max(s[-2:]) for s in shapes]))
            downsample = max(1.0, long_side / target_side)
    if pixel_size_nm is None and median_px:
        pixel_size_nm = median_px * downsample
    return WorkingScale(pixel_size_nm, round(float(downsample), 4))


def working_shape(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    """The (rows, columns) of a 2D image resampled by ``factor``."""
    return tuple(max(1, round(n * factor)) for n in shape[-2:])


def default_tile(working_shapes: Sequence[tuple[int, ...]]) -> int:
    """Segmenter tile (multiple of 32) for images of these working shapes: the median long
    side rounded up to 32, between :data:`MIN_TILE` and :data:`MAX_TILE`."""
    side = float(np.median([max(s[-2:]) for s in working_shapes])) if working_shapes else MAX_TILE
    return int(min(MAX_TILE, max(MIN_TILE, math.ceil(side / 32) * 32)))


def resample_mask(mask: np.ndarray, shape: tuple[int, int], unlabelled: int | None = None):
    """A label mask resampled to ``shape``: nearest when enlarging, a vote when shrinking.

    Shrinking, each working pixel takes the value covering most of its footprint, so thin
    structures are not lost the way plain nearest sampling loses them. With ``unlabelled`` (0
    for stroke masks, -1 for training targets), that value only wins where the footprint has
    no other value, so 1-2 px strokes survive a 4x reduction.
    """
    mask = np.asarray(mask)
    if mask.shape == tuple(shape):
        return mask
    if shape[0] >= mask.shape[0] and shape[1] >= mask.shape[1]:
        return resize_labels(mask, shape)
    values = np.unique(mask)
    if len(values) > 255:
        raise NanowireError(
            f"A mask with {len(values)} distinct values cannot be resampled as classes; "
            "give a class mask (0 = not labelled, 1 = background, 2.. = classes)."
        )
    index = np.searchsorted(values, mask)
    onehot = F.one_hot(torch.from_numpy(index.astype(np.int64)), len(values))
    cover = F.interpolate(onehot.permute(2, 0, 1)[None].float(), size=shape, mode="area")[0]
    if unlabelled is not None and unlabelled in values:
        k = int(np.searchsorted(values, unlabelled))
        labelled = cover.sum(0) - cover[k] > 0
        cover[k] = torch.where(labelled, torch.zeros_like(cover[k]), cover[k])
    return values[cover.argmax(0).numpy()].astype(mask.dtype)


def to_working(
    image: np.ndarray,
    mask: np.ndarray | None,
    pixel_size_nm: float | None,
    working: WorkingScale,
    unlabelled: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """An image normalised and resampled to the working scale (float32), and its mask with it.

    The mask (optional) is resampled with :func:`resample_mask` (``unlabelled``: the value
    meaning "not labelled", kept from swallowing thin strokes). Refuses absurd sizes (a wrong
    pixel size, usually) with a NanowireError naming both.
    """
    image = np.asarray(image)
    if mask is not None and np.shape(mask) != image.shape:
        raise NanowireError(
            f"Mask of shape {np.shape(mask)} does not match its image's {image.shape}."
        )
    prepared = prepare_image(image, zoom=working.factor(pixel_size_nm))
    if mask is None:
        return prepared, None
    return prepared, resample_mask(mask, prepared.shape, unlabelled)


def upsampled_rows(
    probs: np.ndarray, shape: tuple[int, int], rows: int = 64
) -> Iterator[tuple[int, np.ndarray]]:
    """(C, h, w) class probabilities resampled bilinearly to (rows, cols) ``shape``, as
    (row, (C, block, cols)) blocks, so the full-size probabilities never exist at once.

    Same sampling as torch's bilinear ``interpolate`` with ``align_corners=False``.
    """
    height, width = shape
    iy0, iy1, wy = _linear_taps(probs.shape[1], height)
    ix0, ix1, wx = _linear_taps(probs.shape[2], width)
    for row in range(0, height, rows):
        sl = slice(row, min(row + rows, height))
        w = wy[sl][None, :, None]
        part = probs[:, iy0[sl]] * (1 - w) + probs[:, iy1[sl]] * w
        yield row, part[:, :, ix0] * (1 - wx) + part[:, :, ix1] * wx


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of linear interpolation from n_in to n_out samples."""
    src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    i0 = np.floor(src).astype(np.intp)
    return i0, np.minimum(i0 + 1, n_in - 1), (src - i0).astype(np.float32)


def probabilities_to_original(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(C, h, w) class probabilities resampled bilinearly to the original (rows, cols)."""
    if probs.shape[-2:] == tuple(shape):
        return probs
    return np.concatenate([block for _, block in upsampled_rows(probs, shape)], axis=1)
