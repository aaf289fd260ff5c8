"""Label masks that travel: ImageJ TIFFs that Fiji opens calibrated and napari reopens as Labels.

A mask file is an ImageJ TIFF (zlib-compressed, uint8, or uint16 when a value exceeds 255)
with the pixel size in nm, and, in the ImageJ ``Properties`` (Fiji: Image > Show Info), a
marker and the class names:

- ``napari_nanowire``: ``"labels"``, the marker;
- ``mask_classes``: a JSON list; value k of a predicted (dense) mask is class ``mask_classes[k]``
  (0 = background); in a training mask 0 = not labelled and k >= 1 is ``mask_classes[k - 1]``;
- ``mask_values``: ``"dense"`` or ``"training"``;
- ``mask_for``: the image a training mask was painted on (its napari layer name), if known.

Predicted masks (``predict``) and masks saved from napari's Labels layers carry them, so
napari opens them again as Labels layers with named classes that Measure can pick.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from ..errors import NanowireError
from .writers import write_tiff

MARKER_KEY = "napari_nanowire"
MARKER = "labels"


@dataclass
class LabelsInfo:
    """What a mask file says about its values."""

    mask_classes: list[str] = field(default_factory=list)
    training: bool = False  # 0 = not labelled, k = mask_classes[k - 1]; else k = mask_classes[k]
    mask_for: str | None = None


def labels_metadata(info: LabelsInfo) -> dict:
    """The ImageJ metadata that marks a TIFF as a mask with these classes."""
    properties = {
        MARKER_KEY: MARKER,
        "mask_classes": json.dumps([str(c) for c in info.mask_classes]),
        "mask_values": "training" if info.training else "dense",
    }
    if info.mask_for:
        properties["mask_for"] = str(info.mask_for)
    return {"Properties": properties}


def labels_dtype(data: np.ndarray) -> np.dtype:
    """uint8, or uint16 when a value exceeds 255: the smallest type ImageJ reads as labels."""
    data = np.asarray(data)
    if data.size == 0:
        return np.dtype(np.uint8)
    low, high = int(data.min()), int(data.max())
    if low < 0 or high > 65535 or not np.issubdtype(data.dtype, np.integer):
        raise NanowireError(
            f"A mask must hold whole numbers from 0 to 65535 to be saved as an ImageJ TIFF; this "
            f"one ({data.dtype}) holds {low} to {high}. Relabel it (e.g. skimage.segmentation."
            "relabel_sequential) or save it with numpy."
        )
    return np.dtype(np.uint8 if high <= 255 else np.uint16)


def write_labels(
    path: str | os.PathLike, data: np.ndarray, pixel_size_nm: float | None, info: LabelsInfo
) -> Path:
    """Write a 2D mask or (N, Y, X) mask stack as a marked, compressed ImageJ TIFF (atomically)."""
    data = np.asarray(data)
    if data.ndim not in (2, 3):
        raise NanowireError(
            f"Cannot save a mask of shape {data.shape} to {path}: masks are 2D or (N, Y, X)."
        )
    return write_tiff(
        path, data.astype(labels_dtype(data)), pixel_size_nm, labels_metadata(info), "zlib"
    )


def read_labels_info(path: str | os.PathLike) -> LabelsInfo | None:
    """The class information of a mask file written by this package; None for other files."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff") or not path.is_file():
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            properties = (tif.imagej_metadata or {}).get("Properties") or {}
    except (OSError, ValueError, tifffile.TiffFileError):
        return None  # not a TIFF this reads: the image reader says what is wrong with it
    if properties.get(MARKER_KEY) != MARKER:
        return None
    try:
        names = [str(n) for n in json.loads(properties.get("mask_classes", "[]"))]
    except (TypeError, ValueError):
        names = []
    return LabelsInfo(
        names, properties.get("mask_values") == "training", properties.get("mask_for")
    )
