"""napari writer contribution: a Labels layer as an ImageJ TIFF that keeps its nm and classes.

napari's own writer saves a Labels layer as uint32 without calibration; this one writes uint8
(uint16 when needed), the pixel size in nm (from the layer's scale) and the mask classes, so
Fiji opens the mask calibrated and napari reopens it as a Labels layer Measure can pick
(see :mod:`napari_nanowire.core.io.labels`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_nanowire.core.io.labels import LabelsInfo, write_labels

from .masks import MASK_KEY
from .pixel_size import pixel_size_from


def write_labels_layer(path: str, data: Any, attributes: dict) -> list[str]:
    """npe2 single-layer writer: save ``data`` with the layer's pixel size and mask classes."""
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        path = f"{path}.tif"
    metadata = attributes.get("metadata") or {}
    info = LabelsInfo(
        [str(n) for n in metadata.get("mask_classes") or []],
        training=MASK_KEY in metadata,
        mask_for=metadata.get(MASK_KEY),
    )
    return [
        str(
            write_labels(
                path, data, pixel_size_from(attributes.get("scale"), attributes.get("units")), info
            )
        )
    ]
